//! The `throughput` and `contended` workloads: `concurrency` tasks take
//! messages from one counter and, for each, lock its conversation and
//! release it at once.
//!
//! Ids are written into a buffer per task rather than kept in a table, so
//! the loop measures the lock, not cache misses on a million strings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::locker::Locker;
use super::progress::Progress;
use super::report::{Side, Stats};

/// A run of lock-then-release cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cycles {
    pub messages: u64,
    pub concurrency: usize,
    /// `None`: each message its own conversation; `Some(k)`: message `i` is
    /// on conversation `i % k`.
    pub conversations: Option<u64>,
    /// Record each message's wait for its lock.
    pub record_waits: bool,
    /// Record each hand-off (with `conversations`): the time from a
    /// holder's release call to the next holder's entry on the same
    /// conversation. Only for real locks: the wire baseline excludes no one.
    pub record_handoffs: bool,
    /// Each task's work after each release, before its next message: a
    /// loop that yields to the runtime until it is up (`--work-us`).
    pub work: std::time::Duration,
}

/// Writes the id of conversation `n` of run `tag`: 36 characters shaped
/// like the UUIDs Rasa uses as sender ids (`n` modulo 2^48). Written by
/// hand: `format!` cost as much as a lock/release cycle of the baseline.
pub(crate) fn write_id(buf: &mut String, tag: u32, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00000000-0000-4000-8000-000000000000";
    for (i, c) in out[..8].iter_mut().enumerate() {
        *c = HEX[(tag >> (28 - 4 * i) & 0xf) as usize];
    }
    for (i, c) in out[24..].iter_mut().enumerate() {
        *c = HEX[(n >> (44 - 4 * i) & 0xf) as usize];
    }
    buf.clear();
    buf.push_str(std::str::from_utf8(&out).unwrap_or_default());
}

/// The id of conversation `n` of run `tag`.
pub(crate) fn id(tag: u32, n: u64) -> String {
    let mut s = String::with_capacity(36);
    write_id(&mut s, tag, n);
    s
}

/// Runs `plan` against `locker`; ids are those of run `tag`.
pub(crate) async fn run<L: Locker>(
    locker: &L,
    plan: Cycles,
    tag: u32,
    label: &str,
    progress: &Progress,
) -> anyhow::Result<Side> {
    let next = Arc::new(AtomicU64::new(0));
    let phase = progress.phase(label, next.clone(), plan.messages);
    let releases = Arc::new(Releases::new(plan));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..plan.concurrency {
        let (locker, next, releases) = (locker.clone(), next.clone(), releases.clone());
        tasks.spawn(async move {
            let mut buf = String::with_capacity(40);
            let mut waits = Vec::new();
            let mut handoffs = Vec::new();
            let mut done = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.messages {
                    break;
                }
                let c = plan.conversations.map_or(i, |k| i % k);
                write_id(&mut buf, tag, c);
                let asked = plan.record_waits.then(Instant::now);
                let guard = locker.lock(&buf).await?;
                if let Some(asked) = asked {
                    waits.push(asked.elapsed().as_nanos() as u64);
                }
                if let Some(gap) = releases.entered(c) {
                    handoffs.push(gap);
                }
                releases.releasing(c);
                locker.release(&buf, guard).await?;
                work(plan.work).await;
                done += 1;
            }
            anyhow::Ok((done, waits, handoffs))
        });
    }
    let mut done = 0;
    let mut waits = Vec::new();
    let mut handoffs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, w, h) = joined.context("a bench task panicked")??;
        done += n;
        waits.extend(w);
        handoffs.extend(h);
    }
    let elapsed = started.elapsed();
    drop(phase);
    anyhow::ensure!(
        done == plan.messages,
        "bench: {done} of {} cycles ran",
        plan.messages
    );
    Ok(Side {
        cycles: done,
        elapsed,
        waits: if plan.record_waits {
            Stats::of(&mut waits)
        } else {
            None
        },
        handoff: Stats::of(&mut handoffs),
        ..Side::default()
    })
}

/// Keeps the task busy for `d`, yielding to the runtime between reads of
/// the clock (other tasks run meanwhile, as beside a handler's work).
async fn work(d: std::time::Duration) {
    if d.is_zero() {
        return;
    }
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

/// The last release call of each conversation not yet followed by an
/// entry (for hand-off times).
struct Releases(Vec<std::sync::Mutex<Option<Instant>>>);

impl Releases {
    fn new(plan: Cycles) -> Releases {
        let k = match plan.conversations {
            Some(k) if plan.record_handoffs => k as usize,
            _ => 0,
        };
        Releases((0..k).map(|_| std::sync::Mutex::new(None)).collect())
    }

    fn slot(&self, c: u64) -> Option<std::sync::MutexGuard<'_, Option<Instant>>> {
        let slot = self.0.get(c as usize)?;
        Some(slot.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A holder of conversation `c` is about to call release.
    fn releasing(&self, c: u64) {
        if let Some(mut slot) = self.slot(c) {
            *slot = Some(Instant::now());
        }
    }

    /// A holder entered conversation `c`: nanoseconds since the release
    /// call before it, if there was one.
    fn entered(&self, c: u64) -> Option<u64> {
        let released = self.slot(c)?.take()?;
        Some(released.elapsed().as_nanos() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::super::keyed::KeyedMutex;
    use super::*;

    /// A locker that checks exclusivity and counts cycles per id.
    #[derive(Clone, Default)]
    struct Checked {
        inner: KeyedMutex,
        holders: Arc<Mutex<HashMap<String, u32>>>,
        cycles: Arc<Mutex<HashMap<String, u64>>>,
    }

    impl Locker for Checked {
        type Guard = <KeyedMutex as Locker>::Guard;

        async fn lock(&self, id: &str) -> anyhow::Result<Self::Guard> {
            let g = self.inner.lock(id).await?;
            let mut h = self.holders.lock().unwrap();
            let n = h.entry(id.to_string()).or_default();
            *n += 1;
            assert_eq!(*n, 1, "two holders of {id}");
            Ok(g)
        }

        async fn release(&self, id: &str, guard: Self::Guard) -> anyhow::Result<()> {
            *self.holders.lock().unwrap().get_mut(id).unwrap() -= 1;
            *self
                .cycles
                .lock()
                .unwrap()
                .entry(id.to_string())
                .or_default() += 1;
            // Yield while holding, so that other tasks do contend.
            tokio::task::yield_now().await;
            self.inner.release(id, guard).await
        }
    }

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        assert_eq!(id(0xab, 0x1f), "000000ab-0000-4000-8000-00000000001f");
        assert_eq!(id(1, 2).len(), 36);
        assert_ne!(id(1, 2), id(2, 2));
        assert_eq!(
            id(0xdead_beef, 0x0123_4567_89ab),
            "deadbeef-0000-4000-8000-0123456789ab"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throughput_runs_each_message_once_on_its_own_conversation() {
        let locker = Checked::default();
        let plan = Cycles {
            messages: 500,
            concurrency: 8,
            conversations: None,
            record_waits: false,
            record_handoffs: false,
            work: std::time::Duration::ZERO,
        };
        let side = run(&locker, plan, 7, "t", &Progress::hidden())
            .await
            .unwrap();
        assert_eq!(side.cycles, 500);
        assert!(side.waits.is_none());
        let cycles = locker.cycles.lock().unwrap();
        assert_eq!(cycles.len(), 500);
        assert!(cycles.values().all(|&n| n == 1));
        assert!(cycles.contains_key(&id(7, 499)));
        assert_eq!(locker.inner.len(), 0, "keyed map not emptied");
    }

    /// Each task works `work` after each release: 2 tasks, 20 messages,
    /// 3 ms each make at least 10 of them in a row per task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_task_works_after_each_release() {
        let locker = Checked::default();
        let plan = Cycles {
            messages: 20,
            concurrency: 2,
            conversations: None,
            record_waits: false,
            record_handoffs: false,
            work: std::time::Duration::from_millis(3),
        };
        let side = run(&locker, plan, 8, "w", &Progress::hidden())
            .await
            .unwrap();
        assert_eq!(side.cycles, 20);
        assert!(
            side.elapsed >= std::time::Duration::from_millis(30),
            "{:?}",
            side.elapsed
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contended_spreads_messages_over_k_conversations_and_records_waits() {
        let locker = Checked::default();
        let plan = Cycles {
            messages: 301,
            concurrency: 16,
            conversations: Some(3),
            record_waits: true,
            record_handoffs: true,
            work: std::time::Duration::ZERO,
        };
        let side = run(&locker, plan, 9, "c", &Progress::hidden())
            .await
            .unwrap();
        assert_eq!(side.cycles, 301);
        let waits = side.waits.unwrap();
        assert!(waits.p50 <= waits.p90 && waits.p90 <= waits.p99 && waits.p99 <= waits.max);
        let handoffs = side.handoff.unwrap();
        assert!(handoffs.p50 <= handoffs.p99 && handoffs.p99 <= handoffs.max);
        let cycles = locker.cycles.lock().unwrap();
        let mut counts: Vec<u64> = cycles.values().copied().collect();
        counts.sort();
        assert_eq!(counts, [100, 100, 101]);
        assert_eq!(cycles[&id(9, 0)], 101);
        assert_eq!(locker.inner.len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticketlock_in_memory_runs_the_same_workload() {
        let store = ticketlock::LockStore::in_memory();
        let plan = Cycles {
            messages: 2000,
            concurrency: 16,
            conversations: Some(4),
            record_waits: true,
            record_handoffs: true,
            work: std::time::Duration::ZERO,
        };
        let side = run(&store, plan, 1, "c", &Progress::hidden())
            .await
            .unwrap();
        assert_eq!(side.cycles, 2000);
        assert!(side.waits.is_some());
        assert!(store.as_in_memory().unwrap().is_empty());
    }
}
