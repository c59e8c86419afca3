//! Configuration: Rasa's `endpoints.yml` `lock_store:` section, the URL form,
//! and `TICKET_LOCK_LIFETIME`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod check;
mod endpoints;
mod lifetime;
mod postgres;
mod url;

#[cfg(feature = "redis")]
pub(crate) use check::{KEY_PREFIX_HINT, key_prefix_ok, split_endpoint};
pub use lifetime::{DEFAULT_LIFETIME, LIFETIME_ENV, lifetime_from_env};
pub use postgres::{PostgresConfig, PostgresSslMode};
pub(crate) use postgres::{
    QUERY_SETTINGS as POSTGRES_QUERY_SETTINGS, parse_url_warn as parse_postgres_url,
};

/// Which store to build, and how.
// Built once per store: the size of the Redis variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum LockStoreConfig {
    /// The in-memory store (`type: in_memory`, or no `lock_store:` section).
    #[default]
    InMemory,
    /// A Redis store (`type: redis` or `type: concurrent_redis`).
    Redis(RedisConfig),
    /// A PostgreSQL store (`type: postgresql`, or a `postgresql://` URL).
    /// Needs the crate's `postgres` feature.
    Postgres(PostgresConfig),
}

/// Which Rasa store type a Redis configuration named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisStoreType {
    /// `type: redis`: Rasa's `RedisLockStore`.
    #[default]
    Redis,
    /// `type: concurrent_redis`: Rasa Pro's store. Served by the same atomic
    /// store and record layout as `redis` (not Rasa Pro's per-ticket keys).
    ConcurrentRedis,
}

/// How the Redis servers are deployed (Rasa Pro's `deployment_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeploymentMode {
    /// One server (or a primary with replicas reached directly).
    #[default]
    Standard,
    /// Redis Cluster.
    Cluster,
    /// Redis Sentinel.
    Sentinel,
}

/// How conversations are stored in Redis (`layout`).
///
/// Both layouts use the same key per conversation, `lock:<id>`, of
/// different Redis types, so a client of one layout that meets a
/// conversation of the other gets [`crate::Error::Config`] naming
/// `lock_store.layout`, never a second holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisLayout {
    /// Rasa's record (a JSON string), shared with Rasa processes. Each call
    /// costs O(depth of the queue). The default: a deployment that shares
    /// its Redis with Rasa keeps working, and existing records stay valid.
    #[default]
    Rasa,
    /// Our own layout (a hash, a queue and a liveness set per
    /// conversation): every operation costs the same at any depth, and a
    /// release hands the lock to the next waiter in one step. Rasa cannot
    /// read it: use it when no Rasa process shares the Redis.
    Native,
}

/// A secret that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Settings of the Redis store, with Rasa's names and defaults.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Which Rasa type named this store.
    pub store_type: RedisStoreType,
    /// Server host name (`host`, or Rasa's `url`). Default `localhost`.
    pub host: String,
    /// Server port. Default 6379.
    pub port: u16,
    /// Database number. Default 1, as in Rasa.
    pub db: i64,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// Connect with TLS.
    pub use_ssl: bool,
    /// Client certificate (PEM) for TLS.
    pub ssl_certfile: Option<PathBuf>,
    /// Client key (PEM) for TLS.
    pub ssl_keyfile: Option<PathBuf>,
    /// CA certificates (PEM) to verify the server with.
    pub ssl_ca_certs: Option<PathBuf>,
    /// Alphanumeric prefix of every key: keys are `<prefix>:lock:<id>`.
    pub key_prefix: Option<String>,
    /// Bound on every call to the server. Default 10 s.
    pub socket_timeout: Duration,
    /// Ours, not Rasa's: how conversations are stored. Default
    /// [`RedisLayout::Rasa`].
    pub layout: RedisLayout,
    /// How the servers are deployed.
    pub deployment_mode: DeploymentMode,
    /// `host:port` of each cluster node or sentinel.
    pub endpoints: Vec<String>,
    /// The sentinel service (master) name.
    pub sentinel_service: Option<String>,
    /// ACL user name on the sentinels (Rasa Pro's `sentinel_username`);
    /// `username` is for the data servers.
    pub sentinel_username: Option<String>,
    /// Password on the sentinels (Rasa Pro's `sentinel_password`); never
    /// shown.
    pub sentinel_password: Option<Secret>,
    /// Ours, not Rasa's: after each change to a record, wait until this
    /// many replicas acknowledged it (Redis `WAIT`), and fail the operation
    /// with [`crate::Error::Unavailable`] when fewer did within
    /// `min_replicas_ack_timeout`. 0 (the default) does not wait. Keeps
    /// mutual exclusion and fencing-token order across a failover; see the
    /// Redis store's documentation.
    pub min_replicas_ack: u32,
    /// How long to wait for the replicas of `min_replicas_ack`. Default
    /// 1 s; must be shorter than `socket_timeout`.
    pub min_replicas_ack_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            store_type: RedisStoreType::Redis,
            host: "localhost".into(),
            port: 6379,
            db: 1,
            username: None,
            password: None,
            use_ssl: false,
            ssl_certfile: None,
            ssl_keyfile: None,
            ssl_ca_certs: None,
            key_prefix: None,
            socket_timeout: Duration::from_secs(10),
            layout: RedisLayout::Rasa,
            deployment_mode: DeploymentMode::Standard,
            endpoints: Vec::new(),
            sentinel_service: None,
            sentinel_username: None,
            sentinel_password: None,
            min_replicas_ack: 0,
            min_replicas_ack_timeout: DEFAULT_MIN_REPLICAS_ACK_TIMEOUT,
        }
    }
}

/// The default of [`RedisConfig::min_replicas_ack_timeout`].
pub const DEFAULT_MIN_REPLICAS_ACK_TIMEOUT: Duration = Duration::from_secs(1);
