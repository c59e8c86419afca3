//! The lock store: Rasa's `LockStore` API over the backend chosen at run
//! time.

use std::time::Duration;

#[cfg(feature = "redis")]
use crate::RedisLockStore;
use crate::backend::{Backend, TicketId};
use crate::config::{DEFAULT_LIFETIME, LockStoreConfig, lifetime_from_env};
use crate::lock::{LockOptions, LockRequest, validate_id};
use crate::{InMemoryLockStore, Result, TicketLock};

/// Calls `$body` with `$b` bound to the store's backend.
macro_rules! dispatch {
    ($store:expr, $b:ident => $body:expr) => {
        match &$store.kind {
            $crate::store::Kind::InMemory($b) => $body,
            #[cfg(feature = "redis")]
            $crate::store::Kind::Redis($b) => $body,
            #[cfg(feature = "postgres")]
            $crate::store::Kind::Postgres($b) => $body,
        }
    };
}
pub(crate) use dispatch;

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    InMemory(InMemoryLockStore),
    #[cfg(feature = "redis")]
    Redis(RedisLockStore),
    #[cfg(feature = "postgres")]
    Postgres(crate::PostgresLockStore),
}

/// A conversation lock store: fair FIFO locks per conversation id.
///
/// The backend is chosen at run time ([`LockStore::create`] from a
/// configuration, or [`LockStore::in_memory`]). Cheap to clone: clones share
/// the store.
///
/// The methods keep the names of Rasa's `LockStore`. [`LockStore::lock`] is
/// the one applications use; the others are the record-level API, for tools
/// and for code ported from Rasa.
#[derive(Clone, Debug)]
pub struct LockStore {
    pub(crate) kind: Kind,
    lifetime: Duration,
}

/// What [`LockStore::create`] builds a store from (Rasa's
/// `Union[LockStore, EndpointConfig, None]`).
// Used once per store: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreSource {
    /// An existing store, used as it is.
    Store(LockStore),
    /// A configuration.
    Config(LockStoreConfig),
    /// Nothing: the in-memory store.
    Default,
}

impl From<LockStore> for StoreSource {
    fn from(s: LockStore) -> Self {
        StoreSource::Store(s)
    }
}

impl From<InMemoryLockStore> for StoreSource {
    fn from(s: InMemoryLockStore) -> Self {
        StoreSource::Store(s.into())
    }
}

#[cfg(feature = "redis")]
impl From<RedisLockStore> for StoreSource {
    fn from(s: RedisLockStore) -> Self {
        StoreSource::Store(s.into())
    }
}

#[cfg(feature = "postgres")]
impl From<crate::PostgresLockStore> for StoreSource {
    fn from(s: crate::PostgresLockStore) -> Self {
        StoreSource::Store(s.into())
    }
}

#[cfg(feature = "postgres")]
impl From<crate::PostgresLockStore> for LockStore {
    fn from(s: crate::PostgresLockStore) -> Self {
        LockStore {
            kind: Kind::Postgres(s),
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

impl From<LockStoreConfig> for StoreSource {
    fn from(c: LockStoreConfig) -> Self {
        StoreSource::Config(c)
    }
}

impl From<Option<LockStoreConfig>> for StoreSource {
    fn from(c: Option<LockStoreConfig>) -> Self {
        c.map_or(StoreSource::Default, StoreSource::Config)
    }
}

impl From<InMemoryLockStore> for LockStore {
    fn from(s: InMemoryLockStore) -> Self {
        LockStore {
            kind: Kind::InMemory(s),
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

#[cfg(feature = "redis")]
impl From<RedisLockStore> for LockStore {
    fn from(s: RedisLockStore) -> Self {
        LockStore {
            kind: Kind::Redis(s),
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

impl LockStore {
    /// A new in-memory store with the default lifetime of 60 s
    /// (`TICKET_LOCK_LIFETIME` is read by [`LockStore::create`]).
    pub fn in_memory() -> Self {
        InMemoryLockStore::new().into()
    }

    /// Builds a store from a configuration, an existing store, or nothing
    /// (the in-memory store). The default lifetime comes from
    /// `TICKET_LOCK_LIFETIME` when set (whole seconds), else 60 s.
    pub async fn create(source: impl Into<StoreSource>) -> Result<Self> {
        let lifetime = lifetime_from_env()?;
        let store = match source.into() {
            StoreSource::Store(s) => return Ok(s),
            StoreSource::Default | StoreSource::Config(LockStoreConfig::InMemory) => {
                LockStore::in_memory()
            }
            #[cfg(feature = "redis")]
            StoreSource::Config(LockStoreConfig::Redis(config)) => {
                RedisLockStore::connect(&config).await?.into()
            }
            #[cfg(not(feature = "redis"))]
            StoreSource::Config(LockStoreConfig::Redis(_)) => {
                return Err(crate::Error::config(
                    "lock_store.type",
                    "this build of ticketlock has no Redis support; enable its cargo \
                     feature `redis`, or use type: in_memory",
                ));
            }
            #[cfg(feature = "postgres")]
            StoreSource::Config(LockStoreConfig::Postgres(config)) => {
                crate::PostgresLockStore::connect(&config).await?.into()
            }
            #[cfg(not(feature = "postgres"))]
            StoreSource::Config(LockStoreConfig::Postgres(_)) => {
                return Err(crate::Error::config(
                    "lock_store.type",
                    "this build of ticketlock has no PostgreSQL store; enable its cargo \
                     feature `postgres`",
                ));
            }
        };
        Ok(store.with_default_lifetime(lifetime))
    }

    /// The same store with another default lifetime for [`LockStore::lock`]
    /// and [`LockStore::issue_ticket`].
    pub fn with_default_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The default lock lifetime.
    pub fn default_lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The same store, refusing to issue a ticket (with
    /// [`crate::Error::QueueFull`], a transient error) when the
    /// conversation's queue already holds `max_queue_len` live tickets: a
    /// holder and `max_queue_len - 1` waiters. The check is part of the
    /// store's atomic issue. At least 1; default [`crate::DEFAULT_MAX_QUEUE_LEN`].
    /// With [`crate::MAX_ID_LEN`] this bounds the size of a record, so one
    /// client sending without pause cannot grow it without limit.
    pub fn with_max_queue_len(mut self, max_queue_len: usize) -> Self {
        self.kind = match self.kind {
            Kind::InMemory(s) => Kind::InMemory(s.with_max_queue_len(max_queue_len)),
            #[cfg(feature = "redis")]
            Kind::Redis(s) => Kind::Redis(s.with_max_queue_len(max_queue_len)),
            #[cfg(feature = "postgres")]
            Kind::Postgres(s) => Kind::Postgres(s.with_max_queue_len(max_queue_len)),
        };
        self
    }

    /// The most tickets a conversation's queue may hold.
    pub fn max_queue_len(&self) -> usize {
        dispatch!(self, b => b.max_queue_len())
    }

    /// The in-memory backend, if this is one.
    pub fn as_in_memory(&self) -> Option<&InMemoryLockStore> {
        match &self.kind {
            Kind::InMemory(s) => Some(s),
            #[allow(unreachable_patterns)] // other backends, by feature
            _ => None,
        }
    }

    /// The Redis backend, if this is one.
    #[cfg(feature = "redis")]
    pub fn as_redis(&self) -> Option<&RedisLockStore> {
        match &self.kind {
            Kind::Redis(s) => Some(s),
            #[allow(unreachable_patterns)] // other backends, by feature
            _ => None,
        }
    }

    /// The PostgreSQL backend, if this is one.
    #[cfg(feature = "postgres")]
    pub fn as_postgres(&self) -> Option<&crate::PostgresLockStore> {
        match &self.kind {
            Kind::Postgres(s) => Some(s),
            #[allow(unreachable_patterns)] // other backends, by feature
            _ => None,
        }
    }

    /// A short description of the backend, without secrets.
    pub fn describe(&self) -> String {
        dispatch!(self, b => b.describe())
    }

    /// Requests the lock of `conversation_id`; `.await` the request to wait
    /// for it.
    ///
    /// Fair: the holders of a conversation enter one at a time, in the order
    /// their tickets were issued. The wait is push-woken: a release lets the
    /// next waiter in at once; a holder that vanished blocks for at most its
    /// lifetime. Options (lifetime, timeout, auto-renewal) are set on the
    /// returned [`LockRequest`].
    ///
    /// # Cancel safety
    /// Dropping the request's future at any await point withdraws its ticket,
    /// so the next waiter is not held up. Dropping the guard releases.
    pub fn lock<'a>(&'a self, conversation_id: &'a str) -> LockRequest<'a> {
        LockRequest::new(self, conversation_id, LockOptions::new(self.lifetime))
    }

    /// Rasa's `create_lock`: a new, empty lock for `conversation_id` (not
    /// saved).
    pub fn create_lock(conversation_id: &str) -> TicketLock {
        TicketLock::new(conversation_id)
    }

    /// The record of `conversation_id`, if it has one.
    pub async fn get_lock(&self, conversation_id: &str) -> Result<Option<TicketLock>> {
        validate_id(conversation_id)?;
        dispatch!(self, b => b.get_lock(conversation_id).await)
    }

    /// Deletes the record of `conversation_id`. Its waiters fail with
    /// [`crate::Error::Expired`].
    pub async fn delete_lock(&self, conversation_id: &str) -> Result<()> {
        validate_id(conversation_id)?;
        dispatch!(self, b => b.delete_lock(conversation_id).await)
    }

    /// Replaces the record of `lock`'s conversation (deletes it when empty).
    ///
    /// Refused with [`crate::Error::CorruptRecord`] when a ticket could not
    /// be read back by every client: a non-finite expiry, or a number from
    /// 2^53 up (Lua, Python's JSON and Rasa read numbers as doubles).
    pub async fn save_lock(&self, lock: &TicketLock) -> Result<()> {
        validate_id(lock.conversation_id())?;
        const MAX_NUMBER: u64 = 1 << 53;
        let bad = lock
            .tickets()
            .find(|t| !t.expires.is_finite() || t.number >= MAX_NUMBER);
        if let Some(t) = bad {
            return Err(crate::Error::CorruptRecord {
                key: lock.conversation_id().into(),
                message: format!(
                    "refusing to save ticket {} expiring at {}: expiries must be finite and \
                     numbers below 2^53",
                    t.number, t.expires
                ),
            });
        }
        dispatch!(self, b => b.save_lock(lock).await)
    }

    /// Appends a ticket alive for `lifetime` (the store's default when
    /// `None`) and returns its number, without waiting. The ticket is served
    /// when it reaches the head of the queue; remove it with
    /// [`LockStore::finish_serving`] or [`LockStore::cleanup`].
    pub async fn issue_ticket(
        &self,
        conversation_id: &str,
        lifetime: Option<Duration>,
    ) -> Result<u64> {
        validate_id(conversation_id)?;
        let lifetime = lifetime.unwrap_or(self.lifetime);
        let issued = dispatch!(self, b => b.issue(conversation_id, lifetime).await)?;
        Ok(issued.ticket.number)
    }

    /// Removes the expired tickets of the record, atomically.
    pub async fn update_lock(&self, conversation_id: &str) -> Result<()> {
        validate_id(conversation_id)?;
        dispatch!(self, b => b.update_lock(conversation_id).await)
    }

    /// The record of `conversation_id`, or a new empty one (not saved).
    pub async fn get_or_create_lock(&self, conversation_id: &str) -> Result<TicketLock> {
        Ok(self
            .get_lock(conversation_id)
            .await?
            .unwrap_or_else(|| TicketLock::new(conversation_id)))
    }

    /// Whether any live ticket is queued for `conversation_id`.
    pub async fn is_someone_waiting(&self, conversation_id: &str) -> Result<bool> {
        Ok(self
            .get_lock(conversation_id)
            .await?
            .is_some_and(|l| l.is_someone_waiting()))
    }

    /// Removes ticket `ticket_number` and wakes the next waiter; the record
    /// goes when no ticket is left.
    pub async fn finish_serving(&self, conversation_id: &str, ticket_number: u64) -> Result<()> {
        validate_id(conversation_id)?;
        let ticket = TicketId::number(ticket_number);
        dispatch!(self, b => b.release(conversation_id, ticket).await)?;
        Ok(())
    }

    /// Rasa's `cleanup`: [`LockStore::finish_serving`], which here also
    /// drops the record when no one is waiting, in the same atomic step
    /// (Rasa does it in two, and can delete a ticket issued in between).
    pub async fn cleanup(&self, conversation_id: &str, ticket_number: u64) -> Result<()> {
        self.finish_serving(conversation_id, ticket_number).await
    }

    /// Waits until the releases and withdrawals this store started in the
    /// background are done: those of guards and lock requests that were
    /// dropped rather than released. Call it before the process exits, so
    /// that none is cut short (a ticket whose release is lost blocks its
    /// conversation until its lifetime ends). Bounded by the socket timeout.
    pub async fn flush(&self) {
        dispatch!(self, b => b.flush().await)
    }

    /// The conversations that have a record, in no particular order.
    pub async fn conversations(&self) -> Result<Vec<String>> {
        dispatch!(self, b => b.conversations().await)
    }
}
