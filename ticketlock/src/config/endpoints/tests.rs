use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::DeploymentMode;
use crate::config::{RedisConfig, RedisStoreType, Secret};

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

/// Parses with no variables set, keeping the warnings.
fn parse_ok(yaml: &str) -> (LockStoreConfig, Vec<Warning>) {
    match parse(yaml, TEXT_SOURCE, &no_env) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{yaml}\n=> {e}"),
    }
}

fn redis(yaml: &str) -> RedisConfig {
    match parse_ok(yaml).0 {
        LockStoreConfig::Redis(r) => r,
        other => panic!("{yaml}\n=> {other:?}"),
    }
}

/// Asserts a configuration error with `key` whose message contains
/// every one of `words`.
#[track_caller]
fn assert_config_err(result: Result<LockStoreConfig>, key: &str, words: &[&str]) -> String {
    match result {
        Err(Error::Config { key: k, message }) => {
            assert_eq!(k, key, "message: {message}");
            for w in words {
                assert!(message.contains(w), "{w:?} not in {message:?}");
            }
            message
        }
        other => panic!("expected a config error on {key}, got {other:?}"),
    }
}

fn err_of(yaml: &str, key: &str, words: &[&str]) -> String {
    assert_config_err(
        LockStoreConfig::from_endpoints_yaml_with_env(yaml, no_env),
        key,
        words,
    )
}

#[test]
fn without_a_lock_store_section_the_store_is_in_memory() {
    for yaml in [
        "",
        "# only a comment\n",
        "---\n",
        "~\n",
        "action_endpoint:\n  url: http://localhost:5055/webhook\n",
        "lock_store:\n",
        "lock_store: null\n",
        "lock_store:\n  type: in_memory\n",
        "lock_store:\n  type:\n",
    ] {
        let (config, warnings) = parse_ok(yaml);
        assert_eq!(config, LockStoreConfig::InMemory, "{yaml:?}");
        assert!(warnings.is_empty(), "{yaml:?}: {warnings:?}");
    }
}

#[test]
fn in_memory_with_redis_settings_warns_that_they_are_ignored() {
    let (config, warnings) = parse_ok("lock_store:\n  type: in_memory\n  host: redis\n  port: 1\n");
    assert_eq!(config, LockStoreConfig::InMemory);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, "lock_store.type");
    assert!(
        warnings[0].message.contains("host, port are ignored"),
        "{warnings:?}"
    );
}

#[test]
fn redis_with_no_settings_has_rasas_defaults() {
    let r = redis("lock_store:\n  type: redis\n");
    assert_eq!(r, RedisConfig::default());
    assert_eq!(r.store_type, RedisStoreType::Redis);
    assert_eq!(r.host, "localhost");
    assert_eq!(r.port, 6379);
    assert_eq!(r.db, 1);
    assert_eq!(r.username, None);
    assert_eq!(r.password, None);
    assert!(!r.use_ssl);
    assert_eq!(r.key_prefix, None);
    assert_eq!(r.socket_timeout, Duration::from_secs(10));
    assert_eq!(r.deployment_mode, DeploymentMode::Standard);
    assert!(r.endpoints.is_empty());
    assert_eq!(r.sentinel_service, None);
}

#[test]
fn concurrent_redis_is_a_redis_store_of_that_type() {
    let r = redis("lock_store:\n  type: concurrent_redis\n  host: r\n");
    assert_eq!(r.store_type, RedisStoreType::ConcurrentRedis);
    assert_eq!(r.host, "r");
}

#[test]
fn every_setting_is_read() {
    let r = redis(
        r#"
lock_store:
  type: redis
  host: redis.internal
  port: 6380
  db: 3
  username: app
  password: "p@ss: word"
  use_ssl: true
  ssl_certfile: /etc/tls/client.pem
  ssl_keyfile: /etc/tls/client.key
  ssl_ca_certs: /etc/tls/ca.pem
  key_prefix: myapp
  socket_timeout: 2.5
  deployment_mode: standard
  sentinel_service:
  min_replicas_ack: 2
  min_replicas_ack_timeout: 0.25
  layout: native
"#,
    );
    let expected = RedisConfig {
        store_type: RedisStoreType::Redis,
        host: "redis.internal".into(),
        port: 6380,
        db: 3,
        username: Some("app".into()),
        password: Some(Secret::new("p@ss: word")),
        use_ssl: true,
        ssl_certfile: Some("/etc/tls/client.pem".into()),
        ssl_keyfile: Some("/etc/tls/client.key".into()),
        ssl_ca_certs: Some("/etc/tls/ca.pem".into()),
        key_prefix: Some("myapp".into()),
        socket_timeout: Duration::from_millis(2500),
        deployment_mode: DeploymentMode::Standard,
        endpoints: Vec::new(),
        sentinel_service: None,
        sentinel_username: None,
        sentinel_password: None,
        min_replicas_ack: 2,
        min_replicas_ack_timeout: Duration::from_millis(250),
        layout: crate::RedisLayout::Native,
    };
    assert_eq!(r, expected);
}

#[test]
fn min_replicas_ack_is_read_and_checked() {
    let r = redis("lock_store:\n  type: redis\n  min_replicas_ack: \"1\"\n");
    assert_eq!(r.min_replicas_ack, 1);
    assert_eq!(r.min_replicas_ack_timeout, Duration::from_secs(1));
    assert_eq!(redis("lock_store:\n  type: redis\n").min_replicas_ack, 0);
    for (setting, key, words) in [
        (
            "min_replicas_ack: -1",
            "lock_store.min_replicas_ack",
            &["line 3", "not a number of replicas", "e.g. 1"][..],
        ),
        (
            "min_replicas_ack: yes",
            "lock_store.min_replicas_ack",
            &["not a number of replicas"][..],
        ),
        (
            "min_replicas_ack: 1\n  min_replicas_ack_timeout: 0",
            "lock_store.min_replicas_ack_timeout",
            &["not a usable number of seconds"][..],
        ),
        (
            "min_replicas_ack: 1\n  socket_timeout: 1\n  min_replicas_ack_timeout: 2",
            "lock_store.min_replicas_ack_timeout",
            &["not shorter than socket_timeout", "make it shorter"][..],
        ),
    ] {
        err_of(
            &format!("lock_store:\n  type: redis\n  {setting}\n"),
            key,
            words,
        );
    }
    let (_, warnings) = parse_ok("lock_store:\n  type: redis\n  min_replicas_ack_timeout: 0.5\n");
    assert!(
        warnings
            .iter()
            .any(|w| w.key == "lock_store.min_replicas_ack_timeout"
                && w.message.contains("min_replicas_ack is 0")),
        "{warnings:?}"
    );
}

#[test]
fn the_layout_is_read_and_rasa_by_default() {
    assert_eq!(
        redis("lock_store:\n  type: redis\n").layout,
        crate::RedisLayout::Rasa
    );
    let r = redis("lock_store:\n  type: redis\n  layout: native\n");
    assert_eq!(r.layout, crate::RedisLayout::Native);
}

#[test]
fn cluster_and_sentinel_settings_are_read() {
    let r = redis(
        "lock_store:\n  type: redis\n  deployment_mode: cluster\n  endpoints:\n    - node1:7000\n    - \"[::1]:7001\"\n",
    );
    assert_eq!(r.deployment_mode, DeploymentMode::Cluster);
    assert_eq!(r.endpoints, ["node1:7000", "[::1]:7001"]);
    assert_eq!(r.db, 0, "Rasa's default db 1 does not apply to a cluster");

    let r = redis(
        "lock_store:\n  type: redis\n  deployment_mode: Sentinel\n  endpoints: [s1:26379, s2:26379]\n  sentinel_service: mymaster\n  db: 2\n",
    );
    assert_eq!(r.deployment_mode, DeploymentMode::Sentinel);
    assert_eq!(r.endpoints, ["s1:26379", "s2:26379"]);
    assert_eq!(r.sentinel_service.as_deref(), Some("mymaster"));
    assert_eq!(r.db, 2);
}

#[test]
fn numbers_and_booleans_may_be_strings_and_numbers_may_be_passwords() {
    let r = redis(
        "lock_store:\n  type: redis\n  port: \"6380\"\n  db: '0'\n  use_ssl: \"True\"\n  socket_timeout: \"3\"\n  password: 0x1F\n  username: 42\n",
    );
    assert_eq!((r.port, r.db, r.use_ssl), (6380, 0, true));
    assert_eq!(r.socket_timeout, Duration::from_secs(3));
    // A password is taken as written, not as the number YAML reads.
    assert_eq!(r.password.as_ref().map(Secret::expose), Some("0x1F"));
    assert_eq!(r.username.as_deref(), Some("42"));
    // YAML 1.2: `0x18EB` is the integer 6379; `no` is a string, which
    // the boolean settings accept.
    let r = redis("lock_store:\n  type: redis\n  port: 0x18EB\n  use_ssl: no\n");
    assert_eq!((r.port, r.use_ssl), (6379, false));
    let r = redis("lock_store:\n  type: redis\n  use_ssl: 1\n  socket_timeout: 1\n");
    assert!(r.use_ssl);
    assert_eq!(r.socket_timeout, Duration::from_secs(1));
}

#[test]
fn empty_and_null_values_count_as_not_set() {
    let r = redis(
        "lock_store:\n  type: redis\n  host: ''\n  port: ~\n  db: null\n  username: ''\n  password: ''\n  key_prefix: ''\n  socket_timeout:\n  endpoints:\n",
    );
    assert_eq!(r, RedisConfig::default());
}

#[test]
fn a_full_rasa_endpoints_file_is_read_and_other_sections_are_ignored() {
    let yaml = r#"
# This file contains the different endpoints your bot can use.
action_endpoint:
  url: "http://localhost:5055/webhook"

models:
  url: http://my-server.com/models/default_core@latest
  wait_time_between_pulls: 10

tracker_store:
  type: redis
  url: ${TRACKER_HOST_NOT_SET}
  port: 6379
  db: 0
  password: ${ALSO_NOT_SET}
  use_ssl: false
  record_exp: 30000

event_broker:
  type: pika
  url: localhost
  username: username
  password: password
  queues:
    - queue-1
  exchange_name: exchange

lock_store:
  type: "redis"
  url: ${REDIS_HOST}
  port: ${REDIS_PORT}
  password: ${REDIS_PASSWORD}
  db: 2
  key_prefix: bot1
  use_ssl: ${REDIS_TLS}

nlg:
  url: http://localhost:5056/nlg
"#;
    let env = env_of(&[
        ("REDIS_HOST", "redis.internal"),
        ("REDIS_PORT", "6380"),
        ("REDIS_PASSWORD", "pa${NOT_EXPANDED}ss"),
        ("REDIS_TLS", "false"),
    ]);
    let (config, warnings) = parse(yaml, TEXT_SOURCE, &env).unwrap();
    let LockStoreConfig::Redis(r) = config else {
        panic!("{config:?}")
    };
    assert_eq!(r.host, "redis.internal");
    assert_eq!(r.port, 6380);
    assert_eq!(r.db, 2);
    // Substituted text is not scanned again.
    assert_eq!(
        r.password.as_ref().map(Secret::expose),
        Some("pa${NOT_EXPANDED}ss")
    );
    assert_eq!(r.key_prefix.as_deref(), Some("bot1"));
    assert!(!r.use_ssl);
    // The only warning: `url` is Rasa Pro's deprecated name for `host`.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, "lock_store.url");
    assert!(warnings[0].message.contains("deprecated"));
    assert!(warnings[0].message.contains("host"));
}

#[test]
fn variables_are_substituted_inside_strings() {
    let env = env_of(&[("A", "x"), ("B_2", "y"), ("EMPTY", "")]);
    let yaml = "lock_store:\n  type: redis\n  host: pre-${A}-${B_2}${A}.example\n  password: '${A}${EMPTY}${B_2}'\n  sentinel_service: \"${A}\"\n";
    let LockStoreConfig::Redis(r) =
        LockStoreConfig::from_endpoints_yaml_with_env(yaml, &env).unwrap()
    else {
        panic!()
    };
    assert_eq!(r.host, "pre-x-yx.example");
    // Quoted values too, unlike Rasa (RasaHQ/rasa#2761).
    assert_eq!(r.password.as_ref().map(Secret::expose), Some("xy"));
    assert_eq!(r.sentinel_service.as_deref(), Some("x"));
    // A bare `$NAME` is left alone.
    let r = redis("lock_store:\n  type: redis\n  password: a$A\n");
    assert_eq!(r.password.as_ref().map(Secret::expose), Some("a$A"));
}

#[test]
fn type_and_endpoints_can_come_from_variables() {
    let env = env_of(&[
        ("STORE", "redis"),
        ("MODE", "cluster"),
        ("NODES", "n1:7000, n2:7001,n3:7002"),
    ]);
    let yaml = "lock_store:\n  type: ${STORE}\n  deployment_mode: ${MODE}\n  endpoints: ${NODES}\n";
    let LockStoreConfig::Redis(r) =
        LockStoreConfig::from_endpoints_yaml_with_env(yaml, env).unwrap()
    else {
        panic!()
    };
    assert_eq!(r.deployment_mode, DeploymentMode::Cluster);
    assert_eq!(r.endpoints, ["n1:7000", "n2:7001", "n3:7002"]);
}

#[test]
fn a_missing_variable_is_an_error_naming_the_setting_and_the_variable() {
    let m = err_of(
        "lock_store:\n  type: redis\n  password: ${REDIS_PASSWORD}\n",
        "lock_store.password",
        &["REDIS_PASSWORD", "not set", "line 3"],
    );
    assert!(m.contains("${REDIS_PASSWORD}"), "{m}");
    err_of(
        "lock_store:\n  type: redis\n  endpoints: [a:1, '${NODE}']\n  deployment_mode: cluster\n",
        "lock_store.endpoints[1]",
        &["NODE", "not set"],
    );
    err_of(
        "lock_store:\n  type: ${T}\n",
        "lock_store.type",
        &["T", "not set"],
    );
}

#[test]
fn malformed_references_are_errors() {
    err_of(
        "lock_store:\n  type: redis\n  password: ab${cd\n",
        "lock_store.password",
        &["closing `}`"],
    );
    err_of(
        "lock_store:\n  type: redis\n  host: ${}\n",
        "lock_store.host",
        &["${}", "does not name"],
    );
    err_of(
        "lock_store:\n  type: redis\n  host: ${A-B}\n",
        "lock_store.host",
        &["${A-B}"],
    );
}

#[test]
fn an_unknown_type_is_an_error_listing_the_supported_ones() {
    let m = err_of(
        "lock_store:\n  type: my_module.MyLockStore\n",
        "lock_store.type",
        &[
            "my_module.MyLockStore",
            "in_memory",
            "redis",
            "concurrent_redis",
            "Python",
        ],
    );
    assert!(m.contains("line 2"), "{m}");
    err_of(
        "lock_store:\n  type: [redis]\n",
        "lock_store.type",
        &["a list"],
    );
    err_of(
        "lock_store:\n  type: Redis\n",
        "lock_store.type",
        &["\"Redis\""],
    );
}

#[test]
fn url_is_the_deprecated_name_of_host() {
    let (config, warnings) = parse_ok("lock_store:\n  type: redis\n  url: redis.internal\n");
    let LockStoreConfig::Redis(r) = config else {
        panic!()
    };
    assert_eq!(r.host, "redis.internal");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].key, "lock_store.url");
    err_of(
        "lock_store:\n  type: redis\n  url: a\n  host: b\n",
        "lock_store.url",
        &["both url and host", "keep only host"],
    );
    let m = err_of(
        "lock_store:\n  type: redis\n  url: redis://:secret@redis:6379/0\n",
        "lock_store.url",
        &["redis:// URL", "host name"],
    );
    assert!(!m.contains("secret"), "{m}");
    err_of(
        "lock_store:\n  type: redis\n  host: redis:6380\n",
        "lock_store.host",
        &["port"],
    );
    err_of(
        "lock_store:\n  type: redis\n  host: a b\n",
        "lock_store.host",
        &["' '"],
    );
    assert_eq!(
        redis("lock_store:\n  type: redis\n  host: '::1'\n").host,
        "::1"
    );
}

#[test]
fn invalid_values_are_errors_naming_the_key() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "port: 0",
            "lock_store.port",
            &["0 is not a port", "1 to 65535"],
        ),
        ("port: 70000", "lock_store.port", &["70000"]),
        ("port: -1", "lock_store.port", &["-1"]),
        ("port: abc", "lock_store.port", &["\"abc\""]),
        ("port: 63.79", "lock_store.port", &["63.79"]),
        ("port: true", "lock_store.port", &["true"]),
        ("port: [1]", "lock_store.port", &["a list"]),
        ("port: {a: 1}", "lock_store.port", &["a mapping"]),
        ("port: !!int abc", "lock_store.port", &["tag !!int"]),
        ("db: -1", "lock_store.db", &["-1", "from 0"]),
        (
            "layout: hash",
            "lock_store.layout",
            &["\"hash\"", "rasa", "native"],
        ),
        ("db: one", "lock_store.db", &["\"one\""]),
        ("db: 1.5", "lock_store.db", &["1.5"]),
        (
            "use_ssl: maybe",
            "lock_store.use_ssl",
            &["\"maybe\"", "true or false"],
        ),
        ("use_ssl: 2", "lock_store.use_ssl", &["2"]),
        (
            "socket_timeout: 0",
            "lock_store.socket_timeout",
            &["0", "greater than 0"],
        ),
        (
            "socket_timeout: -1.5",
            "lock_store.socket_timeout",
            &["-1.5"],
        ),
        (
            "socket_timeout: .inf",
            "lock_store.socket_timeout",
            &[".inf"],
        ),
        (
            "socket_timeout: soon",
            "lock_store.socket_timeout",
            &["\"soon\""],
        ),
        (
            "deployment_mode: replica",
            "lock_store.deployment_mode",
            &["standard, cluster or sentinel"],
        ),
        (
            "username: app",
            "lock_store.username",
            &["without a password"],
        ),
        (
            "ssl_keyfile: k.pem",
            "lock_store.ssl_keyfile",
            &["ssl_certfile"],
        ),
        (
            "deployment_mode: cluster\n  endpoints: [a:1]\n  db: 2",
            "lock_store.db",
            &["must be 0 in cluster mode"],
        ),
        (
            "deployment_mode: cluster",
            "lock_store.endpoints",
            &["cluster mode needs"],
        ),
        (
            "deployment_mode: sentinel\n  sentinel_service: m",
            "lock_store.endpoints",
            &["sentinel mode needs"],
        ),
        (
            "deployment_mode: sentinel\n  endpoints: [s:26379]",
            "lock_store.sentinel_service",
            &["sentinel_service"],
        ),
        (
            "deployment_mode: cluster\n  endpoints: [a:1, nope]",
            "lock_store.endpoints[1]",
            &["\"nope\"", "host:port"],
        ),
        (
            "deployment_mode: cluster\n  endpoints: [a:1, '']",
            "lock_store.endpoints[1]",
            &["empty"],
        ),
        (
            "deployment_mode: cluster\n  endpoints: 'a:1,b'",
            "lock_store.endpoints",
            &["\"b\""],
        ),
        (
            "port: 1\n  port: 2",
            "endpoints.yml",
            &["duplicated key", "line 4"],
        ),
        (
            "port: 1\n  'port': 2",
            "lock_store.port",
            &["set twice", "line 3"],
        ),
    ];
    for (settings, key, words) in cases {
        let yaml = format!("lock_store:\n  type: redis\n  {settings}\n");
        err_of(&yaml, key, words);
    }
}

#[test]
fn a_key_prefix_rasa_would_ignore_is_ignored_with_a_warning() {
    assert_eq!(
        redis("lock_store:\n  type: redis\n  key_prefix: App2\n")
            .key_prefix
            .as_deref(),
        Some("App2")
    );
    assert_eq!(
        redis("lock_store:\n  type: redis\n  key_prefix: '123'\n")
            .key_prefix
            .as_deref(),
        Some("123")
    );
    for (prefix, words) in [
        ("my-app", &["\"my-app\"", "not alphanumeric"][..]),
        ("a:b", &["\"a:b\""][..]),
        ("123", &["not a string", "quote it"][..]),
        ("true", &["not a string"][..]),
    ] {
        let yaml = format!("lock_store:\n  type: redis\n  key_prefix: {prefix}\n");
        let (config, warnings) = parse_ok(&yaml);
        let LockStoreConfig::Redis(r) = config else {
            panic!()
        };
        assert_eq!(r.key_prefix, None, "{prefix}");
        assert_eq!(warnings.len(), 1, "{prefix}: {warnings:?}");
        assert_eq!(warnings[0].key, "lock_store.key_prefix");
        for w in words {
            assert!(warnings[0].message.contains(w), "{w} in {warnings:?}");
        }
    }
}

#[test]
fn unknown_and_unused_settings_warn_naming_the_key() {
    let (config, warnings) = parse_ok(
        "lock_store:\n  type: redis\n  hots: typo\n  record_exp: 5\n  ssl_ca_certs: ca.pem\n  endpoints: [a:1]\n  sentinel_service: m\n",
    );
    assert!(matches!(config, LockStoreConfig::Redis(_)));
    let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "lock_store.hots",
            "lock_store.record_exp",
            "lock_store.ssl_ca_certs",
            "lock_store.endpoints",
            "lock_store.sentinel_service",
        ]
    );
    assert!(warnings[0].message.contains("unknown setting"));
    assert!(
        warnings[0].message.contains("did you mean `host`?"),
        "{warnings:?}"
    );
    assert!(warnings[0].message.contains("port"), "lists the settings");
    assert!(
        !warnings[1].message.contains("did you mean"),
        "{warnings:?}"
    );
    assert!(warnings[2].message.contains("use_ssl"));
}

#[test]
fn malformed_yaml_is_an_error_with_line_and_column() {
    let m = err_of(
        "lock_store:\n  type: redis\n  host: [unclosed\n",
        "endpoints.yml",
        &["not valid YAML", "line"],
    );
    assert!(m.contains("column"), "{m}");
    err_of("a: b\n- c\n", "endpoints.yml", &["line 2"]);
    err_of("a: 1\n---\nb: 2\n", "endpoints.yml", &["2 YAML documents"]);
    err_of("- a\n- b\n", "endpoints.yml", &["a list", "not a mapping"]);
    err_of(
        "lock_store: redis\n",
        "lock_store",
        &["a single value", "mapping"],
    );
    err_of("lock_store: [a]\n", "lock_store", &["a list"]);
    err_of(
        "lock_store: {type: redis}\n'lock_store': {}\n",
        "lock_store",
        &["twice"],
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200));
    err_of(&deep, "endpoints.yml", &["nested more than"]);
}

#[test]
fn deep_block_nesting_is_an_error_not_a_crash() {
    let deep = format!("a:\n{}x\n", "- ".repeat(100_000));
    err_of(&deep, "endpoints.yml", &["nested more than"]);
}

#[test]
fn alias_expansion_is_bounded() {
    // Aliases expanding exponentially ("billion laughs") are bounded.
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    err_of(&laughs, "endpoints.yml", &["not valid YAML"]);
}

#[test]
fn anchors_and_tags_work_as_in_yaml() {
    let r = redis(
        "common: &redis\n  type: redis\n  host: shared\nlock_store: !!map\n  <<: *redis\n  type: !!str redis\n  port: !!int 6380\n",
    );
    // `<<` merge keys are YAML 1.1, not 1.2 (nor Rasa's ruamel in 1.2
    // mode): the key is unknown and the host stays the default.
    assert_eq!((r.host.as_str(), r.port), ("localhost", 6380));
    let r = redis("x: &h redis.internal\nlock_store:\n  type: redis\n  host: *h\n");
    assert_eq!(r.host, "redis.internal");
}

#[test]
fn files_are_read_and_read_errors_name_the_path() {
    let dir = std::env::temp_dir().join(format!("ticketlock-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("endpoints.yml");
    std::fs::write(&path, "lock_store:\n  type: redis\n  host: from-file\n").unwrap();
    let LockStoreConfig::Redis(r) = LockStoreConfig::from_endpoints_file(&path).unwrap() else {
        panic!()
    };
    assert_eq!(r.host, "from-file");

    std::fs::write(&path, "lock_store:\n  type: redis\n  port: x\n").unwrap();
    assert_config_err(
        LockStoreConfig::from_endpoints_file(&path),
        "lock_store.port",
        &["line 3"],
    );
    std::fs::write(&path, "lock_store: [\n").unwrap();
    let shown = path.display().to_string();
    assert_config_err(
        LockStoreConfig::from_endpoints_file(&path),
        &shown,
        &["not valid YAML"],
    );
    std::fs::write(&path, b"lock_store:\n  host: \xff\n").unwrap();
    assert_config_err(
        LockStoreConfig::from_endpoints_file(&path),
        &shown,
        &["UTF-8"],
    );

    let missing = dir.join("missing.yml");
    let shown = missing.display().to_string();
    let m = assert_config_err(
        LockStoreConfig::from_endpoints_file(&missing),
        &shown,
        &["cannot read"],
    );
    let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
    assert!(
        m.to_lowercase().contains("no such file") || m.contains(&os),
        "{m}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_process_environment_is_used_by_default() {
    // PATH is set wherever the tests run; its value is not a port.
    assert_config_err(
        LockStoreConfig::from_endpoints_yaml("lock_store:\n  type: redis\n  port: ${PATH}\n"),
        "lock_store.port",
        &["not a port"],
    );
}

#[test]
fn debug_output_never_shows_the_password() {
    let r = redis("lock_store:\n  type: redis\n  password: hunter2secret\n");
    let config = LockStoreConfig::Redis(r.clone());
    assert!(!format!("{config:?}").contains("hunter2secret"));
    assert!(!format!("{config:#?}").contains("hunter2secret"));
    assert!(!r.display_url().contains("hunter2secret"));
    assert_eq!(
        r.password.as_ref().map(Secret::expose),
        Some("hunter2secret")
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;

    const KEYS: &[&str] = &[
        "type",
        "url",
        "host",
        "port",
        "db",
        "username",
        "password",
        "use_ssl",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_ca_certs",
        "key_prefix",
        "socket_timeout",
        "deployment_mode",
        "endpoints",
        "sentinel_service",
        "other",
    ];
    const VALUES: &[&str] = &[
        "redis",
        "concurrent_redis",
        "in_memory",
        "cluster",
        "sentinel",
        "0",
        "1",
        "-1",
        "65536",
        "1.5",
        "true",
        "no",
        "~",
        "''",
        "[a:1, b:2]",
        "[]",
        "{}",
        "${X}",
        "${",
        "a:1",
        "[::1]:1",
        "\"${X}${Y}\"",
        "!!int x",
        "&a b",
        "*a",
        "0x10",
        ".nan",
    ];

    fn section() -> impl Strategy<Value = String> {
        prop::collection::vec(
            (
                prop::sample::select(KEYS),
                prop_oneof![
                    prop::sample::select(VALUES).prop_map(str::to_owned),
                    "\\PC{0,12}"
                ],
            ),
            0..8,
        )
        .prop_map(|entries| {
            let mut s = String::from("lock_store:\n");
            for (k, v) in entries {
                s.push_str(&format!("  {k}: {v}\n"));
            }
            s
        })
    }

    /// `s` as a YAML double-quoted scalar: `\\uXXXX` in the BMP and
    /// `\\UXXXXXXXX` above it (YAML has no surrogate pairs, unlike JSON).
    fn yaml_quoted(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            }
        }
        out.push('"');
        out
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(yaml in "\\PC{0,200}") {
            let _ = LockStoreConfig::from_endpoints_yaml_with_env(&yaml, |_| Some("1".into()));
        }

        #[test]
        fn arbitrary_yaml_like_text_never_panics(
            yaml in "([ \\-:\\[\\]{}&*!|>'\"#,?%@`$\\n]|lock_store|type|redis|[a-z0-9]){0,120}",
        ) {
            let _ = LockStoreConfig::from_endpoints_yaml_with_env(&yaml, |_| None);
        }

        /// A value from the environment is taken as it is, whatever it
        /// holds (YAML syntax, `${...}`, spaces, newlines): never parsed
        /// again.
        #[test]
        fn values_from_the_environment_are_taken_verbatim(
            user in "[^\\x00]{1,24}",
            password in "[^\\x00]{1,40}",
            port in 1u16..,
        ) {
            let yaml = "lock_store:\n  type: redis\n  username: ${U}\n  password: \"${P}\"\n  port: ${PORT}\n";
            let env = |name: &str| match name {
                "U" => Some(user.clone()),
                "P" => Some(password.clone()),
                "PORT" => Some(port.to_string()),
                _ => None,
            };
            let r = match LockStoreConfig::from_endpoints_yaml_with_env(yaml, env) {
                Ok(LockStoreConfig::Redis(r)) => r,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(r.username.as_deref(), Some(user.as_str()));
            prop_assert_eq!(r.password.as_ref().map(Secret::expose), Some(password.as_str()));
            prop_assert_eq!(r.port, port);
        }

        /// A password written in the file as a double-quoted YAML string,
        /// every character but printable ASCII escaped, reads back exactly.
        #[test]
        fn quoted_passwords_read_back_exactly(password in "[^\\x00]{1,40}") {
            // `${` starts a reference in any value (documented); such a
            // password is passed through a variable, as tested above.
            prop_assume!(!password.contains("${"));
            let quoted = yaml_quoted(&password);
            let yaml = format!("lock_store:\n  type: redis\n  password: {quoted}\n");
            let r = match LockStoreConfig::from_endpoints_yaml_with_env(&yaml, |_| None) {
                Ok(LockStoreConfig::Redis(r)) => r,
                other => return Err(TestCaseError::fail(format!("{yaml:?} => {other:?}"))),
            };
            prop_assert_eq!(r.password.as_ref().map(Secret::expose), Some(password.as_str()));
        }

        #[test]
        fn arbitrary_sections_give_a_config_or_a_config_error(yaml in section()) {
            let env = |name: &str| (name == "X").then(|| "6379".to_owned());
            match LockStoreConfig::from_endpoints_yaml_with_env(&yaml, env) {
                Ok(_) => {}
                Err(Error::Config { key, message }) => {
                    prop_assert!(!key.is_empty() && !message.is_empty());
                }
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
