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
//!
//! Baselines: for `memory` stores, the same workload on a map of
//! `tokio::sync::Mutex`es; for `redis`, the same number of round trips of a
//! trivial script at the same concurrency (the wire limit). Runs alternate
//! which side goes first, and the summary is the median of `--repeat` runs.

use std::hash::BuildHasher as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use ticketlock::{LockStore, LockStoreConfig, RedisConfig};

mod cycles;
mod handoff;
mod keyed;
mod locker;
mod memory;
mod postgres;
mod progress;
mod report;
mod wire;

use cycles::Cycles;
use keyed::KeyedMutex;
use memory::Meter;
use progress::Progress;
use report::{Params, Report, Side};
use wire::Wire;

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
    /// Hand-offs per run (`handoff`). Default 20,000 in memory, 2,000 on
    /// Redis.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: Option<u64>,
    /// Untimed cycles (rounds for `handoff`) before the first run, on both
    /// sides. Default: a tenth of a run, at most 10,000 (1,000 rounds).
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// Runs; the summary is the median of each measure (and of the runs'
    /// ratios).
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub repeat: u64,
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
            Ok(reports) => medians.push(Report::median(&reports)),
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

/// The warm-up and the timed runs; each run's line is printed as it ends.
async fn runs(args: &BenchArgs, plan: &Plan, target: &Target) -> anyhow::Result<Vec<Report>> {
    let visible = !args.json && std::io::stderr().is_terminal();
    if plan.warmup > 0 {
        let warm = Plan {
            messages: plan.warmup,
            rounds: plan.rounds.map(|_| plan.warmup),
            ..plan.clone()
        };
        measure(&warm, target, 1, &Progress::hidden()).await?;
    }
    let progress = Progress::new(visible, plan.repeat * 2 * plan.work_per_side());
    let mut reports = Vec::new();
    for run in 1..=plan.repeat as usize {
        let (ours, base) = measure(plan, target, run, &progress).await?;
        let report = Report::run(plan.params(), run, &ours, &base);
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", report.json_line())?;
        } else if plan.repeat > 1 {
            progress.suspend(|| {
                writeln!(
                    out,
                    "run {run}: {:.0} cycles/s, baseline {:.0} cycles/s, ratio {:.3}",
                    report.cycles_per_s, report.baseline_cycles_per_s, report.ratio
                )
            })?;
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The tasks of the in-memory throughput runs when `--concurrency` is not
/// given.
const DEFAULT_MEMORY_CONCURRENCIES: [u64; 3] = [1, 32, 64];

/// The bench's parameters, defaults filled in and checked.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    workload: Workload,
    store: StoreKind,
    /// Cycles per run (conversations held, for `memory`).
    messages: u64,
    concurrency: u64,
    conversations: Option<u64>,
    rounds: Option<u64>,
    warmup: u64,
    repeat: u64,
    unrelated_keys: u64,
    /// Measure each side of the in-memory `memory` workload in a fresh
    /// process (off in unit tests, whose process is the test harness).
    isolate_memory: bool,
}

impl Plan {
    fn new(a: &BenchArgs) -> anyhow::Result<Plan> {
        use StoreKind as S;
        use Workload as W;
        let refuse = |given: bool, option: &str, why: &str| {
            anyhow::ensure!(!given, "{option} {why}");
            Ok(())
        };
        let w = a.workload;
        match a.store {
            S::Memory => {
                refuse(a.redis.is_some(), "--redis", "is only for --store redis")?;
                refuse(
                    a.endpoints.is_some(),
                    "--endpoints",
                    "is only for --store redis",
                )?;
                refuse(
                    a.unrelated_keys > 0,
                    "--unrelated-keys",
                    "is only for --store redis",
                )?;
            }
            S::Redis => anyhow::ensure!(
                a.redis.is_some() || a.endpoints.is_some(),
                "--store redis needs the server: --redis redis://host:port/db or --endpoints endpoints.yml"
            ),
        }
        refuse(
            a.conversations.is_some() && w != W::Contended,
            "--conversations",
            "is only for --workload contended",
        )?;
        refuse(
            a.rounds.is_some() && w != W::Handoff,
            "--rounds",
            "is only for --workload handoff",
        )?;
        refuse(
            a.messages.is_some() && w == W::Handoff,
            "--messages",
            "does not apply to --workload handoff: use --rounds",
        )?;
        refuse(
            a.concurrency.is_some() && matches!(w, W::Handoff | W::Memory),
            "--concurrency",
            "does not apply to --workload handoff or memory (one holder and one waiter; one task filling)",
        )?;
        refuse(
            a.warmup.is_some() && w == W::Memory,
            "--warmup",
            "does not apply to --workload memory",
        )?;
        let redis = a.store == S::Redis;
        let rounds =
            (w == W::Handoff).then(|| a.rounds.unwrap_or(if redis { 2_000 } else { 20_000 }));
        let messages = match (w, rounds) {
            (_, Some(r)) => 2 * r,
            (W::Throughput, _) => a.messages.unwrap_or(if redis { 20_000 } else { 1_000_000 }),
            (W::Contended, _) => a.messages.unwrap_or(if redis { 10_000 } else { 500_000 }),
            (W::Memory | W::Handoff, _) => {
                a.messages.unwrap_or(if redis { 10_000 } else { 1_000_000 })
            }
        };
        let concurrency = match w {
            W::Handoff => 2,
            W::Memory => 1,
            _ => a.concurrency.unwrap_or(32),
        };
        let warmup = match (w, rounds) {
            (W::Memory, _) => 0,
            (_, Some(r)) => a.warmup.unwrap_or((r / 10).min(1_000)),
            _ => a.warmup.unwrap_or((messages / 10).min(10_000)),
        };
        Ok(Plan {
            workload: w,
            store: a.store,
            messages,
            concurrency,
            conversations: (w == W::Contended).then(|| a.conversations.unwrap_or(4)),
            rounds,
            warmup,
            repeat: a.repeat,
            unrelated_keys: a.unrelated_keys,
            isolate_memory: true,
        })
    }

    /// The plans of one `bench` command: one per concurrency. Without
    /// `--concurrency`, the in-memory throughput workload runs with 1, 32
    /// and 64 tasks (one task shows what a cycle costs, many how the store
    /// scales); every other workload with its one default.
    fn sweep(a: &BenchArgs) -> anyhow::Result<Vec<Plan>> {
        let plan = Plan::new(a)?;
        let sweep = plan.workload == Workload::Throughput
            && plan.store == StoreKind::Memory
            && a.concurrency.is_none();
        if !sweep {
            return Ok(vec![plan]);
        }
        Ok(DEFAULT_MEMORY_CONCURRENCIES
            .iter()
            .map(|&concurrency| Plan {
                concurrency,
                ..plan.clone()
            })
            .collect())
    }

    fn params(&self) -> Params {
        Params {
            workload: self.workload,
            store: self.store,
            messages: self.messages,
            concurrency: self.concurrency as usize,
            conversations: self.conversations,
            rounds: self.rounds,
        }
    }

    fn cycles(&self) -> Cycles {
        Cycles {
            messages: self.messages,
            concurrency: self.concurrency as usize,
            conversations: self.conversations,
            record_waits: self.workload == Workload::Contended,
        }
    }

    /// Units of progress of one side of one run.
    fn work_per_side(&self) -> u64 {
        self.rounds.unwrap_or(self.messages)
    }
}

/// The store under test, and what its baseline needs.
enum Target {
    /// A new in-memory store (and keyed map) for every side of every run.
    Memory,
    Redis(RedisTarget),
}

struct RedisTarget {
    store: LockStore,
    wire: Wire,
}

/// Where the Redis server is named.
#[derive(Debug, Clone, Copy)]
enum RedisSource<'a> {
    Url(&'a str),
    Endpoints(&'a Path),
}

impl Target {
    async fn open(args: &BenchArgs) -> anyhow::Result<Target> {
        let source = match (&args.redis, &args.endpoints, args.store) {
            (_, _, StoreKind::Memory) => return Ok(Target::Memory),
            (Some(url), _, _) => RedisSource::Url(url),
            (None, Some(file), _) => RedisSource::Endpoints(file),
            (None, None, _) => anyhow::bail!("--store redis needs --redis URL or --endpoints FILE"),
        };
        let (store, config) = open_redis(source).await?;
        let wire = Wire::open(&config).await?;
        Ok(Target::Redis(RedisTarget { store, wire }))
    }

    fn store(&self) -> LockStore {
        match self {
            Target::Memory => LockStore::in_memory(),
            Target::Redis(r) => r.store.clone(),
        }
    }
}

/// The Redis store named by `source`, and its configuration (for the
/// baseline's own connection).
async fn open_redis(source: RedisSource<'_>) -> anyhow::Result<(LockStore, RedisConfig)> {
    let config = match source {
        RedisSource::Url(url) => LockStoreConfig::from_url(url)?,
        RedisSource::Endpoints(file) => LockStoreConfig::from_endpoints_file(file)?,
    };
    let LockStoreConfig::Redis(redis) = &config else {
        anyhow::bail!(
            "--store redis: {} does not configure a Redis lock store (its lock_store type is in-memory)",
            match source {
                RedisSource::Url(_) => "the URL".to_string(),
                RedisSource::Endpoints(file) => file.display().to_string(),
            }
        );
    };
    let redis = redis.clone();
    let store = LockStore::create(config).await?;
    Ok((store, redis))
}

/// Which side of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Ours,
    Baseline,
}

/// One run: both sides, ticketlock first in odd runs and the baseline first
/// in even ones, so that a drift of the machine does not favour either.
async fn measure(
    plan: &Plan,
    target: &Target,
    run: usize,
    progress: &Progress,
) -> anyhow::Result<(Side, Side)> {
    if run % 2 == 1 {
        let ours = side(plan, target, Which::Ours, progress).await?;
        let base = side(plan, target, Which::Baseline, progress).await?;
        Ok((ours, base))
    } else {
        let base = side(plan, target, Which::Baseline, progress).await?;
        let ours = side(plan, target, Which::Ours, progress).await?;
        Ok((ours, base))
    }
}

async fn side(
    plan: &Plan,
    target: &Target,
    which: Which,
    progress: &Progress,
) -> anyhow::Result<Side> {
    use Which::{Baseline, Ours};
    use Workload as W;
    // Every side of every run works on conversations of its own.
    let tag = fresh_tag();
    let label = match which {
        Ours => "ticketlock",
        Baseline => "baseline",
    };
    let rounds = plan.rounds.unwrap_or(0);
    let n = plan.messages;
    match (plan.workload, which, target) {
        (W::Throughput | W::Contended, Ours, _) => {
            cycles::run(&target.store(), plan.cycles(), tag, label, progress).await
        }
        (W::Throughput | W::Contended, Baseline, Target::Memory) => {
            cycles::run(&KeyedMutex::default(), plan.cycles(), tag, label, progress).await
        }
        (W::Throughput | W::Contended, Baseline, Target::Redis(r)) => {
            cycles::run(&r.wire, plan.cycles(), tag, label, progress).await
        }
        (W::Handoff, Ours, _) => handoff::run(&target.store(), rounds, tag, label, progress).await,
        (W::Handoff, Baseline, Target::Memory) => {
            handoff::run(&KeyedMutex::default(), rounds, tag, label, progress).await
        }
        (W::Handoff, Baseline, Target::Redis(r)) => r.wire.handoff(rounds, label, progress).await,
        (W::Memory, _, Target::Memory) if plan.isolate_memory => {
            memory::in_child(label, n, progress).await
        }
        (W::Memory, Ours, Target::Memory) => {
            memory::store(&target.store(), &Meter::Rss, n, tag, progress).await
        }
        (W::Memory, Ours, Target::Redis(r)) => {
            memory::store(&r.store, &Meter::Redis(&r.wire), n, tag, progress).await
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
        assert!(p.cycles().record_waits);
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
            "--rounds is only for --workload handoff"
        );
        assert_eq!(
            err(&["--workload", "handoff", "--messages", "3"]),
            "--messages does not apply to --workload handoff: use --rounds"
        );
        assert!(
            err(&["--workload", "memory", "--concurrency", "3"])
                .starts_with("--concurrency does not apply")
        );
        assert_eq!(
            err(&["--workload", "memory", "--warmup", "3"]),
            "--warmup does not apply to --workload memory"
        );
        // clap's own checks name the option and the bad value.
        let e = parse(&["--messages", "0"]).unwrap_err();
        assert!(e.contains("--messages") && e.contains("0"), "{e}");
        let e = parse(&["--workload", "fast"]).unwrap_err();
        assert!(e.contains("throughput, contended, handoff, memory"), "{e}");
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
            args.repeat = 2;
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
            let m = Report::median(&reports);
            assert!(
                m.cycles_per_s > 0.0 && m.baseline_cycles_per_s > 0.0,
                "{line:?}"
            );
            let x = &m.extra;
            match plan.workload {
                Workload::Contended => {
                    assert!(x.wait_p99_us.is_some() && x.baseline_wait_p99_us.is_some())
                }
                Workload::Handoff => {
                    assert!(x.handoff_p50_us.is_some() && x.baseline_handoff_p50_us.is_some())
                }
                Workload::Memory => {
                    assert!(x.bytes_per_conversation.unwrap() > 0.0);
                    assert!(x.baseline_bytes_per_conversation.unwrap() > 0.0);
                }
                Workload::Throughput => assert!(x.wait_p50_us.is_none()),
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
            args.repeat = 2;
            let mut plan = Plan::new(&args).unwrap();
            plan.isolate_memory = false;
            let reports = runs(&args, &plan, &Target::Memory).await.unwrap();
            assert_eq!(reports.len(), 2);
            let m = Report::median(&reports);
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
            }
        }
    }

    fn median_ratio(reports: &[Report]) -> f64 {
        report::median(reports.iter().map(|r| r.ratio).collect()).unwrap()
    }
}
