//! The `memory` workload: bytes per conversation holding one ticket.
//!
//! `n` conversations each get one ticket, one after another in one task;
//! the bytes are the growth of what a meter reads, divided by `n`: the
//! process's resident set (`VmRSS`) for the in-memory store and its
//! baseline, the server's `used_memory` for Redis. The RSS counts what the
//! allocator really takes (headers, rounding, hash-table slack), which is
//! what a user pays; `unsafe` is forbidden here, so a counting global
//! allocator is not an option, and RSS needs no instrumentation that would
//! slow the other workloads. Then all are released, and the meter is read
//! again: the growth that remains is reported as `bytes_after_release`
//! (memory the allocator or server kept, not entries: the stores are checked
//! to be empty).
//!
//! The allocator keeps what a side freed and hands it to the next side,
//! whose RSS would then hardly grow; so in a real bench each in-memory side
//! runs in a fresh process ([`in_child`]): this program again, with the
//! same arguments and [`CHILD_ENV`] naming the side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use ticketlock::LockStore;
use tokio::time::Instant;

use super::cycles::write_id;
use super::keyed::KeyedMutex;
use super::locker::Locker;
use super::progress::Progress;
use super::report::Side;
use super::wire::Wire;

/// Set in a child process that measures one side of the in-memory
/// `memory` workload: `ticketlock` or `baseline`.
pub(crate) const CHILD_ENV: &str = "TICKETLOCK_BENCH_MEMORY_SIDE";

/// What a child process reports, as one JSON line on its stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChildSide {
    cycles: u64,
    elapsed_ns: u64,
    bytes_per_conversation: Option<f64>,
    bytes_after_release: Option<f64>,
}

impl From<&Side> for ChildSide {
    fn from(s: &Side) -> Self {
        ChildSide {
            cycles: s.cycles,
            elapsed_ns: s.elapsed.as_nanos() as u64,
            bytes_per_conversation: s.bytes_per_conversation,
            bytes_after_release: s.bytes_after_release,
        }
    }
}

impl From<ChildSide> for Side {
    fn from(c: ChildSide) -> Self {
        Side {
            cycles: c.cycles,
            elapsed: std::time::Duration::from_nanos(c.elapsed_ns),
            bytes_per_conversation: c.bytes_per_conversation,
            bytes_after_release: c.bytes_after_release,
            ..Side::default()
        }
    }
}

/// Measures side `which` of the in-memory `memory` workload in a fresh
/// process (see the module docs).
pub(crate) async fn in_child(which: &str, n: u64, progress: &Progress) -> anyhow::Result<Side> {
    let done = Arc::new(AtomicU64::new(0));
    let _phase = progress.phase(which, done.clone(), n);
    let exe = std::env::current_exe()
        .context("bench: finding this program to run the memory side in a fresh process")?;
    let out = tokio::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, which)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("bench: running {} for the memory side", exe.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "bench: the process measuring the {which} side failed ({}); its errors are above",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let child: ChildSide = serde_json::from_str(text.trim())
        .with_context(|| format!("bench: the {which} side's process printed {text:?}"))?;
    done.store(n, Ordering::Relaxed);
    Ok(child.into())
}

/// Where memory is read.
pub(crate) enum Meter<'a> {
    /// This process's resident set.
    Rss,
    /// The Redis server's `used_memory`.
    Redis(&'a Wire),
}

impl Meter<'_> {
    async fn read(&self) -> anyhow::Result<i64> {
        match self {
            Meter::Rss => rss_bytes(),
            Meter::Redis(w) => w.used_memory().await,
        }
    }
}

/// This process's resident set size, in bytes.
pub(crate) fn rss_bytes() -> anyhow::Result<i64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("the memory workload reads the resident set from /proc/self/status (Linux)")?;
    parse_vm_rss(&status).context("no VmRSS line in /proc/self/status")
}

fn parse_vm_rss(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line["VmRSS:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The memory measured by `meter` while `fill` holds `n` conversations and
/// after `drain` released them.
async fn measure<Fill, Drain>(
    meter: &Meter<'_>,
    n: u64,
    label: &str,
    progress: &Progress,
    fill: Fill,
    drain: Drain,
) -> anyhow::Result<Side>
where
    Fill: AsyncFnOnce(&AtomicU64) -> anyhow::Result<()>,
    Drain: AsyncFnOnce() -> anyhow::Result<()>,
{
    let done = Arc::new(AtomicU64::new(0));
    let phase = progress.phase(label, done.clone(), n);
    let before = meter.read().await?;
    let started = Instant::now();
    fill(&done).await?;
    let elapsed = started.elapsed();
    let held = meter.read().await?;
    drop(phase);
    drain().await?;
    let after = meter.read().await?;
    Ok(Side {
        cycles: n,
        elapsed,
        bytes_per_conversation: Some((held - before) as f64 / n as f64),
        bytes_after_release: Some((after - before) as f64 / n as f64),
        ..Side::default()
    })
}

/// Holds `n` conversations with one ticket each in `store`.
pub(crate) async fn store(
    store: &LockStore,
    meter: &Meter<'_>,
    n: u64,
    tag: u32,
    progress: &Progress,
) -> anyhow::Result<Side> {
    let mut buf = String::with_capacity(40);
    // Only the in-memory store can count its conversations cheaply.
    let count = || store.as_in_memory().map(|m| m.len() as u64);
    let side = measure(
        meter,
        n,
        "ticketlock",
        progress,
        async |done: &AtomicU64| {
            for i in 0..n {
                write_id(&mut buf, tag, i);
                let number = store.issue_ticket(&buf, None).await?;
                anyhow::ensure!(number == 0, "ticketlock: {buf} was not a new conversation");
                done.store(i + 1, Ordering::Relaxed);
            }
            if let Some(held) = count() {
                anyhow::ensure!(held == n, "ticketlock holds {held} of {n} conversations");
            }
            Ok(())
        },
        async || {
            let mut buf = String::with_capacity(40);
            for i in 0..n {
                write_id(&mut buf, tag, i);
                store.finish_serving(&buf, 0).await?;
            }
            if let Some(held) = count() {
                anyhow::ensure!(
                    held == 0,
                    "ticketlock still holds {held} conversations after release"
                );
            }
            Ok(())
        },
    )
    .await?;
    Ok(side)
}

/// Holds `n` keys locked in the keyed-mutex map.
pub(crate) async fn keyed(
    keyed: &KeyedMutex,
    n: u64,
    tag: u32,
    progress: &Progress,
) -> anyhow::Result<Side> {
    // The guards' slots are written before the first reading, so that only
    // the map's memory is measured (a guard is one pointer, in the slot).
    let mut guards: Vec<Option<<KeyedMutex as Locker>::Guard>> = Vec::new();
    guards.resize_with(n as usize, || None);
    let guards = std::cell::RefCell::new(guards);
    measure(
        &Meter::Rss,
        n,
        "baseline",
        progress,
        async |done: &AtomicU64| {
            let mut buf = String::with_capacity(40);
            for i in 0..n {
                write_id(&mut buf, tag, i);
                let g = keyed.lock(&buf).await?;
                guards.borrow_mut()[i as usize] = Some(g);
                done.store(i + 1, Ordering::Relaxed);
            }
            anyhow::ensure!(
                keyed.len() as u64 == n,
                "keyed map holds {} of {n} keys",
                keyed.len()
            );
            Ok(())
        },
        async || {
            let mut buf = String::with_capacity(40);
            let taken: Vec<_> = guards.borrow_mut().iter_mut().map(Option::take).collect();
            for (i, g) in taken.into_iter().enumerate() {
                write_id(&mut buf, tag, i as u64);
                let g = g.context("a keyed-mutex guard went missing")?;
                keyed.release(&buf, g).await?;
            }
            anyhow::ensure!(
                keyed.len() == 0,
                "keyed map keeps {} keys after release",
                keyed.len()
            );
            Ok(())
        },
    )
    .await
}

/// Writes `n` Rasa records of one ticket each with plain `SET`s: what the
/// same data costs in Redis without ticketlock.
pub(crate) async fn records(
    wire: &Wire,
    n: u64,
    tag: u32,
    progress: &Progress,
) -> anyhow::Result<Side> {
    measure(
        &Meter::Redis(wire),
        n,
        "baseline",
        progress,
        async |done: &AtomicU64| {
            let mut buf = String::with_capacity(40);
            for i in 0..n {
                write_id(&mut buf, tag, i);
                wire.set_record(&buf).await?;
                done.store(i + 1, Ordering::Relaxed);
            }
            Ok(())
        },
        async || {
            let mut buf = String::with_capacity(40);
            for i in 0..n {
                write_id(&mut buf, tag, i);
                wire.del(&buf).await?;
            }
            Ok(())
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_side_survives_its_json_line() {
        let side = Side {
            cycles: 7,
            elapsed: std::time::Duration::from_nanos(1_234_567),
            bytes_per_conversation: Some(180.5),
            bytes_after_release: Some(-3.25),
            ..Side::default()
        };
        let line = serde_json::to_string(&ChildSide::from(&side)).unwrap();
        assert!(!line.contains('\n'));
        let back: ChildSide = serde_json::from_str(&line).unwrap();
        assert_eq!(Side::from(back), side);
    }

    #[test]
    fn reads_vm_rss_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nVmData:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(rss_bytes().unwrap() > 0);
    }

    #[tokio::test]
    async fn store_memory_counts_and_empties() {
        let s = LockStore::in_memory();
        let side = store(&s, &Meter::Rss, 20_000, 5, &Progress::hidden())
            .await
            .unwrap();
        assert_eq!(side.cycles, 20_000);
        assert!(side.bytes_per_conversation.is_some());
        assert!(s.as_in_memory().unwrap().is_empty());
    }

    #[tokio::test]
    async fn keyed_memory_counts_and_empties() {
        let k = KeyedMutex::default();
        let side = keyed(&k, 20_000, 5, &Progress::hidden()).await.unwrap();
        assert_eq!(side.cycles, 20_000);
        assert!(side.bytes_after_release.is_some());
        assert_eq!(k.len(), 0);
    }

    #[tokio::test]
    async fn a_conversation_already_held_is_refused() {
        let s = LockStore::in_memory();
        let mut id = String::new();
        write_id(&mut id, 5, 3);
        s.issue_ticket(&id, None).await.unwrap();
        let err = store(&s, &Meter::Rss, 10, 5, &Progress::hidden())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("was not a new conversation"),
            "{err}"
        );
    }
}
