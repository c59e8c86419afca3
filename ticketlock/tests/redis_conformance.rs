//! The conformance suite on the Redis store, in both layouts: a
//! `redis-server` of its own per test; `peer()` opens a second connection,
//! as another process would.

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;

#[path = "redis_store/server.rs"]
mod server;

use server::RedisServer;
use suite::Harness;
use ticketlock::{LockStore, RedisLayout, RedisLockStore};

struct Redis {
    server: RedisServer,
    store: LockStore,
    layout: RedisLayout,
}

impl Harness for Redis {
    fn store(&self) -> LockStore {
        self.store.clone()
    }

    async fn peer(&self) -> LockStore {
        let mut config = server::config(&self.server);
        config.layout = self.layout;
        RedisLockStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.server.log()))
            .into()
    }
}

async fn redis() -> Option<Redis> {
    let (server, store) = server::redis_lock_store().await?;
    Some(Redis {
        server,
        store,
        layout: RedisLayout::Rasa,
    })
}

async fn native() -> Option<Redis> {
    let server = RedisServer::start()?;
    let mut config = server::config(&server);
    config.layout = RedisLayout::Native;
    let store = RedisLockStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into();
    Some(Redis {
        server,
        store,
        layout: RedisLayout::Native,
    })
}

conformance_tests!(redis);

/// The same suite on the native layout.
mod native_layout {
    use super::*;

    conformance_tests!(super::native);
}
