//! The metrics the crate records, through the [`metrics`](https://docs.rs/metrics)
//! facade, with the `metrics` cargo feature.
//!
//! Nothing is recorded until the application installs a recorder (an
//! exporter, e.g. `metrics-exporter-prometheus`); without the feature the
//! calls compile to nothing. No metric is labelled by conversation: label
//! sets stay fixed and small. The constants below are the names; the unit
//! is in each name (`_seconds`, `_total`; gauges and `tickets_ahead` count
//! locks or tickets).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `ticketlock_wait_seconds` | histogram | `outcome`: `acquired`, `timed_out`, `lost` | from the issue of a ticket to the end of its wait |
//! | `ticketlock_hold_seconds` | histogram | | from acquisition to release (or drop) of a guard |
//! | `ticketlock_handoff_seconds` | histogram | | from the push wake-up of a waiter to its acquisition |
//! | `ticketlock_tickets_ahead` | histogram | | live tickets ahead of a ticket when it was issued |
//! | `ticketlock_locks_held` | gauge | | guards alive in this process |
//! | `ticketlock_tickets_waiting` | gauge | | tickets issued in this process and not served yet |
//! | `ticketlock_wakeups_total` | counter | `cause`: `push`, `holder_expiry`, `wait_time`, `keep_alive` | looks at the queue by a waiter, by what woke it |
//! | `ticketlock_leases_lost_total` | counter | | guards that learnt their lease ran out |
//! | `ticketlock_renewals_total` | counter | | lease renewals that succeeded |
//! | `ticketlock_renewal_failures_total` | counter | | renewals that failed: the store could not be reached (a lost lease is counted above) |
//! | `ticketlock_unavailable_total` | counter | | [`Error::Unavailable`](crate::Error::Unavailable) errors |
//! | `ticketlock_reconnects_total` | counter | `connection`: `command`, `pubsub` | remote connections replaced or made again after a failure |
//! | `ticketlock_try_locks_total` | counter | `outcome`: `acquired`, `busy` | [`try_lock`](crate::LockStore::try_lock) calls by answer |
//! | `ticketlock_record_repairs_total` | counter | | Redis (Rasa layout): tickets of ours that a stale Rasa write had dropped, brought back or set back, put right from our own queue |

use std::time::Duration;

use crate::LockStore;
use crate::backend::Attempt;
use crate::lock::Held;
use crate::stats::counters;
use crate::store::Kind;

/// Histogram: seconds from a ticket's issue to the end of its wait, by
/// `outcome` (`acquired`, `timed_out`, `lost`).
pub const WAIT_SECONDS: &str = "ticketlock_wait_seconds";
/// Histogram: seconds a guard held its lock.
pub const HOLD_SECONDS: &str = "ticketlock_hold_seconds";
/// Histogram: seconds from a waiter's push wake-up to its acquisition.
pub const HANDOFF_SECONDS: &str = "ticketlock_handoff_seconds";
/// Histogram: live tickets ahead of a ticket at its issue.
pub const TICKETS_AHEAD: &str = "ticketlock_tickets_ahead";
/// Gauge: guards alive in this process.
pub const LOCKS_HELD: &str = "ticketlock_locks_held";
/// Gauge: tickets issued in this process and not served yet.
pub const TICKETS_WAITING: &str = "ticketlock_tickets_waiting";
/// Counter: a waiter's looks at the queue, by `cause` (`push`,
/// `holder_expiry`, `wait_time`: the waiter next in line's; `keep_alive`:
/// every waiter's, each third of its lifetime).
pub const WAKEUPS_TOTAL: &str = "ticketlock_wakeups_total";
/// Counter: guards that learnt their lease ran out.
pub const LEASES_LOST_TOTAL: &str = "ticketlock_leases_lost_total";
/// Counter: successful lease renewals.
pub const RENEWALS_TOTAL: &str = "ticketlock_renewals_total";
/// Counter: renewals that failed to reach the store.
pub const RENEWAL_FAILURES_TOTAL: &str = "ticketlock_renewal_failures_total";
/// Counter: [`Error::Unavailable`](crate::Error::Unavailable) errors.
pub const UNAVAILABLE_TOTAL: &str = "ticketlock_unavailable_total";
/// Counter: remote connections replaced or made again, by `connection`
/// (`command`, `pubsub`).
pub const RECONNECTS_TOTAL: &str = "ticketlock_reconnects_total";
/// Counter: [`try_lock`](crate::LockStore::try_lock) calls, by `outcome`
/// (`acquired`, `busy`).
pub const TRY_LOCKS_TOTAL: &str = "ticketlock_try_locks_total";
/// Counter: repairs of a Rasa-layout record from our own queue (a ticket
/// of ours a stale Rasa write had dropped, brought back or set back).
pub const RECORD_REPAIRS_TOTAL: &str = "ticketlock_record_repairs_total";

// The hooks below are called at the points that already exist on each
// path; each is empty without the feature (the store counters of remote
// backends aside, see `stats.rs`).

/// A ticket was issued with `attempt` as its first answer.
#[inline]
pub(crate) fn issued(attempt: &Attempt) {
    #[cfg(feature = "metrics")]
    {
        let ahead = match attempt {
            Attempt::Queued { ahead, .. } => *ahead as f64,
            _ => 0.0,
        };
        ::metrics::histogram!(TICKETS_AHEAD).record(ahead);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = attempt;
}

/// A ticket was served after `held.waited`.
#[inline]
pub(crate) fn acquired(held: &Held) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(WAIT_SECONDS, "outcome" => "acquired").record(held.waited);
    #[cfg(not(feature = "metrics"))]
    let _ = held;
}

/// A wait ended without the lock: `timed_out` or `lost`.
#[inline]
pub(crate) fn not_acquired(outcome: &'static str, waited: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(WAIT_SECONDS, "outcome" => outcome).record(waited);
    #[cfg(not(feature = "metrics"))]
    let _ = (outcome, waited);
}

/// A waiter looks at the queue again, woken by `cause`.
#[inline]
pub(crate) fn wakeup(cause: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(WAKEUPS_TOTAL, "cause" => cause).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = cause;
}

/// A waiter woken by a push acquired `latency` later.
#[inline]
pub(crate) fn handoff(latency: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(HANDOFF_SECONDS).record(latency);
    #[cfg(not(feature = "metrics"))]
    let _ = latency;
}

/// A guard of `store` was made.
#[inline]
pub(crate) fn guard_made(store: &Kind) {
    if let Some(c) = counters(store) {
        c.held(1);
    }
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(LOCKS_HELD).increment(1.0);
}

/// A guard of `store` went, after holding for `held_for`.
#[inline]
pub(crate) fn guard_gone(store: &Kind, held_for: Option<Duration>) {
    if let Some(c) = counters(store) {
        c.held(-1);
    }
    #[cfg(feature = "metrics")]
    {
        ::metrics::gauge!(LOCKS_HELD).decrement(1.0);
        if let Some(d) = held_for {
            ::metrics::histogram!(HOLD_SECONDS).record(d);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = held_for;
}

/// `delta` tickets of `store` started (1) or stopped (-1) waiting.
#[inline]
pub(crate) fn waiting(store: &LockStore, delta: i64) {
    if let Some(c) = counters(&store.kind) {
        c.waiting(delta);
    }
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(TICKETS_WAITING).increment(delta as f64);
}

/// A guard learnt that its lease ran out.
#[inline]
pub(crate) fn lease_lost() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(LEASES_LOST_TOTAL).increment(1);
}

/// A renewal reached the store (`true`) or failed to (`false`).
#[inline]
pub(crate) fn renewal(reached: bool) {
    #[cfg(feature = "metrics")]
    if reached {
        ::metrics::counter!(RENEWALS_TOTAL).increment(1);
    } else {
        ::metrics::counter!(RENEWAL_FAILURES_TOTAL).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = reached;
}

/// An [`crate::Error::Unavailable`] was made.
#[inline]
pub(crate) fn unavailable() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(UNAVAILABLE_TOTAL).increment(1);
}

/// A remote connection (`command` or `pubsub`) was replaced or made again.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn reconnect(connection: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(RECONNECTS_TOTAL, "connection" => connection).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = connection;
}

/// A try_lock answered.
#[inline]
pub(crate) fn try_lock(acquired: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(TRY_LOCKS_TOTAL, "outcome" => if acquired { "acquired" } else { "busy" })
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = acquired;
}

/// A script repaired `n` tickets of ours in a Rasa-layout record.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[inline]
pub(crate) fn record_repairs(n: u64) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(RECORD_REPAIRS_TOTAL).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}
