//! The test-support crate's `redis-server` per test, and the store
//! configuration and helper the Redis tests share (the conformance suite
//! uses `redis_lock_store`).

#![allow(dead_code)]

use std::time::Duration;

use ticketlock::{LockStore, RedisConfig, RedisLockStore};
pub use ticketlock_test_support::RedisServer;

/// A server of the test's own, or the test returns (skipped outside CI; a
/// failure under CI=true, see `RedisServer::start`).
#[allow(unused_macros)]
macro_rules! server {
    () => {
        match RedisServer::start() {
            Some(s) => s,
            None => return,
        }
    };
    ($options:expr) => {
        match RedisServer::start_with($options) {
            Some(s) => s,
            None => return,
        }
    };
}

/// A plain connection to database `db` (binary-safe raw commands).
pub fn connection(server: &RedisServer, db: i64) -> redis::Connection {
    let client = redis::Client::open(format!("{}/{db}", server.url())).unwrap();
    client.get_connection().unwrap()
}

/// The store configuration for `server` (database 1, as Rasa's default;
/// the server's password, if it has one).
pub fn config(server: &RedisServer) -> RedisConfig {
    let mut c = RedisConfig::default();
    c.host = server.host().into();
    c.port = server.port();
    c.password = server.password().map(ticketlock::Secret::new);
    c.socket_timeout = Duration::from_secs(2);
    c
}

/// A server and a store connected to it (for the conformance suite).
pub async fn redis_lock_store() -> Option<(RedisServer, LockStore)> {
    let server = RedisServer::start()?;
    let store = RedisLockStore::connect(&config(&server))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()));
    Some((server, store.into()))
}
