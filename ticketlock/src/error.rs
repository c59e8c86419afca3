//! The one error type of the crate.

use std::time::Duration;

/// What went wrong, in kinds a caller can act on.
///
/// Every message names the conversation, key or setting at fault and says what
/// to do about it. Match on the variant to decide: retry later
/// ([`Error::Unavailable`], [`Error::Timeout`]), give up on this piece of work
/// ([`Error::Expired`]), or fix the deployment ([`Error::Config`],
/// [`Error::CorruptRecord`], [`Error::InvalidId`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The acquire deadline passed before the lock was acquired. The ticket
    /// was withdrawn: nothing was left in the queue.
    #[error(
        "timed out after {} waiting for the lock of conversation {conversation_id:?}; \
         the ticket was withdrawn: retry later or raise the acquire timeout",
        human_duration(*.waited)
    )]
    Timeout {
        /// The conversation whose lock was not acquired.
        conversation_id: String,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The ticket is no longer in the conversation's queue: it expired (its
    /// holder or waiter was silent for longer than the lifetime) or its
    /// record was deleted. A holder that gets this has lost exclusivity.
    #[error(
        "ticket {ticket} of conversation {conversation_id:?} is no longer in the queue \
         (it expired or its record was deleted); the lock is not held: \
         take a new lock, and renew it (or raise the lifetime) for long tasks"
    )]
    Expired {
        /// The conversation whose ticket was lost.
        conversation_id: String,
        /// The ticket number that was lost.
        ticket: u64,
    },

    /// The backend could not be reached or did not answer in time.
    #[error(
        "lock store unavailable ({backend}): {message}; check that the server is up and reachable, then retry"
    )]
    Unavailable {
        /// Which backend failed, e.g. `redis 127.0.0.1:6379`.
        backend: String,
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The configuration is invalid.
    #[error("invalid lock store configuration: `{key}`: {message}")]
    Config {
        /// The setting at fault, e.g. `lock_store.port`.
        key: String,
        /// What is wrong with it and what to write instead.
        message: String,
    },

    /// A stored record could not be read.
    #[error(
        "corrupt lock record at key {key:?}: {message}; inspect it with `ticketlock inspect` \
         and remove it with `ticketlock clear` if it is not a lock record"
    )]
    CorruptRecord {
        /// The storage key of the record.
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// The conversation's queue already holds the most tickets a store
    /// handle lets it hold ([`crate::LockStore::with_max_queue_len`]): no
    /// ticket was issued. Bounds what one client can make a record grow to.
    #[error(
        "the queue of conversation {conversation_id:?} is full ({limit} tickets); no ticket was \
         issued: retry later, or raise the limit (LockStore::with_max_queue_len) if that many \
         waiters are expected"
    )]
    QueueFull {
        /// The conversation whose queue is full.
        conversation_id: String,
        /// The most tickets its queue may hold.
        limit: usize,
    },

    /// The conversation id cannot be used.
    #[error("invalid conversation id {conversation_id:?}: {message}")]
    InvalidId {
        /// The id as given (truncated if long).
        conversation_id: String,
        /// Why it is refused.
        message: String,
    },
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    #[allow(dead_code)] // for the remote stores
    pub(crate) fn unavailable(
        backend: impl Into<String>,
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        crate::metrics::unavailable();
        Error::Unavailable {
            backend: backend.into(),
            message: message.into(),
            source,
        }
    }

    /// Whether retrying the same call later may succeed (the backend was
    /// unavailable, the deadline passed, or the queue was full).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::QueueFull { .. }
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rasa's name for the error raised when a lock cannot be acquired.
pub type LockError = Error;

/// A duration as people write it in a message: `1.0 s`, `12.5 ms`,
/// `794 us` (not Debug's `1.003982773s`): seconds from one second up,
/// milliseconds from one millisecond, else whole microseconds. The
/// library's messages use it; tools that print beside them can too.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.1} s")
    } else if d >= Duration::from_millis(1) {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{} us", d.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_messages_read_as_people_write_them() {
        let e = Error::Timeout {
            conversation_id: "c".into(),
            waited: Duration::from_nanos(1_003_982_773),
        };
        assert!(
            e.to_string().starts_with("timed out after 1.0 s waiting"),
            "{e}"
        );
        assert_eq!(human_duration(Duration::from_micros(794)), "794 us");
        assert_eq!(human_duration(Duration::from_micros(12_500)), "12.5 ms");
        assert_eq!(human_duration(Duration::from_secs(1)), "1.0 s");
        assert_eq!(human_duration(Duration::from_millis(61_500)), "61.5 s");
        assert_eq!(human_duration(Duration::ZERO), "0 us");
    }
}
