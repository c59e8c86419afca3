//! `ticketlock bench`: whole workloads against a store, each run paired with
//! its baseline measured in the same process, so that the ratio survives a
//! noisy machine.
//!
//! - `throughput`: each message its own conversation; cycles per second.
//! - `contended`: messages on a few conversations; cycles per second and the
//!   wait for the lock.
//! - `handoff`: one holder, one queued waiter; time from the release call to
//!   the waiter's entry.
//! - `memory`: bytes per conversation holding one ticket.
//! - `depth`: hand-offs on one conversation with 1 to 1,000 waiters held
//!   queued; the server's CPU per hand-off, and what the waiters alone cost
//!   it.
//!
//! Baselines: for `memory` stores, the same workload on a map of
//! `tokio::sync::Mutex`es; for `redis`, the same number of round trips of a
//! trivial script at the same concurrency (the wire limit) and, for
//! `throughput`, `contended` and `depth`, the `SET NX PX` spin lock most
//! people write; for `contended` on one server, also the FIFO floor
//! (`floor.rs`: the fewest commands a pushed FIFO hand-off needs, not a
//! usable lock). Runs alternate which side goes first, and the summary is
//! the median of `--repeat` runs. `--layout both` measures each Redis
//! layout in every run, against the same baselines.

use std::hash::BuildHasher as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;
use ticketlock::LockStore;

mod cycles;
mod depth;
mod depth_report;
mod floor;
mod handoff;
mod keyed;
mod layout;
mod locker;
mod memory;
mod plan;
mod plot;
mod postgres;
mod progress;
mod report;
mod setnx;
mod target;
mod wire;

use cycles::Cycles;
use depth_report::DepthReport;
use keyed::KeyedMutex;
pub use layout::LayoutChoice;
use memory::Meter;
use plan::Plan;
use progress::Progress;
use report::{Report, Side};
use target::Target;

/// Runs per command unless `--repeat` says otherwise (1 for `depth`).
pub(crate) const DEFAULT_REPEAT: u64 = 5;

/// Waiter counts of `--workload depth` unless `--depths` says otherwise.
pub const DEFAULT_DEPTHS: [usize; 5] = [1, 10, 100, 500, 1000];

/// Contenders on the one key of the `SET NX` baseline of `depth`.
const BASELINE_CONTENDERS: usize = 16;

/// Options of `ticketlock bench`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Workload::Throughput)]
    pub workload: Workload,
    /// Which store to measure.
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,
    /// The Redis server, for `--store redis`: redis://[user:password@]host:port/db.
    #[arg(long, value_name = "URL", conflicts_with = "endpoints")]
    pub redis: Option<String>,
    /// A PostgreSQL server: runs the PostgreSQL bench (throughput against
    /// bare transactions, hand-off, queue depth) instead of the workloads.
    #[arg(long, value_name = "URL", conflicts_with_all = ["redis", "endpoints"])]
    pub postgres: Option<String>,
    /// Rasa's endpoints.yml whose `lock_store:` names the Redis server, for
    /// `--store redis`.
    #[arg(long, value_name = "FILE")]
    pub endpoints: Option<PathBuf>,
    /// Lock-then-release cycles per run (for `memory`: conversations held).
    /// Default: 1,000,000 (500,000 contended) in memory; 20,000 (10,000
    /// contended and memory) on Redis.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Tasks running cycles at a time (`throughput`, `contended`). Default
    /// 32; for the in-memory `throughput`, runs with 1, 32 and 64 tasks.
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: Option<u64>,
    /// Conversations the messages are spread over (`contended`). Default 4.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub conversations: Option<u64>,
    /// Hand-offs per run (`handoff`), or per depth (`depth`). Default
    /// 20,000 in memory, 2,000 on Redis (`depth`: 10,000 and 1,000).
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: Option<u64>,
    /// Waiters held queued behind the holder, one measure each (`depth`).
    #[arg(long, value_name = "W,..", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub depths: Option<Vec<u64>>,
    /// The longest timed phase of one depth, in seconds: it stops at the
    /// first hand-off after this long even if fewer than R were made
    /// (`depth`). Default 2.
    #[arg(long, value_name = "S", value_parser = crate::cli::positive_seconds)]
    pub depth_seconds: Option<std::time::Duration>,
    /// Seconds the deepest queue sits behind a holder doing nothing before
    /// its hand-offs, to measure what waiting alone costs the server; 0 for
    /// none (`depth`). Default 2.
    #[arg(long, value_name = "S", value_parser = crate::cli::seconds)]
    pub idle_seconds: Option<std::time::Duration>,
    /// CPU work each task does after each release before it takes its
    /// next message, in µs (a handler's work between two sections), on
    /// every side alike: a loop that yields to the runtime until the time
    /// is up (`throughput`, `contended`). Default 0: the next lock at once.
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub work_us: Option<u64>,
    /// The Redis record layout to measure, set in the URL's query
    /// (`layout=`); `both` measures each in every run. Default: rasa.
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub layout: Option<LayoutChoice>,
    /// Draw hand-offs per second against depth (each layout, and the
    /// baseline) into this SVG file (`depth`).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Untimed cycles (rounds for `handoff`) before the first run, on both
    /// sides. Default: a tenth of a run, at most 10,000 (1,000 rounds).
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// Runs; the summary is the median of each measure (and of the runs'
    /// ratios). Default 5 (1 for `depth`).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub repeat: Option<u64>,
    /// Keys unrelated to any conversation to write first, and delete after
    /// (`--store redis`: the cost of a big keyspace).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub unrelated_keys: u64,
    /// One JSON object per line on stdout (each run, then the median), and
    /// no progress bar.
    #[arg(long)]
    pub json: bool,
}

/// A bench workload.
#[derive(clap::ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Each message its own conversation: cycles per second.
    Throughput,
    /// Messages on a few conversations: cycles per second and waits.
    Contended,
    /// One holder, one queued waiter: release-to-entry latency.
    Handoff,
    /// Bytes per conversation holding one ticket.
    Memory,
    /// Hand-offs with W waiters queued on one conversation.
    Depth,
}

/// A store to bench.
#[derive(clap::ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The in-memory store.
    Memory,
    /// The Redis store.
    Redis,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Throughput => "throughput",
            Workload::Contended => "contended",
            Workload::Handoff => "handoff",
            Workload::Memory => "memory",
            Workload::Depth => "depth",
        }
    }
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

/// Runs the bench that `args` describe and prints its report on stdout.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.postgres {
        return postgres::run(&args, url).await;
    }
    // A plan that cannot be made is a bad combination of flags: usage, as
    // for clap's own errors (and `torture`'s).
    let plans = Plan::sweep(&args)
        .map_err(|e| crate::exit::coded(crate::exit::USAGE, format!("bench: {e}")))?;
    if let Ok(which) = std::env::var(memory::CHILD_ENV) {
        return memory_child(&plans[0], &which).await;
    }
    let target = Target::open(&args).await?;
    if plans[0].workload == Workload::Depth {
        return depth_command(&args, &plans[0], &target).await;
    }
    let unrelated = match &target {
        Target::Redis(r) if plans[0].unrelated_keys > 0 => {
            let tag = fresh_tag();
            r.wire.fill_unrelated(plans[0].unrelated_keys, tag).await?;
            Some((&r.wire, tag))
        }
        _ => None,
    };
    // Every plan's runs, stopping at the first failure (the unrelated keys
    // are cleared all the same).
    let mut medians = Vec::new();
    let mut result = Ok(());
    for plan in &plans {
        match runs(&args, plan, &target).await {
            Ok(per_store) => medians.extend(per_store.iter().map(|r| Report::median(r))),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if let Some((wire, tag)) = unrelated {
        wire.clear_unrelated(plans[0].unrelated_keys, tag).await?;
    }
    result?;
    let mut out = std::io::stdout().lock();
    for (i, median) in medians.iter().enumerate() {
        if args.json {
            writeln!(out, "{}", median.json_line())?;
        } else {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", median.table())?;
        }
    }
    Ok(())
}

/// Measures one side of the in-memory `memory` workload, in the fresh
/// process that [`memory::in_child`] started, and prints it as JSON.
async fn memory_child(plan: &Plan, which: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.workload == Workload::Memory && plan.store == StoreKind::Memory,
        "{} is set but this is not an in-memory memory bench",
        memory::CHILD_ENV
    );
    let (n, tag, quiet) = (plan.messages, fresh_tag(), Progress::hidden());
    let side = match which {
        "ticketlock" => memory::store(&LockStore::in_memory(), &Meter::Rss, n, tag, &quiet).await?,
        "baseline" => memory::keyed(&KeyedMutex::default(), n, tag, &quiet).await?,
        other => anyhow::bail!(
            "{}={other:?}: expected ticketlock or baseline",
            memory::CHILD_ENV
        ),
    };
    let line = serde_json::to_string(&memory::ChildSide::from(&side))?;
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// The warm-up and the timed runs; each run's lines are printed as it
/// ends. The reports of each store under test (one per layout), in order.
async fn runs(args: &BenchArgs, plan: &Plan, target: &Target) -> anyhow::Result<Vec<Vec<Report>>> {
    let visible = !args.json && std::io::stderr().is_terminal();
    if plan.warmup > 0 {
        let warm = Plan {
            messages: plan.warmup,
            rounds: plan.rounds.map(|_| plan.warmup),
            ..plan.clone()
        };
        measure(&warm, target, 1, &Progress::hidden()).await?;
    }
    let stores = target.stores();
    let sides = (stores.len()
        + 1
        + usize::from(target.setnx(plan).is_some())
        + usize::from(target.floor().is_some())) as u64;
    let progress = Progress::new(visible, plan.repeat * sides * plan.work_per_side());
    let mut reports = vec![Vec::new(); stores.len()];
    for run in 1..=plan.repeat as usize {
        let m = measure(plan, target, run, &progress).await?;
        for (i, ((layout, _), ours)) in stores.iter().zip(&m.ours).enumerate() {
            let report = Report::run(plan.params(*layout), run, ours, &m.base, m.setnx.as_ref())
                .with_floor(m.floor.as_ref())
                .with_ping(m.ping_p50_us);
            let mut out = std::io::stdout().lock();
            if args.json {
                writeln!(out, "{}", report.json_line())?;
            } else if plan.repeat > 1 {
                let layout = layout.map_or(String::new(), |l| format!(" ({} layout)", l.name()));
                progress.suspend(|| {
                    writeln!(
                        out,
                        "run {run}{layout}: {:.0} cycles/s, baseline {:.0} cycles/s, ratio {:.3}",
                        report.cycles_per_s, report.baseline_cycles_per_s, report.ratio
                    )
                })?;
            }
            reports[i].push(report);
        }
    }
    Ok(reports)
}

/// `--workload depth`: every run measures each layout at each depth and
/// the baseline; then the medians, and the plot.
async fn depth_command(args: &BenchArgs, plan: &Plan, target: &Target) -> anyhow::Result<()> {
    let visible = !args.json && std::io::stderr().is_terminal();
    let stores = target.stores();
    let rounds = plan.rounds.unwrap_or(1);
    let progress = Progress::new(
        visible,
        plan.repeat * (stores.len() * plan.depths.len() + 1) as u64 * rounds,
    );
    let mut all = DepthReport::default();
    for run in 1..=plan.repeat as usize {
        // The baseline first in even runs, last in odd ones.
        let mut base = None;
        if run.is_multiple_of(2) {
            base = Some(depth_baseline(plan, target, &progress).await?);
        }
        let mut measured = Vec::new();
        for (layout, store) in &stores {
            let mut depths = Vec::new();
            for (i, &waiters) in plan.depths.iter().enumerate() {
                let deepest = i + 1 == plan.depths.len();
                let d = depth::Depth {
                    waiters,
                    rounds,
                    max_time: plan.depth_time,
                    idle: plan.idle.filter(|t| deepest && !t.is_zero()),
                };
                let label = match layout {
                    Some(l) => format!("{} layout, {waiters} waiters", l.name()),
                    None => format!("{waiters} waiters"),
                };
                // A depth the server cannot sustain (calls time out) is
                // reported as failed; the deeper ones are not tried.
                match depth::run(store, target.wire(), d, fresh_tag(), &label, &progress).await {
                    Ok(side) => depths.push((waiters, Ok(side))),
                    Err(e) => {
                        let e = format!("{e:#}");
                        progress.suspend(|| {
                            eprintln!("ticketlock: bench: {label}: {e}; deeper queues skipped")
                        });
                        depths.push((waiters, Err(e)));
                        break;
                    }
                }
            }
            measured.push((*layout, depths));
        }
        let base = match base {
            Some(b) => b,
            None => depth_baseline(plan, target, &progress).await?,
        };
        let mut this_run = DepthReport::default();
        for (layout, depths) in &measured {
            this_run.extend(DepthReport::run(
                plan.store, *layout, run, rounds, depths, base,
            ));
        }
        if args.json {
            let mut out = std::io::stdout().lock();
            for line in this_run.json_lines() {
                writeln!(out, "{line}")?;
            }
        }
        all.extend(this_run);
    }
    let medians = all.median();
    let mut out = std::io::stdout().lock();
    if args.json {
        for line in medians.json_lines() {
            writeln!(out, "{line}")?;
        }
    } else {
        write!(out, "{}", medians.table())?;
    }
    if let Some(file) = &args.plot {
        let (lines, baseline) = plot::series(&medians);
        let title = format!(
            "ticketlock on {}: hand-offs/s against queue depth (median of {} runs)",
            plan.store.name(),
            plan.repeat
        );
        plot::draw(file, &title, &lines, baseline.as_ref())?;
    }
    Ok(())
}

/// The baseline of a depth run: a plain lock's hand-off rate with
/// [`BASELINE_CONTENDERS`] contenders on one key, and one round trip.
async fn depth_baseline(
    plan: &Plan,
    target: &Target,
    progress: &Progress,
) -> anyhow::Result<depth_report::Baseline> {
    let cycles = Cycles {
        messages: plan.rounds.unwrap_or(1),
        concurrency: BASELINE_CONTENDERS,
        conversations: Some(1),
        record_waits: false,
        record_handoffs: false,
        work: std::time::Duration::ZERO,
    };
    let (name, side, ping) = match target {
        Target::Memory => {
            let side = cycles::run(
                &KeyedMutex::default(),
                cycles,
                fresh_tag(),
                "baseline",
                progress,
            )
            .await?;
            ("keyed tokio::sync::Mutex map", side, None)
        }
        Target::Redis(r) => {
            let side = cycles::run(&r.setnx, cycles, fresh_tag(), "SET NX", progress).await?;
            (setnx::NAME, side, Some(r.wire.ping_p50(PINGS).await?))
        }
    };
    Ok(depth_report::Baseline {
        name,
        handoffs_per_s: side.cycles_per_s(),
        ping_p50_us: ping,
    })
}

/// Sequential `PING`s per run for the one-round-trip figure.
const PINGS: usize = 200;

/// Which side of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Ours,
    Baseline,
    SetNx,
    Floor,
}

/// What one run measured: each store under test, the baseline, and the
/// `SET NX` lock where it applies.
struct Measured {
    ours: Vec<Side>,
    base: Side,
    setnx: Option<Side>,
    /// The FIFO floor, where it applies.
    floor: Option<Side>,
    /// One round trip (`PING`), p50 in microseconds (Redis `contended`
    /// and `handoff`).
    ping_p50_us: Option<f64>,
}

/// One run: every side, ticketlock first in odd runs and the baselines
/// first in even ones, so that a drift of the machine does not favour
/// either.
async fn measure(
    plan: &Plan,
    target: &Target,
    run: usize,
    progress: &Progress,
) -> anyhow::Result<Measured> {
    let stores = target.stores();
    let with_setnx = target.setnx(plan).is_some();
    let mut order: Vec<(Which, Option<&LockStore>)> =
        stores.iter().map(|(_, s)| (Which::Ours, Some(s))).collect();
    order.push((Which::Baseline, None));
    if with_setnx {
        order.push((Which::SetNx, None));
    }
    if target.floor().is_some() {
        order.push((Which::Floor, None));
    }
    if run.is_multiple_of(2) {
        order.rotate_left(stores.len());
    }
    let mut ours = vec![None; stores.len()];
    let (mut base, mut setnx, mut floor) = (None, None, None);
    for (which, store) in order {
        let measured = metered(target, side(plan, target, which, store, progress)).await?;
        match which {
            Which::Ours => {
                let i = stores
                    .iter()
                    .position(|(_, s)| store.is_some_and(|t| std::ptr::eq(s, t)))
                    .context("bench: a side of no store")?;
                ours[i] = Some(measured);
            }
            Which::Baseline => base = Some(measured),
            Which::SetNx => setnx = Some(measured),
            Which::Floor => floor = Some(measured),
        }
    }
    let ping_p50_us = match target.wire() {
        Some(w) if matches!(plan.workload, Workload::Contended | Workload::Handoff) => {
            Some(w.ping_p50(PINGS).await?)
        }
        _ => None,
    };
    Ok(Measured {
        ours: ours.into_iter().map(Option::unwrap_or_default).collect(),
        base: base.unwrap_or_default(),
        setnx,
        floor,
        ping_p50_us,
    })
}

/// `side` with the server's CPU time over it, on a standalone Redis.
async fn metered(
    target: &Target,
    side: impl std::future::Future<Output = anyhow::Result<Side>>,
) -> anyhow::Result<Side> {
    let wire = target.wire().filter(|w| w.is_standalone());
    let before = match wire {
        Some(w) => Some(w.cpu().await?),
        None => None,
    };
    let mut measured = side.await?;
    if let (Some(w), Some(before)) = (wire, before) {
        measured.server_cpu = Some(w.cpu().await?.saturating_sub(before));
    }
    Ok(measured)
}

async fn side(
    plan: &Plan,
    target: &Target,
    which: Which,
    store: Option<&LockStore>,
    progress: &Progress,
) -> anyhow::Result<Side> {
    use Which::{Baseline, Ours};
    use Workload as W;
    // Every side of every run works on conversations of its own.
    let tag = fresh_tag();
    let label = match which {
        Ours => "ticketlock",
        Baseline => "baseline",
        Which::SetNx => "SET NX",
        Which::Floor => "FIFO floor",
    };
    let rounds = plan.rounds.unwrap_or(0);
    let n = plan.messages;
    let ours = || store.context("bench: ticketlock's side needs a store");
    match (plan.workload, which, target) {
        (W::Depth, _, _) => anyhow::bail!("bench: the depth workload has sides of its own"),
        (_, Which::SetNx, _) => {
            let lock = target
                .setnx(plan)
                .context("bench: no SET NX lock for this workload")?;
            cycles::run(lock, plan.cycles(true), tag, label, progress).await
        }
        (_, Which::Floor, _) => {
            let lock = target
                .floor()
                .context("bench: no FIFO floor for this workload")?;
            cycles::run(lock, plan.cycles(true), tag, label, progress).await
        }
        (W::Throughput | W::Contended, Ours, _) => {
            cycles::run(ours()?, plan.cycles(true), tag, label, progress).await
        }
        (W::Throughput | W::Contended, Baseline, Target::Memory) => {
            cycles::run(
                &KeyedMutex::default(),
                plan.cycles(true),
                tag,
                label,
                progress,
            )
            .await
        }
        (W::Throughput | W::Contended, Baseline, Target::Redis(r)) => {
            cycles::run(&r.wire, plan.cycles(false), tag, label, progress).await
        }
        (W::Handoff, Ours, _) => handoff::run(ours()?, rounds, tag, label, progress).await,
        (W::Handoff, Baseline, Target::Memory) => {
            handoff::run(&KeyedMutex::default(), rounds, tag, label, progress).await
        }
        (W::Handoff, Baseline, Target::Redis(r)) => r.wire.handoff(rounds, label, progress).await,
        (W::Memory, _, Target::Memory) if plan.isolate_memory => {
            memory::in_child(label, n, progress).await
        }
        (W::Memory, Ours, Target::Memory) => {
            memory::store(ours()?, &Meter::Rss, n, tag, progress).await
        }
        (W::Memory, Ours, Target::Redis(r)) => {
            memory::store(ours()?, &Meter::Redis(&r.wire), n, tag, progress).await
        }
        (W::Memory, Baseline, Target::Memory) => {
            memory::keyed(&KeyedMutex::default(), n, tag, progress).await
        }
        (W::Memory, Baseline, Target::Redis(r)) => memory::records(&r.wire, n, tag, progress).await,
    }
}

/// A tag for conversation ids no other run (or process) uses.
fn fresh_tag() -> u32 {
    // Each `RandomState` is seeded afresh.
    std::hash::RandomState::new().hash_one(0u8) as u32
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::layout::Layout;
    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(line: &[&str]) -> Result<BenchArgs, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(line.iter().copied()))
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    fn plan(line: &[&str]) -> anyhow::Result<Plan> {
        Plan::new(&parse(line).map_err(anyhow::Error::msg)?)
    }

    #[test]
    fn defaults_per_workload_and_store() {
        let p = plan(&[]).unwrap();
        assert_eq!(
            (
                p.workload,
                p.store,
                p.messages,
                p.concurrency,
                p.warmup,
                p.repeat
            ),
            (
                Workload::Throughput,
                StoreKind::Memory,
                1_000_000,
                32,
                10_000,
                5
            )
        );
        let p = plan(&["--workload", "contended"]).unwrap();
        assert_eq!((p.messages, p.conversations), (500_000, Some(4)));
        assert!(p.cycles(true).record_waits && p.cycles(true).record_handoffs);
        assert!(!p.cycles(false).record_handoffs);
        assert!(p.cycles(true).work.is_zero());
        let p = plan(&["--workload", "contended", "--work-us", "150"]).unwrap();
        assert_eq!(p.cycles(true).work, std::time::Duration::from_micros(150));
        assert_eq!(p.params(None).work_us, 150);
        for w in ["handoff", "memory", "depth"] {
            let e = plan(&["--workload", w, "--work-us", "1"]).unwrap_err();
            assert!(e.to_string().contains("--work-us"), "{w}: {e}");
        }
        let p = plan(&["--workload", "handoff"]).unwrap();
        assert_eq!(
            (p.rounds, p.messages, p.concurrency, p.warmup),
            (Some(20_000), 40_000, 2, 1_000)
        );
        let p = plan(&["--workload", "memory"]).unwrap();
        assert_eq!((p.messages, p.concurrency, p.warmup), (1_000_000, 1, 0));
        let p = plan(&["--store", "redis", "--redis", "redis://127.0.0.1:1/0"]).unwrap();
        assert_eq!((p.messages, p.warmup), (20_000, 2_000));
        let p = plan(&[
            "--store",
            "redis",
            "--redis",
            "redis://h/0",
            "--workload",
            "handoff",
        ])
        .unwrap();
        assert_eq!(p.rounds, Some(2_000));
    }

    #[test]
    fn in_memory_throughput_runs_1_32_and_64_tasks_unless_told() {
        let tasks = |line: &[&str]| -> Vec<u64> {
            let plans = Plan::sweep(&parse(line).unwrap()).unwrap();
            plans.iter().map(|p| p.concurrency).collect()
        };
        assert_eq!(tasks(&[]), [1, 32, 64]);
        assert_eq!(tasks(&["--workload", "throughput"]), [1, 32, 64]);
        assert_eq!(tasks(&["--concurrency", "8"]), [8]);
        assert_eq!(tasks(&["--workload", "contended"]), [32]);
        assert_eq!(tasks(&["--workload", "handoff"]), [2]);
        assert_eq!(tasks(&["--store", "redis", "--redis", "redis://h/0"]), [32]);
        // Only the concurrency differs between the plans.
        let plans = Plan::sweep(&parse(&["--messages", "7"]).unwrap()).unwrap();
        assert!(plans.iter().all(|p| Plan {
            concurrency: 1,
            ..p.clone()
        } == plans[0]));
    }

    #[test]
    fn options_that_do_not_apply_are_refused_with_the_reason() {
        let err = |line: &[&str]| plan(line).unwrap_err().to_string();
        assert_eq!(
            err(&["--store", "redis"]),
            "--store redis needs the server: --redis redis://host:port/db or --endpoints endpoints.yml"
        );
        assert_eq!(
            err(&["--redis", "redis://h"]),
            "--redis is only for --store redis"
        );
        assert_eq!(
            err(&["--unrelated-keys", "5"]),
            "--unrelated-keys is only for --store redis"
        );
        assert_eq!(
            err(&["--conversations", "3"]),
            "--conversations is only for --workload contended"
        );
        assert_eq!(
            err(&["--workload", "contended", "--rounds", "3"]),
            "--rounds is only for --workload handoff or depth"
        );
        assert_eq!(
            err(&["--workload", "handoff", "--messages", "3"]),
            "--messages does not apply to --workload handoff or depth: use --rounds"
        );
        assert!(
            err(&["--workload", "memory", "--concurrency", "3"])
                .starts_with("--concurrency does not apply")
        );
        assert_eq!(
            err(&["--workload", "memory", "--warmup", "3"]),
            "--warmup does not apply to --workload memory or depth"
        );
        assert_eq!(
            err(&["--depths", "1,2"]),
            "--depths is only for --workload depth"
        );
        assert_eq!(
            err(&["--plot", "p.svg"]),
            "--plot is only for --workload depth"
        );
        assert_eq!(
            err(&["--layout", "native"]),
            "--layout is only for --store redis"
        );
        assert_eq!(
            err(&[
                "--store",
                "redis",
                "--endpoints",
                "e.yml",
                "--layout",
                "rasa"
            ]),
            "--layout needs --redis URL (with --endpoints, set `layout:` in the file)"
        );
        // clap's own checks name the option and the bad value.
        let e = parse(&["--messages", "0"]).unwrap_err();
        assert!(e.contains("--messages") && e.contains("0"), "{e}");
        let e = parse(&["--workload", "fast"]).unwrap_err();
        assert!(
            e.contains("throughput, contended, handoff, memory, depth"),
            "{e}"
        );
        let e = parse(&["--layout", "sideways"]).unwrap_err();
        assert!(e.contains("rasa, native, both"), "{e}");
        let e = parse(&["--store", "redis", "--redis", "u", "--endpoints", "f"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[tokio::test]
    async fn an_endpoints_file_without_redis_is_refused() {
        let dir = std::env::temp_dir().join(format!("ticketlock-bench-{}", fresh_tag()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("endpoints.yml");
        std::fs::write(&file, "lock_store:\n  type: in_memory\n").unwrap();
        let args = parse(&["--store", "redis", "--endpoints", file.to_str().unwrap()]).unwrap();
        let err = run(args).await.unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.contains("does not configure a Redis lock store"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_redis_workload_runs_both_sides_and_leaves_the_server_clean() {
        let Some(server) = ticketlock_test_support::RedisServer::start() else {
            return;
        };
        let url = format!("{}/0", server.url().trim_end_matches('/'));
        for line in [
            &[
                "--workload",
                "throughput",
                "--messages",
                "200",
                "--concurrency",
                "8",
            ][..],
            &[
                "--workload",
                "contended",
                "--messages",
                "200",
                "--conversations",
                "2",
            ],
            &["--workload", "handoff", "--rounds", "20"],
            &["--workload", "memory", "--messages", "300"],
            &[
                "--workload",
                "throughput",
                "--messages",
                "50",
                "--unrelated-keys",
                "2500",
            ],
        ] {
            let mut args = parse(line).unwrap();
            args.store = StoreKind::Redis;
            args.redis = Some(url.clone());
            args.repeat = Some(2);
            let plan = Plan::new(&args).unwrap();
            let target = Target::open(&args).await.unwrap();
            let Target::Redis(r) = &target else {
                panic!("not a Redis target")
            };
            if plan.unrelated_keys > 0 {
                r.wire.fill_unrelated(plan.unrelated_keys, 1).await.unwrap();
                assert_eq!(not_request_entries(&server).len(), 2500);
                r.wire
                    .clear_unrelated(plan.unrelated_keys, 1)
                    .await
                    .unwrap();
            }
            let reports = runs(&args, &plan, &target).await.unwrap();
            // The default layout, one store under test.
            assert_eq!(reports.len(), 1, "{line:?}");
            assert_eq!(reports[0].len(), 2);
            let m = Report::median(&reports[0]);
            assert_eq!(m.params.layout, Some(Layout::Rasa));
            assert!(
                m.cycles_per_s > 0.0 && m.baseline_cycles_per_s > 0.0,
                "{line:?}"
            );
            let x = &m.extra;
            assert!(x.redis_cpu_per_cycle_us.is_some(), "{line:?}");
            let setnx = matches!(plan.workload, Workload::Throughput | Workload::Contended);
            assert_eq!(x.setnx_cycles_per_s.is_some(), setnx, "{line:?}");
            assert_eq!(x.setnx_ratio.is_some(), setnx, "{line:?}");
            let floor = plan.workload == Workload::Contended;
            assert_eq!(x.floor_cycles_per_s.is_some(), floor, "{line:?}");
            assert_eq!(x.floor_handoff_p50_us.is_some(), floor, "{line:?}");
            assert_eq!(x.floor_redis_cpu_per_cycle_us.is_some(), floor, "{line:?}");
            let ping = matches!(plan.workload, Workload::Contended | Workload::Handoff);
            assert_eq!(x.ping_p50_us.is_some(), ping, "{line:?}");
            match plan.workload {
                Workload::Contended => {
                    assert!(x.wait_p99_us.is_some() && x.baseline_wait_p99_us.is_some());
                    // Hand-offs for the locks, not for the wire baseline.
                    assert!(x.handoff_p50_us.is_some() && x.setnx_handoff_p99_us.is_some());
                    assert!(x.baseline_handoff_p50_us.is_none());
                }
                Workload::Handoff => {
                    assert!(x.handoff_p50_us.is_some() && x.baseline_handoff_p50_us.is_some())
                }
                Workload::Memory => {
                    assert!(x.bytes_per_conversation.unwrap() > 0.0);
                    assert!(x.baseline_bytes_per_conversation.unwrap() > 0.0);
                }
                Workload::Throughput => {
                    assert!(x.wait_p50_us.is_none() && x.setnx_wait_p50_us.is_none())
                }
                Workload::Depth => unreachable!("not in this list"),
            }
            // Every lock was released and every record deleted (request
            // entries, `{..}:..`, expire by themselves within seconds).
            let records = not_request_entries(&server);
            assert!(records.is_empty(), "{line:?}: {records:?}");
        }
    }

    /// The server's keys but the store's request entries (`{..}:..`), which
    /// expire by themselves a few seconds after their request.
    fn not_request_entries(server: &ticketlock_test_support::RedisServer) -> Vec<String> {
        server
            .cli(&["KEYS", "*"])
            .lines()
            .filter(|k| !k.is_empty() && !k.starts_with('{'))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_memory_workload_runs_both_sides_and_reports() {
        for line in [
            &[
                "--workload",
                "throughput",
                "--messages",
                "3000",
                "--concurrency",
                "4",
            ][..],
            &[
                "--workload",
                "contended",
                "--messages",
                "3000",
                "--conversations",
                "2",
            ],
            &["--workload", "handoff", "--rounds", "100"],
            &["--workload", "memory", "--messages", "5000"],
        ] {
            let mut args = parse(line).unwrap();
            args.repeat = Some(2);
            let mut plan = Plan::new(&args).unwrap();
            plan.isolate_memory = false;
            let mut per_store = runs(&args, &plan, &Target::Memory).await.unwrap();
            assert_eq!(per_store.len(), 1);
            let reports = per_store.remove(0);
            assert_eq!(reports.len(), 2);
            let m = Report::median(&reports);
            assert_eq!(m.params.layout, None);
            assert!(m.extra.setnx_cycles_per_s.is_none() && m.extra.ping_p50_us.is_none());
            assert!(
                m.cycles_per_s > 0.0 && m.baseline_cycles_per_s > 0.0,
                "{line:?}"
            );
            assert!((m.ratio - median_ratio(&reports)).abs() < 1e-9);
            let x = &m.extra;
            match plan.workload {
                Workload::Contended => {
                    assert!(x.wait_p99_us.is_some() && x.baseline_wait_p99_us.is_some())
                }
                Workload::Handoff => {
                    assert!(x.handoff_p50_us.is_some() && x.baseline_handoff_p99_us.is_some())
                }
                Workload::Memory => assert!(
                    x.bytes_per_conversation.is_some()
                        && x.baseline_bytes_per_conversation.is_some()
                ),
                Workload::Throughput => {
                    assert!(x.wait_p50_us.is_none() && x.handoff_p50_us.is_none())
                }
                Workload::Depth => unreachable!("not in this list"),
            }
        }
    }

    fn median_ratio(reports: &[Report]) -> f64 {
        report::median(reports.iter().map(|r| r.ratio).collect()).unwrap()
    }
}
