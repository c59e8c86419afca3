//! The test-support crate's `redis-server` per test, and the store
//! configuration and helpers the Redis tests share (the conformance suite
//! uses `redis_lock_store`; the record tests `assert_canonical`).

#![allow(dead_code)]

use std::time::Duration;

use ticketlock::{LockStore, RedisConfig, RedisLockStore, TicketLock};
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

/// The value at `key`, if any.
pub fn get(con: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

/// The time to live of `key` in ms (-2: no key, -1: no TTL).
pub fn pttl(con: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(con).unwrap()
}

/// The record at `key` is exactly what `TicketLock::dumps` writes for it
/// (Rasa's layout as Python writes it, then our fields) and has a TTL.
pub fn assert_canonical(con: &mut redis::Connection, key: &str) -> Option<TicketLock> {
    let raw = get(con, key)?;
    let lock = TicketLock::from_json(&raw)
        .unwrap_or_else(|e| panic!("{key}: {e}: {}", String::from_utf8_lossy(&raw)));
    assert_eq!(
        String::from_utf8_lossy(&raw),
        lock.dumps(),
        "record at {key} is not byte-exact"
    );
    let ttl = pttl(con, key);
    assert!(ttl > 0, "record at {key} has no TTL ({ttl})");
    Some(lock)
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

/// The order in which 8 lock calls on conversation `c` got the lock, the
/// calls made one after the other (each polled once, and so sent, before
/// the next is made), `apart` from each other, by a store new to `server`, which has
/// never seen its scripts: the first calls load them while the later ones
/// are made (`redis/preload.rs`).
pub async fn order_of_first_calls(
    server: &RedisServer,
    c: RedisConfig,
    apart: Duration,
) -> Vec<usize> {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::Poll;

    let store: LockStore = RedisLockStore::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into();
    // The connection is up, and no script has been called.
    store.conversations().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (store, order) = (store.clone(), order.clone());
        let mut call = Box::pin(async move {
            let g = store.lock("c").await.unwrap();
            order.lock().unwrap().push(n);
            tokio::time::sleep(Duration::from_millis(1)).await;
            g.release().await.unwrap();
        });
        std::future::poll_fn(|cx| {
            assert!(call.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        tasks.push(tokio::spawn(call));
        // Blocking this thread: finer than the timer, and the other
        // workers go on meanwhile.
        std::thread::sleep(apart);
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(order).unwrap().into_inner().unwrap()
}
