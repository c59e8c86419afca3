//! The Redis store on a sentinel-managed group (one primary, two replicas,
//! three sentinels) started by the tests on loopback ports: the
//! conformance suite, and the store following a failover without a
//! restart. The conformance tests share one group, each with a key prefix
//! of its own; the failover test has its own group.

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use suite::{Configured, Harness};
use ticketlock::{DeploymentMode, RedisConfig};
use ticketlock_test_support::SentinelGroup;

fn group() -> Option<&'static SentinelGroup> {
    static GROUP: OnceLock<Option<SentinelGroup>> = OnceLock::new();
    GROUP.get_or_init(SentinelGroup::start).as_ref()
}

fn config(group: &SentinelGroup) -> RedisConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut c = RedisConfig::default();
    c.deployment_mode = DeploymentMode::Sentinel;
    c.endpoints = group.endpoints();
    c.sentinel_service = Some(group.service().to_string());
    c.key_prefix = Some(format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst)));
    c.socket_timeout = Duration::from_secs(5);
    c
}

async fn redis_sentinel() -> Option<Configured> {
    let group = tokio::task::spawn_blocking(group).await.unwrap()?;
    Some(Configured::connect(config(group)).await)
}

conformance_tests!(redis_sentinel);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_written_on_the_primary_the_sentinels_name() {
    let Some(h) = redis_sentinel().await else {
        return;
    };
    let group = group().unwrap();
    let guard = h.store().lock("where").await.unwrap();
    let key = format!("{}:lock:where", h.config.key_prefix.as_deref().unwrap());
    let primary = &group.servers()[group.primary()];
    let raw = primary.cli(&["-n", "1", "GET", &key]);
    assert!(raw.starts_with("{\"conversation_id\": \"where\""), "{raw}");
    guard.release().await.unwrap();
}
