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

use std::collections::{BTreeMap, HashMap};

use super::clock::ms;
use super::event::{Downstream, Event, Outcome};
use super::rules::{check_conversation, check_recovery, check_stalls};
use super::verdict::percentiles;
pub use super::verdict::{Figures, Verdict, Violation};

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
    pub(super) fn t(self) -> u64 {
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

pub(super) type MsgKey = (u32, u32, u64);

#[derive(Debug, Default)]
pub(super) struct Msg {
    pub(super) conv: Option<u32>,
    pub(super) attempts: Vec<Attempt>,
    pub(super) entered: Option<Entered>,
    pub(super) exit: Option<Left>,
    pub(super) released: Option<(Outcome, u64)>,
    pub(super) failed: Option<Outcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptEnd {
    Open,
    Retried,
    Failed,
    Entered,
}

#[derive(Debug)]
pub(super) struct Attempt {
    pub(super) attempt: u32,
    pub(super) t: u64,
    pub(super) end: AttemptEnd,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entered {
    pub(super) request_t: u64,
    pub(super) t: u64,
    pub(super) ticket: u64,
    pub(super) epoch: Option<u64>,
    pub(super) token: u64,
    pub(super) witness: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Left {
    pub(super) t: u64,
    pub(super) downstream: Downstream,
    pub(super) overrun: bool,
    pub(super) held: Option<Outcome>,
    pub(super) renewed: Option<Outcome>,
}

/// One entered section, as the checker sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Section {
    pub(super) key: MsgKey,
    pub(super) conv: u32,
    pub(super) request_t: u64,
    pub(super) enter_t: u64,
    /// When it left, or its worker died.
    pub(super) end_t: u64,
    pub(super) ticket: u64,
    pub(super) epoch: Option<u64>,
    pub(super) token: u64,
    pub(super) witness: bool,
    pub(super) released: Option<Outcome>,
    pub(super) killed: bool,
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
