//! Failover: the primary holding the locks dies while tasks take them in
//! turn, right after its replicas fell behind (they are frozen with
//! SIGSTOP and their links dropped for a moment: the replication lag a
//! partition or a slow replica gives, made certain). Redis replication is asynchronous, so in
//! the default mode the leases granted during the lag are lost with the
//! primary; with `min_replicas_ack` they are refused instead.
//!
//! The safe-mode tests (run by `cargo test`) check the promises across the
//! failover: at most one holder at a time, fencing tokens strictly
//! increasing per conversation, and the store working again afterwards
//! without a restart. The default-mode runs measure what is lost; they are
//! ignored by default (they assert nothing but print the figures):
//!
//! ```text
//! cargo test -p ticketlock --test redis_failover -- --ignored --nocapture
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ticketlock::{DeploymentMode, Error, LockStore, RedisConfig, RedisLockStore};
use ticketlock_test_support::{RedisCluster, SentinelGroup};
use tokio::time::Instant;

/// Conversations of the run; the hash tag puts them in one cluster slot,
/// so one primary holds them all.
const IDS: [&str; 3] = ["{f}a", "{f}b", "{f}c"];
/// The conversation held across the failover.
const LONG: &str = "{f}long";
/// The workers' lease: a release lost with the primary leaves its ticket
/// in the queue until it expires, so keep it short.
const LIFETIME: Duration = Duration::from_secs(2);
/// LONG's lease: longer than the failover takes.
const LONG_LIFETIME: Duration = Duration::from_secs(30);
const LAG: Duration = Duration::from_millis(400);

/// What a run saw.
#[derive(Debug, Default)]
#[allow(dead_code)] // Fields only printed.
struct Report {
    /// Leases granted, in all.
    granted: u64,
    /// Leases granted while the replicas lagged (before the kill).
    granted_during_lag: u64,
    /// Leases granted after the failover completed.
    granted_after_failover: u64,
    /// Requests that failed (Unavailable, or timed out), retried.
    failed: u64,
    /// Times a holder entered while another held the same conversation.
    overlaps: u64,
    /// Leases whose fencing token was not greater than an earlier holder's.
    token_regressions: u64,
    /// Whether the lease on LONG taken during the lag was granted, and
    /// whether another holder got LONG after the failover while it still
    /// held it.
    long_granted: bool,
    long_overlap: bool,
    /// From the kill until the store granted a lease asked for after it.
    recovery: Duration,
}

/// A deployment the run can fail over.
trait Failover: Send + Sync {
    fn config(&self, min_replicas_ack: u32) -> RedisConfig;
    /// Finds the primary holding IDS (and its replicas).
    fn locate(&mut self);
    /// Freezes the replicas of the primary holding IDS.
    fn lag(&mut self);
    /// Kills that primary and lets the replicas run again.
    fn kill_primary(&mut self);
    /// Waits until a replica took over.
    fn wait_for_failover(&mut self);
    /// Restarts the killed primary (it comes back as a replica).
    fn restart_old_primary(&mut self);
}

struct Cluster {
    cluster: RedisCluster,
    primary: usize,
    /// The primary's replicas, frozen by `lag` (asking a frozen node would
    /// block).
    replicas: Vec<usize>,
}

impl Failover for Cluster {
    fn config(&self, min_replicas_ack: u32) -> RedisConfig {
        let mut c = RedisConfig::default();
        c.deployment_mode = DeploymentMode::Cluster;
        c.endpoints = self.cluster.endpoints();
        c.db = 0;
        c.socket_timeout = Duration::from_secs(3);
        c.min_replicas_ack = min_replicas_ack;
        c.min_replicas_ack_timeout = Duration::from_millis(200);
        c
    }

    fn locate(&mut self) {
        self.primary = self.cluster.primary_of(&format!("lock:{}", IDS[0]));
        self.replicas = self.cluster.replicas_of(self.primary);
    }

    fn lag(&mut self) {
        self.locate();
        for &r in &self.replicas {
            self.cluster.nodes()[r].pause();
        }
        cut_replication(&self.cluster.nodes()[self.primary]);
    }

    fn kill_primary(&mut self) {
        self.cluster.node_mut(self.primary).kill();
        for &r in &self.replicas {
            self.cluster.nodes()[r].resume();
        }
    }

    fn wait_for_failover(&mut self) {
        self.cluster.wait_for_failover(self.primary);
    }

    fn restart_old_primary(&mut self) {
        self.cluster.node_mut(self.primary).restart();
        self.cluster.wait_for_replica(self.primary);
    }
}

struct Sentinel {
    group: SentinelGroup,
    primary: usize,
}

impl Sentinel {
    fn replicas(&self) -> Vec<usize> {
        (0..self.group.servers().len())
            .filter(|&i| i != self.primary && self.group.servers()[i].pid().is_some())
            .collect()
    }
}

impl Failover for Sentinel {
    fn config(&self, min_replicas_ack: u32) -> RedisConfig {
        let mut c = RedisConfig::default();
        c.deployment_mode = DeploymentMode::Sentinel;
        c.endpoints = self.group.endpoints();
        c.sentinel_service = Some(self.group.service().into());
        c.socket_timeout = Duration::from_secs(3);
        c.min_replicas_ack = min_replicas_ack;
        c.min_replicas_ack_timeout = Duration::from_millis(200);
        c
    }

    fn locate(&mut self) {
        self.primary = self.group.primary();
    }

    fn lag(&mut self) {
        self.locate();
        for r in self.replicas() {
            self.group.servers()[r].pause();
        }
        cut_replication(&self.group.servers()[self.primary]);
    }

    fn kill_primary(&mut self) {
        let replicas = self.replicas();
        self.group.server_mut(self.primary).kill();
        for r in replicas {
            self.group.servers()[r].resume();
        }
    }

    fn wait_for_failover(&mut self) {
        self.group.wait_for_failover(self.primary);
    }

    fn restart_old_primary(&mut self) {
        self.group.server_mut(self.primary).restart();
        self.group.wait_for_replica(self.primary);
    }
}

/// Drops the primary's links to its (frozen) replicas, so that what it
/// writes from now on reaches no replica: freezing alone would not do, as
/// the kernel would still take the stream into the frozen replica's socket
/// buffer and hand it over on resume.
fn cut_replication(primary: &ticketlock_test_support::RedisServer) {
    primary.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
}

#[derive(Default)]
struct Shared {
    inside: HashMap<&'static str, AtomicBool>,
    last_token: Mutex<HashMap<&'static str, u64>>,
    granted: AtomicU64,
    failed: AtomicU64,
    overlaps: AtomicU64,
    regressions: AtomicU64,
    /// 0 before the lag, 1 during it, 2 after the kill, 3 after failover.
    phase: AtomicU64,
    per_phase: [AtomicU64; 4],
    first_grant_after_kill: Mutex<Option<Instant>>,
}

async fn worker(store: LockStore, id: &'static str, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let started_in = shared.phase.load(Ordering::SeqCst) as usize;
        let guard = match store
            .lock(id)
            .lifetime(LIFETIME)
            .timeout(Duration::from_secs(5))
            .await
        {
            Ok(g) => g,
            // A ticket lost with the primary is Expired; the others are
            // the failover's outage.
            Err(
                e @ (Error::Unavailable { .. } | Error::Timeout { .. } | Error::Expired { .. }),
            ) => {
                if std::env::var("FAILOVER_DEBUG").is_ok() {
                    eprintln!("phase {started_in}: {e}");
                }
                shared.failed.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => panic!("unexpected error: {e}"),
        };
        let phase = shared.phase.load(Ordering::SeqCst) as usize;
        if shared.inside[id].swap(true, Ordering::SeqCst) {
            shared.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        {
            let mut last = shared.last_token.lock().unwrap();
            let token = guard.fencing_token();
            let previous = last.entry(id).or_insert(0);
            if token <= *previous {
                shared.regressions.fetch_add(1, Ordering::SeqCst);
            }
            *previous = (*previous).max(token);
        }
        shared.granted.fetch_add(1, Ordering::SeqCst);
        // Counted in a phase only when asked and granted in it.
        if started_in == phase {
            shared.per_phase[phase].fetch_add(1, Ordering::SeqCst);
        }
        if started_in >= 2 {
            shared
                .first_grant_after_kill
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        shared.inside[id].store(false, Ordering::SeqCst);
        // A release lost with the primary only leaves a ticket that
        // expires: not an error of the run.
        let _ = guard.release().await;
    }
}

/// The run: traffic, lag, kill, failover, traffic, restart.
async fn run(deployment: Box<dyn Failover>, min_replicas_ack: u32) -> Report {
    run_in(deployment, min_replicas_ack, ticketlock::RedisLayout::Rasa).await
}

async fn run_in(
    mut deployment: Box<dyn Failover>,
    min_replicas_ack: u32,
    layout: ticketlock::RedisLayout,
) -> Report {
    let mut config = deployment.config(min_replicas_ack);
    config.layout = layout;
    let stores: Vec<LockStore> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(RedisLockStore::connect(&config).await.unwrap().into());
        }
        v
    };
    let mut shared = Shared::default();
    for id in IDS.iter().chain([&LONG]) {
        shared.inside.insert(id, AtomicBool::new(false));
    }
    let shared = Arc::new(shared);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for id in IDS {
        for s in &stores {
            tasks.push(tokio::spawn(worker(
                s.clone(),
                id,
                shared.clone(),
                stop.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The replicas fall behind; a lease on LONG is taken meanwhile.
    let mut d = tokio::task::spawn_blocking(move || {
        deployment.lag();
        deployment
    })
    .await
    .unwrap();
    shared.phase.store(1, Ordering::SeqCst);
    let long = stores[0]
        .lock(LONG)
        .lifetime(LONG_LIFETIME)
        .timeout(Duration::from_secs(2))
        .await;
    let long_granted = long.is_ok();
    tokio::time::sleep(LAG).await;

    // The primary dies; a replica takes over.
    shared.phase.store(2, Ordering::SeqCst);
    let killed = Instant::now();
    d = tokio::task::spawn_blocking(move || {
        d.kill_primary();
        d.wait_for_failover();
        d
    })
    .await
    .unwrap();
    shared.phase.store(3, Ordering::SeqCst);

    // Does anybody else get LONG while its holder (if granted) holds it?
    let deadline = Instant::now() + Duration::from_secs(5);
    let challenger = loop {
        let attempt = stores[1]
            .lock(LONG)
            .lifetime(LONG_LIFETIME)
            .timeout(Duration::from_secs(3))
            .await;
        match attempt {
            Err(Error::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    let long_overlap = long_granted && challenger.is_ok();
    if let Ok(g) = challenger {
        let _ = g.release().await;
    }

    // Back to full strength: the old primary returns as a replica (safe
    // mode needs a replica to acknowledge in a 1-replica cluster shard).
    let _d = tokio::task::spawn_blocking(move || {
        d.restart_old_primary();
        d
    })
    .await
    .unwrap();
    let after = shared.per_phase[3].load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.per_phase[3].load(Ordering::SeqCst) < after + 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    if let Ok(g) = long {
        let _ = g.release().await;
    }
    let recovery = shared
        .first_grant_after_kill
        .lock()
        .unwrap()
        .map_or(Duration::MAX, |t| t - killed);
    Report {
        granted: shared.granted.load(Ordering::SeqCst),
        granted_during_lag: shared.per_phase[1].load(Ordering::SeqCst),
        granted_after_failover: shared.per_phase[3].load(Ordering::SeqCst),
        failed: shared.failed.load(Ordering::SeqCst),
        overlaps: shared.overlaps.load(Ordering::SeqCst),
        token_regressions: shared.regressions.load(Ordering::SeqCst),
        long_granted,
        long_overlap,
        recovery,
    }
}

fn assert_safe(report: &Report) {
    eprintln!("{report:#?}");
    assert_eq!(report.overlaps, 0, "{report:?}");
    assert_eq!(report.token_regressions, 0, "{report:?}");
    assert!(!report.long_overlap, "{report:?}");
    assert_eq!(
        report.granted_during_lag, 0,
        "no replica could acknowledge: nothing may be granted: {report:?}"
    );
    assert!(!report.long_granted, "{report:?}");
    assert!(
        report.granted_after_failover >= 20,
        "the store must work again after the failover, without a restart: {report:?}"
    );
}

async fn sentinel() -> Option<Box<dyn Failover>> {
    let group = tokio::task::spawn_blocking(SentinelGroup::start)
        .await
        .unwrap()?;
    Some(Box::new(Sentinel { group, primary: 0 }))
}

async fn cluster() -> Option<Box<dyn Failover>> {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap()?;
    Some(Box::new(Cluster {
        cluster,
        primary: 0,
        replicas: Vec::new(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_in_safe_mode_keeps_exclusion_and_token_order() {
    let Some(d) = sentinel().await else { return };
    assert_safe(&run(d, 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_in_safe_mode_keeps_exclusion_and_token_order() {
    let Some(d) = cluster().await else { return };
    assert_safe(&run(d, 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_layout_sentinel_failover_in_safe_mode_keeps_exclusion_and_token_order() {
    let Some(d) = sentinel().await else { return };
    assert_safe(&run_in(d, 1, ticketlock::RedisLayout::Native).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_layout_cluster_failover_in_safe_mode_keeps_exclusion_and_token_order() {
    let Some(d) = cluster().await else { return };
    assert_safe(&run_in(d, 1, ticketlock::RedisLayout::Native).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_push_wake_ups_follow_the_failover() {
    let Some(d) = sentinel().await else { return };
    push_wake_ups_follow_the_failover(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_push_wake_ups_follow_the_failover() {
    let Some(d) = cluster().await else { return };
    push_wake_ups_follow_the_failover(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints what the default mode loses"]
async fn sentinel_failover_in_default_mode_measured() {
    let Some(d) = sentinel().await else { return };
    eprintln!("sentinel, default mode: {:#?}", run(d, 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints what the default mode loses"]
async fn cluster_failover_in_default_mode_measured() {
    let Some(d) = cluster().await else { return };
    eprintln!("cluster, default mode: {:#?}", run(d, 0).await);
}

/// The cost of `min_replicas_ack`: lock + release cycles per second on a
/// sentinel group (two replicas), one task on one conversation and eight
/// tasks on eight, with 0, 1 and 2 acknowledgements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints the cost of min_replicas_ack"]
async fn safe_mode_cost_measured() {
    let Some(d) = sentinel().await else { return };
    for tasks in [1usize, 8] {
        for acks in [0u32, 1, 2] {
            let store: LockStore = RedisLockStore::connect(&d.config(acks))
                .await
                .unwrap()
                .into();
            let cycles = Arc::new(AtomicU64::new(0));
            let until = Instant::now() + Duration::from_secs(3);
            let mut handles = Vec::new();
            for t in 0..tasks {
                let (store, cycles) = (store.clone(), cycles.clone());
                handles.push(tokio::spawn(async move {
                    let id = format!("cost{t}");
                    while Instant::now() < until {
                        let g = store.lock(&id).await.unwrap();
                        g.release().await.unwrap();
                        cycles.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
            let n = cycles.load(Ordering::SeqCst);
            eprintln!(
                "tasks {tasks}, min_replicas_ack {acks}: {:.0} cycles/s, {:.0} µs per cycle per task",
                n as f64 / 3.0,
                3e6 * tasks as f64 / n as f64
            );
        }
    }
}

/// After a failover the pub/sub side follows too. A waiter queued before
/// the primary died may fail while it is out (Unavailable: callers retry)
/// or get in; once the store works again, a waiter whose wait_time is an
/// hour (so only a push can let it in) is woken by its holder's release,
/// through the subscriber that had been connected to the dead primary.
async fn push_wake_ups_follow_the_failover(mut d: Box<dyn Failover>) {
    const BEFORE: &str = "{f}before";
    const AFTER: &str = "{f}after";
    let config = d.config(0);
    let store: LockStore = RedisLockStore::connect(&config).await.unwrap().into();
    let peer: LockStore = RedisLockStore::connect(&config).await.unwrap().into();
    let hour = Duration::from_secs(3600);

    // The peer's subscriber is connected (to the old primary) for BEFORE.
    let holder = store.lock(BEFORE).lifetime(LONG_LIFETIME).await.unwrap();
    let early = tokio::spawn({
        let peer = peer.clone();
        async move {
            peer.lock(BEFORE)
                .lifetime(LONG_LIFETIME)
                .wait_time(hour)
                .timeout(Duration::from_secs(60))
                .await
                .map(drop)
        }
    });
    wait_for_tickets(&store, BEFORE, 2).await;
    let _d = tokio::task::spawn_blocking(move || {
        d.locate();
        d.kill_primary();
        d.wait_for_failover();
        d
    })
    .await
    .unwrap();
    drop(holder);
    match early.await.unwrap() {
        Ok(()) | Err(Error::Unavailable { .. } | Error::Expired { .. }) => {}
        Err(e) => panic!("the early waiter: {e}"),
    }

    // The store works again, without a restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    let holder = loop {
        match store.lock(AFTER).lifetime(LONG_LIFETIME).await {
            Ok(g) => break g,
            Err(e) => {
                assert!(Instant::now() < deadline, "the store did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let token = holder.fencing_token();
    let waiter = tokio::spawn(async move {
        peer.lock(AFTER)
            .lifetime(LONG_LIFETIME)
            .wait_time(hour)
            .timeout(Duration::from_secs(60))
            .await
            .map(|g| g.fencing_token())
    });
    wait_for_tickets(&store, AFTER, 2).await;
    holder.release().await.unwrap();
    let acquired = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was not woken by a push after the failover")
        .unwrap()
        .expect("the waiter got its lock");
    assert!(acquired > token, "{acquired} > {token}");
}

async fn wait_for_tickets(store: &LockStore, id: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store
        .get_lock(id)
        .await
        .unwrap()
        .map_or(0, |l| l.tickets().count())
        < n
    {
        assert!(Instant::now() < deadline, "{n} tickets not queued on {id}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
