//! The stores the record tools read: a Redis store's keys, or a PostgreSQL
//! store's rows shown as the Rasa record they hold.

use ticketlock::{LockStore, PostgresLockStore, RedisLockStore};

/// A shared store whose records the tools can read and remove.
#[derive(Clone)]
pub enum Records {
    /// Records are keys.
    Redis(RedisLockStore),
    /// Records are rows of `ticketlock_conversations` and `ticketlock_tickets`.
    Postgres(PostgresLockStore, LockStore),
}

impl Records {
    /// The records of `store`, if it is a shared store.
    pub fn of(store: &LockStore) -> Option<Records> {
        if let Some(r) = store.as_redis() {
            return Some(Records::Redis(r.clone()));
        }
        store
            .as_postgres()
            .map(|p| Records::Postgres(p.clone(), store.clone()))
    }

    /// Where the record of `id` is kept, for messages.
    pub fn key_for(&self, id: &str) -> String {
        match self {
            Records::Redis(r) => r.key_for(id),
            Records::Postgres(..) => format!("ticketlock_conversations[{id}]"),
        }
    }

    /// The record as stored (Redis) or as Rasa's JSON of its rows
    /// (PostgreSQL).
    pub async fn raw_record(&self, id: &str) -> ticketlock::Result<Option<Vec<u8>>> {
        match self {
            Records::Redis(r) => r.raw_record(id).await,
            Records::Postgres(_, store) => Ok(store.get_lock(id).await?.map(|l| l.dumps().into())),
        }
    }

    /// Removes the record of `id`; whether there was one.
    pub async fn remove_record(&self, id: &str) -> ticketlock::Result<bool> {
        match self {
            Records::Redis(r) => r.remove_record(id).await,
            Records::Postgres(_, store) => {
                let there = store.get_lock(id).await?.is_some();
                store.delete_lock(id).await?;
                Ok(there)
            }
        }
    }

    /// The server's clock, in Unix seconds.
    pub async fn server_time(&self) -> ticketlock::Result<f64> {
        match self {
            Records::Redis(r) => r.server_time().await,
            Records::Postgres(p, _) => p.server_time().await,
        }
    }
}
