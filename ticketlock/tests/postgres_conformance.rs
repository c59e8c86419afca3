//! The conformance suite on the PostgreSQL store: a server of its own per
//! test; `peer()` connects anew, as another process would.

#![cfg(feature = "postgres")]

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;

#[path = "postgres_store/server.rs"]
mod server;

use server::PostgresServer;
use suite::Harness;
use ticketlock::{LockStore, PostgresLockStore};

struct Postgres {
    server: PostgresServer,
    store: LockStore,
}

impl Harness for Postgres {
    fn store(&self) -> LockStore {
        self.store.clone()
    }

    async fn peer(&self) -> LockStore {
        PostgresLockStore::connect(&server::config(&self.server))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.server.log()))
            .into()
    }
}

async fn postgres() -> Option<Postgres> {
    let (server, store) = server::postgres_lock_store().await?;
    Some(Postgres { server, store })
}

conformance_tests!(postgres);
