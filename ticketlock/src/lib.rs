#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
pub mod blocking;
mod config;
mod error;
mod guard;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod in_flight;
mod lock;
mod memory;
pub mod metrics;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod stats;
mod store;
mod ticket;
mod try_lock;

pub use backend::{Attempt, Backend, Issued, TicketId, Watch};
pub use config::{
    DEFAULT_LIFETIME, DEFAULT_MIN_REPLICAS_ACK_TIMEOUT, DeploymentMode, LIFETIME_ENV,
    LockStoreConfig, PostgresConfig, PostgresSslMode, RedisConfig, RedisLayout, RedisStoreType,
    Secret, lifetime_from_env,
};
pub use error::{Error, LockError, Result, human_duration};
pub use guard::LockGuard;
pub use lock::{
    DEFAULT_MAX_QUEUE_LEN, LockFuture, LockOptions, LockRequest, MAX_ID_LEN, MIN_LIFETIME,
    QueuedTicket,
};
pub use memory::InMemoryLockStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresLockStore;
#[cfg(feature = "redis")]
pub use redis::RedisLockStore;
#[cfg(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))]
pub use redis::install_tls_provider;
pub use stats::Stats;
pub use store::{LockStore, StoreSource};
pub use ticket::{RecordError, Ticket, TicketLock};

// The repository's front page: its examples are compiled as doctests too.
// Under `cfg(doctest)` only, so the published package (which does not
// contain it) builds without it.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct RepositoryReadme;
