//! The `handoff` workload: one holder, one waiter, one conversation.
//!
//! Each round the holder takes the lock, the waiter takes its place in the
//! queue and is polled until parked, then the holder reads the clock and
//! releases; the waiter reads the same clock (`Instant`, monotonic) as soon
//! as it holds the lock. The sample is the difference: release call, wake-up
//! and the waiter's own acquisition, all included.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::cycles::id;
use super::locker::Enqueue;
use super::progress::Progress;
use super::report::{Side, Stats};

/// Runs `rounds` hand-offs on `locker`. Each round is two lock-then-release
/// cycles (the holder's and the waiter's).
pub(crate) async fn run<L: Enqueue>(
    locker: &L,
    rounds: u64,
    tag: u32,
    label: &str,
    progress: &Progress,
) -> anyhow::Result<Side> {
    let id = id(tag, 0);
    let (go_tx, mut go_rx) = mpsc::channel::<()>(1);
    let (parked_tx, mut parked_rx) = mpsc::channel::<()>(1);
    let (entered_tx, mut entered_rx) = mpsc::channel::<Instant>(1);
    let waiter = tokio::spawn({
        let (locker, id) = (locker.clone(), id.clone());
        async move {
            while go_rx.recv().await.is_some() {
                let queued = locker.enqueue(&id).await?;
                let mut acquired = pin!(locker.acquired(queued));
                anyhow::ensure!(
                    poll_once(acquired.as_mut()).await.is_pending(),
                    "handoff: the waiter entered while the holder held {id}"
                );
                parked_tx.send(()).await?;
                let guard = acquired.await?;
                let entered = Instant::now();
                locker.release(&id, guard).await?;
                entered_tx.send(entered).await?;
            }
            anyhow::Ok(())
        }
    });

    let done = Arc::new(AtomicU64::new(0));
    let phase = progress.phase(label, done.clone(), rounds);
    let mut samples = Vec::with_capacity(rounds as usize);
    let started = tokio::time::Instant::now();
    let holder = async {
        for _ in 0..rounds {
            let guard = locker.lock(&id).await?;
            go_tx.send(()).await?;
            if parked_rx.recv().await.is_none() {
                break; // the waiter failed: its error is reported below
            }
            let released = Instant::now();
            locker.release(&id, guard).await?;
            let Some(entered) = entered_rx.recv().await else {
                break;
            };
            samples.push(entered.saturating_duration_since(released).as_nanos() as u64);
            done.fetch_add(1, Ordering::Relaxed);
        }
        anyhow::Ok(())
    };
    let held = holder.await;
    let elapsed = started.elapsed();
    drop(phase);
    drop(go_tx);
    waiter.await.context("the handoff waiter panicked")??;
    held?;
    anyhow::ensure!(
        samples.len() as u64 == rounds,
        "handoff: {} of {rounds} rounds ran",
        samples.len()
    );
    Ok(Side {
        cycles: 2 * rounds,
        elapsed,
        handoff: Stats::of(&mut samples),
        ..Side::default()
    })
}

/// Polls `f` once.
async fn poll_once<F: Future>(mut f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
}

#[cfg(test)]
mod tests {
    use super::super::keyed::KeyedMutex;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticketlock_hands_off_every_round() {
        let store = ticketlock::LockStore::in_memory();
        let side = run(&store, 200, 3, "h", &Progress::hidden()).await.unwrap();
        assert_eq!(side.cycles, 400);
        let h = side.handoff.unwrap();
        assert!(h.p50 > 0.0 && h.p50 <= h.p99 && h.p99 <= h.max);
        assert!(store.as_in_memory().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_mutex_hands_off_every_round() {
        let keyed = KeyedMutex::default();
        let side = run(&keyed, 200, 3, "h", &Progress::hidden()).await.unwrap();
        assert_eq!(side.cycles, 400);
        assert!(side.handoff.is_some());
        assert_eq!(keyed.len(), 0);
    }

    /// A lock that lets everyone in: the waiter must be caught entering
    /// while the holder holds.
    #[derive(Clone)]
    struct Leaky;

    impl super::super::locker::Locker for Leaky {
        type Guard = ();
        async fn lock(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        async fn release(&self, _: &str, _: ()) -> anyhow::Result<()> {
            Ok(())
        }
    }

    impl Enqueue for Leaky {
        type Queued = ();
        async fn enqueue(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        async fn acquired(&self, _: ()) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_waiter_that_enters_early_fails_the_bench() {
        let err = run(&Leaky, 5, 3, "h", &Progress::hidden())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("entered while the holder held"),
            "{err}"
        );
    }
}
