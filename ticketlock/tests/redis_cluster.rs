//! The Redis store on a Redis Cluster (3 primaries, 3 replicas) started by
//! the tests on loopback ports: the conformance suite, lists across every
//! primary, and a slot moved while locks are taken; the suite also on the
//! native layout. One cluster serves the
//! whole binary; each test gets a key prefix of its own.

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use suite::{Configured, Harness};
use ticketlock::{DeploymentMode, LockStore, RedisConfig};
use ticketlock_test_support::RedisCluster;

fn cluster() -> Option<&'static RedisCluster> {
    static CLUSTER: OnceLock<Option<RedisCluster>> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3, 1)).as_ref()
}

/// A configuration for the shared cluster with a key prefix no other test
/// uses.
fn config(cluster: &RedisCluster) -> RedisConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut c = RedisConfig::default();
    c.deployment_mode = DeploymentMode::Cluster;
    c.endpoints = cluster.endpoints();
    c.db = 0;
    c.key_prefix = Some(format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst)));
    c.socket_timeout = Duration::from_secs(5);
    c
}

async fn redis_cluster() -> Option<Configured> {
    let cluster = tokio::task::spawn_blocking(cluster).await.unwrap()?;
    Some(Configured::connect(config(cluster)).await)
}

conformance_tests!(redis_cluster);

async fn native_cluster() -> Option<Configured> {
    let cluster = tokio::task::spawn_blocking(cluster).await.unwrap()?;
    let mut c = config(cluster);
    c.layout = ticketlock::RedisLayout::Native;
    Some(Configured::connect(c).await)
}

/// The suite on the native layout: its keys and channels in one slot,
/// grants pushed with SPUBLISH.
mod native_layout {
    use super::*;

    conformance_tests!(super::native_cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_lists_the_records_of_every_primary() {
    let Some(h) = redis_cluster().await else {
        return;
    };
    let cluster = cluster().unwrap();
    let store = h.store();
    let ids: Vec<String> = (0..40).map(|i| format!("conv-{i}")).collect();
    let mut guards = Vec::new();
    for id in &ids {
        guards.push(store.lock(id).await.unwrap());
    }
    let prefix = h.config.key_prefix.clone().unwrap();
    let owners: std::collections::HashSet<usize> = ids
        .iter()
        .map(|id| cluster.primary_of(&format!("{prefix}:lock:{id}")))
        .collect();
    assert_eq!(
        owners.len(),
        3,
        "40 keys should spread over all 3 primaries"
    );
    let mut listed = store.conversations().await.unwrap();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    for g in guards {
        g.release().await.unwrap();
    }
    assert_eq!(store.conversations().await.unwrap(), Vec::<String>::new());
}

/// Moves a slot to another primary while tasks take the lock of one of its
/// conversations in turn, and a waiter of another waits for a push: every
/// request still gets the lock, one at a time, and the waiter is woken
/// without polling (its wait_time is an hour). The hash tag `{rs}` puts
/// both conversations in one slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_moved_during_a_run_keeps_locks_exclusive_and_waiters_woken() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let Some(h) = redis_cluster().await else {
        return;
    };
    let cluster = cluster().unwrap();
    let store = h.store();
    let peer = h.peer().await;
    let id = "{rs}waited";
    let busy = "{rs}busy";
    let key = format!("{}:lock:{id}", h.config.key_prefix.as_deref().unwrap());
    let from = cluster.primary_of(&key);

    // A waiter subscribed on the old owner, woken only by the release.
    let holder = store.lock(id).await.unwrap();
    let waiter = tokio::spawn({
        let peer = peer.clone();
        async move {
            let queued = peer
                .lock(id)
                .wait_time(suite::HOUR)
                .timeout(Duration::from_secs(60))
                .enqueue()
                .await
                .unwrap();
            queued.acquired().await
        }
    });
    suite_wait_for_tickets(&store, id, 2).await;

    // Busy traffic on the same conversation while the slot moves.
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = if t % 2 == 0 {
            store.clone()
        } else {
            peer.clone()
        };
        let (inside, overlaps, done) = (inside.clone(), overlaps.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let g = s.lock(busy).timeout(Duration::from_secs(60)).await.unwrap();
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.store(false, Ordering::SeqCst);
                g.release().await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let slot: u16 = cluster.nodes()[0]
        .cli(&["CLUSTER", "KEYSLOT", &key])
        .parse()
        .unwrap();
    let to = (0..cluster.nodes().len())
        .find(|&i| i != from && cluster.nodes()[i].cli(&["ROLE"]).starts_with("master"))
        .unwrap();
    tokio::task::spawn_blocking(move || cluster.move_slot(slot, to))
        .await
        .unwrap();
    assert_eq!(cluster.primary_of(&key), to);

    holder.release().await.unwrap();
    let woken = tokio::time::timeout(suite::PROMPT * 2, waiter)
        .await
        .expect("the waiter was not woken after the slot moved")
        .unwrap()
        .unwrap();
    woken.release().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(done.load(Ordering::SeqCst), 80);
}

async fn suite_wait_for_tickets(store: &LockStore, id: &str, n: usize) {
    let start = tokio::time::Instant::now();
    loop {
        let count = store
            .get_lock(id)
            .await
            .unwrap()
            .map_or(0, |l| l.tickets().count());
        if count >= n {
            return;
        }
        assert!(start.elapsed() < suite::PROMPT, "{n} tickets not queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The cluster's additions to the documented least-privilege ACL rule.
/// (`+hello` is not one: Redis lets every client run HELLO, which the
/// RESP3 pub/sub connection sends; this test found that.)
const CLUSTER_ADDITIONS: [&str; 4] = [
    "+spublish",
    "+ssubscribe",
    "+sunsubscribe",
    "+cluster|slots",
];

/// What a store does, as `user` on every node, under prefix `prefix`:
/// a lock, a waiter woken by a push, renew, is_held, release, the list of
/// conversations; then no sharded subscription may be left.
async fn cluster_workload(
    cluster: &RedisCluster,
    user: &str,
    prefix: &str,
) -> Result<(), ticketlock::Error> {
    let mut c = config(cluster);
    c.key_prefix = Some(prefix.into());
    c.username = Some(user.into());
    c.password = Some(ticketlock::Secret::new("acl-pw"));
    c.socket_timeout = Duration::from_secs(1);
    let store: LockStore = ticketlock::RedisLockStore::connect(&c).await?.into();
    let holder = store.lock("c").await?;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(Duration::from_secs(3600)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.release().await?;
    let not_woken = || ticketlock::Error::Timeout {
        conversation_id: "c (no push wake-up)".into(),
        waited: Duration::from_secs(2),
    };
    let g = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .map_err(|_| not_woken())?
        .unwrap()?;
    g.renew().await?;
    g.is_held().await?;
    store.conversations().await?;
    g.release().await?;
    let channel = format!("{prefix}:lock:c");
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while cluster.nodes().iter().any(|n| {
        n.try_cli(&["PUBSUB", "SHARDCHANNELS", &channel])
            .is_ok_and(|out| out.contains(&channel))
    }) {
        if std::time::Instant::now() > deadline {
            return Err(ticketlock::Error::Unavailable {
                backend: "test".into(),
                message: format!("{channel} left subscribed"),
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The cluster additions to the ACL rule are all needed: without any one
/// of them the store fails (a configuration error, a lost wake-up, or a
/// subscription left behind); with all of them it does everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_addition_to_the_acl_rule_is_needed() {
    let Some(cluster) = tokio::task::spawn_blocking(cluster).await.unwrap() else {
        return;
    };
    let rule = |prefix: &str, without: Option<&str>| -> Vec<String> {
        let mut r: Vec<String> = format!(
            "on >acl-pw resetkeys ~{prefix}:lock:* ~{{*}}:{prefix}:lock:* resetchannels \
             &{prefix}:lock:* -@all +evalsha +script|load +get +set +del +publish +time +scan \
             +subscribe +unsubscribe +ping +select"
        )
        .split(' ')
        .map(str::to_owned)
        .collect();
        r.extend(
            CLUSTER_ADDITIONS
                .iter()
                .filter(|a| Some(**a) != without)
                .map(|a| a.to_string()),
        );
        r
    };
    let set_user = |user: &str, rule: &[String]| {
        for node in cluster.nodes() {
            let mut args = vec!["ACL", "SETUSER", user];
            args.extend(rule.iter().map(String::as_str));
            assert_eq!(node.cli(&args), "OK");
        }
    };
    for (i, dropped) in CLUSTER_ADDITIONS.iter().enumerate() {
        let (user, prefix) = (format!("cl{i}"), format!("acl{i}"));
        set_user(&user, &rule(&prefix, Some(dropped)));
        let result = cluster_workload(cluster, &user, &prefix).await;
        assert!(result.is_err(), "without {dropped} the store still works");
    }
    set_user("clall", &rule("aclall", None));
    cluster_workload(cluster, "clall", "aclall")
        .await
        .expect("the documented rule with every cluster addition");
}

/// The store's connections to every node killed every 30 ms while tasks
/// lock and release: calls whose connection died are retried (by the cluster client
/// and by the store), and request ids keep a retried issue from issuing a
/// second ticket and a retried release from reporting `Expired`. An extra
/// ticket would hold its conversation for its lifetime (30 s here), so
/// every cycle finishing quickly, and no record left, shows there was none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_issue_never_issues_twice_on_a_cluster() {
    let Some(cluster) = tokio::task::spawn_blocking(cluster).await.unwrap() else {
        return;
    };
    // The store connects as a user of its own, and only that user's
    // connections are killed: the cluster is shared with the tests running
    // beside this one, whose own connections (and admin calls) must live.
    for node in cluster.nodes() {
        node.cli(&[
            "ACL",
            "SETUSER",
            "killed",
            "on",
            ">killed-pw",
            "~*",
            "&*",
            "+@all",
        ]);
    }
    let mut c = config(cluster);
    c.username = Some("killed".into());
    c.password = Some(ticketlock::Secret::new("killed-pw"));
    let h = Configured::connect(c).await;
    let store = h.store().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = std::sync::Arc::new(AtomicU64::new(0));
    let killed = std::sync::Arc::new(AtomicU64::new(0));
    let killer = {
        let (stop, rounds, killed) = (stop.clone(), rounds.clone(), killed.clone());
        let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(30));
                for port in &ports {
                    let out = std::process::Command::new("redis-cli")
                        .args(["-p", &port.to_string(), "CLIENT", "KILL", "USER", "killed"])
                        .output();
                    if let Ok(out) = out {
                        let n: u64 = String::from_utf8_lossy(&out.stdout)
                            .trim()
                            .parse()
                            .unwrap_or(0);
                        killed.fetch_add(n, Ordering::Relaxed);
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (store, rounds) = (store.clone(), rounds.clone());
        tasks.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut i = 0;
            // At least 40 cycles each, and through 20 rounds of kills.
            while i < 40 || rounds.load(Ordering::Relaxed) < 20 {
                i += 1;
                let id = format!("k{}", (t + i) % 3);
                let started = std::time::Instant::now();
                let g = store
                    .lock(&id)
                    .lifetime(Duration::from_secs(30))
                    .timeout(Duration::from_secs(20))
                    .await
                    .unwrap_or_else(|e| panic!("task {t}, cycle {i}: {e}"));
                g.release()
                    .await
                    .unwrap_or_else(|e| panic!("task {t}, cycle {i}: release: {e}"));
                slowest = slowest.max(started.elapsed());
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for t in tasks {
        slowest = slowest.max(t.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    assert!(
        killed.load(Ordering::Relaxed) > 0,
        "no connection of the store was killed"
    );
    // A cycle held up by an orphan ticket would take its 30 s lifetime.
    assert!(
        slowest < Duration::from_secs(10),
        "a cycle took {slowest:?}"
    );
    for k in 0..3 {
        assert!(
            store.get_lock(&format!("k{k}")).await.unwrap().is_none(),
            "a ticket was left in k{k}"
        );
    }
}
