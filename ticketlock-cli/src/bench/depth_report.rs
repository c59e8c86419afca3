//! What the `depth` workload reports: one line per layout and depth (and
//! one for the idle window), per run and as medians, in JSON or as a table.

use std::fmt::Write as _;

use serde::Serialize;

use super::depth::DepthSide;
use super::layout::Layout;
use super::report::median;
use super::{StoreKind, Workload};

/// The same-run baseline of a depth run: a plain lock's hand-off rate on
/// one key, and one round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Baseline {
    pub name: &'static str,
    pub handoffs_per_s: f64,
    pub ping_p50_us: Option<f64>,
}

/// One layout and depth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DepthRow {
    /// `run` or `median`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    pub workload: Workload,
    /// `handoff`: the timed hand-offs.
    pub phase: &'static str,
    pub store: StoreKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// Waiters queued behind the holder.
    pub waiters: usize,
    /// Hand-offs asked for.
    pub rounds: u64,
    /// Hand-offs done (fewer than `rounds` when the time ran out).
    pub handoffs: u64,
    pub elapsed_s: f64,
    pub handoffs_per_s: f64,
    /// `handoffs_per_s` over that of 1 waiter in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_depth_1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_p99_us: Option<f64>,
    /// The server's CPU time per hand-off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_per_handoff_us: Option<f64>,
    /// The server's CPU time over the wall time, in percent of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_pct: Option<f64>,
    /// The most holders inside at once (always 1: more fails the bench).
    pub max_holders: usize,
    pub baseline: &'static str,
    pub baseline_handoffs_per_s: f64,
    /// `handoffs_per_s / baseline_handoffs_per_s`.
    pub ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_p50_us: Option<f64>,
    /// Why this depth could not be measured (its measures are then zero);
    /// a median has it only when every run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The idle window: waiters queued behind a holder that does nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct IdleRow {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    pub workload: Workload,
    /// `idle`.
    pub phase: &'static str,
    pub store: StoreKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    pub waiters: usize,
    pub idle_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_pct: Option<f64>,
}

/// Everything one `depth` command reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DepthReport {
    pub rows: Vec<DepthRow>,
    pub idle: Vec<IdleRow>,
}

impl DepthReport {
    /// The lines of run `run` (from 1) of `layout`: one per depth, in the
    /// order measured.
    pub(crate) fn run(
        store: StoreKind,
        layout: Option<Layout>,
        run: usize,
        rounds: u64,
        depths: &[(usize, Result<DepthSide, String>)],
        base: Baseline,
    ) -> DepthReport {
        let at_1 = depths.iter().find_map(|(w, s)| match s {
            Ok(s) if *w == 1 => Some(s.handoffs_per_s()),
            _ => None,
        });
        let failed = DepthSide::default();
        let rows = depths
            .iter()
            .map(|(waiters, measured)| {
                let (s, error) = match measured {
                    Ok(s) => (s, None),
                    Err(e) => (&failed, Some(e.clone())),
                };
                let rate = s.handoffs_per_s();
                let wall = s.elapsed.as_secs_f64().max(1e-9);
                DepthRow {
                    kind: "run",
                    run: Some(run),
                    runs: None,
                    workload: Workload::Depth,
                    phase: "handoff",
                    store,
                    layout,
                    waiters: *waiters,
                    rounds,
                    handoffs: s.handoffs,
                    elapsed_s: s.elapsed.as_secs_f64(),
                    handoffs_per_s: rate,
                    ratio_to_depth_1: at_1.filter(|&r| r > 0.0).map(|r| rate / r),
                    handoff_p50_us: s.handoff.map(|h| h.p50),
                    handoff_p99_us: s.handoff.map(|h| h.p99),
                    redis_cpu_per_handoff_us: s
                        .server_cpu
                        .filter(|_| s.handoffs > 0)
                        .map(|c| c.as_secs_f64() * 1e6 / s.handoffs as f64),
                    redis_cpu_pct: s.server_cpu.map(|c| 100.0 * c.as_secs_f64() / wall),
                    max_holders: s.max_holders,
                    baseline: base.name,
                    baseline_handoffs_per_s: base.handoffs_per_s,
                    ratio: rate / base.handoffs_per_s.max(1e-9),
                    ping_p50_us: base.ping_p50_us,
                    error,
                }
            })
            .collect();
        let idle = depths
            .iter()
            .filter_map(|(waiters, s)| {
                let (wall, cpu) = s.as_ref().ok()?.idle?;
                Some(IdleRow {
                    kind: "run",
                    run: Some(run),
                    runs: None,
                    workload: Workload::Depth,
                    phase: "idle",
                    store,
                    layout,
                    waiters: *waiters,
                    idle_s: wall.as_secs_f64(),
                    redis_cpu_pct: cpu
                        .map(|c| 100.0 * c.as_secs_f64() / wall.as_secs_f64().max(1e-9)),
                })
            })
            .collect();
        DepthReport { rows, idle }
    }

    /// Adds `other`'s lines after these.
    pub(crate) fn extend(&mut self, other: DepthReport) {
        self.rows.extend(other.rows);
        self.idle.extend(other.idle);
    }

    /// The median of each measure over the runs, per layout and depth, in
    /// the order first measured.
    pub(crate) fn median(&self) -> DepthReport {
        let mut keys: Vec<(Option<Layout>, usize)> = Vec::new();
        for r in &self.rows {
            if !keys.contains(&(r.layout, r.waiters)) {
                keys.push((r.layout, r.waiters));
            }
        }
        let rows = keys
            .iter()
            .map(|&(layout, waiters)| {
                let all: Vec<&DepthRow> = self
                    .rows
                    .iter()
                    .filter(|r| (r.layout, r.waiters) == (layout, waiters))
                    .collect();
                let ok: Vec<&DepthRow> =
                    all.iter().copied().filter(|r| r.error.is_none()).collect();
                if ok.is_empty() {
                    return DepthRow {
                        kind: "median",
                        run: None,
                        runs: Some(all.len()),
                        ..all[0].clone()
                    };
                }
                let runs = ok;
                let m = |f: &dyn Fn(&DepthRow) -> Option<f64>| {
                    median(runs.iter().filter_map(|r| f(r)).collect())
                };
                let first = runs[0];
                DepthRow {
                    kind: "median",
                    run: None,
                    runs: Some(runs.len()),
                    handoffs: m(&|r| Some(r.handoffs as f64)).unwrap_or(0.0).round() as u64,
                    elapsed_s: m(&|r| Some(r.elapsed_s)).unwrap_or(0.0),
                    handoffs_per_s: m(&|r| Some(r.handoffs_per_s)).unwrap_or(0.0),
                    ratio_to_depth_1: m(&|r| r.ratio_to_depth_1),
                    handoff_p50_us: m(&|r| r.handoff_p50_us),
                    handoff_p99_us: m(&|r| r.handoff_p99_us),
                    redis_cpu_per_handoff_us: m(&|r| r.redis_cpu_per_handoff_us),
                    redis_cpu_pct: m(&|r| r.redis_cpu_pct),
                    max_holders: runs.iter().map(|r| r.max_holders).max().unwrap_or(0),
                    baseline_handoffs_per_s: m(&|r| Some(r.baseline_handoffs_per_s)).unwrap_or(0.0),
                    ratio: m(&|r| Some(r.ratio)).unwrap_or(0.0),
                    ping_p50_us: m(&|r| r.ping_p50_us),
                    error: None,
                    ..first.clone()
                }
            })
            .collect();
        let mut idle_keys: Vec<(Option<Layout>, usize)> = Vec::new();
        for r in &self.idle {
            if !idle_keys.contains(&(r.layout, r.waiters)) {
                idle_keys.push((r.layout, r.waiters));
            }
        }
        let idle = idle_keys
            .iter()
            .map(|&(layout, waiters)| {
                let runs: Vec<&IdleRow> = self
                    .idle
                    .iter()
                    .filter(|r| (r.layout, r.waiters) == (layout, waiters))
                    .collect();
                IdleRow {
                    kind: "median",
                    run: None,
                    runs: Some(runs.len()),
                    idle_s: median(runs.iter().map(|r| r.idle_s).collect()).unwrap_or(0.0),
                    redis_cpu_pct: median(runs.iter().filter_map(|r| r.redis_cpu_pct).collect()),
                    ..runs[0].clone()
                }
            })
            .collect();
        DepthReport { rows, idle }
    }

    /// The lines as JSON, the hand-offs then the idle windows.
    pub(crate) fn json_lines(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(json)
            .chain(self.idle.iter().map(json))
            .collect()
    }

    /// The medians as tables for people, one per layout.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let mut layouts: Vec<Option<Layout>> = Vec::new();
        for r in &self.rows {
            if !layouts.contains(&r.layout) {
                layouts.push(r.layout);
            }
        }
        for (i, layout) in layouts.iter().enumerate() {
            let rows: Vec<&DepthRow> = self.rows.iter().filter(|r| r.layout == *layout).collect();
            let first = rows[0];
            if i > 0 {
                out.push('\n');
            }
            let _ = write!(out, "workload depth, store {}", first.store.name());
            if let Some(l) = layout {
                let _ = write!(out, ", layout {}", l.name());
            }
            let what = match (first.kind, first.runs) {
                ("median", Some(n)) => format!("median of {n} runs"),
                _ => format!("run {}", first.run.unwrap_or(1)),
            };
            let _ = writeln!(out, ", {} hand-offs per depth ({what})", first.rounds);
            let _ = write!(
                out,
                "baseline: {}: {:.0} hand-offs/s",
                first.baseline, first.baseline_handoffs_per_s
            );
            if let Some(p) = first.ping_p50_us {
                let _ = write!(out, "; one round trip (PING) p50 {p:.0} us");
            }
            out.push('\n');
            let _ = writeln!(
                out,
                "{:>7}  {:>8}  {:>11}  {:>10}  {:>9}  {:>11}  {:>11}  {:>14}  {:>9}",
                "waiters",
                "handoffs",
                "handoffs/s",
                "vs depth 1",
                "vs base",
                "handoff p50",
                "handoff p99",
                "CPU/hand-off",
                "Redis CPU"
            );
            for r in rows {
                if let Some(e) = &r.error {
                    let _ = writeln!(out, "{:>7}  failed: {e}", r.waiters);
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{:>7}  {:>8}  {:>11}  {:>10}  {:>9}  {:>11}  {:>11}  {:>14}  {:>9}",
                    r.waiters,
                    r.handoffs,
                    rate(r.handoffs_per_s),
                    opt(r.ratio_to_depth_1, |v| format!("{v:.2}")),
                    format!("{:.2}", r.ratio),
                    opt(r.handoff_p50_us, |v| format!("{v:.0} us")),
                    opt(r.handoff_p99_us, |v| format!("{v:.0} us")),
                    opt(r.redis_cpu_per_handoff_us, |v| format!("{v:.0} us")),
                    opt(r.redis_cpu_pct, |v| format!("{v:.0}%")),
                );
            }
            for r in self.idle.iter().filter(|r| r.layout == *layout) {
                let _ = writeln!(
                    out,
                    "idle: {} waiters behind a holder doing nothing for {:.1} s: Redis CPU {}",
                    r.waiters,
                    r.idle_s,
                    opt(r.redis_cpu_pct, |v| format!("{v:.1}%"))
                );
            }
        }
        out
    }
}

fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// `v` as one JSON line in the house style.
fn json(v: &impl Serialize) -> String {
    crate::json::line(v)
        .unwrap_or_else(|e| crate::json::error(crate::exit::SOFTWARE, "software", &e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::report::Stats;
    use super::*;

    fn side(handoffs: u64, ms: u64, cpu_ms: u64) -> DepthSide {
        DepthSide {
            handoffs,
            elapsed: Duration::from_millis(ms),
            handoff: Stats::of(&mut [100_000, 200_000]),
            server_cpu: Some(Duration::from_millis(cpu_ms)),
            idle: None,
            max_holders: 1,
        }
    }

    const BASE: Baseline = Baseline {
        name: "SET NX",
        handoffs_per_s: 1000.0,
        ping_p50_us: Some(50.0),
    };

    #[test]
    fn a_run_reports_rates_cpu_and_ratios_per_depth() {
        let mut deep = side(10, 1000, 1000);
        deep.idle = Some((Duration::from_secs(2), Some(Duration::from_millis(50))));
        let r = DepthReport::run(
            StoreKind::Redis,
            Some(Layout::Rasa),
            1,
            100,
            &[(1, Ok(side(100, 100, 50))), (1000, Ok(deep))],
            BASE,
        );
        let lines: Vec<serde_json::Value> = r
            .json_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        let (a, b, idle) = (&lines[0], &lines[1], &lines[2]);
        assert_eq!(
            (&a["workload"], &a["phase"], &a["layout"], &a["waiters"]),
            (
                &"depth".into(),
                &"handoff".into(),
                &"rasa".into(),
                &1.into()
            )
        );
        assert_eq!(a["handoffs_per_s"], 1000.0);
        assert_eq!(a["redis_cpu_per_handoff_us"], 500);
        assert_eq!(a["redis_cpu_pct"], 50.0);
        assert_eq!(a["ratio"], 1.0);
        assert_eq!(a["ping_p50_us"], 50);
        assert_eq!(a["handoff_p50_us"], 100);
        assert_eq!(a["elapsed_us"], 100_000);
        assert_eq!(b["handoffs_per_s"], 10.0);
        assert_eq!(b["ratio_to_depth_1"], 0.01);
        assert_eq!(b["redis_cpu_per_handoff_us"], 100_000);
        assert_eq!(b["max_holders"], 1);
        assert_eq!(
            (&idle["phase"], &idle["waiters"]),
            (&"idle".into(), &1000.into())
        );
        assert_eq!(idle["idle_us"], 2_000_000);
        assert_eq!(idle["redis_cpu_pct"], 2.5);
    }

    #[test]
    fn the_median_is_per_layout_and_depth() {
        let mut all = DepthReport::default();
        for (run, ms) in [(1, 100), (2, 200), (3, 50)] {
            for layout in [Layout::Rasa, Layout::Native] {
                all.extend(DepthReport::run(
                    StoreKind::Redis,
                    Some(layout),
                    run,
                    100,
                    &[(1, Ok(side(100, ms, 10))), (5, Ok(side(100, 2 * ms, 10)))],
                    BASE,
                ));
            }
        }
        let m = all.median();
        assert_eq!(m.rows.len(), 4);
        let keys: Vec<_> = m.rows.iter().map(|r| (r.layout, r.waiters)).collect();
        assert_eq!(
            keys,
            [
                (Some(Layout::Rasa), 1),
                (Some(Layout::Rasa), 5),
                (Some(Layout::Native), 1),
                (Some(Layout::Native), 5)
            ]
        );
        assert!(
            m.rows
                .iter()
                .all(|r| r.kind == "median" && r.runs == Some(3))
        );
        assert_eq!(m.rows[0].handoffs_per_s, 1000.0);
        assert_eq!(m.rows[1].ratio_to_depth_1, Some(0.5));
        let t = m.table();
        assert!(
            t.contains("layout rasa") && t.contains("layout native"),
            "{t}"
        );
        assert!(t.contains("one round trip (PING) p50 50 us"), "{t}");
    }

    #[test]
    fn a_failed_depth_is_a_line_with_its_error_and_left_out_of_medians() {
        let mut all = DepthReport::default();
        all.extend(DepthReport::run(
            StoreKind::Redis,
            Some(Layout::Rasa),
            1,
            10,
            &[(1, Ok(side(10, 100, 1))), (1000, Err("timed out".into()))],
            BASE,
        ));
        all.extend(DepthReport::run(
            StoreKind::Redis,
            Some(Layout::Rasa),
            2,
            10,
            &[(1, Ok(side(10, 200, 1))), (1000, Ok(side(2, 1000, 900)))],
            BASE,
        ));
        let v: serde_json::Value = serde_json::from_str(&all.json_lines()[1]).unwrap();
        assert_eq!(
            (&v["error"], &v["handoffs"]),
            (&"timed out".into(), &0.into())
        );
        let m = all.median();
        assert_eq!(m.rows[1].error, None);
        assert_eq!(m.rows[1].handoffs_per_s, 2.0);
        assert_eq!(m.rows[1].runs, Some(1));
        // Every run failed: the median says so.
        let only_failed = DepthReport::run(
            StoreKind::Redis,
            Some(Layout::Rasa),
            1,
            10,
            &[(1000, Err("timed out".into()))],
            BASE,
        )
        .median();
        assert_eq!(only_failed.rows[0].error.as_deref(), Some("timed out"));
        assert!(only_failed.table().contains("1000  failed: timed out"));
    }
}
