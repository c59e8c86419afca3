//! The lock most people write on Redis, as a baseline: `SET key token NX
//! PX` to take it, a compare-and-delete script to release it, and a retry
//! after a short sleep while someone else holds it.
//!
//! It is not fair (whoever retries first after a release wins) and a waiter
//! learns of a release only at its next retry, but each uncontended cycle is
//! two cheap commands: the figure to beat for a lock on one Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;

use super::locker::Locker;
use super::wire::{Con, Wire};

/// How long a holder keeps the lock without releasing (`PX`).
const LEASE: Duration = Duration::from_secs(30);

/// The pause between two tries while the key is taken.
pub(crate) const RETRY: Duration = Duration::from_millis(1);

/// Deletes the key only if it still holds the caller's token.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";

/// The spin lock, on the baseline's connection.
#[derive(Clone)]
pub(crate) struct SetNx {
    con: Con,
    release: Arc<redis::Script>,
    /// Tokens: this process's tag and a counter, so that no two holders
    /// ever have the same one.
    tag: u32,
    next: Arc<AtomicU64>,
}

/// What [`SetNx::lock`] hands the holder: its token.
pub(crate) struct Token(String);

/// What the baseline names in reports.
pub(crate) const NAME: &str = "SET NX PX spin lock (1 ms retry, compare-and-delete release)";

impl SetNx {
    pub(crate) fn new(wire: &Wire, tag: u32) -> SetNx {
        SetNx {
            con: wire.con(),
            release: Arc::new(redis::Script::new(RELEASE)),
            tag,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The key of conversation `id`.
    pub(crate) fn key(id: &str) -> String {
        format!("ticketlock-bench:setnx:{id}")
    }
}

impl Locker for SetNx {
    type Guard = Token;

    async fn lock(&self, id: &str) -> anyhow::Result<Token> {
        let key = SetNx::key(id);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let token = format!("{:08x}-{n}", self.tag);
        loop {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE.as_millis() as u64)
                .query_async(&mut self.con.clone())
                .await
                .context("SET NX baseline: SET")?;
            if set.is_some() {
                return Ok(Token(token));
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn release(&self, id: &str, Token(token): Token) -> anyhow::Result<()> {
        let deleted: i64 = self
            .release
            .key(SetNx::key(id))
            .arg(&token)
            .invoke_async(&mut self.con.clone())
            .await
            .context("SET NX baseline: release")?;
        anyhow::ensure!(
            deleted == 1,
            "SET NX baseline: the lock of {id} was no longer held by its token at release \
             (it outlived its {} s lease)",
            LEASE.as_secs()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ticketlock_test_support::RedisServer;

    use super::super::locker::checks;
    use super::super::wire::{client, test_server};
    use super::*;

    async fn setnx() -> Option<(RedisServer, SetNx)> {
        let (server, config) = test_server()?;
        let wire = Wire::connect(&client(&config).unwrap()).await.unwrap();
        Some((server, SetNx::new(&wire, 7)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_set_nx_lock_is_exclusive() {
        let Some((server, lock)) = setnx().await else {
            return;
        };
        checks::is_exclusive(&lock, "c").await;
        assert_eq!(server.cli(&["EXISTS", &SetNx::key("c")]), "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_by_a_stale_token_is_an_error_and_leaves_the_holder() {
        let Some((server, lock)) = setnx().await else {
            return;
        };
        let held = lock.lock("c").await.unwrap();
        let err = lock
            .release("c", Token("someone else".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no longer held by its token"), "{err}");
        assert_eq!(server.cli(&["GET", &SetNx::key("c")]), held.0);
        lock.release("c", held).await.unwrap();
        assert_eq!(server.cli(&["EXISTS", &SetNx::key("c")]), "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_contended_workload_runs_on_it_and_records_hand_offs() {
        let Some((server, lock)) = setnx().await else {
            return;
        };
        checks::runs_contended(&lock).await;
        assert_eq!(server.cli(&["DBSIZE"]), "0");
    }
}
