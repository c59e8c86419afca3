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

/// `sentinel_username` and `sentinel_password` reach the sentinels: a
/// sentinel user with a wrong password is refused (and the password is not
/// shown), the right one works. The sentinels keep their open `default`
/// user for the other tests of the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_credentials_are_sent_to_the_sentinels() {
    let Some(group) = tokio::task::spawn_blocking(group).await.unwrap() else {
        return;
    };
    for s in group.sentinels() {
        assert_eq!(
            s.cli(&["ACL", "SETUSER", "watcher", "on", ">w-pw", "+@all"]),
            "OK"
        );
    }
    let mut c = config(group);
    c.socket_timeout = Duration::from_secs(2);
    c.sentinel_username = Some("watcher".into());
    c.sentinel_password = Some(ticketlock::Secret::new("not-w-pw"));
    let e = ticketlock::RedisLockStore::connect(&c).await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains("not-w-pw"), "{e}");
    match &e {
        ticketlock::Error::Config { key, message } => {
            assert_eq!(key, "lock_store.sentinel_password", "{message}");
        }
        other => panic!("not a configuration error: {other:?}"),
    }
    c.sentinel_password = Some(ticketlock::Secret::new("w-pw"));
    let store: ticketlock::LockStore = ticketlock::RedisLockStore::connect(&c)
        .await
        .unwrap()
        .into();
    store.lock("creds").await.unwrap().release().await.unwrap();
}

/// Sentinel mode needs `+role` on top of the documented ACL rule (the
/// client checks with ROLE that the server it was named is the primary),
/// and `min_replicas_ack` needs `+wait`, and nothing more: without either,
/// a configuration error naming the user; with both, locks are granted
/// (on the primary, with two replicas).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_mode_needs_role_and_min_replicas_ack_wait() {
    let Some(group) = tokio::task::spawn_blocking(group).await.unwrap() else {
        return;
    };
    let primary = &group.servers()[group.primary()];
    let base = "on >ack-pw resetkeys ~ack:lock:* ~{*}:ack:lock:* resetchannels &ack:lock:* \
                -@all +evalsha +script|load +get +set +del +publish +time +scan +subscribe \
                +unsubscribe +ping +select";
    for (user, extra) in [
        ("norole", " +wait"),
        ("nowait", " +role"),
        ("withwait", " +role +wait"),
    ] {
        let rule = format!("{base}{extra}");
        let mut args = vec!["ACL", "SETUSER", user];
        args.extend(rule.split(' '));
        assert_eq!(primary.cli(&args), "OK");
    }
    let mut c = config(group);
    c.key_prefix = Some("ack".into());
    c.password = Some(ticketlock::Secret::new("ack-pw"));
    c.min_replicas_ack = 1;
    c.min_replicas_ack_timeout = Duration::from_secs(1);
    c.username = Some("norole".into());
    match ticketlock::RedisLockStore::connect(&c).await {
        Err(ticketlock::Error::Config { key, .. }) => assert_eq!(key, "lock_store.username"),
        other => panic!("without +role: {other:?}"),
    }
    c.username = Some("nowait".into());
    let store: ticketlock::LockStore = ticketlock::RedisLockStore::connect(&c)
        .await
        .unwrap()
        .into();
    match store.lock("c").await {
        Err(ticketlock::Error::Config { key, .. }) => assert_eq!(key, "lock_store.username"),
        other => panic!("without +wait: {other:?}"),
    }
    c.username = Some("withwait".into());
    let store: ticketlock::LockStore = ticketlock::RedisLockStore::connect(&c)
        .await
        .unwrap()
        .into();
    let g = store.lock("c").await.unwrap();
    g.renew().await.unwrap();
    g.release().await.unwrap();
}
