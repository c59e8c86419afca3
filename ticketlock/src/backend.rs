//! The operations a store must provide, shaped by the remote case.
//!
//! Each required operation is atomic with respect to every other caller of
//! the same store, and for a remote store is one round trip: issue (with the
//! first acquire attempt), try to acquire, release, renew, check. Waiting is
//! not an operation of the store: the caller's loop in `lock.rs` waits on a
//! [`Watch`] (push wake-ups) and on timers derived from what the store
//! answered, so every backend gets the same fairness, timeout and
//! cancellation behaviour. Whole-record reads and writes are for inspection,
//! tools and Rasa's record-level API.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{Result, TicketLock};

/// One ticket of one incarnation of a conversation's record.
///
/// Ticket numbers restart at 0 when a record is deleted and created again;
/// the epoch tells the incarnations apart, so that a waiter whose ticket
/// vanished cannot mistake a newer ticket of the same number for its own.
/// `epoch` is `None` for tickets issued into a record that has none (one
/// written by Rasa): such tickets are matched by number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketId {
    /// The ticket number.
    pub number: u64,
    /// The record's epoch when the ticket was issued.
    pub epoch: Option<u64>,
}

impl TicketId {
    /// A ticket id matched by number alone (Rasa's API passes only numbers).
    pub fn number(number: u64) -> Self {
        TicketId {
            number,
            epoch: None,
        }
    }
}

/// The store's answer to an attempt to acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attempt {
    /// The ticket is served now: the caller holds the lock for `lease`,
    /// counted from this answer by the store's clock.
    Acquired {
        /// Strictly greater than the token of every earlier holder of the
        /// conversation, also across deletion of its record.
        fencing_token: u64,
        /// How long the lock is held without renewal.
        lease: Duration,
    },
    /// Other tickets are ahead; the caller's ticket was kept alive for
    /// another lifetime.
    Queued {
        /// How many live tickets are ahead of this one.
        ahead: u64,
        /// Time until the ticket served now expires, by the store's clock:
        /// the latest moment at which the caller must look again.
        holder_remaining: Option<Duration>,
    },
    /// The ticket is not in the queue any more (it expired, was removed, or
    /// its record was deleted).
    Lost,
}

/// What [`Backend::issue`] answers: the new ticket and the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    /// The ticket just appended to the queue.
    pub ticket: TicketId,
    /// Whether it was served at once.
    pub attempt: Attempt,
}

/// A push wake-up channel for one waiting ticket.
///
/// The store signals it when the ticket may have become served (a release
/// or removal ahead of it). A signal sent before [`Watch::changed`] is
/// awaited is kept, so registering before the re-check loses nothing.
pub struct Watch {
    notify: Arc<Notify>,
    /// Where a store that pushes grants (Redis, native layout) leaves one.
    grant: Option<GrantSlot>,
    /// Since when every push for the ticket has reached this watch (see
    /// [`Watch::heard_since`]).
    heard_since: Option<Instant>,
    _registration: Option<Box<dyn Send + Sync>>,
}

/// A grant pushed to a waiter: the store put its ticket in the lock's hands
/// and said so on the ticket's wake-up channel, so the waiter holds it without
/// another call. The lease counts from the push's arrival.
#[derive(Clone, Default)]
pub(crate) struct GrantSlot(Arc<std::sync::Mutex<Option<Attempt>>>);

impl GrantSlot {
    /// Only a store that pushes grants (the Redis native layout) puts one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn put(&self, attempt: Attempt) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(attempt);
    }

    pub(crate) fn take(&self) -> Option<Attempt> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Watch {
    /// A watch signalled through `notify`.
    pub fn new(notify: Arc<Notify>) -> Self {
        Watch {
            notify,
            grant: None,
            heard_since: None,
            _registration: None,
        }
    }

    /// A watch that also keeps `registration` alive (for example, a
    /// subscription that is dropped with the watch).
    pub fn with_registration(notify: Arc<Notify>, registration: Box<dyn Send + Sync>) -> Self {
        Watch {
            notify,
            grant: None,
            heard_since: None,
            _registration: Some(registration),
        }
    }

    /// [`Watch::with_registration`] for a store that pushes grants into
    /// `grant`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn with_grant(
        notify: Arc<Notify>,
        grant: GrantSlot,
        registration: Box<dyn Send + Sync>,
    ) -> Self {
        Watch {
            notify,
            grant: Some(grant),
            heard_since: None,
            _registration: Some(registration),
        }
    }

    /// Says that every push for the ticket since `since` has reached, or
    /// will reach, this watch (the store's subscription was up and
    /// unbroken since then). A waiter whose ticket was issued after that
    /// needs no look at the queue to learn of a change it was not told of.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn heard_since(mut self, since: Option<Instant>) -> Self {
        self.heard_since = since;
        self
    }

    /// Whether every push since `at` reaches this watch (see
    /// [`Watch::heard_since`]).
    pub(crate) fn hears_everything_since(&self, at: Instant) -> bool {
        self.heard_since.is_some_and(|since| since <= at)
    }

    /// The grant the store pushed, if any (taken once).
    pub(crate) fn take_grant(&self) -> Option<Attempt> {
        self.grant.as_ref().and_then(GrantSlot::take)
    }

    /// A watch that is already signalled.
    pub fn signalled() -> Self {
        let notify = Arc::new(Notify::new());
        notify.notify_one();
        Watch::new(notify)
    }

    /// Waits for the next signal.
    ///
    /// # Cancel safety
    /// Cancel safe: a signal not consumed stays for the next call.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// The operations of a lock store backend.
///
/// Implemented by [`crate::InMemoryLockStore`], [`crate::RedisLockStore`]
/// and (feature `postgres`) `PostgresLockStore`;
/// [`crate::LockStore`] chooses between them at run time. Use the methods of
/// [`crate::LockStore`] in applications: they add fair waiting, timeouts,
/// cancellation safety and guards on top of these.
pub trait Backend: Clone + Send + Sync + 'static {
    /// A short description for errors and logs, e.g. `in-memory` or
    /// `redis 127.0.0.1:6379/1`; never contains a password.
    fn describe(&self) -> String;

    /// Appends a ticket for `conversation_id`, alive for `lifetime`, and
    /// tries to acquire with it at once.
    fn issue(
        &self,
        conversation_id: &str,
        lifetime: Duration,
    ) -> impl Future<Output = Result<Issued>> + Send;

    /// Acquires with `ticket` if it is served now (the lease then runs for
    /// `lifetime` from now); otherwise keeps the ticket alive for another
    /// `lifetime` and says who is ahead.
    fn try_acquire(
        &self,
        conversation_id: &str,
        ticket: TicketId,
        lifetime: Duration,
    ) -> impl Future<Output = Result<Attempt>> + Send;

    /// Removes `ticket`, drops the record when no ticket is left, and wakes
    /// the next waiter. Returns whether the ticket was there.
    fn release(
        &self,
        conversation_id: &str,
        ticket: TicketId,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// [`Backend::release`] from a destructor: must not block or await;
    /// best effort (spawned where the backend is remote).
    fn release_on_drop(&self, conversation_id: &str, ticket: TicketId);

    /// Waits until the round trips this backend started in the background
    /// (releases from destructors, withdrawals of cancelled requests) are
    /// done. Call it before a process exits, so that they are not cut
    /// short. Bounded by the backend's own call timeout.
    fn flush(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Extends the lease of the holder `ticket` to `lifetime` from now.
    /// Returns `false` when `ticket` is not the live holder any more.
    fn renew(
        &self,
        conversation_id: &str,
        ticket: TicketId,
        lifetime: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Whether `ticket` is the live holder.
    fn check(
        &self,
        conversation_id: &str,
        ticket: TicketId,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Registers for wake-ups of the waiting `ticket`. Signalled at once when
    /// the ticket is not in the queue.
    fn watch(
        &self,
        conversation_id: &str,
        ticket: TicketId,
    ) -> impl Future<Output = Result<Watch>> + Send;

    /// The conversation's record, if any.
    fn get_lock(
        &self,
        conversation_id: &str,
    ) -> impl Future<Output = Result<Option<TicketLock>>> + Send;

    /// Replaces the conversation's record (deletes it when it has no ticket)
    /// and wakes its waiters to look again.
    fn save_lock(&self, lock: &TicketLock) -> impl Future<Output = Result<()>> + Send;

    /// Deletes the conversation's record; its waiters learn that their
    /// tickets are gone.
    fn delete_lock(&self, conversation_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Removes the expired tickets of the conversation's record, atomically.
    fn update_lock(&self, conversation_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// The conversations that have a record, in no particular order.
    fn conversations(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
}
