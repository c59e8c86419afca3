//! An issue in flight in the caller's task, and what happens to it when
//! the caller goes away before the answer: the boxed round trip moves to
//! a task of its own, which withdraws the ticket it learns.

use std::future::Future;

use super::PostgresLockStore;
use crate::Result;
use crate::backend::{Backend, Issued};

/// An issue whose round trip runs in the caller's task. Dropped before the
/// answer (the caller went away), it hands the round trip, already boxed,
/// to a task of its own, which learns the ticket and withdraws it: an issue
/// cannot be sent twice (see the Redis store's twin, which repeats it by
/// request id instead).
pub(super) struct PendingIssue<'a> {
    /// The round trip; it owns a handle and the id, and gives them back
    /// with the answer, for the withdrawal.
    pub(super) call: Option<IssueCall>,
    pub(super) store: &'a PostgresLockStore,
}

pub(super) type IssueCall =
    std::pin::Pin<Box<dyn Future<Output = (Result<Issued>, PostgresLockStore, String)> + Send>>;

impl Drop for PendingIssue<'_> {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to finish it on: the ticket (if made) expires
            // after its lifetime.
            return;
        };
        let task = self.store.background_task();
        runtime.spawn(async move {
            let _task = task;
            let (issued, store, id) = call.await;
            if let Ok(issued) = issued {
                tracing::debug!(
                    conversation_id = id,
                    ticket = issued.ticket.number,
                    "postgres: caller gone during issue; ticket withdrawn"
                );
                if let Err(e) = store.release(&id, issued.ticket).await {
                    tracing::debug!(conversation_id = id, ticket = issued.ticket.number, error = %e, "postgres: withdrawal failed; the ticket will expire");
                }
            }
        });
    }
}
