//! The `depth` workload: hand-offs on one conversation with W waiters held
//! queued behind the holder.
//!
//! W + 1 tasks take turns in a ring: the first holds the lock while the
//! other W queue behind it. A holder releases once W others are queued
//! behind it; whoever it released queues again at the tail, so every
//! release hands the lock to a waiter with W - 1 more behind. Each entry is
//! checked against a shared count of holders (two at once fails the
//! bench). The timed phase ends at the requested number of hand-offs, or at
//! the first entry past `max_time`; the waiters left are then withdrawn
//! (their tickets dropped), not served.
//!
//! Before the hand-offs, with `idle`, the queue sits still for that long
//! behind a holder that does nothing: what the waiters alone cost the
//! server.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ticketlock::{LockGuard, LockStore, QueuedTicket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::cycles::id;
use super::progress::Progress;
use super::report::Stats;
use super::wire::Wire;

/// One depth's plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Depth {
    /// Waiters queued behind the holder.
    pub waiters: usize,
    /// Hand-offs to time.
    pub rounds: u64,
    /// The timed phase stops at the first entry after this long.
    pub max_time: Duration,
    /// Sit still this long before the hand-offs, measuring the server.
    pub idle: Option<Duration>,
}

/// What one depth measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DepthSide {
    pub handoffs: u64,
    pub elapsed: Duration,
    /// From a release call to the next holder's entry.
    pub handoff: Option<Stats>,
    /// The server's CPU time over the timed phase (Redis).
    pub server_cpu: Option<Duration>,
    /// The idle window: its length and the server's CPU time over it.
    pub idle: Option<(Duration, Option<Duration>)>,
    /// The most holders seen inside at once (1 for a lock).
    pub max_holders: usize,
}

impl DepthSide {
    pub(crate) fn handoffs_per_s(&self) -> f64 {
        self.handoffs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The state the ring's tasks share.
struct Ring {
    waiters: usize,
    rounds: u64,
    /// Set before the first release: entries past it end the phase.
    deadline: OnceLock<Instant>,
    /// Hand-offs so far (entries after the first release).
    handoffs: Arc<AtomicU64>,
    inside: AtomicUsize,
    max_inside: AtomicUsize,
    released_at: std::sync::Mutex<Option<Instant>>,
    samples: std::sync::Mutex<Vec<u64>>,
    /// Tasks queued and not yet served.
    queued: watch::Sender<usize>,
    /// Set by the entry that ends the timed phase, with its time (or by
    /// the bench, to stop the ring after a failure).
    stop: watch::Sender<Option<Instant>>,
}

impl Ring {
    /// A holder entered; whether it is to leave the ring (the phase is
    /// over). Entries after the end are not counted.
    fn entered(&self) -> bool {
        let now = Instant::now();
        let inside = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inside.fetch_max(inside, Ordering::SeqCst);
        if self.stop.borrow().is_some() {
            return true;
        }
        if let Some(released) = lock(&self.released_at).take() {
            lock(&self.samples).push(now.saturating_duration_since(released).as_nanos() as u64);
        }
        let n = self.handoffs.fetch_add(1, Ordering::SeqCst) + 1;
        let late = self.deadline.get().is_some_and(|d| now >= *d);
        if n >= self.rounds || late {
            self.end(now);
            return true;
        }
        false
    }

    /// The holder is about to call release.
    fn leaving(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
        *lock(&self.released_at) = Some(Instant::now());
    }

    /// Ends the phase at `at`, unless it has ended already.
    fn end(&self, at: Instant) {
        self.stop.send_if_modified(|s| {
            let first = s.is_none();
            if first {
                *s = Some(at);
            }
            first
        });
    }

    async fn stopped(&self) {
        let _ = self.stop.subscribe().wait_for(Option::is_some).await;
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a task of the ring starts.
enum Start {
    /// The first holder: releases when told to.
    Holding(LockGuard, oneshot::Receiver<()>),
    /// A waiter: queues first.
    Waiting,
}

/// Runs one depth on `store`, on conversation `tag`'s id number `depth`;
/// `meter` reads the server's CPU.
pub(crate) async fn run(
    store: &LockStore,
    meter: Option<&Wire>,
    plan: Depth,
    tag: u32,
    label: &str,
    progress: &Progress,
) -> anyhow::Result<DepthSide> {
    anyhow::ensure!(plan.waiters >= 1, "depth: at least one waiter");
    anyhow::ensure!(plan.rounds >= 1, "depth: at least one hand-off");
    let id: Arc<str> = id(tag, plan.waiters as u64).into();
    // The holder and its waiters must fit the queue.
    let store = store
        .clone()
        .with_max_queue_len(store.max_queue_len().max(plan.waiters + 1));
    let holder = store
        .lock(&id)
        .await
        .with_context(|| format!("depth: locking {id}"))?;
    let handoffs = Arc::new(AtomicU64::new(0));
    let ring = Arc::new(Ring {
        waiters: plan.waiters,
        rounds: plan.rounds,
        deadline: OnceLock::new(),
        handoffs: handoffs.clone(),
        inside: AtomicUsize::new(1),
        max_inside: AtomicUsize::new(1),
        released_at: std::sync::Mutex::new(None),
        samples: std::sync::Mutex::new(Vec::with_capacity(plan.rounds as usize)),
        queued: watch::channel(0).0,
        stop: watch::channel(None).0,
    });
    let (go_tx, go_rx) = oneshot::channel();
    let mut tasks = JoinSet::new();
    let starts = std::iter::once(Start::Holding(holder, go_rx))
        .chain((0..plan.waiters).map(|_| Start::Waiting));
    for start in starts {
        let (store, id, ring) = (store.clone(), id.clone(), ring.clone());
        tasks.spawn(async move { turns(&store, &id, &ring, start).await });
    }

    // Every waiter queued, or a task failed.
    let mut queued = ring.queued.subscribe();
    let ready = tokio::select! {
        r = async { queued.wait_for(|&n| n >= plan.waiters).await.map(|_| ()) } => {
            r.context("depth: the ring is gone")
        }
        early = tasks.join_next() => Err(ended_early(early)),
    };
    if let Err(e) = ready {
        return stop_after(e, &ring, tasks, &store, &id).await;
    }
    let idle = match plan.idle {
        Some(window) => {
            let before = cpu(meter).await?;
            let t = Instant::now();
            tokio::time::sleep(window).await;
            let (after, wall) = (cpu(meter).await?, t.elapsed());
            Some((wall, after.zip(before).map(|(a, b)| a.saturating_sub(b))))
        }
        None => None,
    };

    // The timed phase: the first holder releases, the ring turns.
    let phase = progress.phase(label, handoffs.clone(), plan.rounds);
    let cpu_before = cpu(meter).await?;
    let started = Instant::now();
    let _ = ring.deadline.set(started + plan.max_time);
    let _ = go_tx.send(());
    let turned = tokio::select! {
        () = ring.stopped() => Ok(()),
        early = tasks.join_next() => match early {
            // The task that ended the phase, joined first.
            Some(Ok(Ok(()))) if ring.stop.borrow().is_some() => Ok(()),
            early => Err(ended_early(early)),
        },
    };
    let cpu_after = cpu(meter).await;
    drop(phase);
    if let Err(e) = turned {
        return stop_after(e, &ring, tasks, &store, &id).await;
    }
    let ended = (*ring.stop.borrow()).context("depth: the phase ended without a time")?;
    ring.end(ended);
    drain(tasks).await?;
    settle(&store, &id).await;
    let cpu_after = cpu_after?;
    let done = handoffs.load(Ordering::SeqCst);
    let max_holders = ring.max_inside.load(Ordering::SeqCst);
    anyhow::ensure!(
        max_holders == 1,
        "depth: {max_holders} holders of {id} were inside at once; the store is not exclusive"
    );
    let mut samples = std::mem::take(&mut *lock(&ring.samples));
    Ok(DepthSide {
        handoffs: done,
        elapsed: ended.saturating_duration_since(started),
        handoff: Stats::of(&mut samples),
        server_cpu: cpu_after.zip(cpu_before).map(|(a, b)| a.saturating_sub(b)),
        idle,
        max_holders,
    })
}

/// What a task that ended before the phase did tells.
fn ended_early(
    joined: Option<Result<anyhow::Result<()>, tokio::task::JoinError>>,
) -> anyhow::Error {
    match joined {
        Some(Ok(Err(e))) => e,
        Some(Err(e)) => anyhow::Error::new(e).context("a depth task panicked"),
        Some(Ok(Ok(()))) | None => {
            anyhow::anyhow!("depth: a task left the ring before the phase ended")
        }
    }
}

/// Stops the ring after `e`, waits for its tasks, and returns `e`.
async fn stop_after(
    e: anyhow::Error,
    ring: &Ring,
    tasks: JoinSet<anyhow::Result<()>>,
    store: &LockStore,
    id: &str,
) -> anyhow::Result<DepthSide> {
    ring.end(Instant::now());
    let _ = drain(tasks).await;
    settle(store, id).await;
    Err(e)
}

/// One task of the ring: wait for the lock, hold it until W others are
/// queued, release, queue again; until the phase stops.
async fn turns(store: &LockStore, id: &str, ring: &Ring, start: Start) -> anyhow::Result<()> {
    let release = |guard: LockGuard| {
        ring.leaving();
        async move {
            guard
                .release()
                .await
                .with_context(|| format!("depth: releasing {id}"))
        }
    };
    let queued = match start {
        Start::Holding(guard, go) => {
            tokio::select! {
                _ = go => {}
                () = ring.stopped() => return release(guard).await,
            }
            release(guard).await?;
            enqueue(store, id, ring).await?
        }
        Start::Waiting => enqueue(store, id, ring).await?,
    };
    let Some(mut queued) = queued else {
        return Ok(());
    };
    loop {
        let guard = tokio::select! {
            g = queued.acquired() => g.with_context(|| format!("depth: waiting for {id}"))?,
            () = ring.stopped() => return Ok(()),
        };
        ring.queued.send_modify(|n| *n -= 1);
        if ring.entered() {
            return release(guard).await;
        }
        let mut behind = ring.queued.subscribe();
        tokio::select! {
            r = async { behind.wait_for(|&n| n >= ring.waiters).await.map(|_| ()) } => {
                r.context("depth: the ring is gone")?;
            }
            () = ring.stopped() => return release(guard).await,
        }
        release(guard).await?;
        match enqueue(store, id, ring).await? {
            Some(q) => queued = q,
            None => return Ok(()),
        }
    }
}

/// Takes a place in the queue; `None` when the phase is over.
///
/// While the ring turns a holder releases only once W others are queued,
/// so a new ticket is never served at once; once the phase is over the
/// last holder leaves without waiting, and a ticket served at once is
/// then released again.
async fn enqueue(store: &LockStore, id: &str, ring: &Ring) -> anyhow::Result<Option<QueuedTicket>> {
    let queued = store
        .lock(id)
        .enqueue()
        .await
        .with_context(|| format!("depth: enqueueing on {id}"))?;
    if queued.is_served() {
        anyhow::ensure!(
            ring.stop.borrow().is_some(),
            "depth: a waiter on {id} was served at once although a holder held it; the store is not exclusive"
        );
        let guard = queued
            .acquired()
            .await
            .with_context(|| format!("depth: taking {id}"))?;
        guard
            .release()
            .await
            .with_context(|| format!("depth: releasing {id}"))?;
        return Ok(None);
    }
    ring.queued.send_modify(|n| *n += 1);
    Ok(Some(queued))
}

/// How long the withdrawn tickets of a depth may take to go.
const SETTLE: Duration = Duration::from_secs(60);

/// Waits until the conversation has no record left: the withdrawals of the
/// waiters dropped at the end run in the background, and a deep queue's
/// can keep the server busy for seconds, which the next measure must not
/// pay for. Gives up after [`SETTLE`] (the tickets then expire by
/// themselves).
async fn settle(store: &LockStore, id: &str) {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if let Ok(None) = store.get_lock(id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "ticketlock: bench: the record of {id} was still there {} s after its waiters left",
        SETTLE.as_secs()
    );
}

/// Waits for every task; the first error.
async fn drain(mut tasks: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut first = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let r = joined.context("a depth task panicked").and_then(|r| r);
        if first.is_ok() {
            first = r;
        }
    }
    first
}

async fn cpu(meter: Option<&Wire>) -> anyhow::Result<Option<Duration>> {
    match meter {
        Some(w) => w.cpu().await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(waiters: usize, rounds: u64) -> Depth {
        Depth {
            waiters,
            rounds,
            max_time: Duration::from_secs(600),
            idle: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_depth_makes_exactly_the_hand_offs_asked_with_one_holder() {
        let store = LockStore::in_memory();
        for waiters in [1, 5] {
            let side = run(&store, None, plan(waiters, 40), 9, "d", &Progress::hidden())
                .await
                .unwrap();
            assert_eq!(side.handoffs, 40, "{waiters} waiters");
            assert_eq!(side.max_holders, 1);
            let h = side.handoff.unwrap();
            assert!(h.p50 <= h.p99 && h.p99 <= h.max);
            assert_eq!((side.server_cpu, side.idle), (None, None));
        }
        // Every ticket was released or withdrawn.
        assert!(store.as_in_memory().unwrap().is_empty());
    }

    /// The store's default bound on a queue is raised to hold the holder
    /// and all its waiters.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_deeper_than_the_store_allows_still_runs() {
        let store = LockStore::in_memory().with_max_queue_len(3);
        let side = run(&store, None, plan(6, 12), 4, "d", &Progress::hidden())
            .await
            .unwrap();
        assert_eq!(side.handoffs, 12);
        assert!(store.as_in_memory().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_idle_window_is_measured_before_the_hand_offs() {
        let store = LockStore::in_memory();
        let mut p = plan(3, 5);
        p.idle = Some(Duration::from_millis(50));
        let side = run(&store, None, p, 5, "d", &Progress::hidden())
            .await
            .unwrap();
        let (wall, cpu) = side.idle.unwrap();
        assert!(wall >= Duration::from_millis(50));
        assert_eq!(cpu, None);
        assert_eq!(side.handoffs, 5);
    }

    #[tokio::test]
    async fn zero_waiters_or_rounds_are_refused() {
        let store = LockStore::in_memory();
        let err = run(&store, None, plan(0, 5), 1, "d", &Progress::hidden())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at least one waiter"), "{err}");
        let err = run(&store, None, plan(2, 0), 1, "d", &Progress::hidden())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at least one hand-off"), "{err}");
    }
}
