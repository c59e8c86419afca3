//! The checker: what the workers recorded, against what the lock promises.
//!
//! - **No overlap.** Per conversation, sections sorted by entry; a section
//!   that enters before an earlier one left (by the recorded times), or
//!   that found the witness taken, overlaps. An overlap is *explained* by
//!   data loss when the two holders are of different record incarnations
//!   (epochs) and a `data-loss` mark lies between the first one's request
//!   and the second one's entry; by a lease overrun when the first one's
//!   release said `expired` (or it was killed inside) and the second entered
//!   at least a lifetime (less [`GRANT_LATENCY`]) after the first one
//!   entered. Anything else is a violation.
//! - **Ticket order.** In entry order, per conversation: within one epoch
//!   ticket numbers increase; a new epoch is above the previous one.
//! - **Fencing.** In entry order, per conversation, tokens strictly increase.
//! - **Every message once.** A worker that exited normally started messages
//!   `0..n` of each task (its `done` event), and each one entered, left and
//!   was released once, or failed with an error kind; nothing entered twice.
//!   A killed worker's messages that had not left their section are *lost
//!   with the process*; a worker that crashed or hung is a violation.
//! - **Bounded waits.** A conversation with waiters and nobody holding it
//!   is *stalled*; a stall may last [`Run::slack`] per hand-over, plus a
//!   lifetime per ticket of a killed worker that died within a lifetime of
//!   it, plus, per fault window near it, the window's length, a lifetime
//!   and a socket timeout.
//! - **Downstream.** A write refused by the downstream store (a newer token
//!   was written first) must come from a holder whose release said
//!   `expired`; a section that overran its lease must learn it (`is_held`
//!   false, `renew` and `release` expired).
//! - **Recovery.** After each fault window, every worker that lived through
//!   it enters a section again, if the run went on long enough (a lifetime,
//!   a socket timeout and a second).
//! - **No panic** anywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;

use super::clock::ms;
use super::event::{Downstream, Event, Outcome};

/// Allowance for the time between the server granting a lease and its
/// holder noting its entry (the reply's way back, a task wake-up, the
/// witness): an overlap is explained by an overrun only if the second
/// holder entered at least a lifetime less this after the first one.
pub const GRANT_LATENCY: u64 = 50_000_000;

/// Everything the coordinator gathered.
#[derive(Debug, Clone)]
pub struct Run {
    /// When the run began and when tasks stopped taking messages.
    pub start: u64,
    pub deadline: u64,
    pub tasks: u32,
    pub lifetime: u64,
    pub socket_timeout: u64,
    /// Allowed idle time per hand-over.
    pub slack: u64,
    pub workers: Vec<WorkerLog>,
    pub windows: Vec<Window>,
}

/// One worker process.
#[derive(Debug, Clone)]
pub struct WorkerLog {
    pub index: u32,
    pub spawned: u64,
    pub events: Vec<Event>,
    /// Lines that were not events (a killed worker's last partial line is
    /// not counted).
    pub garbled: u64,
    pub end: WorkerEnd,
    /// The end of its stderr, for the report of a crash.
    pub log_tail: String,
}

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEnd {
    /// It exited by itself at `t`.
    Exited { code: Option<i32>, t: u64 },
    /// The coordinator killed it (SIGKILL); it was reaped at `t`.
    Killed { t: u64 },
    /// It did not end in time and was killed at `t`.
    Hung { t: u64 },
}

impl WorkerEnd {
    fn t(self) -> u64 {
        match self {
            WorkerEnd::Exited { t, .. } | WorkerEnd::Killed { t } | WorkerEnd::Hung { t } => t,
        }
    }
}

/// A fault injected from outside: `[begin, end]` (equal for an instant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub name: String,
    pub begin: u64,
    pub end: u64,
}

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
    fn violation(&mut self, kind: &'static str, detail: String) {
        self.violations.push(Violation { kind, detail });
    }
}

type MsgKey = (u32, u32, u64);

#[derive(Debug, Default)]
struct Msg {
    conv: Option<u32>,
    attempts: Vec<Attempt>,
    entered: Option<Entered>,
    exit: Option<Left>,
    released: Option<(Outcome, u64)>,
    failed: Option<Outcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptEnd {
    Open,
    Retried,
    Failed,
    Entered,
}

#[derive(Debug)]
struct Attempt {
    attempt: u32,
    t: u64,
    end: AttemptEnd,
}

#[derive(Debug, Clone, Copy)]
struct Entered {
    request_t: u64,
    t: u64,
    ticket: u64,
    epoch: Option<u64>,
    token: u64,
    witness: bool,
}

#[derive(Debug, Clone, Copy)]
struct Left {
    t: u64,
    downstream: Downstream,
    overrun: bool,
    held: Option<Outcome>,
    renewed: Option<Outcome>,
}

/// One entered section, as the checker sees it.
#[derive(Debug, Clone, Copy)]
struct Section {
    key: MsgKey,
    conv: u32,
    request_t: u64,
    enter_t: u64,
    /// When it left, or its worker died.
    end_t: u64,
    ticket: u64,
    epoch: Option<u64>,
    token: u64,
    witness: bool,
    released: Option<Outcome>,
    killed: bool,
}

/// Checks a run.
pub fn check(run: &Run) -> Verdict {
    let mut v = Verdict::default();
    let rel = |t: u64| ms(t.saturating_sub(run.start));
    let mut msgs: BTreeMap<MsgKey, Msg> = BTreeMap::new();
    let end_of: HashMap<u32, WorkerEnd> = run.workers.iter().map(|w| (w.index, w.end)).collect();
    v.figures.workers = run.workers.len() as u32;

    for w in &run.workers {
        let mut done: BTreeMap<u32, u64> = BTreeMap::new();
        v.figures.garbled_lines += w.garbled;
        if w.garbled > 0 {
            v.violation(
                "garbled_output",
                format!("worker {}: {} lines were not events", w.index, w.garbled),
            );
        }
        for e in &w.events {
            read_event(&mut v, &mut msgs, &mut done, w.index, e);
        }
        let own = msgs.range((w.index, 0, 0)..=(w.index, u32::MAX, u64::MAX));
        let started = own.clone().count() as u64;
        v.figures.messages += started;
        match w.end {
            WorkerEnd::Exited { code: Some(0), .. } => {
                for task in 0..run.tasks {
                    let Some(&n) = done.get(&task) else {
                        v.violation(
                            "task_unfinished",
                            format!("worker {} exited, but task {task} never said done", w.index),
                        );
                        continue;
                    };
                    for seq in 0..n {
                        let outcome = msgs.get(&(w.index, task, seq)).is_some_and(|m| {
                            m.failed.is_some()
                                || (m.entered.is_some() && m.exit.is_some() && m.released.is_some())
                        });
                        if !outcome {
                            v.figures.silent_losses += 1;
                            v.violation(
                                "silent_loss",
                                format!(
                                    "message {}/{task}/{seq} of a worker that exited normally was \
                                     neither handled nor reported failed",
                                    w.index
                                ),
                            );
                        }
                    }
                }
                for ((_, task, seq), _) in own.clone() {
                    if done.get(task).is_none_or(|&n| *seq >= n) {
                        v.violation(
                            "unplanned_message",
                            format!("message {}/{task}/{seq} is past its task's count", w.index),
                        );
                    }
                }
            }
            WorkerEnd::Exited { code, t } => {
                v.figures.crashed_workers += 1;
                v.violation(
                    "worker_crashed",
                    format!(
                        "worker {} exited with {} at {:.0} ms: {}",
                        w.index,
                        code.map_or("a signal".to_string(), |c| format!("status {c}")),
                        rel(t),
                        w.log_tail.trim()
                    ),
                );
            }
            WorkerEnd::Killed { .. } => {
                v.figures.kills.total += 1;
                let (mut holding, mut waiting) = (false, false);
                for (_, m) in own.clone() {
                    if m.entered.is_some() && m.released.is_none() {
                        holding = true;
                    }
                    if m.attempts.iter().any(|a| a.end == AttemptEnd::Open) {
                        waiting = true;
                    }
                    if m.exit.is_none() && m.failed.is_none() {
                        v.figures.lost_with_killed_processes += 1;
                    }
                }
                v.figures.kills.holders += u64::from(holding);
                v.figures.kills.waiters += u64::from(waiting);
            }
            WorkerEnd::Hung { t } => {
                v.figures.hung_workers += 1;
                v.violation(
                    "worker_hung",
                    format!(
                        "worker {} did not finish and was killed at {:.0} ms",
                        w.index,
                        rel(t)
                    ),
                );
            }
        }
    }

    // Sections, per conversation, in entry order.
    let mut by_conv: BTreeMap<u32, Vec<Section>> = BTreeMap::new();
    let mut waits = Vec::new();
    for (&key, m) in &msgs {
        let (Some(e), Some(conv)) = (m.entered, m.conv) else {
            continue;
        };
        let worker_end = end_of
            .get(&key.0)
            .copied()
            .unwrap_or(WorkerEnd::Hung { t: 0 });
        waits.push(e.t.saturating_sub(e.request_t));
        v.figures.sections += 1;
        if let Some(l) = m.exit {
            v.figures.handled += 1;
            account_exit(&mut v, run, key, &l, m.released.map(|r| r.0));
        }
        match m.released {
            Some((Outcome::Ok, _)) => v.figures.leases.released += 1,
            Some((Outcome::Expired, _)) => v.figures.leases.lost_at_release += 1,
            Some((kind, _)) => {
                *v.figures
                    .leases
                    .release_errors
                    .entry(kind.name())
                    .or_default() += 1
            }
            None => {}
        }
        by_conv.entry(conv).or_default().push(Section {
            key,
            conv,
            request_t: e.request_t,
            enter_t: e.t,
            end_t: m.exit.map_or(worker_end.t(), |l| l.t),
            ticket: e.ticket,
            epoch: e.epoch,
            token: e.token,
            witness: e.witness,
            released: m.released.map(|r| r.0),
            killed: matches!(worker_end, WorkerEnd::Killed { .. }),
        });
    }
    for sections in by_conv.values_mut() {
        sections.sort_by_key(|s| s.enter_t);
        v.figures.sections_across_faults += sections
            .iter()
            .filter(|s| {
                run.windows
                    .iter()
                    .any(|w| s.enter_t < w.begin && w.begin < s.end_t)
            })
            .count() as u64;
        check_conversation(&mut v, run, sections);
    }
    v.figures.wait_ms = percentiles(&mut waits);

    check_stalls(&mut v, run, &msgs, &end_of);
    check_recovery(&mut v, run, &by_conv);
    for w in &run.windows {
        *v.figures.injected.entry(w.name.clone()).or_default() += 1;
    }
    // The broken promises first, their consequences after.
    v.violations.sort_by_key(|x| {
        [
            "overlap",
            "order",
            "fencing",
            "duplicate",
            "silent_loss",
            "panic",
            "worker_crashed",
            "worker_hung",
        ]
        .iter()
        .position(|k| *k == x.kind)
        .unwrap_or(usize::MAX)
    });
    v
}

fn read_event(
    v: &mut Verdict,
    msgs: &mut BTreeMap<MsgKey, Msg>,
    done: &mut BTreeMap<u32, u64>,
    worker: u32,
    e: &Event,
) {
    match *e {
        Event::Ready { .. } => {}
        Event::Request {
            task,
            msg,
            conv,
            attempt,
            t,
            ..
        } => {
            let m = msgs.entry((worker, task, msg)).or_default();
            if m.entered.is_some() || m.failed.is_some() {
                v.figures.duplicates += 1;
                v.violation(
                    "duplicate",
                    format!("message {worker}/{task}/{msg} was requested again after its outcome"),
                );
            }
            m.conv = Some(conv);
            m.attempts.push(Attempt {
                attempt,
                t,
                end: AttemptEnd::Open,
            });
        }
        Event::Retry {
            task,
            msg,
            attempt,
            kind,
            ..
        } => {
            *v.figures.retries.entry(kind.name()).or_default() += 1;
            end_attempt(v, msgs, (worker, task, msg), attempt, AttemptEnd::Retried);
        }
        Event::Fail {
            task,
            msg,
            attempt,
            kind,
            ..
        } => {
            *v.figures.failed.entry(kind.name()).or_default() += 1;
            end_attempt(v, msgs, (worker, task, msg), attempt, AttemptEnd::Failed);
            let m = msgs.entry((worker, task, msg)).or_default();
            if m.entered.is_some() {
                v.figures.duplicates += 1;
                v.violation(
                    "duplicate",
                    format!("message {worker}/{task}/{msg} was handled and reported failed"),
                );
            }
            m.failed = Some(kind);
        }
        Event::Enter {
            task,
            msg,
            attempt,
            ticket,
            epoch,
            token,
            witness,
            t,
            ..
        } => {
            let request_t = end_attempt(v, msgs, (worker, task, msg), attempt, AttemptEnd::Entered);
            let m = msgs.entry((worker, task, msg)).or_default();
            if m.entered.is_some() {
                v.figures.duplicates += 1;
                v.violation(
                    "duplicate",
                    format!("message {worker}/{task}/{msg} entered its section twice"),
                );
                return;
            }
            m.entered = Some(Entered {
                request_t: request_t.unwrap_or(t),
                t,
                ticket,
                epoch,
                token,
                witness,
            });
        }
        Event::Exit {
            task,
            msg,
            downstream,
            overrun,
            held,
            renewed,
            t,
            ..
        } => {
            let m = msgs.entry((worker, task, msg)).or_default();
            if m.entered.is_none() || m.exit.is_some() {
                v.violation(
                    "protocol",
                    format!("message {worker}/{task}/{msg} left a section it was not in"),
                );
            }
            m.exit = Some(Left {
                t,
                downstream,
                overrun,
                held,
                renewed,
            });
        }
        Event::Released {
            task,
            msg,
            outcome,
            t,
            ..
        } => {
            let m = msgs.entry((worker, task, msg)).or_default();
            if m.exit.is_none() || m.released.is_some() {
                v.violation(
                    "protocol",
                    format!("message {worker}/{task}/{msg} released a lock it did not hold"),
                );
            }
            m.released = Some((outcome, t));
        }
        Event::Done { task, messages, .. } => {
            if done.insert(task, messages).is_some() {
                v.violation("protocol", format!("task {worker}/{task} said done twice"));
            }
        }
        Event::Panic { ref message, .. } => {
            v.figures.panics += 1;
            v.violation("panic", format!("worker {worker}: {message}"));
        }
    }
}

/// Ends an open attempt; returns when it was requested.
fn end_attempt(
    v: &mut Verdict,
    msgs: &mut BTreeMap<MsgKey, Msg>,
    key: MsgKey,
    attempt: u32,
    end: AttemptEnd,
) -> Option<u64> {
    let found = msgs.get_mut(&key).and_then(|m| {
        m.attempts
            .iter_mut()
            .find(|a| a.attempt == attempt && a.end == AttemptEnd::Open)
    });
    match found {
        Some(a) => {
            a.end = end;
            Some(a.t)
        }
        None => {
            let (w, task, msg) = key;
            v.violation(
                "protocol",
                format!("message {w}/{task}/{msg}: attempt {attempt} ended without a request"),
            );
            None
        }
    }
}

/// The downstream store's answer and the overrun's detection.
fn account_exit(v: &mut Verdict, run: &Run, key: MsgKey, l: &Left, released: Option<Outcome>) {
    let (w, task, msg) = key;
    let rel = |t: u64| ms(t.saturating_sub(run.start));
    match l.downstream {
        Downstream::Accepted => v.figures.downstream.accepted += 1,
        Downstream::Rejected { highest } => {
            v.figures.downstream.rejected += 1;
            match released {
                Some(Outcome::Expired) => v.figures.downstream.rejected_stale += 1,
                Some(Outcome::Ok) => {
                    v.figures.downstream.rejected_while_held += 1;
                    v.violation(
                        "rejected_while_held",
                        format!(
                            "message {w}/{task}/{msg}: the downstream store had token {highest} \
                             already at {:.0} ms, yet this holder's lease was still held when it \
                             released",
                            rel(l.t)
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    if l.overrun {
        v.figures.leases.overruns += 1;
        let answers = [l.held, l.renewed, released];
        if answers.iter().all(|a| *a == Some(Outcome::Expired)) {
            v.figures.leases.overruns_detected += 1;
        } else if answers.contains(&Some(Outcome::Ok)) {
            v.violation(
                "overrun_undetected",
                format!(
                    "message {w}/{task}/{msg} ran 1.5 lifetimes without renewing, yet is_held/renew/\
                     release answered {answers:?}"
                ),
            );
        }
    }
}

/// Overlaps, ticket order and fencing of one conversation's sections in
/// entry order.
fn check_conversation(v: &mut Verdict, run: &Run, s: &[Section]) {
    let rel = |t: u64| ms(t.saturating_sub(run.start));
    let name = |x: &Section| format!("{}/{}/{}", x.key.0, x.key.1, x.key.2);
    // The earlier section still inside when each one entered (the one that
    // leaves last), if any.
    let mut open: Option<usize> = None;
    for i in 0..s.len() {
        let b = &s[i];
        let by_clock = open.filter(|&j| b.enter_t < s[j].end_t);
        if by_clock.is_some() {
            v.figures.overlaps.intervals += 1;
        }
        if !b.witness {
            v.figures.overlaps.witness += 1;
        }
        // A witness found taken with no interval open: the other holder was
        // between noting its exit and dropping the witness; compare with
        // the section just before.
        let other = by_clock.or_else(|| (!b.witness && i > 0).then(|| i - 1));
        if let Some(j) = other {
            let a = &s[j];
            match explain(run, a, b) {
                Some(Explained::DataLoss) => v.figures.overlaps.explained_by_data_loss += 1,
                Some(Explained::LeaseOverrun) => v.figures.overlaps.explained_by_lease_overrun += 1,
                None => {
                    v.figures.overlaps.unexplained += 1;
                    v.violation(
                        "overlap",
                        format!(
                            "conversation {}: {} (ticket {}, epoch {:?}) entered at {:.1} ms while \
                             {} (ticket {}, epoch {:?}, entered {:.1} ms, left {:.1} ms{}) was inside",
                            b.conv,
                            name(b),
                            b.ticket,
                            b.epoch,
                            rel(b.enter_t),
                            name(a),
                            a.ticket,
                            a.epoch,
                            rel(a.enter_t),
                            rel(a.end_t),
                            if a.killed { ", killed" } else { "" },
                        ),
                    );
                }
            }
        } else if !b.witness {
            v.figures.overlaps.unexplained += 1;
            v.violation(
                "overlap",
                format!(
                    "conversation {}: {} found the witness taken at {:.1} ms by no recorded section",
                    b.conv,
                    name(b),
                    rel(b.enter_t)
                ),
            );
        }
        if open.is_none_or(|j| b.end_t > s[j].end_t) {
            open = Some(i);
        }
        if i == 0 {
            continue;
        }
        let a = &s[i - 1];
        let in_order = match (a.epoch, b.epoch) {
            (Some(ea), Some(eb)) if ea == eb => b.ticket > a.ticket,
            (Some(ea), Some(eb)) => eb > ea,
            _ => true,
        };
        if !in_order {
            v.figures.order_violations += 1;
            v.violation(
                "order",
                format!(
                    "conversation {}: {} (epoch {:?}, ticket {}) entered at {:.1} ms after {} \
                     (epoch {:?}, ticket {})",
                    b.conv,
                    name(b),
                    b.epoch,
                    b.ticket,
                    rel(b.enter_t),
                    name(a),
                    a.epoch,
                    a.ticket
                ),
            );
        }
        if b.token <= a.token {
            v.figures.fencing_violations += 1;
            v.violation(
                "fencing",
                format!(
                    "conversation {}: {} entered with token {} after {} with token {}",
                    b.conv,
                    name(b),
                    b.token,
                    name(a),
                    a.token
                ),
            );
        }
    }
}

enum Explained {
    DataLoss,
    LeaseOverrun,
}

/// Why `b` could enter while `a` was inside, if the lock allows it.
fn explain(run: &Run, a: &Section, b: &Section) -> Option<Explained> {
    let lost_between = run
        .windows
        .iter()
        .any(|w| w.name == "data-loss" && a.request_t < w.begin && w.begin < b.enter_t);
    if a.epoch != b.epoch && lost_between {
        return Some(Explained::DataLoss);
    }
    let lease_gone = a.killed || a.released == Some(Outcome::Expired);
    if lease_gone && b.enter_t + GRANT_LATENCY >= a.enter_t + run.lifetime {
        return Some(Explained::LeaseOverrun);
    }
    None
}

/// Stalls: per conversation, the times some attempt that later entered
/// was waiting while no section held the lock.
fn check_stalls(
    v: &mut Verdict,
    run: &Run,
    msgs: &BTreeMap<MsgKey, Msg>,
    end_of: &HashMap<u32, WorkerEnd>,
) {
    // (time, waiting delta, holding delta) per conversation.
    let mut marks: BTreeMap<u32, Vec<(u64, i32, i32)>> = BTreeMap::new();
    // Death times of killed workers' tickets (waiting or held), per
    // conversation.
    let mut dead: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (&(w, _, _), m) in msgs {
        let Some(conv) = m.conv else { continue };
        let end = end_of.get(&w).copied();
        let marks = marks.entry(conv).or_default();
        if let Some(e) = m.entered {
            marks.push((e.request_t, 1, 0));
            marks.push((e.t, -1, 0));
            let until = m.released.map_or(end.map_or(e.t, WorkerEnd::t), |r| r.1);
            marks.push((e.t, 0, 1));
            marks.push((until.max(e.t), 0, -1));
        }
        if let Some(WorkerEnd::Killed { t }) = end {
            let tickets = m
                .attempts
                .iter()
                .filter(|a| a.end == AttemptEnd::Open)
                .count()
                + usize::from(m.entered.is_some() && m.released.is_none());
            dead.entry(conv)
                .or_default()
                .extend(std::iter::repeat_n(t, tickets));
        }
    }
    let (l, slack) = (run.lifetime, run.slack);
    for (conv, mut marks) in marks {
        // Holding starts before waiting ends at the same instant.
        marks.sort_by_key(|&(t, w, h)| (t, -h, w));
        let (mut waiting, mut holding) = (0i32, 0i32);
        let mut since: Option<u64> = None;
        for (t, dw, dh) in marks {
            waiting += dw;
            holding += dh;
            let stalled = waiting > 0 && holding == 0;
            match (since, stalled) {
                (None, true) => since = Some(t),
                (Some(a), false) => {
                    since = None;
                    let len = t - a;
                    // Deaths that can have left a ticket in the queue
                    // during the stall: a dead ticket lives at most a
                    // lifetime past its process.
                    let deaths: Vec<u64> = dead.get(&conv).map_or(Vec::new(), |d| {
                        d.iter()
                            .copied()
                            .filter(|&k| k + l + slack >= a && k <= t)
                            .collect()
                    });
                    let near: Vec<&Window> = run
                        .windows
                        .iter()
                        .filter(|w| w.begin <= t && w.end + l + run.socket_timeout + slack >= a)
                        .collect();
                    let faults: u64 = near
                        .iter()
                        .map(|w| w.end - w.begin + l + run.socket_timeout)
                        .sum();
                    // Every dead ticket is gone a lifetime after the last
                    // death, however many there are; then a hand-over.
                    let last_death = deaths.iter().max().copied();
                    let allowed = faults
                        + match last_death {
                            Some(k) => k.saturating_sub(a) + l + 2 * slack,
                            None => slack,
                        };
                    let st = &mut v.figures.stalls;
                    if ms(len) > st.max_ms {
                        st.max_ms = ms(len);
                        st.longest_at_ms = ms(a.saturating_sub(run.start));
                        st.longest_dead_tickets = deaths.len() as u64;
                        st.longest_faults = near.len() as u64;
                    }
                    if let Some(k) = last_death.filter(|_| near.is_empty()) {
                        let after = t.saturating_sub(k.max(a));
                        st.max_after_death_ms = st.max_after_death_ms.max(ms(after));
                    }
                    if len > allowed {
                        v.figures.stalls.over_bound += 1;
                        v.violation(
                            "stall",
                            format!(
                                "conversation {conv} had waiters and no holder for {:.1} ms from \
                                 {:.1} ms; allowed {:.1} ms ({} dead tickets, {} fault windows \
                                 near it)",
                                ms(len),
                                ms(a.saturating_sub(run.start)),
                                ms(allowed),
                                deaths.len(),
                                near.len()
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// After each fault window, every worker that lived through it enters
/// again.
fn check_recovery(v: &mut Verdict, run: &Run, by_conv: &BTreeMap<u32, Vec<Section>>) {
    let mut entries: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for s in by_conv.values().flatten() {
        entries.entry(s.key.0).or_default().insert(s.enter_t);
    }
    let needed = run.lifetime + run.socket_timeout + 1_000_000_000;
    for win in &run.windows {
        for w in &run.workers {
            let survived =
                matches!(w.end, WorkerEnd::Exited { code: Some(0), .. }) && w.spawned <= win.begin;
            if !survived {
                continue;
            }
            v.figures.recovery.checked += 1;
            let next = entries
                .get(&w.index)
                .and_then(|e| e.range(win.end..).next().copied());
            match next {
                Some(t) => {
                    v.figures.recovery.max_ms = v.figures.recovery.max_ms.max(ms(t - win.end));
                }
                None if run.deadline >= win.end + needed => {
                    v.figures.recovery.not_recovered += 1;
                    v.violation(
                        "not_recovered",
                        format!(
                            "worker {} entered no section after {} ended at {:.0} ms, though the \
                             run went on for {:.0} ms",
                            w.index,
                            win.name,
                            ms(win.end.saturating_sub(run.start)),
                            ms(run.deadline - win.end)
                        ),
                    );
                }
                None => {}
            }
        }
    }
}

fn percentiles(values: &mut [u64]) -> Percentiles {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const L: u64 = 1_000 * MS;

    /// A little builder of worker logs: one task per call sequence.
    struct Log {
        worker: u32,
        events: Vec<Event>,
    }

    impl Log {
        fn new(worker: u32) -> Self {
            Log {
                worker,
                events: Vec::new(),
            }
        }

        /// A message handled in `[enter, exit]`, requested at `request`.
        #[allow(clippy::too_many_arguments)]
        fn handled(
            &mut self,
            task: u32,
            msg: u64,
            conv: u32,
            (request, enter, exit): (u64, u64, u64),
            (epoch, ticket): (u64, u64),
            witness: bool,
            released: Outcome,
        ) -> &mut Self {
            let worker = self.worker;
            self.events.extend([
                Event::Request {
                    worker,
                    task,
                    msg,
                    conv,
                    attempt: 1,
                    t: request,
                },
                Event::Enter {
                    worker,
                    task,
                    msg,
                    conv,
                    attempt: 1,
                    ticket,
                    epoch: Some(epoch),
                    token: epoch + ticket,
                    witness,
                    t: enter,
                },
                Event::Exit {
                    worker,
                    task,
                    msg,
                    downstream: Downstream::Accepted,
                    wrote: exit,
                    overrun: false,
                    held: None,
                    renewed: None,
                    t: exit,
                },
                Event::Released {
                    worker,
                    task,
                    msg,
                    outcome: released,
                    t: exit + MS,
                },
            ]);
            self
        }

        fn done(&mut self, task: u32, messages: u64) -> &mut Self {
            self.events.push(Event::Done {
                worker: self.worker,
                task,
                messages,
                t: 0,
            });
            self
        }

        fn exited(&self) -> WorkerLog {
            self.ended(WorkerEnd::Exited {
                code: Some(0),
                t: 100_000 * MS,
            })
        }

        fn ended(&self, end: WorkerEnd) -> WorkerLog {
            WorkerLog {
                index: self.worker,
                spawned: 0,
                events: self.events.clone(),
                garbled: 0,
                end,
                log_tail: "the log".into(),
            }
        }
    }

    fn run(workers: Vec<WorkerLog>) -> Run {
        Run {
            start: 0,
            deadline: 1_000 * MS,
            tasks: 1,
            lifetime: L,
            socket_timeout: 500 * MS,
            slack: 100 * MS,
            workers,
            windows: Vec::new(),
        }
    }

    fn kinds(v: &Verdict) -> Vec<&'static str> {
        v.violations.iter().map(|x| x.kind).collect()
    }

    /// Two workers taking turns on conversation 0, in ticket order.
    fn clean() -> Vec<WorkerLog> {
        let mut a = Log::new(0);
        let mut b = Log::new(1);
        a.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 0), true, Outcome::Ok);
        b.handled(
            0,
            0,
            0,
            (2 * MS, 12 * MS, 20 * MS),
            (1000, 1),
            true,
            Outcome::Ok,
        );
        a.handled(
            0,
            1,
            0,
            (11 * MS, 22 * MS, 30 * MS),
            (1000, 2),
            true,
            Outcome::Ok,
        );
        a.done(0, 2);
        b.done(0, 1);
        vec![a.exited(), b.exited()]
    }

    #[test]
    fn a_clean_run_passes_with_its_figures() {
        let v = check(&run(clean()));
        assert_eq!(v.violations, []);
        let f = &v.figures;
        assert_eq!((f.messages, f.sections, f.handled), (3, 3, 3));
        assert_eq!(f.leases.released, 3);
        assert_eq!(f.downstream.accepted, 3);
        assert_eq!(f.overlaps.intervals + f.overlaps.witness, 0);
        // Waits: 1, 10 and 11 ms.
        assert_eq!(f.wait_ms.max, 11.0);
        // Hand-overs of 2 ms: the releases are noted 1 ms after the exits.
        assert!(f.stalls.max_ms <= 2.0, "{}", f.stalls.max_ms);
    }

    #[test]
    fn an_overlap_is_caught_by_the_clock_and_by_the_witness() {
        let mut a = Log::new(0);
        let mut b = Log::new(1);
        a.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 0), true, Outcome::Ok);
        b.handled(0, 0, 0, (0, 5 * MS, 15 * MS), (1000, 1), false, Outcome::Ok);
        a.done(0, 1);
        b.done(0, 1);
        let v = check(&run(vec![a.exited(), b.exited()]));
        assert_eq!(kinds(&v), ["overlap"], "{:?}", v.violations);
        let o = &v.figures.overlaps;
        assert_eq!((o.intervals, o.witness, o.unexplained), (1, 1, 1));
    }

    #[test]
    fn a_witness_conflict_without_an_interval_is_still_an_overlap() {
        let mut a = Log::new(0);
        let mut b = Log::new(1);
        a.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 0), true, Outcome::Ok);
        b.handled(
            0,
            0,
            0,
            (0, 11 * MS, 15 * MS),
            (1000, 1),
            false,
            Outcome::Ok,
        );
        a.done(0, 1);
        b.done(0, 1);
        let v = check(&run(vec![a.exited(), b.exited()]));
        assert_eq!(kinds(&v), ["overlap"]);
        assert_eq!(v.figures.overlaps.witness, 1);
        assert_eq!(v.figures.overlaps.intervals, 0);
    }

    #[test]
    fn an_overrun_explains_an_overlap_only_after_a_lifetime() {
        for (b_enters, explained) in [(L - 10 * MS, true), (L / 2, false)] {
            let mut a = Log::new(0);
            let mut b = Log::new(1);
            a.handled(
                0,
                0,
                0,
                (0, 0, 1500 * MS),
                (1000, 0),
                true,
                Outcome::Expired,
            );
            b.handled(
                0,
                0,
                0,
                (MS, b_enters, b_enters + 10 * MS),
                (1000, 1),
                false,
                Outcome::Ok,
            );
            a.done(0, 1);
            b.done(0, 1);
            let v = check(&run(vec![a.exited(), b.exited()]));
            let o = &v.figures.overlaps;
            if explained {
                assert_eq!(v.violations, []);
                assert_eq!(o.explained_by_lease_overrun, 1);
            } else {
                assert_eq!(kinds(&v), ["overlap"]);
                assert_eq!(o.unexplained, 1);
            }
        }
    }

    #[test]
    fn data_loss_explains_an_overlap_across_epochs_only() {
        for (epoch_b, explained) in [(5000, true), (1000, false)] {
            let mut a = Log::new(0);
            let mut b = Log::new(1);
            a.handled(
                0,
                0,
                0,
                (0, MS, 300 * MS),
                (1000, 3),
                true,
                Outcome::Expired,
            );
            b.handled(
                0,
                0,
                0,
                (0, 200 * MS, 210 * MS),
                (epoch_b, 4),
                false,
                Outcome::Ok,
            );
            a.done(0, 1);
            b.done(0, 1);
            let mut r = run(vec![a.exited(), b.exited()]);
            r.windows.push(Window {
                name: "data-loss".into(),
                begin: 100 * MS,
                end: 100 * MS,
            });
            let v = check(&r);
            if explained {
                assert_eq!(v.violations, [], "{:?}", v.violations);
                assert_eq!(v.figures.overlaps.explained_by_data_loss, 1);
                assert_eq!(v.figures.injected["data-loss"], 1);
            } else {
                assert_eq!(kinds(&v), ["overlap"]);
            }
        }
    }

    #[test]
    fn tickets_and_tokens_out_of_order_are_caught() {
        let mut a = Log::new(0);
        a.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 5), true, Outcome::Ok);
        a.handled(
            0,
            1,
            0,
            (11 * MS, 12 * MS, 20 * MS),
            (1000, 4),
            true,
            Outcome::Ok,
        );
        // A new epoch that is lower: its token is lower too.
        a.handled(
            0,
            2,
            0,
            (21 * MS, 22 * MS, 30 * MS),
            (900, 9),
            true,
            Outcome::Ok,
        );
        a.done(0, 3);
        let v = check(&run(vec![a.exited()]));
        assert_eq!(kinds(&v), ["order", "order", "fencing", "fencing"]);
        assert_eq!(v.figures.order_violations, 2);
        assert_eq!(v.figures.fencing_violations, 2);
    }

    #[test]
    fn messages_handled_twice_or_never_are_caught() {
        let mut a = Log::new(0);
        a.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 0), true, Outcome::Ok);
        a.handled(
            0,
            0,
            0,
            (11 * MS, 12 * MS, 20 * MS),
            (1000, 1),
            true,
            Outcome::Ok,
        );
        // Says it started 3 messages: 1 and 2 have no outcome.
        a.done(0, 3);
        let v = check(&run(vec![a.exited()]));
        let k = kinds(&v);
        assert!(k.contains(&"duplicate"), "{k:?}");
        assert_eq!(
            k.iter().filter(|&&k| k == "silent_loss").count(),
            2,
            "{k:?}"
        );
        assert_eq!(v.figures.silent_losses, 2);
    }

    #[test]
    fn a_failed_message_is_an_outcome_with_its_kind() {
        let mut a = Log::new(0);
        a.events.extend([
            Event::Request {
                worker: 0,
                task: 0,
                msg: 0,
                conv: 0,
                attempt: 1,
                t: 0,
            },
            Event::Retry {
                worker: 0,
                task: 0,
                msg: 0,
                attempt: 1,
                kind: Outcome::Unavailable,
                t: MS,
            },
            Event::Request {
                worker: 0,
                task: 0,
                msg: 0,
                conv: 0,
                attempt: 2,
                t: 2 * MS,
            },
            Event::Fail {
                worker: 0,
                task: 0,
                msg: 0,
                attempt: 2,
                kind: Outcome::Timeout,
                t: 3 * MS,
            },
        ]);
        a.done(0, 1);
        let v = check(&run(vec![a.exited()]));
        assert_eq!(v.violations, []);
        assert_eq!(v.figures.retries["unavailable"], 1);
        assert_eq!(v.figures.failed["timeout"], 1);
    }

    #[test]
    fn a_killed_holder_loses_its_message_and_may_block_a_lifetime() {
        let mut a = Log::new(0);
        a.events.extend([
            Event::Request {
                worker: 0,
                task: 0,
                msg: 0,
                conv: 0,
                attempt: 1,
                t: 0,
            },
            Event::Enter {
                worker: 0,
                task: 0,
                msg: 0,
                conv: 0,
                attempt: 1,
                ticket: 0,
                epoch: Some(1000),
                token: 1000,
                witness: true,
                t: MS,
            },
        ]);
        let killed = a.ended(WorkerEnd::Killed { t: 20 * MS });
        for (b_enters, ok) in [(L + 50 * MS, true), (L + 250 * MS, false)] {
            let mut b = Log::new(1);
            b.handled(
                0,
                0,
                0,
                (2 * MS, b_enters, b_enters + MS),
                (1000, 1),
                true,
                Outcome::Ok,
            );
            b.done(0, 1);
            let v = check(&run(vec![killed.clone(), b.exited()]));
            let f = &v.figures;
            assert_eq!((f.kills.total, f.kills.holders, f.kills.waiters), (1, 1, 0));
            assert_eq!(f.lost_with_killed_processes, 1);
            if ok {
                assert_eq!(v.violations, [], "{:?}", v.violations);
            } else {
                assert_eq!(kinds(&v), ["stall"]);
                assert_eq!(f.stalls.over_bound, 1);
            }
        }
    }

    #[test]
    fn a_stall_without_a_cause_is_caught() {
        let mut a = Log::new(0);
        let mut b = Log::new(1);
        a.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 0), true, Outcome::Ok);
        b.handled(
            0,
            0,
            0,
            (2 * MS, 400 * MS, 410 * MS),
            (1000, 1),
            true,
            Outcome::Ok,
        );
        a.done(0, 1);
        b.done(0, 1);
        let v = check(&run(vec![a.exited(), b.exited()]));
        assert_eq!(kinds(&v), ["stall"]);
        // The same stall inside a fault window is allowed.
        let mut r = run(vec![a.exited(), b.exited()]);
        r.windows.push(Window {
            name: "redis-down".into(),
            begin: 20 * MS,
            end: 300 * MS,
        });
        let v = check(&r);
        assert_eq!(v.violations, []);
    }

    #[test]
    fn a_worker_that_never_enters_again_after_a_fault_is_caught() {
        let mut a = Log::new(0);
        a.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 0), true, Outcome::Ok);
        a.done(0, 1);
        let mut r = run(vec![a.exited()]);
        r.deadline = 5_000 * MS;
        r.windows.push(Window {
            name: "redis-stop".into(),
            begin: 100 * MS,
            end: 200 * MS,
        });
        let v = check(&r);
        assert_eq!(kinds(&v), ["not_recovered"]);
        assert_eq!(v.figures.recovery.checked, 1);
    }

    #[test]
    fn crashes_panics_and_a_rejected_write_of_a_held_lease_are_violations() {
        let mut a = Log::new(0);
        a.events.push(Event::Panic {
            worker: 0,
            message: "boom".into(),
        });
        let crashed = a.ended(WorkerEnd::Exited {
            code: Some(101),
            t: MS,
        });
        let mut b = Log::new(1);
        b.handled(0, 0, 0, (0, MS, 10 * MS), (1000, 0), true, Outcome::Ok);
        if let Some(Event::Exit { downstream, .. }) = b.events.get_mut(2) {
            *downstream = Downstream::Rejected { highest: 2000 };
        }
        b.done(0, 1);
        let v = check(&run(vec![crashed, b.exited()]));
        assert_eq!(
            kinds(&v),
            ["panic", "worker_crashed", "rejected_while_held"]
        );
        assert!(v.violations[1].detail.contains("the log"));
        assert_eq!(v.figures.panics, 1);
        assert_eq!(v.figures.crashed_workers, 1);
    }

    #[test]
    fn an_overrun_must_be_noticed_by_the_guard() {
        let mut a = Log::new(0);
        a.handled(
            0,
            0,
            0,
            (0, MS, 1500 * MS),
            (1000, 0),
            true,
            Outcome::Expired,
        );
        if let Some(Event::Exit {
            overrun,
            held,
            renewed,
            ..
        }) = a.events.get_mut(2)
        {
            *overrun = true;
            *held = Some(Outcome::Ok);
            *renewed = Some(Outcome::Expired);
        }
        a.done(0, 1);
        let v = check(&run(vec![a.exited()]));
        assert_eq!(kinds(&v), ["overrun_undetected"]);
        assert_eq!(v.figures.leases.overruns, 1);
        assert_eq!(v.figures.leases.overruns_detected, 0);
    }
}
