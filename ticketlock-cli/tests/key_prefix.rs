//! A `RedisConfig` built by hand with a key prefix endpoints.yml would
//! ignore (not alphanumeric, as Rasa checks) names the same keys as that
//! file: the prefix is ignored, not used as given.

use ticketlock::{LockStore, LockStoreConfig, RedisConfig};
use ticketlock_test_support::RedisServer;

#[test]
fn a_hand_built_config_takes_the_prefix_as_endpoints_yml_does() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = "!asdf234 34#";
    let mut by_hand = RedisConfig::default();
    by_hand.host = "127.0.0.1".into();
    by_hand.port = server.port();
    by_hand.db = 0;
    by_hand.key_prefix = Some(prefix.into());
    let yaml = format!(
        "lock_store:\n  type: redis\n  host: 127.0.0.1\n  port: {}\n  db: 0\n  key_prefix: \"{prefix}\"\n",
        server.port()
    );
    let from_file = LockStoreConfig::from_endpoints_yaml(&yaml).unwrap();
    rt.block_on(async {
        let hand = LockStore::create(LockStoreConfig::Redis(by_hand))
            .await
            .unwrap();
        let file = LockStore::create(from_file).await.unwrap();
        let key = |s: &LockStore| s.as_redis().unwrap().key_for("x");
        assert_eq!(key(&hand), key(&file));
        assert_eq!(key(&hand), "lock:x");
        // And the records land there.
        let guard = hand.lock("x").await.unwrap();
        assert_eq!(server.cli(&["EXISTS", "lock:x"]), "1");
        assert_eq!(server.cli(&["EXISTS", &format!("{prefix}:lock:x")]), "0");
        guard.release().await.unwrap();

        // An alphanumeric prefix is used, by both.
        let mut ok = RedisConfig::default();
        ok.host = "127.0.0.1".into();
        ok.port = server.port();
        ok.key_prefix = Some("bot7".into());
        let hand = LockStore::create(LockStoreConfig::Redis(ok)).await.unwrap();
        assert_eq!(key(&hand), "bot7:lock:x");
    });
}
