//! Taking a lock only if it is free now: one atomic issue that refuses to
//! queue.

use crate::backend::{Attempt, Backend};
use crate::lock::{Held, validate_id};
use crate::store::dispatch;
use crate::{Error, LockGuard, LockRequest, LockStore, Result};

impl LockStore {
    /// Takes the lock of `conversation_id` if it is free now, with the
    /// store's default lifetime; `None` when it is held or others are
    /// queued for it. Never waits and never queues.
    ///
    /// One atomic issue that refuses to queue, so one round trip on a
    /// remote store, and no ticket is left behind when the lock is busy.
    /// Set options first with [`LockRequest::try_lock`].
    ///
    /// ```
    /// # async fn f(store: ticketlock::LockStore) -> ticketlock::Result<()> {
    /// match store.try_lock("sender-42").await? {
    ///     Some(guard) => guard.release().await?,
    ///     None => println!("busy: the message will be handled later"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future withdraws the ticket if one was issued.
    pub async fn try_lock(&self, conversation_id: &str) -> Result<Option<LockGuard>> {
        self.lock(conversation_id).try_lock().await
    }
}

impl LockRequest<'_> {
    /// Takes the lock with this request's options if it is free now;
    /// `None` when it is held or others are queued for it. See
    /// [`LockStore::try_lock`]; the timeout and wait time do not apply.
    pub async fn try_lock(self) -> Result<Option<LockGuard>> {
        let (store, id, options) = (self.store, self.conversation_id, self.options);
        validate_id(id)?;
        options.validate()?;
        // A queue bound of one: the store's own atomic check refuses the
        // ticket unless the queue is empty, in the same step as the issue.
        let issued = dispatch!(store, b => {
            Box::pin(b.clone().with_max_queue_len(1).issue(id, options.lifetime)).await
        });
        let issued = match issued {
            Ok(issued) => issued,
            Err(Error::QueueFull { .. }) => {
                crate::metrics::try_lock(false);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match issued.attempt {
            Attempt::Acquired { fencing_token, .. } => {
                crate::metrics::try_lock(true);
                let held = Held {
                    ticket: issued.ticket,
                    fencing_token,
                    // Served at once: it did not wait (as for `lock`).
                    waited: std::time::Duration::ZERO,
                };
                crate::metrics::acquired(&held);
                Ok(Some(LockGuard::new(store, id, held, options)))
            }
            // Not served at once (an empty queue always serves; a record
            // written by another client may not): withdraw.
            _ => {
                dispatch!(store, b => b.release(id, issued.ticket).await)?;
                crate::metrics::try_lock(false);
                Ok(None)
            }
        }
    }
}
