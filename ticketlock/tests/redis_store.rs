//! Tests of the Redis store against real `redis-server`s, one per test:
//! the record format byte for byte, interoperation with Rasa's records,
//! ids, push and timed wake-ups, fencing, failures of the server, and the
//! security settings.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use server::{RedisServer, assert_canonical, config, connection, get};
use ticketlock::{Error, LockStore, RedisConfig, RedisLockStore, Secret, Ticket, TicketLock};
use ticketlock_test_support::RedisOptions;

const HOUR: Duration = Duration::from_secs(3600);

async fn connect(server: &RedisServer) -> RedisLockStore {
    connect_with(server, config(server)).await
}

async fn connect_with(server: &RedisServer, c: RedisConfig) -> RedisLockStore {
    RedisLockStore::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
}

fn set(con: &mut redis::Connection, key: &str, value: &[u8]) {
    redis::cmd("SET").arg(key).arg(value).exec(con).unwrap();
}

/// Writes a record the way Rasa does: its layout, without our fields, and
/// without a TTL.
fn rasa_write(con: &mut redis::Connection, key: &str, lock: &TicketLock) {
    let mut lock = lock.clone();
    lock.set_last_issued(None);
    lock.set_epoch(None);
    set(con, key, lock.dumps().as_bytes());
}

/// Rasa's `issue_ticket`: drop expired tickets, append last number + 1.
fn rasa_issue(lock: &mut TicketLock, lifetime: f64) -> u64 {
    let now = unix_now();
    let live: Vec<Ticket> = lock
        .tickets()
        .copied()
        .filter(|t| !t.has_expired_at(now))
        .collect();
    let number = live.last().map_or(0, |t| t.number + 1);
    let mut tickets = live;
    tickets.push(Ticket::new(number, now + lifetime));
    *lock = TicketLock::with_tickets(lock.conversation_id(), tickets);
    number
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn tickets_at(con: &mut redis::Connection, key: &str) -> usize {
    get(con, key).map_or(0, |raw| {
        TicketLock::from_json(&raw).unwrap().tickets().len()
    })
}

fn evalsha_calls(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|l| l.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_is_byte_exact_with_a_ttl() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let key = store.as_redis().unwrap().key_for("c1");
    let mut con = connection(&server, 1);

    let holder = store.lock("c1").await.unwrap();
    let first = assert_canonical(&mut con, &key).unwrap();
    assert_eq!(first.tickets().len(), 1);
    assert!(first.epoch().is_some());
    assert_eq!(first.last_issued(), Some(0));

    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let g = store.lock("c1").wait_time(HOUR).await.unwrap();
                let n = g.ticket();
                g.release().await.unwrap();
                (i, n)
            })
        })
        .collect();
    until("3 waiters queued", Duration::from_secs(5), || {
        tickets_at(&mut con, &key) == 4
    })
    .await;
    assert_canonical(&mut con, &key);
    holder.renew().await.unwrap();
    assert_canonical(&mut con, &key);
    assert!(holder.is_held().await.unwrap());
    store.update_lock("c1").await.unwrap();
    assert_canonical(&mut con, &key);
    let n = store
        .issue_ticket("c1", Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert_canonical(&mut con, &key);
    tokio::time::sleep(Duration::from_millis(80)).await;
    store.update_lock("c1").await.unwrap();
    let lock = assert_canonical(&mut con, &key).unwrap();
    assert_eq!(lock.tickets().len(), 4, "the expired ticket 4 was removed");
    assert_eq!(
        lock.last_issued(),
        Some(4),
        "last_issued survives its ticket"
    );
    holder.release().await.unwrap();
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(
        get(&mut con, &key),
        None,
        "the record goes with its last ticket"
    );

    // save_lock writes the same layout, keeping last_issued and the epoch.
    let mut lock = TicketLock::with_tickets(
        "c1",
        [
            Ticket::new(7, unix_now() + 30.0),
            Ticket::new(9, 1_795_892_618.747_127_5),
        ],
    );
    store.save_lock(&lock).await.unwrap();
    let saved = assert_canonical(&mut con, &key).unwrap();
    assert_eq!(
        saved.tickets().copied().collect::<Vec<_>>(),
        lock.tickets().copied().collect::<Vec<_>>()
    );
    assert_eq!(saved.last_issued(), Some(9));
    let epoch = saved.epoch().expect("a created record gets an epoch");
    lock = TicketLock::with_tickets("c1", [Ticket::new(8, unix_now() + 30.0)]);
    store.save_lock(&lock).await.unwrap();
    let saved = assert_canonical(&mut con, &key).unwrap();
    assert_eq!(
        saved.last_issued(),
        Some(9),
        "numbers are not reused after save_lock"
    );
    assert_eq!(saved.epoch(), Some(epoch), "the epoch survives save_lock");
    assert_eq!(store.issue_ticket("c1", None).await.unwrap(), 10);
    assert_canonical(&mut con, &key);
    assert_eq!(
        store.get_lock("c1").await.unwrap().unwrap().tickets().len(),
        2
    );
    store.save_lock(&TicketLock::new("c1")).await.unwrap();
    assert_eq!(get(&mut con, &key), None, "saving an empty lock deletes it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scripts_keep_rasas_bytes_and_render_floats_as_python() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c1");
    // Written by Rasa (its ticket expires far in the future).
    let rasa = br#"{"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1895892618.7471275}"]}"#;
    set(&mut con, &key, rasa);
    let n = store
        .issue_ticket("c1", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let raw = get(&mut con, &key).unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.starts_with(r#"{"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1895892618.7471275}", "{\"number\": 1, \"expires\": "#),
        "{text}"
    );
    assert!(
        text.ends_with(r#"}"]}"#),
        "no epoch is added to Rasa's record, and no last_issued while the queue tells it: {text}"
    );
    assert_canonical(&mut con, &key);

    // Floats of every shape come out as Python's repr; ids with every kind
    // of character as Python's json.dumps.
    let id = "é😀\"\\/\u{1}\u{7f}\n";
    let key = store.as_redis().unwrap().key_for(id);
    for expires in [
        1_795_892_618.747_127_5,
        1_795_892_618.0,
        1e16,
        1.5e-5,
        0.1,
        123_456.789,
        1e22,
        2_000_000_000.000_001,
    ] {
        let lock = TicketLock::with_tickets(id, [Ticket::new(3, expires)]);
        set(&mut con, &key, lock.dumps().as_bytes());
        // A ticket appended by a script: the stored one is re-encoded from
        // its raw string, the new one rendered by Lua.
        let _ = store
            .issue_ticket(id, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let raw = get(&mut con, &key);
        let Some(raw) = raw else {
            // Expired (1.5e-5 is 1970): the record held the new ticket only.
            panic!("record vanished for {expires}");
        };
        let lock = TicketLock::from_json(&raw).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&raw),
            lock.dumps(),
            "expires {expires}"
        );
        assert_eq!(lock.conversation_id(), id);
        // The ticket expiring in the past was dropped; future ones kept.
        let kept = lock.tickets().any(|t| t.number == 3);
        assert_eq!(kept, expires > unix_now(), "expires {expires}");
        // Now a script rewrites a ticket it renders itself (renew the head).
        store.update_lock(id).await.unwrap();
        redis::cmd("DEL").arg(&key).exec(&mut con).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rasa_holder_blocks_our_waiter_until_it_removes_its_ticket() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let mut rasa = TicketLock::new("c");
    assert_eq!(rasa_issue(&mut rasa, 60.0), 0);
    rasa_write(&mut con, &key, &rasa);

    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .lock("c")
                .wait_time(Duration::from_millis(100))
                .await
                .map(|g| (g.ticket(), Instant::now(), g))
        })
    };
    until("our ticket behind Rasa's", Duration::from_secs(5), || {
        tickets_at(&mut con, &key) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiter.is_finished(), "entered while Rasa held the lock");
    let stored = assert_canonical(&mut con, &key).unwrap();
    assert_eq!(stored.epoch(), None, "Rasa's record gets no epoch");

    // Rasa's finish_serving: read, remove its ticket, write back (dropping
    // our fields). It publishes nothing; our waiter's re-check finds it.
    let mut rasa = TicketLock::from_json(&get(&mut con, &key).unwrap()).unwrap();
    assert!(rasa.remove_ticket_for(0));
    rasa_write(&mut con, &key, &rasa);
    let removed = Instant::now();
    let (ticket, entered, guard) = waiter.await.unwrap().unwrap();
    assert_eq!(ticket, 1);
    assert!(
        entered - removed < Duration::from_millis(600),
        "{:?}",
        entered - removed
    );
    assert_canonical(&mut con, &key);
    guard.release().await.unwrap();
    assert_eq!(get(&mut con, &key), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiring_rasa_ticket_lets_our_waiter_in_at_its_expiry() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let mut rasa = TicketLock::new("c");
    rasa_issue(&mut rasa, 0.4);
    let expires = rasa.tickets().next().unwrap().expires;
    rasa_write(&mut con, &key, &rasa);
    let guard = store.lock("c").wait_time(HOUR).await.unwrap();
    let now = unix_now();
    assert!(
        now >= expires,
        "entered {}s before Rasa's ticket expired",
        expires - now
    );
    assert!(
        now < expires + 0.5,
        "entered {}s after the expiry: not a timed wake",
        now - expires
    );
    assert_eq!(guard.ticket(), 1, "numbers continue after Rasa's");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rasa_reader_sees_our_holder_and_gets_in_after_us() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let guard = store.lock("c").await.unwrap();

    // Rasa reads our record: our ticket is served, so Rasa must wait.
    let mut rasa = TicketLock::from_json(&get(&mut con, &key).unwrap()).unwrap();
    assert_eq!(rasa.now_serving(), guard.ticket());
    assert!(rasa.is_someone_waiting());
    let mine = rasa_issue(&mut rasa, 60.0);
    assert_eq!(mine, guard.ticket() + 1);
    rasa_write(&mut con, &key, &rasa);
    let rasa_element = format!("\"{{\\\"number\\\": {mine}, \\\"expires\\\": ");
    assert!(rasa.is_locked(mine));

    guard.release().await.unwrap();
    // Our release kept Rasa's ticket exactly as Rasa wrote it.
    let raw = String::from_utf8(get(&mut con, &key).unwrap()).unwrap();
    let rasa_raw = {
        let mut l = rasa.clone();
        l.set_last_issued(None);
        l.dumps()
    };
    let rasa_ticket =
        &rasa_raw[rasa_raw.find(&rasa_element).unwrap()..rasa_raw.rfind(']').unwrap()];
    assert!(raw.contains(rasa_ticket), "{raw} lacks {rasa_ticket}");
    assert_canonical(&mut con, &key);
    let rasa = TicketLock::from_json(raw.as_bytes()).unwrap();
    assert!(
        !rasa.is_locked(mine),
        "Rasa's ticket is served after our release"
    );

    // And our next waiter queues behind Rasa's ticket, with a fresh number.
    let next = store.issue_ticket("c", None).await.unwrap();
    assert_eq!(next, mine + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_id_reaches_exactly_its_own_record() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let redis_store = store.as_redis().unwrap().clone();
    let mut con = connection(&server, 1);
    let long: String = "x".repeat(64 * 1024);
    let ids: Vec<String> = [
        "*",
        "?",
        "[",
        "[a-z]",
        ":",
        "a",
        "a:1",
        "a*",
        "lock:a",
        "{}",
        "{a}b",
        "line\nbreak",
        "tab\tq\"uote\\",
        "é😀",
        "\u{0}nul",
        " ",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([long.clone()])
    .collect();

    let guards = futures_util::future::join_all(ids.iter().map(|id| {
        let store = store.clone();
        let id = id.clone();
        async move { store.lock(&id).timeout(Duration::from_secs(5)).await }
    }))
    .await;
    let guards: Vec<_> = guards.into_iter().map(|g| g.unwrap()).collect();
    for (id, g) in ids.iter().zip(&guards) {
        assert_eq!(g.ticket(), 0, "{id:?} shared a queue with another id");
        let lock = assert_canonical(&mut con, &redis_store.key_for(id)).unwrap();
        assert_eq!(lock.conversation_id(), id);
        assert_eq!(lock.tickets().len(), 1);
    }
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    let mut keys = records_only(keys);
    keys.sort();
    let mut expected: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| redis_store.key_for(id).into_bytes())
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    let mut listed = store.conversations().await.unwrap();
    listed.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);

    // Deleting `*`, `a` and `[a-z]` touches nothing else.
    for gone in ["*", "a", "[a-z]"] {
        store.delete_lock(gone).await.unwrap();
    }
    for (id, g) in ids.iter().zip(guards) {
        let gone = ["*", "a", "[a-z]"].contains(&id.as_str());
        assert_eq!(store.get_lock(id).await.unwrap().is_some(), !gone, "{id:?}");
        assert_eq!(g.is_held().await.unwrap(), !gone, "{id:?}");
        let released = g.release().await;
        assert_eq!(released.is_ok(), !gone, "{id:?}");
    }
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    let keys = records_only(keys);
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flushed_script_cache_is_reloaded() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    store.lock("c").await.unwrap().release().await.unwrap();
    redis::cmd("SCRIPT").arg("FLUSH").exec(&mut con).unwrap();
    let g = store.lock("c").await.unwrap();
    assert!(g.is_held().await.unwrap());
    redis::cmd("SCRIPT").arg("FLUSH").exec(&mut con).unwrap();
    g.release().await.unwrap();
    redis::cmd("SCRIPT").arg("FLUSH").exec(&mut con).unwrap();
    store.update_lock("c").await.unwrap();
    store.delete_lock("c").await.unwrap();
    assert!(store.get_lock("c").await.unwrap().is_none());
}

/// The first calls of a store keep their arrival order while the scripts
/// are loaded: a call answered NOSCRIPT and sent again after the load
/// used to run after calls made in the meantime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_calls_on_a_server_new_to_the_scripts_keep_their_order() {
    for apart in [0, 50, 100, 200, 400, 800, 1600] {
        let server = server!();
        let apart = Duration::from_micros(apart);
        let order = server::order_of_first_calls(&server, config(&server), apart).await;
        assert_eq!(order, (0..8).collect::<Vec<_>>(), "calls {apart:?} apart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_records_are_reported_with_their_key_and_left_alone() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    for (bad, why) in [
        (&b"not json"[..], "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"5", "not a JSON object"),
        (br#"{"tickets": []}"#, "no `conversation_id`"),
        (br#"{"conversation_id": 5}"#, "not a string"),
        (br#"{"conversation_id": "c", "tickets": 3}"#, "not a list"),
        (
            br#"{"conversation_id": "c", "tickets": ["x"]}"#,
            "ticket 0: not JSON",
        ),
        (br#"{"conversation_id": "c", "tickets": [7]}"#, "ticket 0"),
        (
            br#"{"conversation_id": "c", "tickets": ["{\"number\": -1, \"expires\": 1}"]}"#,
            "`number`",
        ),
        (
            br#"{"conversation_id": "c", "tickets": ["{\"number\": 1.5, \"expires\": 1}"]}"#,
            "`number`",
        ),
        (
            br#"{"conversation_id": "c", "tickets": ["{\"number\": 1}"]}"#,
            "`expires`",
        ),
        (
            br#"{"conversation_id": "c", "tickets": ["{\"number\": 1, \"expires\": \"x\"}"]}"#,
            "`expires`",
        ),
        (
            br#"{"conversation_id": "c", "tickets": [], "epoch": "x"}"#,
            "`epoch`",
        ),
        (
            br#"{"conversation_id": "c", "tickets": [], "last_issued": -3}"#,
            "`last_issued`",
        ),
    ] {
        set(&mut con, &key, bad);
        let what = String::from_utf8_lossy(bad);
        let check = |e: Error, op: &str| match e {
            Error::CorruptRecord { key: k, message } => {
                assert_eq!(k, key, "{op} on {what}");
                assert!(
                    message.contains(why),
                    "{op} on {what}: {message:?} lacks {why:?}"
                );
            }
            other => panic!("{op} on {what}: {other:?}"),
        };
        check(
            store
                .lock("c")
                .timeout(Duration::from_secs(2))
                .await
                .unwrap_err(),
            "lock",
        );
        check(store.get_lock("c").await.unwrap_err(), "get_lock");
        check(store.update_lock("c").await.unwrap_err(), "update_lock");
        check(
            store.finish_serving("c", 0).await.unwrap_err(),
            "finish_serving",
        );
        check(
            store
                .save_lock(&TicketLock::with_tickets(
                    "c",
                    [Ticket::new(0, unix_now() + 9.0)],
                ))
                .await
                .unwrap_err(),
            "save_lock",
        );
        assert_eq!(
            get(&mut con, &key).as_deref(),
            Some(bad),
            "{what} was overwritten"
        );
        let message = store.lock("c").await.unwrap_err().to_string();
        assert!(
            message.contains("lock:c") && message.contains("ticketlock clear"),
            "{message}"
        );
    }
    // A key of another type is no record either.
    redis::cmd("DEL").arg(&key).exec(&mut con).unwrap();
    redis::cmd("HSET")
        .arg(&key)
        .arg("f")
        .arg("v")
        .exec(&mut con)
        .unwrap();
    for e in [
        store.lock("c").await.unwrap_err(),
        store.get_lock("c").await.unwrap_err(),
        store.update_lock("c").await.unwrap_err(),
    ] {
        match e {
            Error::CorruptRecord { key: k, message } => {
                assert_eq!(k, key);
                assert!(message.contains("WRONGTYPE"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    // delete_lock is the way out.
    store.delete_lock("c").await.unwrap();
    store.lock("c").await.unwrap().release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_wakes_the_next_waiter_by_push_not_by_polling() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let other: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let holder = store.lock("c").await.unwrap();
    let waiter = tokio::spawn(async move {
        let g = other.lock("c").wait_time(HOUR).await.unwrap();
        (Instant::now(), g)
    });
    until("the waiter queued", Duration::from_secs(5), || {
        tickets_at(&mut con, &key) == 2
    })
    .await;
    // Registered and subscribed: no command at all while it waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = evalsha_calls(&mut con);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(evalsha_calls(&mut con), before, "the waiter polled");
    assert!(!waiter.is_finished());
    let released = Instant::now();
    holder.release().await.unwrap();
    let (entered, guard) = waiter.await.unwrap();
    let latency = entered - released;
    assert!(
        latency < Duration::from_millis(200),
        "woken after {latency:?}"
    );
    assert_eq!(guard.ticket(), 1);
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vanished_holder_blocks_for_its_lifetime_only() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    // A ticket nobody releases (a process that died holding it).
    let issued = Instant::now();
    let n = store
        .issue_ticket("c", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(n, 0);
    // A guard forgotten (never dropped, never released).
    let guard = store
        .lock("d")
        .lifetime(Duration::from_millis(300))
        .await
        .unwrap();
    std::mem::forget(guard);
    for id in ["c", "d"] {
        let g = store.lock(id).wait_time(HOUR).await.unwrap();
        let waited = issued.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "{id}: entered after {waited:?}"
        );
        assert!(
            waited < Duration::from_millis(1000),
            "{id}: entered after {waited:?}"
        );
        assert_eq!(g.ticket(), 1);
        g.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fencing_tokens_increase_across_deletion_and_re_creation() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut last = 0;
    for round in 0..5 {
        // Each release drops the record; each lock creates it anew.
        let g = store.lock("c").await.unwrap();
        assert_eq!(g.ticket(), 0, "a new record starts at 0");
        assert!(
            g.fencing_token() > last,
            "round {round}: {} <= {last}",
            g.fencing_token()
        );
        last = g.fencing_token();
        if round % 2 == 0 {
            store.delete_lock("c").await.unwrap();
            assert!(matches!(g.release().await, Err(Error::Expired { .. })));
        } else {
            g.release().await.unwrap();
        }
    }
    // Within one record too, with waiters.
    let g = store.lock("c").await.unwrap();
    let t0 = g.fencing_token();
    assert!(t0 > last);
    let next = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    g.release().await.unwrap();
    let g = next.await.unwrap();
    assert_eq!(g.ticket(), 1);
    assert!(g.fencing_token() > t0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_whose_record_is_deleted_gets_expired_at_once() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let holder = store.lock("c").await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await })
    };
    until("the waiter queued", Duration::from_secs(5), || {
        tickets_at(&mut con, &key) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deleted = Instant::now();
    store.delete_lock("c").await.unwrap();
    let result = waiter.await.unwrap();
    assert!(
        deleted.elapsed() < Duration::from_millis(500),
        "{:?}",
        deleted.elapsed()
    );
    match result {
        Err(Error::Expired {
            conversation_id,
            ticket,
        }) => {
            assert_eq!(conversation_id, "c");
            assert_eq!(ticket, 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(!holder.is_held().await.unwrap());
    // A new record's ticket 0 is not mistaken for the old holder's.
    let fresh = store.lock("c").await.unwrap();
    assert_eq!(fresh.ticket(), 0);
    assert!(
        !holder.is_held().await.unwrap(),
        "the old holder's ticket 0 matched the new record"
    );
    assert!(matches!(holder.renew().await, Err(Error::Expired { .. })));
    assert!(matches!(holder.release().await, Err(Error::Expired { .. })));
    assert!(
        fresh.is_held().await.unwrap(),
        "the old holder's release removed the new ticket"
    );
    fresh.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_enter_in_fifo_order_one_at_a_time() {
    let server = server!();
    let stores: Vec<LockStore> = vec![connect(&server).await.into(), connect(&server).await.into()];
    let mut con = connection(&server, 1);
    let key = stores[0].as_redis().unwrap().key_for("c");
    let holder = stores[0].lock("c").await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let inside = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = stores[i % 2].clone();
        let (order, inside) = (order.clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            let g = store.lock("c").wait_time(HOUR).await.unwrap();
            assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(10)).await;
            inside.store(false, Ordering::SeqCst);
            g.release().await.unwrap();
        }));
        until("the ticket issued", Duration::from_secs(5), || {
            tickets_at(&mut con, &key) == i + 2
        })
        .await;
    }
    holder.release().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_two_connections_never_overlap() {
    let server = server!();
    let stores: Vec<LockStore> = vec![connect(&server).await.into(), connect(&server).await.into()];
    let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let inside: Arc<[AtomicBool; 2]> = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = stores[t % 2].clone();
        let (counts, inside) = (counts.clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let c = (t + i) % 2;
                let id = ["x", "y"][c];
                let g = store.lock(id).await.unwrap();
                assert!(!inside[c].swap(true, Ordering::SeqCst), "overlap on {id}");
                tokio::task::yield_now().await;
                counts[c].fetch_add(1, Ordering::SeqCst);
                inside[c].store(false, Ordering::SeqCst);
                g.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        counts[0].load(Ordering::SeqCst) + counts[1].load(Ordering::SeqCst),
        200
    );
    assert!(stores[0].conversations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_subscription_connection_serves_all_waiters_and_is_left_when_done() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let holders: Vec<_> =
        futures_util::future::join_all(["a", "b", "c"].map(|id| store.lock(id).into_future()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let mut waiters = Vec::new();
    for i in 0..9 {
        let store = store.clone();
        waiters.push(tokio::spawn(async move {
            let id = ["a", "b", "c"][i % 3];
            store
                .lock(id)
                .wait_time(HOUR)
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        }));
    }
    let redis_store = store.as_redis().unwrap().clone();
    until("all subscribed", Duration::from_secs(5), || {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut con)
            .unwrap();
        channels.len() == 3
    })
    .await;
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut con)
        .unwrap();
    assert_eq!(clients.lines().count(), 1, "{clients}");
    let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(redis_store.key_for("a"))
        .query(&mut con)
        .unwrap();
    assert_eq!(numsub[1], redis::Value::Int(1));
    for h in holders {
        h.release().await.unwrap();
    }
    for w in waiters {
        w.await.unwrap();
    }
    until("all channels left", Duration::from_secs(5), || {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut con)
            .unwrap();
        channels.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_survive_a_lost_subscription_connection() {
    let server = server!();
    let store: LockStore = connect(&server).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let holder = store.lock("c").await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await.unwrap() })
    };
    until("subscribed", Duration::from_secs(5), || {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut con)
            .unwrap();
        channels.len() == 1
    })
    .await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut con)
        .unwrap();
    assert_eq!(killed, 1);
    until("subscribed again", Duration::from_secs(5), || {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut con)
            .unwrap();
        channels.len() == 1
    })
    .await;
    assert_eq!(tickets_at(&mut con, &key), 2);
    let released = Instant::now();
    holder.release().await.unwrap();
    let g = waiter.await.unwrap();
    assert!(
        released.elapsed() < Duration::from_millis(300),
        "{:?}",
        released.elapsed()
    );
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_gives_unavailable_in_time_and_the_store_recovers() {
    let mut server = server!();
    let mut c = config(&server);
    c.socket_timeout = Duration::from_secs(1);
    let store: LockStore = connect_with(&server, c).await.into();
    store.lock("c").await.unwrap().release().await.unwrap();
    let held = store.lock("held").await.unwrap();
    server.kill();
    // Within the socket timeout and the retry on a fresh connection (one
    // more socket timeout).
    for _ in 0..3 {
        let start = Instant::now();
        let e = store.lock("c").await.unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{}/1", server.port())),
            "{e}"
        );
    }
    let start = Instant::now();
    assert!(matches!(held.renew().await, Err(Error::Unavailable { .. })));
    assert!(start.elapsed() < Duration::from_millis(2500));

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    let guard = loop {
        match store.lock("c").await {
            Ok(g) => break g,
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The whole store works again, wake-ups included.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    guard.release().await.unwrap();
    waiter.await.unwrap().release().await.unwrap();
    assert!(
        released.elapsed() < Duration::from_millis(300),
        "{:?}",
        released.elapsed()
    );
    // The lease of the holder from before the restart is gone with the data.
    assert!(matches!(held.release().await, Err(Error::Expired { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_server_gives_unavailable_within_the_timeout() {
    let server = server!();
    let mut c = config(&server);
    c.socket_timeout = Duration::from_secs(1);
    let store: LockStore = connect_with(&server, c).await.into();
    store.lock("c").await.unwrap().release().await.unwrap();
    server.pause();
    for op in 0..3 {
        let start = Instant::now();
        let e = match op {
            0 => store.lock("c").await.unwrap_err(),
            1 => store.get_lock("c").await.unwrap_err(),
            _ => store.conversations().await.unwrap_err(),
        };
        let took = start.elapsed();
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        // The socket timeout, then once more on a fresh connection.
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(2500),
            "{took:?}"
        );
    }
    server.resume();
    // The ticket of the stalled `lock` may have been issued late; another
    // conversation is free at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.lock("after").await {
            Ok(g) => {
                g.release().await.unwrap();
                break;
            }
            Err(e) => {
                assert!(e.is_transient() && Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_wait_or_issue_leaves_no_ticket() {
    let server = server!();
    let mut c = config(&server);
    c.socket_timeout = Duration::from_secs(5);
    let store: LockStore = connect_with(&server, c).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let holder = store.lock("c").await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").await })
    };
    until("queued", Duration::from_secs(5), || {
        tickets_at(&mut con, &key) == 2
    })
    .await;
    waiter.abort();
    until("withdrawn", Duration::from_secs(2), || {
        tickets_at(&mut con, &key) == 1
    })
    .await;
    holder.release().await.unwrap();
    assert_eq!(get(&mut con, &key), None);

    // Dropped while the issue round trip is in flight (the server stalls):
    // the ticket is learnt when the server answers, and withdrawn.
    let calls = evalsha_calls(&mut con);
    server.pause();
    let e = store
        .lock("c")
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.resume();
    // The issue ran when the server woke, then its repeat (sent when the
    // caller left, answered with the same ticket) and the release.
    until(
        "the late issue, its repeat and the release",
        Duration::from_secs(3),
        || evalsha_calls(&mut con) >= calls + 3,
    )
    .await;
    assert_eq!(get(&mut con, &key), None, "the late ticket was withdrawn");
    // And the conversation is free at once.
    let g = store
        .lock("c")
        .timeout(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(g.ticket(), 0, "a new record");
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_stay_out_of_errors_and_debug_output() {
    let server = server!(RedisOptions {
        password: Some("s3cret-pw".into()),
        ..Default::default()
    });
    let mut c = config(&server);
    c.password = Some(Secret::new("wrong-pw-value"));
    let e = RedisLockStore::connect(&c).await.unwrap_err();
    match &e {
        Error::Config { key, .. } => assert_eq!(key, "lock_store.password"),
        other => panic!("{other:?}"),
    }
    assert!(
        !e.to_string().contains("wrong-pw-value") && !format!("{e:?}").contains("wrong-pw-value")
    );
    c.password = Some(Secret::new("s3cret-pw"));
    let store = connect_with(&server, c.clone()).await;
    assert!(!format!("{store:?}").contains("s3cret-pw"), "{store:?}");
    assert!(!format!("{c:?}").contains("s3cret-pw"));
    let store: LockStore = store.into();
    assert!(!format!("{store:?}").contains("s3cret-pw"));
    assert!(!store.describe().contains("s3cret-pw"));
    store.lock("c").await.unwrap().release().await.unwrap();
    // Without a password: refused, as configuration.
    c.password = None;
    match RedisLockStore::connect(&c).await.unwrap_err() {
        Error::Config { key, .. } => assert_eq!(key, "lock_store.password"),
        other => panic!("{other:?}"),
    }
}

/// The least-privilege ACL rule documented on `RedisLockStore`.
const ACL_RULE: &str = "on >tl-pw resetkeys ~lock:* ~{*}:lock:* resetchannels &lock:* -@all +evalsha +script|load +get +set +del +publish +time +scan +subscribe +unsubscribe +ping +select";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_restricted_to_the_documented_acl_rule_can_do_everything() {
    let server = server!();
    let mut admin = connection(&server, 1);
    let set_user = |admin: &mut redis::Connection, name: &str, rule: &str| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(name);
        for r in rule.split(' ') {
            cmd.arg(r);
        }
        cmd.exec(admin).unwrap();
    };
    set_user(&mut admin, "tl", ACL_RULE);
    set_user(
        &mut admin,
        "noscan",
        &ACL_RULE.replace("+scan ", "").replace(">tl-pw", ">ns-pw"),
    );
    let mut c = config(&server);
    c.username = Some("tl".into());
    c.password = Some(Secret::new("tl-pw"));
    let store: LockStore = connect_with(&server, c.clone()).await.into();
    let holder = store.lock("c").await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    holder.release().await.unwrap();
    let g = waiter.await.unwrap();
    assert!(
        released.elapsed() < Duration::from_millis(300),
        "no push wake-up under the ACL"
    );
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
            [Ticket::new(0, unix_now() + 5.0)],
        ))
        .await
        .unwrap();
    store.delete_lock("d").await.unwrap();
    g.release().await.unwrap();
    // The scripts load again under the ACL after a flush.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut connection(&server, 1))
        .unwrap();
    store.lock("c").await.unwrap().release().await.unwrap();

    // A user missing a permission gets a configuration error naming it.
    c.username = Some("noscan".into());
    c.password = Some(Secret::new("ns-pw"));
    let limited: LockStore = connect_with(&server, c).await.into();
    match limited.conversations().await.unwrap_err() {
        Error::Config { key, message } => {
            assert_eq!(key, "lock_store.username");
            assert!(message.contains("scan"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_ca_and_a_client_certificate() {
    // The application's choice: the library never installs one.
    ticketlock::install_tls_provider();
    let server = server!(RedisOptions {
        tls: true,
        ..Default::default()
    });
    let certs = server.tls_files().unwrap();
    let mut c = config(&server);
    c.use_ssl = true;
    c.ssl_ca_certs = Some(certs.ca_cert.clone());
    c.ssl_certfile = Some(certs.client_cert.clone());
    c.ssl_keyfile = Some(certs.client_key.clone());
    let store: LockStore = connect_with(&server, c.clone()).await.into();
    assert!(store.describe().starts_with("rediss "));
    let holder = store.lock("c").await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    holder.release().await.unwrap();
    waiter.await.unwrap().release().await.unwrap();
    assert!(released.elapsed() < Duration::from_millis(300));

    // Without the CA the server is not trusted.
    let mut untrusted = c.clone();
    untrusted.ssl_ca_certs = None;
    match RedisLockStore::connect(&untrusted).await.unwrap_err() {
        Error::Config { key, message } => {
            assert_eq!(key, "lock_store.ssl_ca_certs");
            assert!(message.contains("UnknownIssuer"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A missing file is a configuration error naming the setting.
    let mut missing = c.clone();
    missing.ssl_ca_certs = Some("/nonexistent/ca.pem".into());
    match RedisLockStore::connect(&missing).await.unwrap_err() {
        Error::Config { key, message } => {
            assert_eq!(key, "lock_store.ssl_ca_certs");
            assert!(message.contains("/nonexistent/ca.pem"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut half = c;
    half.ssl_keyfile = None;
    assert!(matches!(
        RedisLockStore::connect(&half).await.unwrap_err(),
        Error::Config { key, .. } if key == "lock_store.ssl_keyfile"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_prefix_and_database_separate_stores() {
    let server = server!();
    let mut c = config(&server);
    c.key_prefix = Some("bot7".into());
    let prefixed: LockStore = connect_with(&server, c.clone()).await.into();
    c.key_prefix = None;
    c.db = 2;
    let db2: LockStore = connect_with(&server, c).await.into();
    let plain: LockStore = connect(&server).await.into();
    let guards = [
        plain.lock("c").await.unwrap(),
        prefixed.lock("c").await.unwrap(),
        db2.lock("c").await.unwrap(),
    ];
    assert!(guards.iter().all(|g| g.ticket() == 0));
    let mut db1 = connection(&server, 1);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut db1).unwrap();
    let mut keys = records_only(keys);
    keys.sort();
    assert_eq!(keys, ["bot7:lock:c", "lock:c"]);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut connection(&server, 2))
        .unwrap();
    assert_eq!(records_only(keys), ["lock:c"]);
    assert_eq!(plain.conversations().await.unwrap(), ["c"]);
    assert_eq!(prefixed.conversations().await.unwrap(), ["c"]);
    for g in guards {
        g.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_builds_the_store_from_a_configuration() {
    let server = server!();
    let store = LockStore::create(ticketlock::LockStoreConfig::Redis(config(&server)))
        .await
        .unwrap();
    assert!(store.as_redis().is_some());
    assert_eq!(
        store.describe(),
        format!("redis 127.0.0.1:{}/1", server.port())
    );
    store.lock("c").await.unwrap().release().await.unwrap();
    // Nothing listening: unavailable, at creation.
    let mut c = config(&server);
    drop(server);
    c.socket_timeout = Duration::from_secs(1);
    let start = Instant::now();
    let e = LockStore::create(ticketlock::LockStoreConfig::Redis(c))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_millis(1500));
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Runs `function` of the scripts' shared Lua over each argument.
fn lua_map(con: &mut redis::Connection, function: &str, args: &[String]) -> Vec<String> {
    let source = format!(
        "{}\nlocal out = {{}}\nfor i = 2, #ARGV do out[#out + 1] = ({function})(ARGV[i]) end\nreturn out",
        include_str!("../src/redis/rasa/common.lua")
    );
    let script = redis::Script::new(&source);
    let mut invocation = script.key("unused");
    invocation.arg("\"unused\"");
    for a in args {
        invocation.arg(a);
    }
    invocation.invoke(con).unwrap()
}

#[test]
fn lua_writes_floats_and_strings_exactly_as_python() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut con = connection(&server, 1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let now = unix_now();
    let mut floats = vec![
        0.0,
        0.5,
        0.1,
        1.0,
        1e15,
        1e16,
        1.5e-5,
        1e-4,
        0.000_123,
        123_456.789,
        1e22,
        1.7976931348623157e308,
        5e-324,
        1_795_892_618.747_127_5,
        1_795_892_618.0,
        2_000_000_000.000_001,
        -2.5,
    ];
    for _ in 0..3000 {
        let r = rng.next();
        floats.push(match r % 3 {
            // What the scripts write: server time plus a lifetime, to the microsecond.
            0 => ((now * 1e6).round() + (rng.next() % 10_000_000_000) as f64) / 1e6,
            1 => now + (rng.next() % 1_000_000) as f64 / 7.0,
            _ => {
                let f = f64::from_bits(rng.next());
                if f.is_finite() { f } else { 1.0 }
            }
        });
    }
    let args: Vec<String> = floats.iter().map(|f| format!("{f:?}")).collect();
    let lua = lua_map(
        &mut con,
        "function(s) return slow().py_float(tonumber(s)) end",
        &args,
    );
    for (f, got) in floats.iter().zip(&lua) {
        let dumped = Ticket::new(0, *f).dumps();
        let want = &dumped["{\"number\": 0, \"expires\": ".len()..dumped.len() - 1];
        assert_eq!(got, want, "{f:?}");
    }
    assert_eq!(lua.len(), floats.len());

    let pool: Vec<char> = "aZ09 ~\"\\/\n\r\t\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}\u{80}é\u{7ff}\u{800}€\u{fffd}\u{ffff}😀\u{10000}\u{10ffff}{}:*?["
        .chars()
        .collect();
    let strings: Vec<String> = (0..2000)
        .map(|_| {
            let len = rng.next() % 12;
            (0..len)
                .map(|_| pool[(rng.next() % pool.len() as u64) as usize])
                .collect()
        })
        .collect();
    let lua = lua_map(&mut con, "slow().py_str", &strings);
    for (s, got) in strings.iter().zip(&lua) {
        let dumped = TicketLock::new(s.as_str()).dumps();
        let want =
            &dumped["{\"conversation_id\": ".len()..dumped.len() - ", \"tickets\": []}".len()];
        assert_eq!(got, want, "{s:?}");
    }
    assert_eq!(lua.len(), strings.len());
}

#[test]
fn lua_writes_whole_microseconds_as_python_without_searching_digits() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut con = connection(&server, 1);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let now_us = (unix_now() * 1e6).round() as u64;
    // Expiries the scripts write (server time plus a lifetime, in whole
    // microseconds), the ends of the fast range, and past it (py_float).
    let mut micros: Vec<u64> = vec![
        100,
        101,
        123,
        999_999,
        1_000_000,
        1_795_892_618_000_000,
        1_795_892_618_747_127,
        1_795_892_618_100_000,
        8_589_934_591_999_999,
        8_589_934_592_000_000,
        9_007_199_254_740_991,
        99,
        1,
    ];
    for _ in 0..3000 {
        micros.push(now_us + rng.next() % 100_000_000_000_000);
        micros.push(rng.next() % 8_589_934_592_000_000);
    }
    let args: Vec<String> = micros.iter().map(u64::to_string).collect();
    let lua = lua_map(
        &mut con,
        "function(s) local us = tonumber(s) return ticket_element({ number = 3, us = us, expires = us / 1000000 }) end",
        &args,
    );
    for (us, got) in micros.iter().zip(&lua) {
        let mut want = String::new();
        let ticket = Ticket::new(3, *us as f64 / 1e6);
        want.push_str(&serde_json::to_string(&ticket.dumps()).unwrap());
        assert_eq!(got, &want, "{us} us");
    }
    assert_eq!(lua.len(), micros.len());
}

#[test]
fn lua_reads_our_layout_with_patterns_exactly_as_cjson_reads_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut con = connection(&server, 1);
    let element = |n: &str, e: &str| format!(r#""{{\"number\": {n}, \"expires\": {e}}}""#);
    let record = |tickets: &[String], tail: &str| {
        format!(
            r#"{{"conversation_id": "unused", "tickets": [{}]{tail}}}"#,
            tickets.join(", ")
        )
    };
    let one = element("0", "1795892618.7471275");
    let two = element("7", "1e+16");
    let three = element("9", "-2.5");
    let cases = [
        // Read by the patterns.
        record(std::slice::from_ref(&one), ""),
        record(std::slice::from_ref(&one), r#", "epoch": 1795892558747127"#),
        record(
            &[one.clone(), two.clone(), three.clone()],
            r#", "last_issued": 12, "epoch": 5"#,
        ),
        record(&[two.clone(), one.clone()], r#", "last_issued": 3"#),
        record(&[], r#", "last_issued": 3, "epoch": 1"#),
        // Other spacing, order, escapes, numbers: left to cjson, or read
        // as cjson reads them.
        record(
            std::slice::from_ref(&one),
            r#", "epoch": 1, "last_issued": 3"#,
        ),
        record(&[element("01", "5.0")], ""),
        record(&[element("1", "05.0")], ""),
        record(&[element("1", "5.")], ""),
        record(&[element("1", "1e400")], ""),
        record(std::slice::from_ref(&one), r#", "other": 1"#),
        r#"{"conversation_id": "unused", "tickets": ["{\"number\":0,\"expires\":5.5}"]}"#.into(),
        r#"{"conversation_id":"unused","tickets":[]}"#.into(),
        format!(r#"{{"conversation_id": "unused", "tickets": [{one},{two}]}}"#),
        format!(r#"{{"conversation_id": "unused", "tickets": [{one}] , "epoch": 3}}"#),
        format!(r#"{{"conversation_id": "unused", "tickets": [{one}], "epoch": 3}} "#),
        r#"{"conversation_id": "other", "tickets": []}"#.into(),
    ];
    // Each record as both readers see it: tickets (number, expiry, text
    // written back), last_issued, epoch, head; or "nil" from the patterns.
    let describe = r#"function(raw)
        local function show(rec)
          if not rec then return 'nil' end
          local out = {}
          for _, t in ipairs(rec.tickets) do
            out[#out + 1] = string.format('%d@%.17g=%s', t.number, t.expires, t.element or ticket_element(t))
          end
          return table.concat(out, ' ') .. ' last=' .. tostring(rec.last_issued)
            .. ' epoch=' .. tostring(rec.epoch) .. ' head=' .. tostring(rec.head)
        end
        local ok, generic = pcall(slow().load_generic, raw)
        return show(load_canonical(raw)) .. ' | ' .. (ok and show(generic) or 'corrupt')
      end"#;
    let args: Vec<String> = cases.iter().map(|c| c.to_string()).collect();
    let lua = lua_map(&mut con, describe, &args);
    let mut left = 0;
    for (i, (case, got)) in cases.iter().zip(&lua).enumerate() {
        let (fast, generic) = got.split_once(" | ").unwrap();
        if fast == "nil" {
            assert!(i >= 5, "{case} is in our layout: the patterns must read it");
            left += 1;
        } else {
            // Read by the patterns (also odd numbers cjson accepts, like 01
            // or 5.): exactly as cjson reads it.
            assert_eq!(fast, generic, "{case}");
        }
    }
    assert!(left >= 6, "{lua:?}");
    assert!(lua[2].contains("last=12 epoch=5 head=0"), "{}", lua[2]);
    assert!(
        lua[3].contains("last=7 "),
        "the highest ticket counts: {}",
        lua[3]
    );
}

/// Everything the store does, as one user; the first error, if any.
async fn full_workload(server: &RedisServer, user: &str, password: &str) -> Result<(), Error> {
    let mut c = config(server);
    c.username = Some(user.into());
    c.password = Some(Secret::new(password));
    c.socket_timeout = Duration::from_secs(1);
    let store: LockStore = RedisLockStore::connect(&c).await?.into();
    let holder = store.lock("c").await?;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.release().await?;
    let g = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .map_err(|_| Error::Timeout {
            conversation_id: "c (not woken)".into(),
            waited: Duration::from_secs(2),
        })?
        .unwrap()?;
    g.renew().await?;
    g.is_held().await?;
    store.conversations().await?;
    store.get_lock("c").await?;
    store.update_lock("c").await?;
    store
        .save_lock(&TicketLock::with_tickets(
            "d",
            [Ticket::new(0, unix_now() + 5.0)],
        ))
        .await?;
    store.delete_lock("d").await?;
    g.release().await?;
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut connection(server, 1))
        .unwrap();
    store.lock("c").await?.release().await?;
    // No waiter is left, so no subscription may be.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut connection(server, 1))
            .unwrap();
        if channels.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Unavailable {
                backend: "test".into(),
                message: format!("channels left subscribed: {channels:?}"),
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_permission_of_the_acl_rule_is_needed() {
    let server = server!();
    let mut admin = connection(&server, 1);
    let rule: Vec<&str> = ACL_RULE.split(' ').collect();
    for (i, dropped) in rule
        .iter()
        .enumerate()
        .filter(|(_, r)| r.starts_with('+') || r.starts_with('~'))
    {
        let user = format!("u{i}");
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(&user);
        for (j, r) in rule.iter().enumerate() {
            if j != i {
                cmd.arg(*r);
            }
        }
        cmd.exec(&mut admin).unwrap();
        let result = full_workload(&server, &user, "tl-pw").await;
        match result {
            Err(Error::Config { key, message }) => {
                assert_eq!(key, "lock_store.username", "without {dropped}: {message}");
            }
            Err(Error::Unavailable {
                backend, message, ..
            }) if backend == "test" => {
                assert_eq!(*dropped, "+unsubscribe", "without {dropped}: {message}");
            }
            other => panic!("without {dropped}: {other:?}"),
        }
        redis::cmd("FLUSHALL").exec(&mut admin).unwrap();
    }
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("full");
    for r in &rule {
        cmd.arg(*r);
    }
    cmd.exec(&mut admin).unwrap();
    full_workload(&server, "full", "tl-pw").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flush_waits_for_the_releases_of_dropped_guards() {
    let server = server!();
    let mut c = config(&server);
    c.socket_timeout = Duration::from_secs(5);
    let store: LockStore = connect_with(&server, c).await.into();
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("flush");
    let g = store.lock("flush").await.unwrap();
    server.pause();
    drop(g); // its release is spawned, and stuck while the server sleeps
    let flushing = {
        let store = store.clone();
        tokio::spawn(async move { store.flush().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !flushing.is_finished(),
        "flush returned with a release in flight"
    );
    server.resume();
    tokio::time::timeout(Duration::from_secs(5), flushing)
        .await
        .expect("flush did not return once the release was done")
        .unwrap();
    assert_eq!(
        get(&mut con, &key),
        None,
        "flush returned before the release"
    );
    // Nothing in flight: returns at once.
    tokio::time::timeout(Duration::from_millis(100), store.flush())
        .await
        .unwrap();
}

/// The keys that are not request-id entries (`{..}:..`): those expire by
/// themselves a few seconds after their request (see
/// `redis_store.rs::request_entries_expire_by_themselves`).
fn records_only<K: AsRef<[u8]>>(keys: Vec<K>) -> Vec<K> {
    keys.into_iter()
        .filter(|k| !k.as_ref().starts_with(b"{"))
        .collect()
}
