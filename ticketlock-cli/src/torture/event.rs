//! What a worker tells the coordinator: one JSON object per line on its
//! stdout, written at once (one `write` per line, below the pipe's atomic
//! size), so that a worker killed at any moment leaves whole lines behind.
//!
//! Times (`t`) are CLOCK_MONOTONIC nanoseconds. A message is named by
//! `(worker, task, msg)`; `attempt` counts from 1.

use std::io::Write as _;

use serde::{Deserialize, Serialize};

/// One step of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// The worker's store is connected; `connect_attempts` it took.
    Ready {
        worker: u32,
        pid: u32,
        connect_attempts: u32,
        t: u64,
    },
    /// An attempt to take the lock for a message begins.
    Request {
        worker: u32,
        task: u32,
        msg: u64,
        conv: u32,
        attempt: u32,
        t: u64,
    },
    /// The attempt failed with a transient error; the message will be tried
    /// again.
    Retry {
        worker: u32,
        task: u32,
        msg: u64,
        attempt: u32,
        kind: Outcome,
        t: u64,
    },
    /// The message is given up after `attempt` attempts; `kind` is the last
    /// error.
    Fail {
        worker: u32,
        task: u32,
        msg: u64,
        attempt: u32,
        kind: Outcome,
        t: u64,
    },
    /// The lock was taken and the section entered (witness taken, or not
    /// available: `witness: false` means another holder had it).
    Enter {
        worker: u32,
        task: u32,
        msg: u64,
        conv: u32,
        attempt: u32,
        ticket: u64,
        epoch: Option<u64>,
        token: u64,
        witness: bool,
        t: u64,
    },
    /// The section is left (the witness is dropped right after).
    Exit {
        worker: u32,
        task: u32,
        msg: u64,
        /// The downstream store's answer to this holder's write.
        downstream: Downstream,
        /// When the downstream write was done.
        wrote: u64,
        /// The section outlived its lease on purpose.
        overrun: bool,
        /// For an overrun: `is_held` (`ok` held, `expired` not held).
        held: Option<Outcome>,
        /// For an overrun: `renew`.
        renewed: Option<Outcome>,
        t: u64,
    },
    /// The lock was released: `ok`, `expired` (the lease was gone), or the
    /// error.
    Released {
        worker: u32,
        task: u32,
        msg: u64,
        outcome: Outcome,
        t: u64,
    },
    /// The task took no more messages: it started `messages` (0..messages).
    Done {
        worker: u32,
        task: u32,
        messages: u64,
        t: u64,
    },
    /// Something panicked in the worker.
    Panic { worker: u32, message: String },
}

/// The result of a store call, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Timeout,
    Expired,
    Unavailable,
    Config,
    CorruptRecord,
    InvalidId,
    Other,
}

impl Outcome {
    pub fn of_error(e: &ticketlock::Error) -> Outcome {
        use ticketlock::Error as E;
        match e {
            E::Timeout { .. } => Outcome::Timeout,
            E::Expired { .. } => Outcome::Expired,
            E::Unavailable { .. } => Outcome::Unavailable,
            E::Config { .. } => Outcome::Config,
            E::CorruptRecord { .. } => Outcome::CorruptRecord,
            E::InvalidId { .. } => Outcome::InvalidId,
            _ => Outcome::Other,
        }
    }

    pub fn of<T>(r: &ticketlock::Result<T>) -> Outcome {
        r.as_ref().map_or_else(Outcome::of_error, |_| Outcome::Ok)
    }

    /// The name used in the figures.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Expired => "expired",
            Outcome::Unavailable => "unavailable",
            Outcome::Config => "config",
            Outcome::CorruptRecord => "corrupt_record",
            Outcome::InvalidId => "invalid_id",
            Outcome::Other => "other",
        }
    }
}

/// The downstream store's answer to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Downstream {
    /// The token was above every one written before.
    Accepted,
    /// A holder with token `highest` had written already.
    Rejected { highest: u64 },
}

/// Writes one event as one line on stdout. When the coordinator is gone
/// (the pipe is closed) there is nobody to work for: the worker exits.
pub fn emit(event: &Event) {
    let mut line = match serde_json::to_string(event) {
        Ok(line) => line,
        Err(e) => format!(r#"{{"e":"panic","worker":0,"message":"cannot encode an event: {e}"}}"#),
    };
    line.push('\n');
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_json_object_each_and_read_back() {
        let events = [
            Event::Enter {
                worker: 1,
                task: 2,
                msg: 3,
                conv: 0,
                attempt: 1,
                ticket: 4,
                epoch: Some(1_700_000_000_000_000),
                token: 1_700_000_000_000_004,
                witness: true,
                t: 99,
            },
            Event::Exit {
                worker: 1,
                task: 2,
                msg: 3,
                downstream: Downstream::Rejected { highest: 7 },
                wrote: 98,
                overrun: true,
                held: Some(Outcome::Expired),
                renewed: Some(Outcome::Unavailable),
                t: 100,
            },
            Event::Retry {
                worker: 0,
                task: 0,
                msg: 0,
                attempt: 1,
                kind: Outcome::CorruptRecord,
                t: 1,
            },
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e, "{line}");
        }
        let line = serde_json::to_string(&Event::Released {
            worker: 0,
            task: 1,
            msg: 2,
            outcome: Outcome::Expired,
            t: 3,
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"e":"released","worker":0,"task":1,"msg":2,"outcome":"expired","t":3}"#
        );
    }

    #[test]
    fn error_kinds_are_named() {
        let e = ticketlock::Error::Expired {
            conversation_id: "c".into(),
            ticket: 1,
        };
        assert_eq!(Outcome::of_error(&e), Outcome::Expired);
        assert_eq!(Outcome::of::<()>(&Ok(())), Outcome::Ok);
        assert_eq!(Outcome::CorruptRecord.name(), "corrupt_record");
    }
}
