#![doc = include_str!("../../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod config;
mod error;
mod guard;
mod lock;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod redis;
mod store;
mod ticket;

pub use backend::{Attempt, Backend, Issued, TicketId, Watch};
pub use config::{
    DEFAULT_LIFETIME, DEFAULT_MIN_REPLICAS_ACK_TIMEOUT, DeploymentMode, LIFETIME_ENV,
    LockStoreConfig, PostgresConfig, PostgresSslMode, RedisConfig, RedisStoreType, Secret,
    lifetime_from_env,
};
pub use error::{Error, LockError, Result};
pub use guard::LockGuard;
pub use lock::{
    DEFAULT_MAX_QUEUE_LEN, LockOptions, LockRequest, MAX_ID_LEN, MIN_LIFETIME, QueuedTicket,
};
pub use memory::InMemoryLockStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresLockStore;
pub use redis::RedisLockStore;
pub use store::{LockStore, StoreSource};
pub use ticket::{RecordError, Ticket, TicketLock};
