//! The bench's parameters: the command line's options checked against the
//! workload and store, and the defaults filled in.

use super::cycles::Cycles;
use super::layout::Layout;
use super::report::Params;
use super::{BenchArgs, DEFAULT_DEPTHS, DEFAULT_REPEAT, StoreKind, Workload};

/// The tasks of the in-memory throughput runs when `--concurrency` is not
/// given.
const DEFAULT_MEMORY_CONCURRENCIES: [u64; 3] = [1, 32, 64];

/// The bench's parameters, defaults filled in and checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    pub(super) workload: Workload,
    pub(super) store: StoreKind,
    /// Cycles per run (conversations held, for `memory`).
    pub(super) messages: u64,
    pub(super) concurrency: u64,
    pub(super) conversations: Option<u64>,
    pub(super) rounds: Option<u64>,
    pub(super) warmup: u64,
    pub(super) repeat: u64,
    pub(super) unrelated_keys: u64,
    /// Waiters of each depth (`depth`).
    pub(super) depths: Vec<usize>,
    /// The longest timed phase of one depth.
    pub(super) depth_time: std::time::Duration,
    /// The idle window of the deepest queue.
    pub(super) idle: Option<std::time::Duration>,
    /// Each task's work after each release (`throughput`, `contended`).
    pub(super) work: std::time::Duration,
    /// Measure each side of the in-memory `memory` workload in a fresh
    /// process (off in unit tests, whose process is the test harness).
    pub(super) isolate_memory: bool,
}

impl Plan {
    pub(super) fn new(a: &BenchArgs) -> anyhow::Result<Plan> {
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
                refuse(a.layout.is_some(), "--layout", "is only for --store redis")?;
            }
            S::Redis => anyhow::ensure!(
                a.redis.is_some() || a.endpoints.is_some(),
                "--store redis needs the server: --redis redis://host:port/db or --endpoints endpoints.yml"
            ),
        }
        refuse(
            a.layout.is_some() && a.endpoints.is_some(),
            "--layout",
            "needs --redis URL (with --endpoints, set `layout:` in the file)",
        )?;
        refuse(
            a.conversations.is_some() && w != W::Contended,
            "--conversations",
            "is only for --workload contended",
        )?;
        refuse(
            a.rounds.is_some() && !matches!(w, W::Handoff | W::Depth),
            "--rounds",
            "is only for --workload handoff or depth",
        )?;
        refuse(
            a.messages.is_some() && matches!(w, W::Handoff | W::Depth),
            "--messages",
            "does not apply to --workload handoff or depth: use --rounds",
        )?;
        refuse(
            a.concurrency.is_some() && matches!(w, W::Handoff | W::Memory | W::Depth),
            "--concurrency",
            "does not apply to --workload handoff, memory or depth (one holder and one waiter; one task filling; --depths)",
        )?;
        refuse(
            a.warmup.is_some() && matches!(w, W::Memory | W::Depth),
            "--warmup",
            "does not apply to --workload memory or depth",
        )?;
        refuse(
            a.work_us.is_some() && !matches!(w, W::Throughput | W::Contended),
            "--work-us",
            "is only for --workload throughput or contended",
        )?;
        for (given, option) in [
            (a.depths.is_some(), "--depths"),
            (a.depth_seconds.is_some(), "--depth-seconds"),
            (a.idle_seconds.is_some(), "--idle-seconds"),
            (a.plot.is_some(), "--plot"),
        ] {
            refuse(
                given && w != W::Depth,
                option,
                "is only for --workload depth",
            )?;
        }
        let redis = a.store == S::Redis;
        let rounds = match w {
            W::Handoff => Some(a.rounds.unwrap_or(if redis { 2_000 } else { 20_000 })),
            W::Depth => Some(a.rounds.unwrap_or(if redis { 1_000 } else { 10_000 })),
            _ => None,
        };
        let messages = match (w, rounds) {
            (_, Some(r)) => 2 * r,
            (W::Throughput, _) => a.messages.unwrap_or(if redis { 20_000 } else { 1_000_000 }),
            (W::Contended, _) => a.messages.unwrap_or(if redis { 10_000 } else { 500_000 }),
            (W::Memory | W::Handoff | W::Depth, _) => {
                a.messages.unwrap_or(if redis { 10_000 } else { 1_000_000 })
            }
        };
        let concurrency = match w {
            W::Handoff => 2,
            W::Memory | W::Depth => 1,
            _ => a.concurrency.unwrap_or(32),
        };
        let warmup = match (w, rounds) {
            (W::Memory | W::Depth, _) => 0,
            (_, Some(r)) => a.warmup.unwrap_or((r / 10).min(1_000)),
            _ => a.warmup.unwrap_or((messages / 10).min(10_000)),
        };
        let depths = match (&a.depths, w) {
            (Some(d), _) => d.iter().map(|&n| n as usize).collect(),
            (None, W::Depth) => DEFAULT_DEPTHS.to_vec(),
            (None, _) => Vec::new(),
        };
        // One depth run on the Rasa layout takes about half a minute (the
        // deep queues' set-up and withdrawal are quadratic there).
        let default_repeat = if w == W::Depth { 1 } else { DEFAULT_REPEAT };
        Ok(Plan {
            workload: w,
            store: a.store,
            messages,
            concurrency,
            conversations: (w == W::Contended).then(|| a.conversations.unwrap_or(4)),
            rounds,
            warmup,
            repeat: a.repeat.unwrap_or(default_repeat),
            unrelated_keys: a.unrelated_keys,
            depths,
            depth_time: a.depth_seconds.unwrap_or(std::time::Duration::from_secs(2)),
            idle: Some(a.idle_seconds.unwrap_or(std::time::Duration::from_secs(2)))
                .filter(|_| w == W::Depth),
            work: std::time::Duration::from_micros(a.work_us.unwrap_or(0)),
            isolate_memory: true,
        })
    }

    /// The plans of one `bench` command: one per concurrency. Without
    /// `--concurrency`, the in-memory throughput workload runs with 1, 32
    /// and 64 tasks (one task shows what a cycle costs, many how the store
    /// scales); every other workload with its one default.
    pub(super) fn sweep(a: &BenchArgs) -> anyhow::Result<Vec<Plan>> {
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

    pub(super) fn params(&self, layout: Option<Layout>) -> Params {
        Params {
            workload: self.workload,
            store: self.store,
            layout,
            messages: self.messages,
            concurrency: self.concurrency as usize,
            conversations: self.conversations,
            rounds: self.rounds,
            work_us: self.work.as_micros() as u64,
        }
    }

    /// The cycles of a side; `exclusive`: the lock excludes (the wire
    /// baseline does not, so its hand-offs mean nothing).
    pub(super) fn cycles(&self, exclusive: bool) -> Cycles {
        let contended = self.workload == Workload::Contended;
        Cycles {
            messages: self.messages,
            concurrency: self.concurrency as usize,
            conversations: self.conversations,
            record_waits: contended,
            record_handoffs: contended && exclusive,
            work: self.work,
        }
    }

    /// Units of progress of one side of one run.
    pub(super) fn work_per_side(&self) -> u64 {
        self.rounds.unwrap_or(self.messages)
    }
}
