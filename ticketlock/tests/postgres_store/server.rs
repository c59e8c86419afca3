//! The test-support crate's PostgreSQL server per test, and the store
//! configuration the PostgreSQL tests share.

#![allow(dead_code)]

use std::time::Duration;

use ticketlock::{LockStore, LockStoreConfig, PostgresConfig, PostgresLockStore};
pub use ticketlock_test_support::PostgresServer;

/// A server of the test's own, or the test returns (skipped outside CI; a
/// failure under CI=true).
#[allow(unused_macros)]
macro_rules! server {
    () => {
        match PostgresServer::start() {
            Some(s) => s,
            None => return,
        }
    };
}

/// The store configuration for `server` (no TLS, a 2 s timeout).
pub fn config(server: &PostgresServer) -> PostgresConfig {
    let LockStoreConfig::Postgres(mut c) = LockStoreConfig::from_url(&server.url()).unwrap() else {
        unreachable!()
    };
    c.socket_timeout = Duration::from_secs(2);
    c
}

/// A server and a store connected to it (for the conformance suite).
pub async fn postgres_lock_store() -> Option<(PostgresServer, LockStore)> {
    let server = PostgresServer::start()?;
    let store = PostgresLockStore::connect(&config(&server))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()));
    Some((server, store.into()))
}
