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

/// The `[[test]]` entries of this crate's manifest: each test's name and
/// its `required-features`.
fn declared_tests(manifest: &str) -> Vec<(String, Vec<String>)> {
    let value = |line: &str, key: &str| -> Option<String> {
        let rest = line
            .trim()
            .strip_prefix(key)?
            .trim_start()
            .strip_prefix('=')?;
        Some(rest.trim().to_string())
    };
    let mut tests = Vec::new();
    for section in manifest.split("\n[").skip(1) {
        let Some(body) = section.strip_prefix("[test]]") else {
            continue;
        };
        let (mut name, mut features) = (None, Vec::new());
        for line in body.lines() {
            if let Some(v) = value(line, "name") {
                name = Some(v.trim_matches('"').to_string());
            } else if let Some(v) = value(line, "required-features") {
                features = v
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|f| f.trim().trim_matches('"').to_string())
                    .filter(|f| !f.is_empty())
                    .collect();
            }
        }
        if let Some(name) = name {
            tests.push((name, features));
        }
    }
    tests
}

/// Every test file that uses a backend behind a feature either declares
/// that feature (`required-features` of its `[[test]]` entry) or gates its
/// use of it with `cfg(... feature = "...")`: otherwise a build without the
/// feature (CI's feature matrix) fails to compile it.
#[test]
fn every_test_file_using_a_feature_backend_declares_the_feature() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let declared = declared_tests(&manifest);
    // A backend, the names that use it, and the features that bring it.
    let backends: [(&str, &[&str], &[&str]); 2] = [
        (
            "redis",
            &["redis::", "RedisLockStore", "RedisConfig", "RedisServer"],
            &[
                "redis",
                "tls-rustls",
                "tls-rustls-aws-lc",
                "tls-native",
                "cluster",
                "sentinel",
            ],
        ),
        (
            "postgres",
            &["PostgresLockStore", "PostgresConfig", "PostgresServer"],
            &["postgres"],
        ),
    ];
    let mut missing = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        // This file names the backends only in the lists above.
        if name == "features" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let features = declared
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        for (backend, uses, bring) in backends {
            let gated = text.contains(&format!("feature = \"{backend}\""));
            let declares = features.iter().any(|f| bring.contains(&f.as_str()));
            if uses.iter().any(|u| text.contains(u)) && !gated && !declares {
                missing.push(format!(
                    "tests/{name}.rs uses the {backend} backend: add `[[test]] name = \"{name}\" \
                     required-features = [\"{backend}\"]` to ticketlock/Cargo.toml"
                ));
            }
        }
    }
    assert!(files > 10, "read only {files} test files");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_manifest_reader_finds_names_and_features() {
    let manifest = "[package]\nname = \"x\"\n\n[[test]]\nname = \"a\"\n\
                    required-features = [\"redis\", \"tls-rustls\"]\n\n[[example]]\n\
                    name = \"e\"\nrequired-features = [\"metrics\"]\n\n[[test]]\nname = \"b\"\n";
    assert_eq!(
        declared_tests(manifest),
        vec![
            (
                "a".to_string(),
                vec!["redis".to_string(), "tls-rustls".to_string()]
            ),
            ("b".to_string(), vec![]),
        ]
    );
}
