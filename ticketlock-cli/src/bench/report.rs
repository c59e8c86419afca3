//! What a run measured, the median over runs, and how both are printed.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::layout::Layout;
use super::{StoreKind, Workload, floor, setnx};

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Stats {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// Nearest-rank percentiles of `samples` (nanoseconds); `None` when
    /// empty.
    pub(crate) fn of(samples: &mut [u64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |p: f64| {
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1] as f64 / 1000.0
        };
        Some(Stats {
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: samples[samples.len() - 1] as f64 / 1000.0,
        })
    }
}

/// What one side (ticketlock or its baseline) measured in one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Side {
    /// Lock-then-release cycles done (for `memory`: conversations filled).
    pub cycles: u64,
    pub elapsed: Duration,
    /// Time from asking for a lock to holding it (`contended`).
    pub waits: Option<Stats>,
    /// Time from the holder's release call to the waiter's entry
    /// (`handoff`).
    pub handoff: Option<Stats>,
    /// Memory per conversation holding one ticket (`memory`).
    pub bytes_per_conversation: Option<f64>,
    /// Memory per conversation still held after all were released.
    pub bytes_after_release: Option<f64>,
    /// The Redis server's CPU time over the side (a standalone server).
    pub server_cpu: Option<Duration>,
}

impl Side {
    pub(crate) fn cycles_per_s(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The server's CPU time per cycle, in microseconds.
    fn cpu_per_cycle_us(&self) -> Option<f64> {
        let cpu = self.server_cpu.filter(|_| self.cycles > 0)?;
        Some(cpu.as_secs_f64() * 1e6 / self.cycles as f64)
    }
}

/// The parameters a run was made with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Params {
    pub workload: Workload,
    pub store: StoreKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    pub messages: u64,
    pub concurrency: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u64>,
    /// Each task's work after each release, µs (`--work-us`).
    #[serde(skip_serializing_if = "is_zero")]
    pub work_us: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One JSON line: a run, or the median of the runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    /// `run` or `median`.
    pub kind: &'static str,
    /// The run's number from 1 (`run`), or how many runs (`median`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    #[serde(flatten)]
    pub params: Params,
    pub cycles_per_s: f64,
    pub baseline_cycles_per_s: f64,
    /// `cycles_per_s / baseline_cycles_per_s` (for `median`: the median of
    /// the runs' ratios, each taken from one interleaved pair).
    pub ratio: f64,
    pub baseline: &'static str,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The measures only some workloads have.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_p90_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_max_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_wait_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_wait_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_handoff_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_handoff_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_conversation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_bytes_per_conversation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_after_release: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_bytes_after_release: Option<f64>,
    /// The Redis server's CPU time per cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_per_cycle_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_redis_cpu_per_cycle_us: Option<f64>,
    /// The `SET NX PX` spin lock on the same workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setnx_cycles_per_s: Option<f64>,
    /// `cycles_per_s / setnx_cycles_per_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setnx_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setnx_wait_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setnx_wait_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setnx_handoff_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setnx_handoff_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setnx_redis_cpu_per_cycle_us: Option<f64>,
    /// The FIFO floor (see floor.rs) on the same workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_cycles_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_handoff_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_handoff_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_redis_cpu_per_cycle_us: Option<f64>,
    /// One round trip to the server (`PING`), p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_p50_us: Option<f64>,
}

/// What the baseline of `params` is, in words.
pub(crate) fn baseline_name(workload: Workload, store: StoreKind) -> &'static str {
    match (store, workload) {
        (StoreKind::Memory, _) => "keyed tokio::sync::Mutex map",
        (StoreKind::Redis, Workload::Memory) => "SET of the Rasa record",
        (StoreKind::Redis, Workload::Depth) => setnx::NAME,
        (StoreKind::Redis, _) => "EVALSHA of `return 1`, 2 round trips per cycle",
    }
}

impl Report {
    /// The report of run `run` (from 1); `setnx`: the `SET NX` lock's side,
    /// where the workload has one.
    pub(crate) fn run(
        params: Params,
        run: usize,
        ours: &Side,
        base: &Side,
        setnx: Option<&Side>,
    ) -> Report {
        let (cycles, base_cycles) = (ours.cycles_per_s(), base.cycles_per_s());
        Report {
            kind: "run",
            run: Some(run),
            runs: None,
            params,
            cycles_per_s: cycles,
            baseline_cycles_per_s: base_cycles,
            ratio: cycles / base_cycles,
            baseline: baseline_name(params.workload, params.store),
            extra: Extra {
                wait_p50_us: ours.waits.map(|s| s.p50),
                wait_p90_us: ours.waits.map(|s| s.p90),
                wait_p99_us: ours.waits.map(|s| s.p99),
                wait_max_us: ours.waits.map(|s| s.max),
                baseline_wait_p50_us: base.waits.map(|s| s.p50),
                baseline_wait_p99_us: base.waits.map(|s| s.p99),
                handoff_p50_us: ours.handoff.map(|s| s.p50),
                handoff_p99_us: ours.handoff.map(|s| s.p99),
                baseline_handoff_p50_us: base.handoff.map(|s| s.p50),
                baseline_handoff_p99_us: base.handoff.map(|s| s.p99),
                bytes_per_conversation: ours.bytes_per_conversation,
                baseline_bytes_per_conversation: base.bytes_per_conversation,
                bytes_after_release: ours.bytes_after_release,
                baseline_bytes_after_release: base.bytes_after_release,
                redis_cpu_per_cycle_us: ours.cpu_per_cycle_us(),
                baseline_redis_cpu_per_cycle_us: base.cpu_per_cycle_us(),
                setnx_cycles_per_s: setnx.map(Side::cycles_per_s),
                setnx_ratio: setnx.map(|s| cycles / s.cycles_per_s().max(1e-9)),
                setnx_wait_p50_us: setnx.and_then(|s| s.waits).map(|w| w.p50),
                setnx_wait_p99_us: setnx.and_then(|s| s.waits).map(|w| w.p99),
                setnx_handoff_p50_us: setnx.and_then(|s| s.handoff).map(|w| w.p50),
                setnx_handoff_p99_us: setnx.and_then(|s| s.handoff).map(|w| w.p99),
                setnx_redis_cpu_per_cycle_us: setnx.and_then(Side::cpu_per_cycle_us),
                ping_p50_us: None,
                ..Extra::default()
            },
        }
    }

    /// The same report with the FIFO floor's side, where the workload has
    /// one.
    pub(crate) fn with_floor(mut self, floor: Option<&Side>) -> Report {
        let x = &mut self.extra;
        x.floor_cycles_per_s = floor.map(Side::cycles_per_s);
        x.floor_handoff_p50_us = floor.and_then(|s| s.handoff).map(|w| w.p50);
        x.floor_handoff_p99_us = floor.and_then(|s| s.handoff).map(|w| w.p99);
        x.floor_redis_cpu_per_cycle_us = floor.and_then(Side::cpu_per_cycle_us);
        self
    }

    /// The same report with the one-round-trip figure.
    pub(crate) fn with_ping(mut self, ping_p50_us: Option<f64>) -> Report {
        self.extra.ping_p50_us = ping_p50_us;
        self
    }

    /// The median of each measure over `runs` (not empty), taken measure by
    /// measure.
    pub(crate) fn median(runs: &[Report]) -> Report {
        let first = &runs[0];
        let m = |f: &dyn Fn(&Report) -> Option<f64>| median(runs.iter().filter_map(f).collect());
        let e = |f: fn(&Extra) -> Option<f64>| m(&|r: &Report| f(&r.extra));
        Report {
            kind: "median",
            run: None,
            runs: Some(runs.len()),
            params: first.params,
            cycles_per_s: m(&|r| Some(r.cycles_per_s)).unwrap_or(0.0),
            baseline_cycles_per_s: m(&|r| Some(r.baseline_cycles_per_s)).unwrap_or(0.0),
            ratio: m(&|r| Some(r.ratio)).unwrap_or(0.0),
            baseline: first.baseline,
            extra: Extra {
                wait_p50_us: e(|x| x.wait_p50_us),
                wait_p90_us: e(|x| x.wait_p90_us),
                wait_p99_us: e(|x| x.wait_p99_us),
                wait_max_us: e(|x| x.wait_max_us),
                baseline_wait_p50_us: e(|x| x.baseline_wait_p50_us),
                baseline_wait_p99_us: e(|x| x.baseline_wait_p99_us),
                handoff_p50_us: e(|x| x.handoff_p50_us),
                handoff_p99_us: e(|x| x.handoff_p99_us),
                baseline_handoff_p50_us: e(|x| x.baseline_handoff_p50_us),
                baseline_handoff_p99_us: e(|x| x.baseline_handoff_p99_us),
                bytes_per_conversation: e(|x| x.bytes_per_conversation),
                baseline_bytes_per_conversation: e(|x| x.baseline_bytes_per_conversation),
                bytes_after_release: e(|x| x.bytes_after_release),
                baseline_bytes_after_release: e(|x| x.baseline_bytes_after_release),
                redis_cpu_per_cycle_us: e(|x| x.redis_cpu_per_cycle_us),
                baseline_redis_cpu_per_cycle_us: e(|x| x.baseline_redis_cpu_per_cycle_us),
                setnx_cycles_per_s: e(|x| x.setnx_cycles_per_s),
                setnx_ratio: e(|x| x.setnx_ratio),
                setnx_wait_p50_us: e(|x| x.setnx_wait_p50_us),
                setnx_wait_p99_us: e(|x| x.setnx_wait_p99_us),
                setnx_handoff_p50_us: e(|x| x.setnx_handoff_p50_us),
                setnx_handoff_p99_us: e(|x| x.setnx_handoff_p99_us),
                setnx_redis_cpu_per_cycle_us: e(|x| x.setnx_redis_cpu_per_cycle_us),
                floor_cycles_per_s: e(|x| x.floor_cycles_per_s),
                floor_handoff_p50_us: e(|x| x.floor_handoff_p50_us),
                floor_handoff_p99_us: e(|x| x.floor_handoff_p99_us),
                floor_redis_cpu_per_cycle_us: e(|x| x.floor_redis_cpu_per_cycle_us),
                ping_p50_us: e(|x| x.ping_p50_us),
            },
        }
    }

    /// The report as one line of JSON.
    pub(crate) fn json_line(&self) -> String {
        crate::json::line(self).unwrap_or_else(|e| {
            crate::json::error(crate::exit::SOFTWARE, "software", &e.to_string())
        })
    }

    /// The report as a table for people.
    pub(crate) fn table(&self) -> String {
        let p = &self.params;
        let mut out = String::new();
        let _ = write!(
            out,
            "workload {}, store {}, {} messages, concurrency {}",
            p.workload.name(),
            p.store.name(),
            p.messages,
            p.concurrency
        );
        if let Some(l) = p.layout {
            let _ = write!(out, ", layout {}", l.name());
        }
        if let Some(k) = p.conversations {
            let _ = write!(out, ", {k} conversations");
        }
        if let Some(r) = p.rounds {
            let _ = write!(out, ", {r} rounds");
        }
        let what = match self.kind {
            "median" => format!("median of {} runs", self.runs.unwrap_or(1)),
            _ => format!("run {}", self.run.unwrap_or(1)),
        };
        let _ = writeln!(out, " ({what})");
        let _ = writeln!(out, "baseline: {}", self.baseline);
        if self.extra.setnx_cycles_per_s.is_some() {
            let _ = writeln!(out, "SET NX rows: against the {}", setnx::NAME);
        }
        if self.extra.floor_cycles_per_s.is_some() {
            let _ = writeln!(out, "floor rows: against the {}", floor::NAME);
        }
        let rows = self.rows();
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:w$}  {:>14}  {:>14}  {:>8}",
            "", "ticketlock", "baseline", "ratio"
        );
        for (name, ours, base, unit) in rows {
            let ratio = match (ours, base) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{name:w$}  {:>14}  {:>14}  {ratio:>8}",
                num(ours, unit),
                num(base, unit)
            );
        }
        out
    }

    fn rows(&self) -> Vec<(&'static str, Option<f64>, Option<f64>, &'static str)> {
        let x = &self.extra;
        let mut rows = vec![(
            if self.params.workload == Workload::Memory {
                "fills/s"
            } else {
                "cycles/s"
            },
            Some(self.cycles_per_s),
            Some(self.baseline_cycles_per_s),
            "",
        )];
        let mut add = |name, a: Option<f64>, b: Option<f64>, unit| {
            if a.is_some() || b.is_some() {
                rows.push((name, a, b, unit));
            }
        };
        add("wait p50", x.wait_p50_us, x.baseline_wait_p50_us, " us");
        add("wait p90", x.wait_p90_us, None, " us");
        add("wait p99", x.wait_p99_us, x.baseline_wait_p99_us, " us");
        add("wait max", x.wait_max_us, None, " us");
        add(
            "handoff p50",
            x.handoff_p50_us,
            x.baseline_handoff_p50_us,
            " us",
        );
        add(
            "handoff p99",
            x.handoff_p99_us,
            x.baseline_handoff_p99_us,
            " us",
        );
        add(
            "bytes/conversation",
            x.bytes_per_conversation,
            x.baseline_bytes_per_conversation,
            " B",
        );
        add(
            "after release",
            x.bytes_after_release,
            x.baseline_bytes_after_release,
            " B",
        );
        add(
            "Redis CPU/cycle",
            x.redis_cpu_per_cycle_us,
            x.baseline_redis_cpu_per_cycle_us,
            " us",
        );
        add(
            "SET NX: cycles/s",
            Some(self.cycles_per_s).filter(|_| x.setnx_cycles_per_s.is_some()),
            x.setnx_cycles_per_s,
            "",
        );
        add(
            "SET NX: wait p50",
            x.wait_p50_us.filter(|_| x.setnx_wait_p50_us.is_some()),
            x.setnx_wait_p50_us,
            " us",
        );
        add(
            "SET NX: wait p99",
            x.wait_p99_us.filter(|_| x.setnx_wait_p99_us.is_some()),
            x.setnx_wait_p99_us,
            " us",
        );
        add(
            "SET NX: handoff p50",
            x.handoff_p50_us
                .filter(|_| x.setnx_handoff_p50_us.is_some()),
            x.setnx_handoff_p50_us,
            " us",
        );
        add(
            "SET NX: handoff p99",
            x.handoff_p99_us
                .filter(|_| x.setnx_handoff_p99_us.is_some()),
            x.setnx_handoff_p99_us,
            " us",
        );
        add(
            "SET NX: Redis CPU/cycle",
            x.redis_cpu_per_cycle_us
                .filter(|_| x.setnx_redis_cpu_per_cycle_us.is_some()),
            x.setnx_redis_cpu_per_cycle_us,
            " us",
        );
        add(
            "floor: cycles/s",
            Some(self.cycles_per_s).filter(|_| x.floor_cycles_per_s.is_some()),
            x.floor_cycles_per_s,
            "",
        );
        add(
            "floor: handoff p50",
            x.handoff_p50_us
                .filter(|_| x.floor_handoff_p50_us.is_some()),
            x.floor_handoff_p50_us,
            " us",
        );
        add(
            "floor: handoff p99",
            x.handoff_p99_us
                .filter(|_| x.floor_handoff_p99_us.is_some()),
            x.floor_handoff_p99_us,
            " us",
        );
        add(
            "floor: Redis CPU/cycle",
            x.redis_cpu_per_cycle_us
                .filter(|_| x.floor_redis_cpu_per_cycle_us.is_some()),
            x.floor_redis_cpu_per_cycle_us,
            " us",
        );
        add("one round trip (PING) p50", x.ping_p50_us, None, " us");
        rows
    }
}

fn num(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}{unit}"),
        Some(v) => format!("{v:.1}{unit}"),
    }
}

/// The median of `v` (the mean of the middle two for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).rev().map(|us| us * 1000).collect();
        let s = Stats::of(&mut samples).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        let s = Stats::of(&mut [7_000]).unwrap();
        assert_eq!((s.p50, s.p99, s.max), (7.0, 7.0, 7.0));
        assert_eq!(Stats::of(&mut []), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    fn params(workload: Workload) -> Params {
        Params {
            workload,
            store: StoreKind::Memory,
            layout: None,
            messages: 10,
            concurrency: 2,
            conversations: None,
            rounds: Some(5),
            work_us: 0,
        }
    }

    fn side(cycles: u64, ms: u64, handoff_us: f64) -> Side {
        Side {
            cycles,
            elapsed: Duration::from_millis(ms),
            handoff: Some(Stats {
                p50: handoff_us,
                p90: handoff_us,
                p99: handoff_us * 2.0,
                max: handoff_us * 3.0,
            }),
            ..Side::default()
        }
    }

    #[test]
    fn json_line_has_the_agreed_fields() {
        let r = Report::run(
            params(Workload::Handoff),
            1,
            &side(10, 1000, 4.0),
            &side(20, 1000, 2.0),
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(v["kind"], "run");
        assert_eq!(v["workload"], "handoff");
        assert_eq!(v["store"], "memory");
        assert_eq!(v["messages"], 10);
        assert_eq!(v["concurrency"], 2);
        assert_eq!(v["rounds"], 5);
        assert_eq!(v["cycles_per_s"], 10.0);
        assert_eq!(v["baseline_cycles_per_s"], 20.0);
        assert_eq!(v["ratio"], 0.5);
        assert_eq!(v["handoff_p50_us"], 4.0);
        assert_eq!(v["handoff_p99_us"], 8.0);
        assert_eq!(v["baseline_handoff_p50_us"], 2.0);
        // Absent measures are left out, not null.
        assert!(v.get("wait_p50_us").is_none());
        assert!(v.get("conversations").is_none());
        assert!(!r.json_line().contains('\n'));
    }

    #[test]
    fn median_takes_each_measure_and_the_ratio_of_pairs() {
        let p = params(Workload::Handoff);
        let runs = [
            Report::run(p, 1, &side(10, 1000, 4.0), &side(20, 1000, 1.0), None),
            Report::run(p, 2, &side(30, 1000, 6.0), &side(30, 1000, 3.0), None),
            Report::run(p, 3, &side(20, 1000, 5.0), &side(80, 1000, 2.0), None),
        ];
        let m = Report::median(&runs);
        assert_eq!(m.kind, "median");
        assert_eq!(m.runs, Some(3));
        assert_eq!(m.cycles_per_s, 20.0);
        assert_eq!(m.baseline_cycles_per_s, 30.0);
        // Ratios 0.5, 1.0, 0.25: the median pair ratio, not 20/30.
        assert_eq!(m.ratio, 0.5);
        assert_eq!(m.extra.handoff_p50_us, Some(5.0));
        assert_eq!(m.extra.baseline_handoff_p50_us, Some(2.0));
        assert_eq!(m.extra.wait_p50_us, None);
    }

    #[test]
    fn table_lists_the_measures_with_ratios() {
        let r = Report::run(
            params(Workload::Handoff),
            1,
            &side(10, 1000, 4.0),
            &side(20, 1000, 2.0),
            None,
        );
        let t = r.table();
        assert!(
            t.starts_with(
                "workload handoff, store memory, 10 messages, concurrency 2, 5 rounds (run 1)\n"
            ),
            "{t}"
        );
        let line = t.lines().find(|l| l.starts_with("handoff p50")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols, ["handoff", "p50", "4.0", "us", "2.0", "us", "2.00"]);
        assert!(!t.contains("wait p50"), "{t}");
    }
}
