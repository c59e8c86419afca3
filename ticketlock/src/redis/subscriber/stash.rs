//! What a wake-up message says, and the messages a channel keeps for a
//! waiter that registers just after them.
//!
//! A native-layout process has one channel per conversation for all its
//! tickets (`w:<wake id>`), so a release can push a ticket's grant before
//! that ticket's waiter has registered: the reply and the push
//! travel on different connections and race. A message that finds none of
//! the waiters it names is kept here (at most [`STASH_LEN`], none older
//! than [`STASH_AGE`]) and handed to the waiter that registers after it.
//! When a message is thrown out unclaimed, the time it came is noted
//! ([`Stash::lost`]): a waiter whose ticket was asked for before then may
//! have missed it, and looks at the queue instead of trusting the stash.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Waiter;
use crate::backend::Attempt;

/// How many unmatched messages a channel keeps.
pub(super) const STASH_LEN: usize = 16;

/// How long an unmatched message is kept: far longer than an issue's reply
/// takes to reach its waiter's registration.
const STASH_AGE: Duration = Duration::from_secs(1);

/// What a message on a channel says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Message {
    /// The native layout's grant to ticket `number`:
    /// `<number> <fencing token> <lease µs>`.
    Grant { number: u64, grant: Attempt },
    /// Ticket `number` is the new head: it and the lowest registered ticket
    /// above it look.
    Head(u64),
    /// Everybody on the channel looks (`*`, `-`, anything unexpected).
    All,
}

impl Message {
    pub(super) fn parse(payload: &[u8]) -> Message {
        let Ok(text) = std::str::from_utf8(payload) else {
            return Message::All;
        };
        if let Some((number, grant)) = parse_grant(text) {
            Message::Grant { number, grant }
        } else if let Ok(n) = text.parse::<u64>() {
            Message::Head(n)
        } else {
            Message::All
        }
    }
}

/// A native grant push: `<number> <fencing token> <lease µs>`.
fn parse_grant(payload: &str) -> Option<(u64, Attempt)> {
    let mut parts = payload.split(' ');
    let (number, token, lease) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        number.parse().ok()?,
        Attempt::Acquired {
            fencing_token: token.parse().ok()?,
            lease: Duration::from_micros(lease.parse().ok()?),
        },
    ))
}

/// Whether `grant` (its token is the epoch plus the number) is for the
/// waiter's incarnation of its ticket.
pub(super) fn for_epoch(grant: &Attempt, w: &Waiter) -> bool {
    match (grant, w.epoch) {
        (Attempt::Acquired { fencing_token, .. }, Some(e)) => {
            fencing_token.checked_sub(w.number) == Some(e)
        }
        _ => true,
    }
}

/// A channel's unmatched messages (see the module's text).
#[derive(Default)]
pub(super) struct Stash {
    kept: VecDeque<Stashed>,
    /// When the newest message thrown out unclaimed had come.
    lost: Option<Instant>,
}

struct Stashed {
    came: Instant,
    message: Message,
}

impl Stash {
    /// When the newest message thrown out unclaimed had come: a waiter
    /// whose ticket was asked for before then cannot count on the stash.
    pub(super) fn lost(&self) -> Option<Instant> {
        self.lost
    }

    /// Keeps a message that found none of the waiters it names.
    pub(super) fn keep(&mut self, message: Message) {
        self.forget_old();
        if self.kept.len() >= STASH_LEN
            && let Some(oldest) = self.kept.pop_front()
        {
            self.lost = Some(oldest.came);
        }
        self.kept.push_back(Stashed {
            came: Instant::now(),
            message,
        });
    }

    /// Hands a waiter that registers now what was kept for it: its grant
    /// (taken, the lease shortened by the time it was kept), and a wake-up
    /// for anything else that may concern it (a head at or below its
    /// number, everybody). Old messages go first.
    pub(super) fn replay(&mut self, w: &Waiter) {
        self.forget_old();
        let mut woken = false;
        let mut taken = None;
        for (i, kept) in self.kept.iter().enumerate() {
            match kept.message {
                Message::Grant { number, grant } if number == w.number => {
                    if let Some(slot) = w.grant.as_ref().filter(|_| for_epoch(&grant, w)) {
                        slot.put(shortened(grant, kept.came.elapsed()));
                        taken = Some(i);
                    }
                    woken = true;
                }
                Message::Grant { .. } => {}
                Message::Head(n) if n > w.number => {}
                Message::Head(_) | Message::All => woken = true,
            }
        }
        if let Some(i) = taken {
            self.kept.remove(i);
        }
        if woken {
            w.notify.notify_one();
        }
    }

    fn forget_old(&mut self) {
        while let Some(oldest) = self.kept.front() {
            if oldest.came.elapsed() < STASH_AGE {
                break;
            }
            self.lost = Some(oldest.came);
            self.kept.pop_front();
        }
    }
}

/// A grant's lease less the time it waited in the stash.
fn shortened(grant: Attempt, kept: Duration) -> Attempt {
    match grant {
        Attempt::Acquired {
            fencing_token,
            lease,
        } => Attempt::Acquired {
            fencing_token,
            lease: lease.saturating_sub(kept),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_as_grants_heads_or_wake_everybody() {
        assert_eq!(
            Message::parse(b"3 1795892618747130 60000000"),
            Message::Grant {
                number: 3,
                grant: Attempt::Acquired {
                    fencing_token: 1795892618747130,
                    lease: Duration::from_secs(60),
                },
            }
        );
        assert_eq!(Message::parse(b"17"), Message::Head(17));
        for other in ["-", "*", "1 x", "x 1 2", "1 2", "1 2 3 4", "", "\u{ff}"] {
            assert_eq!(Message::parse(other.as_bytes()), Message::All, "{other:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_kept_past_its_age_is_thrown_out_and_noted_as_lost() {
        let mut stash = Stash::default();
        let came = Instant::now();
        stash.keep(Message::Head(3));
        assert_eq!(stash.lost(), None);
        tokio::time::advance(STASH_AGE).await;
        stash.keep(Message::All);
        assert_eq!(stash.lost(), Some(came));
        assert_eq!(stash.kept.len(), 1);
    }
}
