//! The rules a conversation's sections must keep (no overlap, ticket order,
//! fencing), how long a conversation may stall, and that workers recover
//! after a fault: applied by `check.rs` to the sections it replayed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::check::{AttemptEnd, GRANT_LATENCY, Msg, MsgKey, Run, Section, Window, WorkerEnd};
use super::clock::ms;
use super::event::Outcome;
use super::verdict::Verdict;

/// Overlaps, ticket order and fencing of one conversation's sections in
/// entry order.
pub(super) fn check_conversation(v: &mut Verdict, run: &Run, s: &[Section]) {
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
pub(super) fn check_stalls(
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
pub(super) fn check_recovery(v: &mut Verdict, run: &Run, by_conv: &BTreeMap<u32, Vec<Section>>) {
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
