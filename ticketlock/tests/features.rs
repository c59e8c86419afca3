//! A configuration that needs a cargo feature the build lacks is refused
//! with a configuration error naming the feature. Which test runs depends
//! on the build's features (CI runs the library with no default features).

#![allow(unused_imports, dead_code)]

use ticketlock::{DeploymentMode, Error, LockStore, LockStoreConfig, RedisConfig};

fn refused_for(result: ticketlock::Result<LockStore>, key: &str, feature: &str) {
    match result {
        Err(Error::Config { key: k, message }) => {
            assert_eq!(k, key);
            assert!(message.contains(&format!("`{feature}`")), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[cfg(not(feature = "redis"))]
#[tokio::test(flavor = "current_thread")]
async fn a_redis_configuration_without_the_redis_feature_is_refused() {
    let config = LockStoreConfig::Redis(RedisConfig::default());
    refused_for(LockStore::create(config).await, "lock_store.type", "redis");
    // The in-memory store is all there is.
    let store = LockStore::create(LockStoreConfig::InMemory).await.unwrap();
    store.lock("c").await.unwrap().release().await.unwrap();
}

#[cfg(all(feature = "redis", not(feature = "cluster")))]
#[tokio::test(flavor = "current_thread")]
async fn cluster_mode_without_the_cluster_feature_is_refused() {
    let mut c = RedisConfig::default();
    c.deployment_mode = DeploymentMode::Cluster;
    c.db = 0;
    c.endpoints = vec!["127.0.0.1:1".into()];
    let config = LockStoreConfig::Redis(c);
    refused_for(
        LockStore::create(config).await,
        "lock_store.deployment_mode",
        "cluster",
    );
}

#[cfg(all(feature = "redis", not(feature = "sentinel")))]
#[tokio::test(flavor = "current_thread")]
async fn sentinel_mode_without_the_sentinel_feature_is_refused() {
    let mut c = RedisConfig::default();
    c.deployment_mode = DeploymentMode::Sentinel;
    c.sentinel_service = Some("mymaster".into());
    c.endpoints = vec!["127.0.0.1:1".into()];
    let config = LockStoreConfig::Redis(c);
    refused_for(
        LockStore::create(config).await,
        "lock_store.deployment_mode",
        "sentinel",
    );
}
