//! What the checker concludes from a run: the broken promises and the
//! figures (`check.rs` replays the events; `rules.rs` judges the sections).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::clock::ms;

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// The figures of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Worker processes started, replacements included.
    pub workers: u32,
    /// Messages started.
    pub messages: u64,
    /// Sections entered.
    pub sections: u64,
    /// Sections left (the message was handled).
    pub handled: u64,
    /// Messages given up, by the last error's kind.
    pub failed: BTreeMap<&'static str, u64>,
    /// Attempts that failed and were retried, by kind.
    pub retries: BTreeMap<&'static str, u64>,
    /// Messages of killed workers that had not left their section.
    pub lost_with_killed_processes: u64,
    pub kills: Kills,
    /// Fault windows from the fault log, by name.
    pub injected: BTreeMap<String, u64>,
    /// Sections that were inside when a fault window began (their holder
    /// was in the middle of its work when Redis went away).
    pub sections_across_faults: u64,
    pub overlaps: Overlaps,
    pub order_violations: u64,
    pub fencing_violations: u64,
    /// Messages entered twice, or requested again after their outcome.
    pub duplicates: u64,
    /// Messages of workers that exited normally with no outcome.
    pub silent_losses: u64,
    pub panics: u64,
    pub crashed_workers: u64,
    pub hung_workers: u64,
    pub garbled_lines: u64,
    pub leases: Leases,
    pub downstream: DownstreamFigures,
    pub wait_ms: Percentiles,
    pub stalls: Stalls,
    pub recovery: Recovery,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Kills {
    pub total: u64,
    /// Killed while holding a lock (a section entered and not released).
    pub holders: u64,
    /// Killed while waiting for a lock.
    pub waiters: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Overlaps {
    /// Sections that found the witness taken.
    pub witness: u64,
    /// Sections that entered before an earlier one left, by the clock.
    pub intervals: u64,
    /// Overlapping sections (either kind), by explanation.
    pub explained_by_data_loss: u64,
    pub explained_by_lease_overrun: u64,
    pub unexplained: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Leases {
    pub released: u64,
    /// Releases that found the lease gone.
    pub lost_at_release: u64,
    /// Releases that failed otherwise, by kind.
    pub release_errors: BTreeMap<&'static str, u64>,
    /// Sections that ran past their lifetime on purpose.
    pub overruns: u64,
    /// Of those, the ones whose guard learnt it (is_held false, renew and
    /// release expired).
    pub overruns_detected: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DownstreamFigures {
    pub accepted: u64,
    pub rejected: u64,
    /// Refused writes of holders whose lease was gone: fencing at work.
    pub rejected_stale: u64,
    /// Refused writes of holders whose release succeeded: a violation.
    pub rejected_while_held: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stalls {
    /// Longest time a conversation had waiters and no holder.
    pub max_ms: f64,
    /// Longest time survivors stayed blocked after the last death of a
    /// killed holder or waiter of the conversation (the part of a stall
    /// after that death; away from fault windows): at most a lifetime and
    /// a hand-over.
    pub max_after_death_ms: f64,
    /// Where the longest stall began (ms into the run), and how many dead
    /// tickets and fault windows were near it.
    pub longest_at_ms: f64,
    pub longest_dead_tickets: u64,
    pub longest_faults: u64,
    /// Stalls longer than their bound.
    pub over_bound: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// (fault window, worker that lived through it) pairs.
    pub checked: u64,
    /// Longest time from a window's end to the worker's next entry.
    pub max_ms: f64,
    pub not_recovered: u64,
}

/// The checker's verdict.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub figures: Figures,
    pub violations: Vec<Violation>,
}

impl Verdict {
    pub(super) fn violation(&mut self, kind: &'static str, detail: String) {
        self.violations.push(Violation { kind, detail });
    }
}

pub(super) fn percentiles(values: &mut [u64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_unstable();
    let at = |p: usize| {
        let rank = (values.len() * p).div_ceil(100).max(1);
        ms(values[rank - 1])
    };
    Percentiles {
        p50: at(50),
        p99: at(99),
        max: ms(values[values.len() - 1]),
    }
}
