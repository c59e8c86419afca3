//! The record tools: `inspect`, `list` and `clear` read and remove the
//! records of a shared store.
//!
//! They need a store other processes write to: a fresh process's in-memory
//! store is always empty, so without `--redis`/`--endpoints` they refuse
//! (exit 64) instead of answering "nothing here". Ticket status is judged
//! by the Redis server's clock, the one every expiry is measured by.

pub mod clear;
pub mod inspect;
pub mod list;
mod source;

pub use source::Records;

use std::fmt::Write as _;

use serde::Serialize;
use ticketlock::{LockStore, Ticket, TicketLock};

use crate::exit;
use crate::store::StoreArgs;

/// Exit status when the record asked for does not exist (as grep(1) exits
/// 1 when nothing matched).
pub const NOT_FOUND: u8 = 1;

/// Opens the store of `args` for the tool `tool`; refuses the in-memory
/// store, which has no records another process could see.
async fn open(args: &StoreArgs, tool: &str) -> anyhow::Result<LockStore> {
    if !args.given() {
        return Err(exit::coded(
            exit::USAGE,
            format!(
                "{tool}: no store given: a fresh process's in-memory store has no records; \
                 give --redis URL, --postgres URL or --endpoints FILE (with a redis or \
                 postgresql lock_store)"
            ),
        ));
    }
    let store = args.open().await?;
    if Records::of(&store).is_none() {
        return Err(exit::coded(
            exit::USAGE,
            format!(
                "{tool}: the configured lock store is the in-memory one, whose records live only \
                 inside the process that uses it; configure a redis or postgresql lock_store"
            ),
        ));
    }
    Ok(store)
}

/// The records of a store [`open`] accepted.
fn redis(store: &LockStore) -> anyhow::Result<Records> {
    Records::of(store).ok_or_else(|| exit::coded(exit::SOFTWARE, "the store is not a shared store"))
}

/// Where a ticket stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The first live ticket: its holder has the lock.
    Serving,
    /// Live, behind the one served.
    Waiting,
    /// Past its expiry: ignored, and dropped by the next write.
    Expired,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Serving => "serving",
            Status::Waiting => "waiting",
            Status::Expired => "expired",
        }
    }
}

/// One ticket as the tools show it.
#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    pub number: u64,
    /// Unix seconds, as stored.
    pub expires: f64,
    /// The same instant in RFC 3339, UTC; `None` outside years 0..=9999.
    pub expires_at: Option<String>,
    /// Seconds until it expires (negative when it has), to the millisecond
    /// (`remaining_us` in JSON).
    pub remaining_s: f64,
    pub status: Status,
}

/// The tickets of `lock` as seen at `now` (Unix seconds), in queue order.
fn tickets_at(lock: &TicketLock, now: f64) -> Vec<TicketView> {
    let mut served = false;
    lock.tickets()
        .map(|t: &Ticket| {
            let status = if t.has_expired_at(now) {
                Status::Expired
            } else if served {
                Status::Waiting
            } else {
                served = true;
                Status::Serving
            };
            TicketView {
                number: t.number,
                expires: t.expires,
                expires_at: rfc3339(t.expires),
                remaining_s: ((t.expires - now) * 1000.0).round() / 1000.0,
                status,
            }
        })
        .collect()
}

/// Who is served: the first live ticket's number (`None` when no ticket is
/// live; Rasa's `now_serving` says 0 then).
fn now_serving(tickets: &[TicketView]) -> Option<u64> {
    tickets
        .iter()
        .find(|t| t.status == Status::Serving)
        .map(|t| t.number)
}

/// Unix seconds as an RFC 3339 UTC time to the millisecond, e.g.
/// `2026-11-28T19:03:38.747Z`; `None` when out of range.
pub fn rfc3339(unix_seconds: f64) -> Option<String> {
    if !unix_seconds.is_finite() {
        return None;
    }
    // Whole milliseconds, floored, so that the shown time never lies after
    // the expiry.
    let millis = (unix_seconds * 1000.0).floor();
    if millis.abs() > 1e15 {
        return None;
    }
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    // RFC 3339 with exactly three fraction digits and `Z` (the well-known
    // `Rfc3339` format drops a zero fraction).
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).ok()
}

/// `s` with control characters escaped, so that a stored string cannot
/// drive the terminal; everything else as it is.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// The key pattern of every record of `store`, for messages.
fn pattern(store: &Records) -> String {
    format!("{}*", store.key_for(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_to_the_millisecond() {
        assert_eq!(
            rfc3339(1_795_892_618.747_127_5).as_deref(),
            Some("2026-11-28T19:03:38.747Z")
        );
        assert_eq!(rfc3339(0.0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            rfc3339(4_102_444_800.5).as_deref(),
            Some("2100-01-01T00:00:00.500Z")
        );
        // Floored, not rounded: never shown later than it is.
        assert_eq!(rfc3339(1.9999).as_deref(), Some("1970-01-01T00:00:01.999Z"));
        assert_eq!(rfc3339(-0.5).as_deref(), Some("1969-12-31T23:59:59.500Z"));
        for absurd in [1e300, -1e300, f64::NAN, f64::INFINITY, 1e13] {
            assert_eq!(rfc3339(absurd), None, "{absurd}");
        }
    }

    #[test]
    fn the_first_live_ticket_is_served_and_the_rest_wait() {
        let lock = TicketLock::with_tickets(
            "c",
            [
                Ticket::new(3, 5.0),
                Ticket::new(4, 20.0),
                Ticket::new(5, 8.0),
                Ticket::new(6, 30.0),
            ],
        );
        let views = tickets_at(&lock, 10.0);
        let statuses: Vec<_> = views.iter().map(|t| (t.number, t.status)).collect();
        assert_eq!(
            statuses,
            [
                (3, Status::Expired),
                (4, Status::Serving),
                (5, Status::Expired),
                (6, Status::Waiting)
            ]
        );
        assert_eq!(views[0].remaining_s, -5.0);
        assert_eq!(views[3].remaining_s, 20.0);
        assert_eq!(now_serving(&views), Some(4));
        assert_eq!(now_serving(&tickets_at(&lock, 100.0)), None);
    }
}
