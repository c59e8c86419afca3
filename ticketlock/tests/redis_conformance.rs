//! The conformance suite on the Redis store: a `redis-server` of its own
//! per test; `peer()` opens a second connection, as another process would.

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;

#[path = "redis_store/server.rs"]
mod server;

use server::RedisServer;
use suite::Harness;
use ticketlock::{LockStore, RedisLockStore};

struct Redis {
    server: RedisServer,
    store: LockStore,
}

impl Harness for Redis {
    fn store(&self) -> LockStore {
        self.store.clone()
    }

    async fn peer(&self) -> LockStore {
        RedisLockStore::connect(&server::config(&self.server))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.server.log()))
            .into()
    }
}

async fn redis() -> Option<Redis> {
    let (server, store) = server::redis_lock_store().await?;
    Some(Redis { server, store })
}

conformance_tests!(redis);
