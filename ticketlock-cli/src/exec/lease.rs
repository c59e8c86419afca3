//! Keeping `run`'s lease while its command runs, and learning when it is
//! lost.
//!
//! The lease is renewed every third of its lifetime. It is lost when a
//! renewal says so ([`ticketlock::Error::Expired`]: the ticket is no longer
//! in the queue), or when no renewal has succeeded for a whole lifetime
//! (the store is unreachable, and the lease has run out there by now: it
//! was good for one lifetime from the *sending* of the last renewal that
//! succeeded, not from its reply).

use std::time::Duration;

use clap::ValueEnum;
use ticketlock::LockGuard;
use tokio::time::Instant;

use crate::units::human;

/// What `run` does to its command when the lease is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnLost {
    /// SIGTERM, then SIGKILL after --on-lost-grace.
    Term,
    /// SIGKILL at once.
    Kill,
    /// Let it run on, unprotected (`run` still exits with the conflict code).
    Ignore,
}

/// How the lease was lost.
#[derive(Debug)]
pub enum Lost {
    /// The store said the ticket is gone.
    Expired,
    /// No renewal reached the store for a whole lifetime.
    Unconfirmed { last_error: Option<String> },
}

impl Lost {
    /// Why, for the message that tells the user.
    pub fn why(&self, lifetime: Duration) -> String {
        match self {
            Lost::Expired => "the store no longer has its ticket (it expired, or its \
                              record was removed)"
                .to_string(),
            Lost::Unconfirmed { last_error } => {
                let mut why = format!(
                    "no renewal reached the store for a whole lifetime ({})",
                    human(lifetime)
                );
                if let Some(e) = last_error {
                    why.push_str(&format!(" (last error: {e})"));
                }
                why
            }
        }
    }
}

/// Renews the lease until it is lost, and says how. Runs as long as the
/// lease holds: drop the future to stop renewing.
pub async fn keep(guard: &LockGuard) -> Lost {
    let lifetime = guard.lifetime();
    let every = (lifetime / 3).max(Duration::from_millis(1));
    // A waiter's ticket was last extended at its last look at the queue,
    // not at the acquisition: renew at once, so that the lease is known to
    // run a lifetime from now. Until that reply, assume a lifetime from now.
    let mut good_until = Instant::now() + lifetime;
    let mut next = Instant::now();
    let mut last_error = None;
    loop {
        tokio::time::sleep_until(next.min(good_until)).await;
        if Instant::now() >= good_until {
            return Lost::Unconfirmed { last_error };
        }
        let sent = Instant::now();
        next = sent + every;
        match tokio::time::timeout_at(good_until, guard.renew()).await {
            Ok(Ok(())) => {
                good_until = sent + lifetime;
                last_error = None;
            }
            Ok(Err(ticketlock::Error::Expired { .. })) => return Lost::Expired,
            // A blip: retry at the next period, while the lease lasts.
            Ok(Err(e)) => {
                tracing::warn!(conversation_id = guard.conversation_id(), error = %e, "lease renewal failed");
                last_error = Some(e.to_string());
            }
            Err(_) => return Lost::Unconfirmed { last_error },
        }
    }
}
