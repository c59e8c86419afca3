//! Test support: a `redis-server` of its own per test, on a free port.
//!
//! Shared by the library's tests, the CLI's tests and the benches. Each
//! [`RedisServer`] is a child process on `127.0.0.1` with its own temp dir, so
//! a test may kill, pause or restart it without disturbing any other test, and
//! its failure messages carry the server's log.
//!
//! ```
//! use ticketlock_test_support::{RedisOptions, RedisServer};
//!
//! // `None` only outside CI when redis-server is not installed.
//! let Some(server) = RedisServer::start_with(RedisOptions {
//!     password: Some("secret".into()),
//!     ..Default::default()
//! }) else {
//!     return;
//! };
//! assert!(server.url().starts_with("redis://127.0.0.1:"));
//! assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
//! assert_eq!(server.cli(&["GET", "k"]), "v");
//! ```
//!
//! [`RedisCluster`] and [`SentinelGroup`] start whole deployments the
//! same way: a cluster of `redis-server --cluster-enabled yes` nodes joined
//! by `redis-cli --cluster create`, and a primary with two replicas watched
//! by three `redis-server --sentinel`s; members can be killed and restarted.
//!
//! [`FaultProxy`] sits between a client and a server on loopback and
//! injects network faults: latency, dropped connections, swallowed replies.
//! [`PostgresServer`] does the same for PostgreSQL: a throwaway cluster
//! made by `initdb`, served on a free port (Debian package `postgresql`).
//!
//! Servers need `redis-server` and `redis-cli` (Debian packages
//! `redis-server` and `redis-tools`). Without `redis-server`,
//! [`RedisServer::start`] returns `None` so a developer's test run skips, unless
//! `CI=true`, where it panics.

#![forbid(unsafe_code)]

mod cluster;
mod postgres;
mod proxy;
mod resp;
mod run;
mod sentinel;
mod server;
mod tls;

pub use cluster::RedisCluster;
pub use postgres::{POSTGRES_USER, PostgresServer};
pub use proxy::FaultProxy;
pub use sentinel::SentinelGroup;
pub use server::{RedisOptions, RedisServer};
pub use tls::TlsFiles;
