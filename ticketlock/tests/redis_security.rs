//! Security of the Redis store beyond what `redis_store.rs` covers: TLS
//! against a server whose certificate another CA signed, and a client
//! certificate the server does not trust; an ACL user confined to one key
//! prefix; isolation between stores of different prefixes and databases,
//! also for ids that look like another store's keys; the record size bound
//! against a record Rasa wrote; and secrets in every error and `Debug` form.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use server::{RedisServer, config, connection};
use ticketlock::{Error, LockStore, LockStoreConfig, RedisConfig, RedisLockStore, Secret};
use ticketlock_test_support::RedisOptions;

async fn connect_with(server: &RedisServer, c: RedisConfig) -> LockStore {
    RedisLockStore::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into()
}

fn tls_config(server: &RedisServer) -> RedisConfig {
    // The application's choice: the library never installs one.
    ticketlock::install_tls_provider();
    let certs = server.tls_files().unwrap();
    let mut c = config(server);
    c.use_ssl = true;
    c.ssl_ca_certs = Some(certs.ca_cert.clone());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_certificate_signed_by_another_ca_is_refused() {
    let server = server!(RedisOptions {
        tls: true,
        ..Default::default()
    });
    // The right CA works (no client certificate: the server makes it optional).
    let store = connect_with(&server, tls_config(&server)).await;
    store.lock("c").await.unwrap().release().await.unwrap();

    let mut wrong = tls_config(&server);
    wrong.ssl_ca_certs = Some(server.tls_files().unwrap().other_ca_cert.clone());
    let started = Instant::now();
    let err = RedisLockStore::connect(&wrong).await.unwrap_err();
    assert!(
        started.elapsed() < wrong.socket_timeout,
        "not refused at once"
    );
    match &err {
        Error::Config { key, message } => {
            assert_eq!(key, "lock_store.ssl_ca_certs");
            assert!(message.contains("UnknownIssuer"), "{message}");
            assert!(
                message.contains("ssl_ca_certs"),
                "says what to fix: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Nothing was written through the refused connection.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut tls_connection(&server))
        .unwrap();
    let keys = records_only(keys);
    assert!(keys.is_empty(), "{keys:?}");
}

/// A connection to the TLS server that trusts its CA, for inspection.
fn tls_connection(server: &RedisServer) -> redis::Connection {
    ticketlock::install_tls_provider();
    let certs = server.tls_files().unwrap();
    let info = redis::ConnectionAddr::TcpTls {
        host: server.host().into(),
        port: server.port(),
        insecure: false,
        tls_params: None,
    };
    let client = redis::Client::build_with_tls(
        redis::IntoConnectionInfo::into_connection_info(info)
            .unwrap()
            .set_redis_settings(redis::RedisConnectionInfo::default().set_db(1)),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&certs.ca_cert).unwrap()),
        },
    )
    .unwrap();
    client.get_connection().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_the_server_does_not_trust_is_a_configuration_error() {
    let server = server!(RedisOptions {
        tls: true,
        extra_args: vec!["--tls-auth-clients".into(), "yes".into()],
        ..Default::default()
    });
    let certs = server.tls_files().unwrap();
    let mut c = tls_config(&server);
    c.ssl_certfile = Some(certs.client_cert.clone());
    c.ssl_keyfile = Some(certs.client_key.clone());
    connect_with(&server, c.clone())
        .await
        .lock("c")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    // Signed by a CA the server does not trust; and none at all where the
    // server requires one.
    let mut other = c.clone();
    other.ssl_certfile = Some(certs.other_client_cert.clone());
    other.ssl_keyfile = Some(certs.other_client_key.clone());
    let mut none = c;
    none.ssl_certfile = None;
    none.ssl_keyfile = None;
    for (what, c) in [("untrusted", other), ("missing", none)] {
        let started = Instant::now();
        let err = RedisLockStore::connect(&c).await.unwrap_err();
        assert!(
            started.elapsed() < c.socket_timeout,
            "{what}: not refused at once"
        );
        match &err {
            Error::Config { key, message } => {
                assert_eq!(key, "lock_store.ssl_certfile", "{what}");
                assert!(message.contains("client certificate"), "{what}: {message}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acl_user_confined_to_its_prefix_works_there_and_nowhere_else() {
    let server = server!(RedisOptions {
        acl_users: vec![
            "bot7user on >b7-pw resetkeys ~bot7:lock:* ~{*}:bot7:lock:* resetchannels &bot7:lock:* -@all \
             +evalsha +script|load +get +set +del +publish +time +scan +subscribe \
             +unsubscribe +ping +select"
                .into()
        ],
        ..Default::default()
    });
    let mut c = config(&server);
    c.username = Some("bot7user".into());
    c.password = Some(Secret::new("b7-pw"));
    c.key_prefix = Some("bot7".into());
    let store = connect_with(&server, c.clone()).await;
    let holder = store.lock("c").await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .lock("c")
                .wait_time(Duration::from_secs(3600))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.release().await.unwrap();
    let g = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("woken by a push under the prefix's channel rule")
        .unwrap();
    assert_eq!(store.conversations().await.unwrap(), ["c"]);
    g.release().await.unwrap();

    // The same user without the prefix touches keys outside its rule: a
    // configuration error naming the user, and nothing written.
    c.key_prefix = None;
    let outside = connect_with(&server, c).await;
    match outside.lock("c").await.unwrap_err() {
        Error::Config { key, message } => {
            assert_eq!(key, "lock_store.username");
            assert!(message.contains("ACL"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut connection(&server, 1))
        .unwrap();
    let keys = records_only(keys);
    assert!(keys.is_empty(), "{keys:?}");
}

/// Every pair of stores that differ in prefix or database: none sees,
/// blocks, lists, deletes or prunes the other's records, also for ids that
/// spell another store's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_of_different_prefixes_or_databases_never_see_each_other() {
    let server = server!();
    let mut stores = Vec::new();
    for (prefix, db) in [(None, 1), (Some("bot7"), 1), (Some("bot8"), 1), (None, 2)] {
        let mut c = config(&server);
        c.key_prefix = prefix.map(str::to_owned);
        c.db = db;
        stores.push(connect_with(&server, c).await);
    }
    // Ids that spell the keys of the other stores, and one of each store's own.
    let shared = ["c", "bot7:lock:c", "lock:c", "bot8:lock:bot7:lock:c", "*"];
    let mut held = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for id in shared
            .iter()
            .map(|s| s.to_string())
            .chain([format!("own{i}")])
        {
            let g = store
                .lock(&id)
                .timeout(Duration::from_secs(2))
                .await
                .unwrap_or_else(|e| panic!("store {i}, {id:?}: blocked by another store? {e}"));
            assert_eq!(g.ticket(), 0, "store {i}, {id:?} shares a queue");
            held.push((i, id, g));
        }
    }
    for (i, store) in stores.iter().enumerate() {
        let mut listed = store.conversations().await.unwrap();
        listed.sort();
        let mut mine: Vec<String> = shared
            .iter()
            .map(|s| s.to_string())
            .chain([format!("own{i}")])
            .collect();
        mine.sort();
        assert_eq!(listed, mine, "store {i} lists another store's records");
        for j in (0..stores.len()).filter(|j| *j != i) {
            assert_eq!(store.get_lock(&format!("own{j}")).await.unwrap(), None);
        }
        let rec = store.get_lock("c").await.unwrap().unwrap();
        assert_eq!(rec.tickets().len(), 1, "store {i}");
    }
    // Deleting and pruning in one store leaves the others' holders holding.
    stores[0].delete_lock("c").await.unwrap();
    stores[0].delete_lock("*").await.unwrap();
    stores[1].update_lock("c").await.unwrap();
    for (i, id, g) in held {
        let gone = i == 0 && (id == "c" || id == "*");
        assert_eq!(g.is_held().await.unwrap(), !gone, "store {i}, {id:?}");
        if !gone {
            g.release().await.unwrap();
        }
    }
    for db in [1, 2] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut connection(&server, db))
            .unwrap();
        let keys = records_only(keys);
        assert!(keys.is_empty(), "db {db}: {keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_prefix_that_could_share_keys_is_refused() {
    let server = server!();
    for (prefix, why) in [("lock", "lock:lock:"), ("a:b", "`:`")] {
        let mut c = config(&server);
        c.key_prefix = Some(prefix.into());
        match RedisLockStore::connect(&c).await.unwrap_err() {
            Error::Config { key, message } => {
                assert_eq!(key, "lock_store.key_prefix");
                assert!(message.contains(why), "{message}");
            }
            other => panic!("{prefix}: {other:?}"),
        }
    }
    // Through the endpoints file, the same.
    let yaml = format!(
        "lock_store:\n  type: redis\n  host: 127.0.0.1\n  port: {}\n  key_prefix: lock\n",
        server.port()
    );
    let err = LockStore::create(LockStoreConfig::from_endpoints_yaml(&yaml).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "lock_store.key_prefix"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_rasa_filled_up_is_not_grown_further() {
    let server = server!();
    let store = connect_with(&server, config(&server))
        .await
        .with_max_queue_len(5);
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    // Five live tickets as Rasa writes them: no fields of ours, no TTL.
    let far = 4_000_000_000.5;
    let tickets: Vec<String> = (0..5)
        .map(|n| {
            serde_json::to_string(&format!("{{\"number\": {n}, \"expires\": {far}}}")).unwrap()
        })
        .collect();
    let record = format!(
        "{{\"conversation_id\": \"c\", \"tickets\": [{}]}}",
        tickets.join(", ")
    );
    redis::cmd("SET")
        .arg(&key)
        .arg(&record)
        .exec(&mut con)
        .unwrap();
    for _ in 0..3 {
        let err = store.issue_ticket("c", None).await.unwrap_err();
        assert!(matches!(err, Error::QueueFull { limit: 5, .. }), "{err:?}");
    }
    let after: String = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
    assert_eq!(after, record, "a refused issue must write nothing");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
    assert_eq!(ttl, -1, "not even a TTL");
}

/// No form in which a store, its configuration or its errors can be shown
/// holds the password: generated passwords, every error path of connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_never_show_in_any_output() {
    let server = server!(RedisOptions {
        password: Some("Right-pw-0001".into()),
        ..Default::default()
    });
    // Printable ASCII of every kind (URL delimiters included), from a seeded
    // generator so a failure reproduces.
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let seen: Vec<String> = (0..16)
        .map(|_| "[!-~]{8,24}".new_tree(&mut runner).unwrap().current())
        .collect();
    let free_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for pw in &seen {
        let mut shown = Vec::new();
        // Wrong password on a live server; the password on a port where
        // nothing listens; the password with a wrong user.
        for (port, user) in [
            (server.port(), None),
            (free_port, None),
            (server.port(), Some("nobody")),
        ] {
            let mut c = config(&server);
            c.port = port;
            c.password = Some(Secret::new(pw.clone()));
            c.username = user.map(str::to_owned);
            c.socket_timeout = Duration::from_secs(1);
            shown.push(format!("{c:?}"));
            shown.push(c.display_url());
            let err = RedisLockStore::connect(&c).await.unwrap_err();
            shown.push(err.to_string());
            shown.push(format!("{err:?}"));
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                shown.push(s.to_string());
                shown.push(format!("{s:?}"));
                source = s.source();
            }
            let url = format!(
                "redis://{}:{}@127.0.0.1:{port}/1?socket_timeout=1",
                user.unwrap_or(""),
                utf8_percent(pw)
            );
            let parsed = LockStoreConfig::from_url(&url).unwrap();
            shown.push(format!("{parsed:?}"));
            if let Err(e) = LockStore::create(parsed).await {
                shown.push(e.to_string());
                shown.push(format!("{e:?}"));
            }
        }
        // And a store that connected.
        let mut c = config(&server);
        c.password = Some(Secret::new("Right-pw-0001"));
        let store = connect_with(&server, c).await;
        shown.push(format!("{store:?}"));
        shown.push(store.describe());
        for s in &shown {
            assert!(!s.contains(pw.as_str()), "password {pw:?} shown in {s}");
            assert!(!s.contains("Right-pw-0001"), "password shown in {s}");
        }
    }
}

/// Percent-encodes everything but letters and digits.
fn utf8_percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Generated ids (control characters, any Unicode, glob characters, ids
/// that spell keys) each reach exactly their own record, written byte for
/// byte as Python would, and are listed back unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generated_ids_reach_exactly_their_own_records() {
    let server = server!();
    let store = connect_with(&server, config(&server)).await;
    let mut con = connection(&server, 1);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = proptest::prop_oneof![
        "\\PC{1,16}",
        "[\\x00-\\x1f\"\\\\:*?\\[\\]{}\u{80}-\u{10ffff}]{1,12}",
        "(lock:|a|:|\\*|\\x00|\u{1F600}){1,6}",
    ];
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < 200 {
        ids.insert(strategy.new_tree(&mut runner).unwrap().current());
    }
    let mut guards = Vec::new();
    for id in &ids {
        let g = store
            .lock(id)
            .timeout(Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
        assert_eq!(g.ticket(), 0, "{id:?} shares a queue");
        let key = store.as_redis().unwrap().key_for(id);
        let raw: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
        let record = ticketlock::TicketLock::from_json(&raw).unwrap();
        assert_eq!(record.conversation_id(), id);
        assert_eq!(raw, record.dumps().into_bytes(), "{id:?}: not byte-exact");
        guards.push(g);
    }
    let listed: std::collections::BTreeSet<String> =
        store.conversations().await.unwrap().into_iter().collect();
    assert_eq!(listed, ids);
    for g in guards {
        g.release().await.unwrap();
    }
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    let keys = records_only(keys);
    assert!(keys.is_empty());
}

/// The keys that are not request-id entries (`{..}:..`): those expire by
/// themselves a few seconds after their request (see
/// `redis_store.rs::request_entries_expire_by_themselves`).
fn records_only<K: AsRef<[u8]>>(keys: Vec<K>) -> Vec<K> {
    keys.into_iter()
        .filter(|k| !k.as_ref().starts_with(b"{"))
        .collect()
}
