//! Checking what the demo's workers recorded against what the locks promise.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// What a worker recorded for one message it handled under the lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    pub conv: u32,
    pub seq: u32,
    pub ticket: u64,
    pub fencing_token: u64,
    /// Position among all entries into critical sections, taken on entry:
    /// the order in which messages were handled.
    pub order: u64,
    /// Entry into and exit from the critical section, since the run began.
    pub enter: Duration,
    pub exit: Duration,
    /// How long the message waited for the lock after its ticket was taken.
    pub waited: Duration,
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// Two critical sections of one conversation overlapped in time.
    Overlap {
        conversation: u32,
        first_seq: u32,
        second_seq: u32,
    },
    /// A worker entered while another was inside (seen at run time).
    DoubleEntry {
        conversation: u32,
        seq: u32,
        inside: u32,
    },
    /// A message was handled before an earlier one of its conversation.
    OutOfOrder {
        conversation: u32,
        previous_seq: u32,
        seq: u32,
    },
    /// A message was handled more than once.
    Duplicate {
        conversation: u32,
        seq: u32,
        times: u32,
    },
    /// A message was never handled.
    Missing { conversation: u32, seq: u32 },
    /// A record names a message that was never sent.
    Unexpected { conversation: u32, seq: u32 },
    /// A holder's fencing token was not above its predecessor's.
    FencingNotIncreasing {
        conversation: u32,
        previous_seq: u32,
        previous_token: u64,
        seq: u32,
        token: u64,
    },
    /// The holder's lease ran out while it handled the message.
    LeaseLost {
        conversation: u32,
        seq: u32,
        ticket: u64,
    },
    /// The message's ticket was lost while it waited (it was not handled).
    TicketLost { conversation: u32, seq: u32 },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::Overlap {
                conversation,
                first_seq,
                second_seq,
            } => write!(
                f,
                "conversation {conversation}: messages {first_seq} and {second_seq} were handled at the same time"
            ),
            Violation::DoubleEntry {
                conversation,
                seq,
                inside,
            } => write!(
                f,
                "conversation {conversation}: message {seq} entered while {inside} other holder(s) were inside"
            ),
            Violation::OutOfOrder {
                conversation,
                previous_seq,
                seq,
            } => write!(
                f,
                "conversation {conversation}: message {seq} was handled after message {previous_seq}"
            ),
            Violation::Duplicate {
                conversation,
                seq,
                times,
            } => write!(
                f,
                "conversation {conversation}: message {seq} was handled {times} times"
            ),
            Violation::Missing { conversation, seq } => {
                write!(
                    f,
                    "conversation {conversation}: message {seq} was never handled"
                )
            }
            Violation::Unexpected { conversation, seq } => write!(
                f,
                "conversation {conversation}: message {seq} was handled but never sent"
            ),
            Violation::FencingNotIncreasing {
                conversation,
                previous_seq,
                previous_token,
                seq,
                token,
            } => write!(
                f,
                "conversation {conversation}: message {seq} held fencing token {token}, \
                 not above {previous_token} of message {previous_seq} before it"
            ),
            Violation::LeaseLost {
                conversation,
                seq,
                ticket,
            } => write!(
                f,
                "conversation {conversation}: the lease of ticket {ticket} (message {seq}) ran out \
                 while the message was handled; raise --lifetime above the handling time"
            ),
            Violation::TicketLost { conversation, seq } => write!(
                f,
                "conversation {conversation}: message {seq} lost its ticket while waiting"
            ),
        }
    }
}

/// The violations found: how many, and the first [`Violations::KEPT`].
#[derive(Debug, Default)]
pub struct Violations {
    pub total: usize,
    pub first: Vec<Violation>,
}

impl Violations {
    /// How many are kept for the report; the rest are only counted.
    pub const KEPT: usize = 100;

    pub fn push(&mut self, v: Violation) {
        self.total += 1;
        if self.first.len() < Self::KEPT {
            self.first.push(v);
        }
    }

    pub fn extend(&mut self, other: Violations) {
        let extra = other.total - other.first.len();
        for v in other.first {
            self.push(v);
        }
        self.total += extra;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Checks the records of a run of `conversations` × `messages` messages:
/// within each conversation, in the order of entry, critical sections do
/// not overlap, messages come in arrival order, fencing tokens increase;
/// and every message was handled exactly once.
pub fn verify(conversations: u32, messages: u32, records: &[Record]) -> Violations {
    let mut found = Violations::default();
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_unstable_by_key(|r| (r.conv, r.order));
    for pair in sorted.windows(2) {
        let (p, r) = (pair[0], pair[1]);
        if p.conv != r.conv {
            continue;
        }
        let conversation = r.conv;
        if r.enter < p.exit {
            found.push(Violation::Overlap {
                conversation,
                first_seq: p.seq,
                second_seq: r.seq,
            });
        }
        // An equal seq is a duplicate, reported below.
        if r.seq < p.seq {
            found.push(Violation::OutOfOrder {
                conversation,
                previous_seq: p.seq,
                seq: r.seq,
            });
        }
        if r.fencing_token <= p.fencing_token {
            found.push(Violation::FencingNotIncreasing {
                conversation,
                previous_seq: p.seq,
                previous_token: p.fencing_token,
                seq: r.seq,
                token: r.fencing_token,
            });
        }
    }

    let mut times = vec![0u32; conversations as usize * messages as usize];
    for r in records {
        if r.conv < conversations && r.seq < messages {
            times[r.conv as usize * messages as usize + r.seq as usize] += 1;
        } else {
            found.push(Violation::Unexpected {
                conversation: r.conv,
                seq: r.seq,
            });
        }
    }
    for (i, &n) in times.iter().enumerate() {
        let (conversation, seq) = (
            (i / messages as usize) as u32,
            (i % messages as usize) as u32,
        );
        match n {
            0 => found.push(Violation::Missing { conversation, seq }),
            1 => {}
            times => found.push(Violation::Duplicate {
                conversation,
                seq,
                times,
            }),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONVS: u32 = 3;
    const MSGS: u32 = 4;

    /// A correct run: conversations interleaved, each one's messages handled
    /// one after the other, in order, with increasing tokens.
    fn clean() -> Vec<Record> {
        let mut records = Vec::new();
        let mut order = 0;
        for seq in 0..MSGS {
            for conv in 0..CONVS {
                let start = u64::from(seq) * 100 + u64::from(conv);
                records.push(Record {
                    conv,
                    seq,
                    ticket: u64::from(seq),
                    fencing_token: 1000 + order,
                    order,
                    enter: Duration::from_micros(start),
                    exit: Duration::from_micros(start + 50),
                    waited: Duration::from_micros(5),
                });
                order += 1;
            }
        }
        records
    }

    fn find(records: &[Record], conv: u32, seq: u32) -> usize {
        records
            .iter()
            .position(|r| r.conv == conv && r.seq == seq)
            .unwrap()
    }

    #[test]
    fn a_correct_run_has_no_violation() {
        let v = verify(CONVS, MSGS, &clean());
        assert!(v.is_empty(), "{:?}", v.first);
    }

    #[test]
    fn an_overlap_is_reported() {
        let mut r = clean();
        let i = find(&r, 1, 2);
        // Message 2 enters 10us before message 1 of conversation 1 left.
        let prev_exit = r[find(&r, 1, 1)].exit;
        r[i].enter = prev_exit - Duration::from_micros(10);
        let v = verify(CONVS, MSGS, &r);
        assert_eq!(
            v.first,
            vec![Violation::Overlap {
                conversation: 1,
                first_seq: 1,
                second_seq: 2
            }]
        );
    }

    #[test]
    fn out_of_order_handling_is_reported() {
        let mut r = clean();
        // Conversation 2 handled message 3 before message 2 (entry order
        // swapped, times swapped so that nothing overlaps).
        let (a, b) = (find(&r, 2, 2), find(&r, 2, 3));
        let (ra, rb) = (r[a], r[b]);
        r[a] = Record { seq: 3, ..ra };
        r[b] = Record { seq: 2, ..rb };
        let v = verify(CONVS, MSGS, &r);
        assert_eq!(
            v.first,
            vec![Violation::OutOfOrder {
                conversation: 2,
                previous_seq: 3,
                seq: 2
            }]
        );
    }

    #[test]
    fn a_duplicate_and_a_missing_message_are_reported() {
        let mut r = clean();
        // Message 3 of conversation 0 is handled twice (the second time at
        // the end, later and with a higher token) and message 1 never.
        let i = find(&r, 0, 3);
        let last = *r.last().unwrap();
        let dup = Record {
            order: last.order + 1,
            fencing_token: last.fencing_token + 1,
            enter: last.exit + Duration::from_micros(10),
            exit: last.exit + Duration::from_micros(20),
            ..r[i]
        };
        r.push(dup);
        r.remove(find(&r, 0, 1));
        let v = verify(CONVS, MSGS, &r);
        assert_eq!(
            v.first,
            vec![
                Violation::Missing {
                    conversation: 0,
                    seq: 1
                },
                Violation::Duplicate {
                    conversation: 0,
                    seq: 3,
                    times: 2
                },
            ]
        );
    }

    #[test]
    fn a_fencing_token_that_does_not_increase_is_reported() {
        let mut r = clean();
        let prev = r[find(&r, 0, 1)].fencing_token;
        let i = find(&r, 0, 2);
        r[i].fencing_token = prev;
        let v = verify(CONVS, MSGS, &r);
        assert_eq!(
            v.first,
            vec![Violation::FencingNotIncreasing {
                conversation: 0,
                previous_seq: 1,
                previous_token: prev,
                seq: 2,
                token: prev
            }]
        );
    }

    #[test]
    fn a_message_never_sent_is_reported() {
        let mut r = clean();
        let last = *r.last().unwrap();
        r.push(Record {
            conv: CONVS,
            order: last.order + 1,
            ..last
        });
        let v = verify(CONVS, MSGS, &r);
        assert_eq!(
            v.first,
            vec![Violation::Unexpected {
                conversation: CONVS,
                seq: last.seq
            }]
        );
    }

    #[test]
    fn only_the_first_violations_are_kept_but_all_are_counted() {
        let v = verify(CONVS, 1000, &[]);
        assert_eq!(v.total, CONVS as usize * 1000);
        assert_eq!(v.first.len(), Violations::KEPT);
        let mut all = Violations::default();
        all.push(Violation::TicketLost {
            conversation: 0,
            seq: 0,
        });
        all.extend(v);
        assert_eq!(all.total, CONVS as usize * 1000 + 1);
        assert_eq!(all.first.len(), Violations::KEPT);
    }
}
