//! Stores built on the application's own Redis client or connection info.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use server::RedisServer;
use ticketlock::{Error, LockStore, RedisConfig, RedisLockStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_the_applications_client_shares_locks_with_a_configured_one() {
    let server = server!();
    let mut settings = RedisConfig::default();
    settings.key_prefix = Some("app".into());
    // Database 3 and the server's password come from the client alone.
    let client = redis::Client::open(format!("{}/3", server.url())).unwrap();
    let own: LockStore = RedisLockStore::from_client(client, &settings)
        .await
        .unwrap_or_else(|e| panic!("from_client: {e}\n{}", server.log()))
        .into();
    assert_eq!(
        own.describe(),
        format!("redis {}:{}/3", server.host(), server.port())
    );
    let mut configured = server::config(&server);
    configured.db = 3;
    configured.key_prefix = Some("app".into());
    let peer: LockStore = RedisLockStore::connect(&configured).await.unwrap().into();

    let guard = own.lock("sender-1").await.unwrap();
    assert!(
        peer.try_lock("sender-1").await.unwrap().is_none(),
        "one lock"
    );
    let mut raw = server::connection(&server, 3);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    // The record, and beside it only the short-lived request entry
    // and our own queue (the rasa layout's repair source), in the record's
    // hash slot and under the same prefix.
    let records: Vec<&String> = keys.iter().filter(|k| !k.starts_with('{')).collect();
    assert_eq!(records, ["app:lock:sender-1"], "{keys:?}");
    assert!(
        keys.iter().all(|k| k == "app:lock:sender-1"
            || k == "{app:lock:sender-1}:app:lock:sender-1:ours"
            || k.starts_with("{app:lock:sender-1}:app:lock:sender-1:rq:")),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 3, "{keys:?}");
    let waiter =
        tokio::spawn(async move { peer.lock("sender-1").await.map(|g| g.fencing_token()) });
    let token = guard.fencing_token();
    guard.release().await.unwrap();
    assert!(waiter.await.unwrap().unwrap() > token);

    let info: LockStore = RedisLockStore::from_connection_info(server.url().as_str(), &settings)
        .await
        .unwrap()
        .into();
    assert!(info.describe().ends_with("/0"), "{}", info.describe());
}

#[tokio::test(flavor = "current_thread")]
async fn settings_are_checked_and_an_unreachable_client_is_unavailable() {
    // A closed loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut bad = RedisConfig::default();
    bad.key_prefix = Some("a:b".into());
    match RedisLockStore::from_client(client.clone(), &bad).await {
        Err(Error::Config { key, .. }) => assert_eq!(key, "lock_store.key_prefix"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    match RedisLockStore::from_client(client, &RedisConfig::default()).await {
        Err(Error::Unavailable { backend, .. }) => {
            assert_eq!(backend, format!("redis 127.0.0.1:{port}/0"))
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    match RedisLockStore::from_connection_info("http://nowhere", &RedisConfig::default()).await {
        Err(Error::Config { key, .. }) => assert_eq!(key, "connection_info"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
