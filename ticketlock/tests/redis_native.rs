//! The native Redis layout (`layout: native`): FIFO, fencing, TTLs, constant
//! cost per call, the one-step hand-off, dead waiters, the cross-layout
//! errors and the ACL rule. Each test starts a `redis-server` of its own.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use server::{RedisServer, config, connection};
use ticketlock::{
    Backend, Error, LockGuard, LockStore, RedisConfig, RedisLayout, RedisLockStore, Secret, Ticket,
    TicketLock,
};

const HOUR: Duration = Duration::from_secs(3600);
/// A bound for things that happen at once: far beyond any scheduling delay.
const PROMPT: Duration = Duration::from_secs(20);

fn native_config(server: &RedisServer) -> RedisConfig {
    let mut c = config(server);
    c.layout = RedisLayout::Native;
    c
}

async fn connect_with(server: &RedisServer, c: RedisConfig) -> LockStore {
    RedisLockStore::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into()
}

async fn native(server: &RedisServer) -> LockStore {
    connect_with(server, native_config(server)).await
}

/// A task waiting (an hour's lifetime and wait time) for the lock of `id`.
fn spawn_waiter(store: &LockStore, id: &'static str) -> tokio::task::JoinHandle<LockGuard> {
    let store = store.clone();
    tokio::spawn(async move { store.lock(id).lifetime(HOUR).wait_time(HOUR).await.unwrap() })
}

/// The first calls of a store keep their arrival order while the
/// Functions library is loaded (see the same test in redis_store.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_calls_on_a_server_new_to_the_library_keep_their_order() {
    for apart in [0, 50, 100, 200, 400, 800, 1600] {
        let server = server!();
        let apart = Duration::from_micros(apart);
        let order = server::order_of_first_calls(&server, native_config(&server), apart).await;
        assert_eq!(order, (0..8).collect::<Vec<_>>(), "calls {apart:?} apart");
    }
}

/// The keys of conversation `id` (no prefix): K, q, x.
fn keys(id: &str) -> [String; 3] {
    let k = format!("lock:{id}");
    [
        k.clone(),
        format!("{{{k}}}:{k}:q"),
        format!("{{{k}}}:{k}:x"),
    ]
}

/// Calls per command so far (`INFO commandstats`).
fn command_counts(con: &mut redis::Connection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_string(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

/// What ran between two snapshots (commands that ran at least once).
fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut d: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, v)| *v > 0 && k != "info")
        .collect();
    d.sort();
    d
}

fn layout_error(e: Error, theirs: &str) {
    match e {
        Error::Config { key, message } => {
            assert_eq!(key, "lock_store.layout", "{message}");
            assert!(
                message.contains(&format!("held in the {theirs} layout")),
                "{message}"
            );
        }
        other => panic!("not the layout error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_waiters_enter_in_ticket_order() {
    let server = server!();
    let store = native(&server).await;
    let holder = store.lock("fifo").await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        // Each ticket is issued before the next one's.
        let queued = store.lock("fifo").wait_time(HOUR).enqueue().await.unwrap();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = queued.acquired().await.unwrap();
            order.lock().unwrap().push(g.ticket());
            g.release().await.unwrap();
        }));
    }
    holder.release().await.unwrap();
    for t in tasks {
        tokio::time::timeout(PROMPT, t).await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (1..=30).collect::<Vec<u64>>());
    assert_eq!(store.get_lock("fifo").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fencing_tokens_strictly_increase_across_deletion() {
    let server = server!();
    let store = native(&server).await;
    let mut last = 0;
    for round in 0..5 {
        let g = store.lock("fence").await.unwrap();
        assert!(g.fencing_token() > last, "round {round}");
        last = g.fencing_token();
        let w = store.lock("fence").enqueue().await.unwrap();
        g.release().await.unwrap();
        let g = tokio::time::timeout(PROMPT, w.acquired())
            .await
            .unwrap()
            .unwrap();
        assert!(g.fencing_token() > last, "round {round}");
        last = g.fencing_token();
        if round % 2 == 0 {
            // Deleted with a holder, or gone with its last ticket.
            store.delete_lock("fence").await.unwrap();
            assert!(!g.is_held().await.unwrap());
        } else {
            g.release().await.unwrap();
        }
        assert_eq!(store.get_lock("fence").await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_key_has_a_ttl_after_every_operation() {
    let server = server!();
    let store = native(&server).await;
    let mut con = connection(&server, 1);
    // The hash always exists; the sorted sets beside it may not (the
    // uncontended state), but whatever exists has a TTL that covers the
    // latest expiry and a second (each ticket here lives an hour, so at
    // least 3,600 s less the test's own time), and is at most twice the
    // longest remaining life and a second (touch's slack).
    let assert_ttls_at_least = |con: &mut redis::Connection, after: &str, least_ms: i64| {
        for (i, key) in keys("t").iter().enumerate() {
            let ttl: i64 = redis::cmd("PTTL").arg(key).query(con).unwrap();
            assert!(
                (ttl >= least_ms && ttl <= 2 * HOUR.as_millis() as i64 + 1_000)
                    || (i > 0 && ttl == -2),
                "PTTL {key} = {ttl} after {after}"
            );
        }
    };
    let hour_less_slack = HOUR.as_millis() as i64 - 30_000;
    let assert_ttls = |con: &mut redis::Connection, after: &str| {
        assert_ttls_at_least(con, after, hour_less_slack)
    };
    let assert_all_there = |con: &mut redis::Connection, after: &str| {
        for key in keys("t") {
            let n: i64 = redis::cmd("EXISTS").arg(&key).query(con).unwrap();
            assert_eq!(n, 1, "{key} missing after {after}");
        }
    };
    let g = store.lock("t").lifetime(HOUR).await.unwrap();
    assert_ttls(&mut con, "issue");
    g.renew().await.unwrap();
    assert_ttls(&mut con, "an uncontended renew");
    assert!(g.is_held().await.unwrap());
    assert_ttls(&mut con, "an uncontended check");
    let w = store.lock("t").lifetime(HOUR).enqueue().await.unwrap();
    assert_ttls(&mut con, "a queued issue");
    assert_all_there(&mut con, "a queued issue");
    g.renew().await.unwrap();
    assert_ttls(&mut con, "renew");
    assert!(g.is_held().await.unwrap());
    assert_ttls(&mut con, "check");
    store.update_lock("t").await.unwrap();
    assert_ttls(&mut con, "update");
    g.release().await.unwrap();
    assert_ttls(&mut con, "release with a hand-off");
    let g = tokio::time::timeout(PROMPT, w.acquired())
        .await
        .unwrap()
        .unwrap();
    assert_ttls(&mut con, "the claim of a grant");
    store
        .save_lock(&TicketLock::with_tickets(
            "t",
            [Ticket::new(9, ticketlock_now() + 30.0)],
        ))
        .await
        .unwrap();
    // The saved ticket expires in 30 s: the keys live at least 31 s less
    // the test's own time.
    assert_ttls_at_least(&mut con, "save", 29_000);
    assert!(!g.is_held().await.unwrap());
    store.finish_serving("t", 9).await.unwrap();
    for key in keys("t") {
        let n: i64 = redis::cmd("EXISTS").arg(&key).query(&mut con).unwrap();
        assert_eq!(n, 0, "{key} left after the last ticket went");
    }
}

fn ticketlock_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The commands one call of each operation runs inside its script, at a
/// queue of `depth` tickets: issue (queued), a waiter's look, renew, check,
/// and the release that hands the lock to the next ticket.
async fn commands_per_operation(server: &RedisServer, depth: usize) -> Vec<Vec<(String, u64)>> {
    let id = format!("depth{depth}");
    let store = native(server).await.with_max_queue_len(depth + 10);
    let redis = store.as_redis().unwrap().clone();
    let mut con = connection(server, 1);
    let holder = store.lock(&id).lifetime(HOUR).await.unwrap();
    let mut waiters = Vec::new();
    for _ in 1..depth {
        waiters.push(store.lock(&id).lifetime(HOUR).enqueue().await.unwrap());
    }
    let mut out = Vec::new();
    let before = command_counts(&mut con);
    let last = store.lock(&id).lifetime(HOUR).enqueue().await.unwrap();
    out.push(delta(&before, &command_counts(&mut con)));
    let before = command_counts(&mut con);
    let ticket = ticketlock::TicketId {
        number: last.ticket(),
        epoch: Some(holder.fencing_token() - holder.ticket()),
    };
    let attempt = redis.try_acquire(&id, ticket, HOUR).await.unwrap();
    assert!(matches!(attempt, ticketlock::Attempt::Queued { .. }));
    out.push(delta(&before, &command_counts(&mut con)));
    let before = command_counts(&mut con);
    holder.renew().await.unwrap();
    out.push(delta(&before, &command_counts(&mut con)));
    let before = command_counts(&mut con);
    assert!(holder.is_held().await.unwrap());
    out.push(delta(&before, &command_counts(&mut con)));
    let before = command_counts(&mut con);
    holder.release().await.unwrap();
    out.push(delta(&before, &command_counts(&mut con)));
    drop(waiters);
    drop(last);
    store.flush().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_commands_a_call_runs_do_not_grow_with_the_depth_of_the_queue() {
    let server = server!();
    // Once first, so that every script is loaded.
    commands_per_operation(&server, 2).await;
    let shallow = commands_per_operation(&server, 2).await;
    let deep = commands_per_operation(&server, 1000).await;
    for (op, (s, d)) in ["issue", "try_acquire", "renew", "check", "release"]
        .iter()
        .zip(shallow.iter().zip(&deep))
    {
        assert!(
            s.iter().any(|(c, _)| c == "fcall"),
            "{op}: no function ran (Redis 7 has FCALL): {s:?}"
        );
        assert_eq!(s, d, "{op}: commands at depth 2 vs 1000");
    }
}

/// A lock taken and released with nobody else on the conversation runs
/// exactly these commands: the hash alone, no sorted set, one request
/// entry (the release's), two scripts. The issue checks that there is no
/// conversation with `EXISTS` and writes the hash's three fields (epoch,
/// lease end, request id); the release reads them back with `HMGET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uncontended_cycle_runs_eight_commands_on_the_hash_alone() {
    let server = server!();
    let store = native(&server).await;
    let mut con = connection(&server, 1);
    // Once first, so that the library is loaded.
    store.lock("warm").await.unwrap().release().await.unwrap();
    let before = command_counts(&mut con);
    let g = store.lock("u").lifetime(HOUR).await.unwrap();
    let issued = delta(&before, &command_counts(&mut con));
    let mut fields: Vec<String> = redis::cmd("HKEYS").arg("lock:u").query(&mut con).unwrap();
    fields.sort();
    assert_eq!(fields, ["e", "r", "x"], "the uncontended hash");
    let before = command_counts(&mut con);
    g.release().await.unwrap();
    let released = delta(&before, &command_counts(&mut con));
    let counts = |names: &[(&str, u64)]| -> Vec<(String, u64)> {
        names.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    };
    assert_eq!(
        issued,
        counts(&[
            ("exists", 1),
            ("fcall", 1),
            ("hset", 1),
            ("pexpire", 1),
            ("time", 1)
        ]),
        "issue"
    );
    assert_eq!(
        released,
        counts(&[
            ("del", 1),
            ("fcall", 1),
            ("hmget", 1),
            ("set", 1),
            ("time", 1)
        ]),
        "release"
    );
    for key in keys("u") {
        let n: i64 = redis::cmd("EXISTS").arg(&key).query(&mut con).unwrap();
        assert_eq!(n, 0, "{key} left after the release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_hands_the_lock_over_with_one_script_and_one_push() {
    let server = server!();
    let store = native(&server).await;
    let mut con = connection(&server, 1);
    // One hand-off first, so that every script is loaded.
    let warm = store.lock("warm").await.unwrap();
    let next = store.lock("warm").enqueue().await.unwrap();
    warm.release().await.unwrap();
    next.acquired().await.unwrap().release().await.unwrap();
    let holder = store.lock("h").lifetime(HOUR).await.unwrap();
    // Script calls: FCALL on this server (7.0), EVALSHA on older ones.
    let scripts = |con: &mut redis::Connection| {
        let counts = command_counts(con);
        ["evalsha", "fcall"]
            .iter()
            .map(|c| counts.get(*c).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let start = scripts(&mut con);
    let waiter = spawn_waiter(&store, "h");
    // The waiter issued, subscribed to its ticket's channel and looked.
    let deadline = std::time::Instant::now() + PROMPT;
    loop {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("{lock:h}:lock:h:w:*")
            .query(&mut con)
            .unwrap();
        if channels.len() == 1 && scripts(&mut con) == start + 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter never settled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = scripts(&mut con);
    holder.release().await.unwrap();
    let g = tokio::time::timeout(PROMPT, waiter).await.unwrap().unwrap();
    assert_eq!(
        scripts(&mut con) - before,
        1,
        "the hand-off took more than the release's script"
    );
    assert!(g.fencing_token() > holder_token(&g));
    assert!(g.is_held().await.unwrap());
    g.release().await.unwrap();
}

/// The script calls and subscriptions in a `delta` (FCALL on this server,
/// EVALSHA on older ones).
fn scripts_and_subscriptions(d: &[(String, u64)]) -> Vec<(String, u64)> {
    d.iter()
        .filter(|(c, _)| ["fcall", "evalsha", "subscribe", "ssubscribe"].contains(&c.as_str()))
        .cloned()
        .collect()
}

/// Waits until the queue of `id` holds `n` tickets.
async fn queue_holds(con: &mut redis::Connection, id: &str, n: u64) {
    let deadline = std::time::Instant::now() + PROMPT;
    loop {
        let len: u64 = redis::cmd("ZCARD")
            .arg(format!("{{lock:{id}}}:lock:{id}:q"))
            .query(con)
            .unwrap();
        if len == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never held {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The wake-up channels of conversation `id` the server has subscribers for.
fn wake_channels(con: &mut redis::Connection, id: &str) -> usize {
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(format!("{{lock:{id}}}:lock:{id}:w:*"))
        .query(con)
        .unwrap();
    channels.len()
}

/// Waits until one wake-up channel of `id` is subscribed, and then a
/// little more for the waiter's look after it.
async fn one_wake_channel(con: &mut redis::Connection, id: &str) {
    let deadline = std::time::Instant::now() + PROMPT;
    while wake_channels(con, id) != 1 {
        assert!(std::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A process's tickets of one conversation share its wake-up channel
/// (`w:<wake id>`): a second waiter, issued while the first keeps that
/// channel subscribed, costs its issue alone (no subscription, no look),
/// and the hand-offs still go one script and one push each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_waiter_of_a_subscribed_process_waits_without_a_look_or_a_subscription() {
    let server = server!();
    let store = native(&server).await;
    let mut con = connection(&server, 1);
    let holder = store.lock("s").lifetime(HOUR).await.unwrap();
    let first = spawn_waiter(&store, "s");
    queue_holds(&mut con, "s", 2).await;
    one_wake_channel(&mut con, "s").await;
    let before = command_counts(&mut con);
    let second = spawn_waiter(&store, "s");
    queue_holds(&mut con, "s", 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = delta(&before, &command_counts(&mut con));
    let called = scripts_and_subscriptions(&d);
    assert_eq!(called.len(), 1, "more than the issue: {d:?}");
    assert_eq!(called[0].1, 1, "more than the issue: {d:?}");
    assert_eq!(wake_channels(&mut con, "s"), 1, "a channel per ticket");
    holder.release().await.unwrap();
    let g1 = tokio::time::timeout(PROMPT, first).await.unwrap().unwrap();
    assert_eq!(g1.ticket(), 1);
    let token = g1.fencing_token();
    let before = command_counts(&mut con);
    g1.release().await.unwrap();
    let g2 = tokio::time::timeout(PROMPT, second).await.unwrap().unwrap();
    assert_eq!(g2.ticket(), 2);
    assert!(g2.fencing_token() > token);
    let d = delta(&before, &command_counts(&mut con));
    assert_eq!(
        scripts_and_subscriptions(&d)
            .iter()
            .map(|c| c.1)
            .sum::<u64>(),
        1,
        "the hand-off took more than the release's script: {d:?}"
    );
    assert!(g2.is_held().await.unwrap());
    g2.release().await.unwrap();
}

/// A grant pushed before its waiter registers (the issue's reply and the
/// push race; here the ticket is enqueued and awaited later) is kept by
/// the process for it: the waiter holds at once, without a look.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_that_reaches_the_process_before_its_waiter_is_kept_for_it() {
    let server = server!();
    let store = native(&server).await;
    let mut con = connection(&server, 1);
    let holder = store.lock("k").lifetime(HOUR).await.unwrap();
    let early = store
        .lock("k")
        .lifetime(HOUR)
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    assert_eq!(early.ticket(), 1);
    // A waiter behind it keeps the process's channel subscribed.
    let behind = spawn_waiter(&store, "k");
    queue_holds(&mut con, "k", 3).await;
    one_wake_channel(&mut con, "k").await;
    holder.release().await.unwrap();
    // The grant went out with the release (one receiver: the channel).
    let before = command_counts(&mut con);
    let g = tokio::time::timeout(PROMPT, early.acquired())
        .await
        .unwrap()
        .unwrap();
    let d = delta(&before, &command_counts(&mut con));
    assert_eq!(
        scripts_and_subscriptions(&d),
        [],
        "the waiter looked: {d:?}"
    );
    assert_eq!(g.ticket(), 1);
    assert!(g.is_held().await.unwrap());
    assert!(!behind.is_finished());
    g.release().await.unwrap();
    let b = tokio::time::timeout(PROMPT, behind).await.unwrap().unwrap();
    assert_eq!(b.ticket(), 2);
    b.release().await.unwrap();
}

/// A ticket enqueued and not awaited, in a process whose channel of the
/// conversation is subscribed, is granted the full lease (the process is a
/// receiver): it holds the lock, not passed on after the claim window,
/// until it is awaited, here well past the claim window (1 s socket
/// timeout: 3 s) and the stash's second, when its look finds it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_enqueued_ticket_of_a_subscribed_process_holds_its_grant_until_awaited() {
    let server = server!();
    let mut c = native_config(&server);
    c.socket_timeout = Duration::from_secs(1);
    let store = connect_with(&server, c).await;
    let mut con = connection(&server, 1);
    let holder = store.lock("e").lifetime(HOUR).await.unwrap();
    let early = store.lock("e").lifetime(HOUR).enqueue().await.unwrap();
    let behind = spawn_waiter(&store, "e");
    queue_holds(&mut con, "e", 3).await;
    one_wake_channel(&mut con, "e").await;
    holder.release().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert!(!behind.is_finished(), "the grant was passed on");
    let lock = store.get_lock("e").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let g = tokio::time::timeout(PROMPT, early.acquired())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.ticket(), 1);
    assert!(g.is_held().await.unwrap());
    g.release().await.unwrap();
    let b = tokio::time::timeout(PROMPT, behind).await.unwrap().unwrap();
    assert_eq!(b.ticket(), 2);
    b.release().await.unwrap();
}

/// The server's clients (`CLIENT LIST`), each as its fields.
fn clients(con: &mut redis::Connection) -> Vec<HashMap<String, String>> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(con).unwrap();
    list.lines()
        .map(|line| {
            line.split(' ')
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The protocol (`resp=`) of the server's subscribed clients.
fn subscribers_protocols(con: &mut redis::Connection) -> Vec<String> {
    clients(con)
        .into_iter()
        .filter(|c| c.get("sub").is_some_and(|n| n != "0"))
        .map(|c| c["resp"].clone())
        .collect()
}

/// A grant the release made while the waiter was not yet subscribed (a
/// provisional one: the push had no receiver) is claimed by the waiter's
/// look once its subscription is in place, at once: no timer would have
/// woken it within the hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_made_before_the_waiter_subscribed_is_claimed_at_once() {
    let server = server!();
    let store = native(&server).await;
    let holder = store.lock("early").lifetime(HOUR).await.unwrap();
    // Issued, not yet watching: nothing is subscribed to its channel.
    let waiter = store
        .lock("early")
        .lifetime(HOUR)
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    holder.release().await.unwrap();
    let g = tokio::time::timeout(PROMPT, waiter.acquired())
        .await
        .expect("the grant made before the subscription was not claimed")
        .unwrap();
    assert!(g.is_held().await.unwrap());
    g.release().await.unwrap();
}

/// The wake-up connection speaks RESP3 where the server does, so that
/// the task reading it hands each grant to its waiter; a server without
/// HELLO (before Redis 6) gets RESP2, and its grants are pushed all the
/// same: the waiter enters at the release, without a look (none is due
/// within the hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_are_pushed_over_resp3_and_over_resp2_where_the_server_has_no_hello() {
    let with_hello = server!();
    let without_hello = server!(ticketlock_test_support::RedisOptions {
        extra_args: vec!["--rename-command".into(), "HELLO".into(), "".into()],
        ..Default::default()
    });
    for (server, protocol) in [(&with_hello, "3"), (&without_hello, "2")] {
        let store = native(server).await;
        let mut con = connection(server, 1);
        let holder = store.lock("p").lifetime(HOUR).await.unwrap();
        let waiter = spawn_waiter(&store, "p");
        let deadline = std::time::Instant::now() + PROMPT;
        while subscribers_protocols(&mut con).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "RESP{protocol}: the waiter never subscribed\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(subscribers_protocols(&mut con), [protocol]);
        holder.release().await.unwrap();
        let g = tokio::time::timeout(PROMPT, waiter)
            .await
            .unwrap_or_else(|_| panic!("RESP{protocol}: the grant never reached the waiter"))
            .unwrap();
        assert!(g.is_held().await.unwrap());
        g.release().await.unwrap();
    }
}

/// A token below the new holder's: its epoch (every token of the
/// incarnation is epoch + number, numbers from 0).
fn holder_token(g: &ticketlock::LockGuard) -> u64 {
    g.fencing_token() - g.ticket()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_whose_process_is_gone_is_skipped_within_the_claim_window() {
    let server = server!();
    let mut c = native_config(&server);
    // Claim window: two socket timeouts and a second, 3 s; lifetimes 1 h.
    c.socket_timeout = Duration::from_secs(1);
    let store = connect_with(&server, c.clone()).await;
    let holder = store.lock("gone").lifetime(HOUR).await.unwrap();
    // A waiter of another process that went away: its ticket stays, but
    // nothing is subscribed to its channel and it never looks again.
    let other = connect_with(&server, c).await;
    let dead = other.lock("gone").lifetime(HOUR).enqueue().await.unwrap();
    assert_eq!(dead.ticket(), 1);
    std::mem::forget(dead);
    let live = spawn_waiter(&store, "gone");
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.release().await.unwrap();
    // Within the claim window (3 s), far from the dead ticket's lifetime.
    let g = tokio::time::timeout(Duration::from_secs(60), live)
        .await
        .expect("the dead waiter held the lock up for longer than its claim window")
        .unwrap();
    assert_eq!(g.ticket(), 2);
    let lock = store.get_lock("gone").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![2],
        "the dead ticket is gone"
    );
    g.release().await.unwrap();
}

/// The release of the holder starts its walk at the next number, without
/// reading the queue's head; a waiter withdrawing behind a holder that
/// expired must not: the lock goes to the first live ticket, not to the
/// one after the withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_withdrawing_behind_an_expired_holder_hands_the_lock_to_the_first_in_line() {
    let server = server!();
    let store = native(&server).await;
    let holder = store
        .lock("withdraw")
        .lifetime(Duration::from_millis(300))
        .await
        .unwrap();
    let first = store
        .lock("withdraw")
        .lifetime(HOUR)
        .enqueue()
        .await
        .unwrap();
    let second = store
        .lock("withdraw")
        .lifetime(HOUR)
        .enqueue()
        .await
        .unwrap();
    let third = store
        .lock("withdraw")
        .lifetime(HOUR)
        .enqueue()
        .await
        .unwrap();
    assert_eq!([first.ticket(), second.ticket(), third.ticket()], [1, 2, 3]);
    // The holder goes silent and expires; nothing looks in the meantime.
    std::mem::forget(holder);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Ticket 2 withdraws: its release drops the dead holder and grants.
    drop(second);
    store.flush().await;
    let lock = store.get_lock("withdraw").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![1, 3],
        "the dead holder and the withdrawn ticket are gone"
    );
    let granted: Option<String> = redis::cmd("HGET")
        .arg("lock:withdraw")
        .arg("h")
        .query(&mut connection(&server, 1))
        .unwrap();
    assert_eq!(
        granted.as_deref(),
        Some("1"),
        "granted past the first in line"
    );
    let g = tokio::time::timeout(PROMPT, first.acquired())
        .await
        .expect("the first in line was passed over")
        .unwrap();
    assert_eq!(g.ticket(), 1);
    assert!(g.is_held().await.unwrap());
    g.release().await.unwrap();
    let g = tokio::time::timeout(PROMPT, third.acquired())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.ticket(), 3);
    g.release().await.unwrap();
}

/// A queued issue answers its place from the queue's length (no ZRANK):
/// the tickets ahead are those left after the expired ones it dropped,
/// whether its prune (at most 8) or its walk to the holder dropped them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_issue_counts_the_tickets_left_ahead_of_it() {
    let server = server!();
    let store = native(&server).await;
    let redis = store.as_redis().unwrap().clone();
    let short = Duration::from_millis(300);
    // A holder and ten waiters that expire, then two that live.
    std::mem::forget(store.lock("ahead").lifetime(short).await.unwrap());
    for _ in 0..10 {
        std::mem::forget(store.lock("ahead").lifetime(short).enqueue().await.unwrap());
    }
    redis.issue("ahead", HOUR).await.unwrap();
    let issued = redis.issue("ahead", HOUR).await.unwrap();
    assert!(
        matches!(
            issued.attempt,
            ticketlock::Attempt::Queued { ahead: 12, .. }
        ),
        "{issued:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The issue's prune drops the 8 that expired first (the holder among
    // them); its walk drops the other 3 and grants the first live waiter.
    let issued = redis.issue("ahead", HOUR).await.unwrap();
    assert!(
        matches!(
            issued.attempt,
            ticketlock::Attempt::Queued {
                ahead: 2,
                holder_remaining: Some(_)
            }
        ),
        "{issued:?}"
    );
    let lock = store.get_lock("ahead").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    store.delete_lock("ahead").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_layout_refuses_the_others_conversations_and_acquires_nothing() {
    let server = server!();
    let native = native(&server).await;
    let rasa = connect_with(&server, config(&server)).await;

    let held = native.lock("n").await.unwrap();
    layout_error(rasa.lock("n").await.unwrap_err(), "native");
    layout_error(rasa.try_lock("n").await.unwrap_err(), "native");
    layout_error(rasa.get_lock("n").await.unwrap_err(), "native");
    layout_error(rasa.update_lock("n").await.unwrap_err(), "native");
    layout_error(rasa.delete_lock("n").await.unwrap_err(), "native");
    assert!(held.is_held().await.unwrap(), "the native holder lost it");

    let held = rasa.lock("r").await.unwrap();
    layout_error(native.lock("r").await.unwrap_err(), "rasa");
    layout_error(native.try_lock("r").await.unwrap_err(), "rasa");
    layout_error(native.get_lock("r").await.unwrap_err(), "rasa");
    layout_error(native.update_lock("r").await.unwrap_err(), "rasa");
    assert!(held.is_held().await.unwrap(), "the rasa holder lost it");
    assert_eq!(
        rasa.get_lock("r").await.unwrap().unwrap().tickets().len(),
        1
    );

    // Both are listed by either layout.
    let mut ids = native.conversations().await.unwrap();
    ids.sort();
    assert_eq!(ids, ["n", "r"]);
}

/// The least-privilege rule documented for the native layout (native.rs).
const NATIVE_ACL_RULE: &str = "on >tl-pw resetkeys ~lock:* ~{*}:lock:* resetchannels &{*}:lock:* -@all +fcall +function|load +evalsha +script|load +time +exists +hmget +hget +hset +hdel +type +zadd +zrem +zscore +zrank +zrange +zrangebyscore +zcard +pexpire +del +get +set +publish +scan +subscribe +unsubscribe +ping +select";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_with_exactly_the_native_acl_rule_can_do_everything() {
    let server = server!();
    let mut admin = connection(&server, 1);
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("tl");
    for r in NATIVE_ACL_RULE.split(' ') {
        cmd.arg(r);
    }
    cmd.exec(&mut admin).unwrap();
    let mut c = native_config(&server);
    c.username = Some("tl".into());
    c.password = Some(Secret::new("tl-pw"));
    let store = connect_with(&server, c).await;
    let holder = store.lock("c").lifetime(HOUR).await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.release().await.unwrap();
    let g = tokio::time::timeout(PROMPT, waiter)
        .await
        .expect("no pushed grant under the ACL")
        .unwrap();
    g.renew().await.unwrap();
    assert!(g.is_held().await.unwrap());
    assert_eq!(store.conversations().await.unwrap(), vec!["c".to_string()]);
    assert_eq!(
        store.get_lock("c").await.unwrap().unwrap().tickets().len(),
        1
    );
    store.update_lock("c").await.unwrap();
    store
        .save_lock(&TicketLock::with_tickets(
            "d",
            [Ticket::new(0, ticketlock_now() + 5.0)],
        ))
        .await
        .unwrap();
    store.delete_lock("d").await.unwrap();
    let w = store.lock("c").enqueue().await.unwrap();
    drop(w);
    store.flush().await;
    g.release().await.unwrap();
    // The library loads again under the ACL after a flush.
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .exec(&mut admin)
        .unwrap();
    store.lock("c").await.unwrap().release().await.unwrap();
    assert_eq!(store.get_lock("c").await.unwrap(), None);

    // Each command of the rule is needed: without it, some operation fails
    // with a configuration error.
    let needed: Vec<&str> = NATIVE_ACL_RULE
        .split(' ')
        .filter(|r| {
            r.starts_with('+')
                && ![
                    "+scan",
                    "+subscribe",
                    "+unsubscribe",
                    "+ping",
                    "+select",
                    "+script|load",
                    // For servers without Functions, and min_replicas_ack.
                    "+evalsha",
                ]
                .contains(r)
        })
        .collect();
    for missing in needed {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("less").arg("reset");
        for r in NATIVE_ACL_RULE.split(' ').filter(|r| *r != missing) {
            cmd.arg(if r == ">tl-pw" { ">l-pw" } else { r });
        }
        cmd.exec(&mut admin).unwrap();
        let mut c = native_config(&server);
        c.username = Some("less".into());
        c.password = Some(Secret::new("l-pw"));
        let store = connect_with(&server, c).await;
        // Not loaded yet, as on a fresh server; and no ticket left over
        // from the last round (its failed call may have left one, with a
        // lifetime of an hour, that this round would queue behind).
        redis::cmd("FUNCTION")
            .arg("FLUSH")
            .exec(&mut admin)
            .unwrap();
        redis::cmd("FLUSHDB").exec(&mut admin).unwrap();
        let failed = exercise(&store).await;
        assert!(
            matches!(&failed, Some(Error::Config { key, .. }) if key == "lock_store.username"),
            "without {missing}: {failed:?}"
        );
    }
}

/// Every operation of the store; the first error.
async fn exercise(store: &LockStore) -> Option<Error> {
    let run = async {
        let g = store.lock("e").lifetime(HOUR).await?;
        let w = store.lock("e").lifetime(HOUR).enqueue().await?;
        // The waiter's look while it is queued (its place: ZRANK).
        let ticket = ticketlock::TicketId {
            number: w.ticket(),
            epoch: Some(g.fencing_token() - g.ticket()),
        };
        let look = store
            .as_redis()
            .unwrap()
            .try_acquire("e", ticket, HOUR)
            .await?;
        assert!(
            matches!(look, ticketlock::Attempt::Queued { ahead: 1, .. }),
            "{look:?}"
        );
        g.renew().await?;
        g.is_held().await?;
        store.update_lock("e").await?;
        g.release().await?;
        let g = tokio::time::timeout(PROMPT, w.acquired()).await.unwrap()?;
        g.release().await?;
        store
            .save_lock(&TicketLock::with_tickets(
                "e",
                [
                    Ticket::new(0, ticketlock_now() - 5.0),
                    Ticket::new(1, ticketlock_now() + 5.0),
                ],
            ))
            .await?;
        store.update_lock("e").await?;
        store.get_lock("e").await?;
        store.delete_lock("e").await?;
        let g = store.lock("e").lifetime(Duration::from_millis(10)).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Past the lease: pruned by the next issue, which grants at once.
        let g2 = store.lock("e").await?;
        drop(g);
        g2.release().await?;
        for _ in 0..3 {
            store.lock("f").await?.release().await?;
        }
        ticketlock::Result::Ok(())
    };
    run.await.err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_without_fcall_is_served_by_evalsha() {
    // As a server before 7.0 answers: FCALL is an unknown command.
    let server = server!(ticketlock_test_support::RedisOptions {
        extra_args: vec!["--rename-command".into(), "FCALL".into(), "".into()],
        ..Default::default()
    });
    let store = native(&server).await;
    let mut con = connection(&server, 1);
    let holder = store.lock("old").await.unwrap();
    let waiter = store.lock("old").enqueue().await.unwrap();
    holder.release().await.unwrap();
    let g = tokio::time::timeout(PROMPT, waiter.acquired())
        .await
        .unwrap()
        .unwrap();
    assert!(g.is_held().await.unwrap());
    g.release().await.unwrap();
    assert_eq!(store.get_lock("old").await.unwrap(), None);
    let counts = command_counts(&mut con);
    assert!(
        counts.get("evalsha").copied().unwrap_or(0) >= 4,
        "{counts:?}"
    );
    assert_eq!(counts.get("fcall"), None, "{counts:?}");
}
