//! The URL form: `redis://user:pass@host:port/db`, `rediss://`, `memory://`.
//!
//! Implementation details: the `url` crate splits the URL (WHATWG rules:
//! the last `@` ends the user info, `[...]` is an IPv6 address); user,
//! password and host are percent-decoded here. Error messages never echo
//! the URL, which may hold a password.

use std::fmt::Write as _;
use std::path::PathBuf;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use url::{Host, Url};

use super::check::{self, Warning};
use super::{DeploymentMode, LockStoreConfig, RedisConfig, RedisLayout, RedisStoreType, Secret};
use crate::{Error, Result};

/// The error key of every problem with a URL.
const KEY: &str = "url";

const FORMS: &str = "redis://[user[:password]@]host[:port][/db][?setting=value&...], \
                     rediss://... for TLS, postgresql://user:password@host:port/db for PostgreSQL, \
                     or memory:// for the in-memory store";

/// The query settings.
const PARAMS: &[&str] = &[
    "type",
    "key_prefix",
    "socket_timeout",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_ca_certs",
    "deployment_mode",
    "endpoints",
    "sentinel_service",
    "sentinel_username",
    "sentinel_password",
    "min_replicas_ack",
    "min_replicas_ack_timeout",
    "layout",
];

/// Characters escaped in the user name and host of [`RedisConfig::display_url`]:
/// those that would end or split the part, and `%` so that decoding gives
/// the original back.
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

impl LockStoreConfig {
    /// Reads a store configuration from a URL.
    ///
    /// - `redis://[user[:password]@]host[:port][/db]`: Redis; `rediss://`
    ///   connects with TLS. User and password are percent-decoded (write a
    ///   `@` in a password as `%40`, `#` as `%23`, `/` as `%2F`). IPv6 hosts
    ///   are written in brackets: `redis://[::1]:6379`.
    /// - `memory://` or `in_memory`: the in-memory store.
    ///
    /// Defaults follow the Redis URL convention: port 6379 and database
    /// **0** when the URL has no path. (Rasa's default database 1 applies
    /// only to `endpoints.yml`; [`RedisConfig::display_url`] always writes
    /// the database.)
    ///
    /// The other settings go in the query, with the names they have in
    /// `endpoints.yml` (see [`LockStoreConfig::from_endpoints_file`]):
    ///
    /// | setting | meaning |
    /// | --- | --- |
    /// | `type` | `redis` (default) or `concurrent_redis` |
    /// | `key_prefix` | letters and digits; keys become `<prefix>:lock:<id>` |
    /// | `socket_timeout` | seconds, greater than 0 (default 10) |
    /// | `ssl_certfile`, `ssl_keyfile`, `ssl_ca_certs` | PEM files for TLS |
    /// | `deployment_mode` | `standard` (default), `cluster` or `sentinel` |
    /// | `endpoints` | comma-separated `host:port` of cluster nodes or sentinels |
    /// | `sentinel_service` | name of the master the sentinels watch |
    /// | `sentinel_username`, `sentinel_password` | ACL user and password on the sentinels (Rasa Pro); the password is shown as `***` |
    /// | `min_replicas_ack` | ours, not Rasa's: replicas that must acknowledge each change (0: do not wait) |
    /// | `min_replicas_ack_timeout` | ours: seconds to wait for them (default 1), shorter than `socket_timeout` |
    /// | `layout` | ours: `rasa` (default) or `native`, see [`crate::RedisLayout`] |
    ///
    /// e.g. `rediss://app:s3cr%40t@redis.internal:6380/2?key_prefix=myapp&socket_timeout=2.5`.
    ///
    /// Unlike `endpoints.yml`, which keeps Rasa's leniency, a URL is
    /// checked strictly: an unknown or repeated query setting and an
    /// invalid `key_prefix` are errors.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with the key `url`, saying which part is wrong and
    /// what to write; the message never repeats the URL, which may hold a
    /// password.
    pub fn from_url(url: &str) -> Result<Self> {
        let (config, warnings) = parse(url)?;
        for w in &warnings {
            w.emit();
        }
        Ok(config)
    }

    /// As [`LockStoreConfig::from_url`], but returns the warnings (settings
    /// accepted but ignored), each as one line `` `<setting>`: <what to do> ``,
    /// instead of logging them.
    pub fn from_url_with_warnings(url: &str) -> Result<(Self, Vec<String>)> {
        let (config, warnings) = parse(url)?;
        let lines = warnings
            .iter()
            .map(|w| format!("`{}`: {}", w.key, w.message))
            .collect();
        Ok((config, lines))
    }
}

impl RedisConfig {
    /// The URL form of this configuration, with the password shown as
    /// `***`, for logs and messages.
    ///
    /// Non-default settings are written in the query, so that
    /// [`LockStoreConfig::from_url`] reads back this configuration (with
    /// `***` as the password). The database is always written, as the URL
    /// form's default (0) differs from Rasa's (1).
    pub fn display_url(&self) -> String {
        let mut s = String::from(if self.use_ssl {
            "rediss://"
        } else {
            "redis://"
        });
        if let Some(user) = &self.username {
            s.extend(utf8_percent_encode(user, COMPONENT));
        }
        if self.password.is_some() {
            s.push_str(":***");
        }
        if self.username.is_some() || self.password.is_some() {
            s.push('@');
        }
        if self.host.contains(':') {
            let _ = write!(s, "[{}]", self.host);
        } else {
            s.extend(utf8_percent_encode(&self.host, COMPONENT));
        }
        let _ = write!(s, ":{}/{}", self.port, self.db);

        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if self.store_type == RedisStoreType::ConcurrentRedis {
            query.append_pair("type", "concurrent_redis");
        }
        if let Some(prefix) = &self.key_prefix {
            query.append_pair("key_prefix", prefix);
        }
        if self.socket_timeout != RedisConfig::default().socket_timeout {
            query.append_pair(
                "socket_timeout",
                &self.socket_timeout.as_secs_f64().to_string(),
            );
        }
        for (name, path) in [
            ("ssl_certfile", &self.ssl_certfile),
            ("ssl_keyfile", &self.ssl_keyfile),
            ("ssl_ca_certs", &self.ssl_ca_certs),
        ] {
            if let Some(path) = path {
                query.append_pair(name, &path.to_string_lossy());
            }
        }
        match self.deployment_mode {
            DeploymentMode::Standard => {}
            DeploymentMode::Cluster => {
                query.append_pair("deployment_mode", "cluster");
            }
            DeploymentMode::Sentinel => {
                query.append_pair("deployment_mode", "sentinel");
            }
        }
        if !self.endpoints.is_empty() {
            query.append_pair("endpoints", &self.endpoints.join(","));
        }
        if let Some(service) = &self.sentinel_service {
            query.append_pair("sentinel_service", service);
        }
        if let Some(user) = &self.sentinel_username {
            query.append_pair("sentinel_username", user);
        }
        if self.sentinel_password.is_some() {
            query.append_pair("sentinel_password", "***");
        }
        if self.min_replicas_ack > 0 {
            query.append_pair("min_replicas_ack", &self.min_replicas_ack.to_string());
        }
        if self.min_replicas_ack_timeout != RedisConfig::default().min_replicas_ack_timeout {
            query.append_pair(
                "min_replicas_ack_timeout",
                &self.min_replicas_ack_timeout.as_secs_f64().to_string(),
            );
        }
        if self.layout == RedisLayout::Native {
            query.append_pair("layout", "native");
        }
        let query = query.finish();
        if !query.is_empty() {
            s.push('?');
            s.push_str(&query);
        }
        s
    }
}

fn err(message: impl Into<String>) -> Error {
    Error::config(KEY, message)
}

pub(crate) fn parse(input: &str) -> Result<(LockStoreConfig, Vec<Warning>)> {
    let input = input.trim();
    if input == "in_memory" || input.eq_ignore_ascii_case("memory://") {
        return Ok((LockStoreConfig::InMemory, Vec::new()));
    }
    if input.starts_with("postgresql://") || input.starts_with("postgres://") {
        let (c, warnings) = super::parse_postgres_url(input)?;
        return Ok((LockStoreConfig::Postgres(c), warnings));
    }
    let url = Url::parse(input).map_err(|e| {
        let what = match e {
            url::ParseError::InvalidPort => "the port is not a number from 1 to 65535".to_owned(),
            url::ParseError::RelativeUrlWithoutBase => "it has no scheme".to_owned(),
            other => other.to_string(),
        };
        err(format!(
            "not a usable URL ({what}); write {FORMS}{}",
            encoding_hint(input)
        ))
    })?;
    let use_ssl = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        "memory" => {
            return Err(err(
                "memory:// takes no host, path or settings; write memory:// alone",
            ));
        }
        other => {
            return Err(err(format!("unsupported scheme {other:?}; write {FORMS}")));
        }
    };
    if url.path().contains('@') || url.query().is_some_and(|q| q.contains('@')) {
        // The user info was cut short by a `/` or `?` in it: what follows
        // is part of a password, so it is not shown.
        return Err(err(format!(
            "the URL has an `@` after the host, so the user name or password holds a \
             character that must be percent-encoded{}",
            encoding_hint(input)
        )));
    }
    if url.fragment().is_some() {
        return Err(err(
            "the URL has a #fragment, which means nothing here; if `#` is part of the \
             password, write it as %23",
        ));
    }

    let mut cfg = RedisConfig {
        use_ssl,
        db: 0,
        ..RedisConfig::default()
    };
    cfg.host = match url.host() {
        Some(Host::Domain(d)) => {
            let d = decode(d, "host")?;
            check::host(&d).map_err(err)?
        }
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => a.to_string(),
        None => {
            return Err(err(format!(
                "the URL names no host; write e.g. redis://localhost:6379/0 ({FORMS}){}",
                encoding_hint(input)
            )));
        }
    };
    if let Some(port) = url.port() {
        cfg.port = check::port_int(i64::from(port)).map_err(err)?;
    }
    let user = decode(url.username(), "user name")?;
    cfg.username = Some(user).filter(|u| !u.is_empty());
    if let Some(password) = url.password() {
        let password = decode(password, "password")?;
        cfg.password = Some(password).filter(|p| !p.is_empty()).map(Secret::new);
    }

    let path = url.path();
    let db_given = !matches!(path, "" | "/");
    if db_given {
        let db = path.strip_prefix('/').unwrap_or(path);
        cfg.db = if db.bytes().all(|b| b.is_ascii_digit()) {
            check::db_str(db).map_err(|p| err(format!("the path is the database: {p}")))?
        } else {
            return Err(err(format!(
                "the path {path:?} is not a database number; write /0, /1, ... or no path \
                 for database 0"
            )));
        };
    }

    let mut seen: Vec<String> = Vec::new();
    for (name, value) in url.query_pairs() {
        if seen.iter().any(|s| *s == name) {
            return Err(err(format!(
                "the setting {name:?} is given twice; keep one"
            )));
        }
        seen.push(name.to_string());
        let bad = |p: String| err(format!("setting {name:?}: {p}"));
        let non_empty = || Some(value.to_string()).filter(|v| !v.is_empty());
        match name.as_ref() {
            "type" => {
                cfg.store_type = match value.as_ref() {
                    "redis" => RedisStoreType::Redis,
                    "concurrent_redis" => RedisStoreType::ConcurrentRedis,
                    other => {
                        return Err(bad(format!(
                            "{other:?} is not a Redis store type; write redis or \
                             concurrent_redis (or use memory:// for the in-memory store)"
                        )));
                    }
                }
            }
            "key_prefix" => {
                cfg.key_prefix = non_empty();
                if let Some(prefix) = &cfg.key_prefix
                    && !check::key_prefix_ok(prefix)
                {
                    return Err(bad(format!(
                        "{prefix:?} is not alphanumeric; {}",
                        check::KEY_PREFIX_HINT
                    )));
                }
            }
            "socket_timeout" => cfg.socket_timeout = check::seconds_str(&value).map_err(bad)?,
            "ssl_certfile" => cfg.ssl_certfile = non_empty().map(PathBuf::from),
            "ssl_keyfile" => cfg.ssl_keyfile = non_empty().map(PathBuf::from),
            "ssl_ca_certs" => cfg.ssl_ca_certs = non_empty().map(PathBuf::from),
            "deployment_mode" => {
                cfg.deployment_mode = check::deployment_mode(&value).map_err(bad)?;
            }
            "endpoints" => {
                cfg.endpoints = value
                    .split(',')
                    .map(check::endpoint)
                    .collect::<Result<_, _>>()
                    .map_err(bad)?;
            }
            "sentinel_service" => cfg.sentinel_service = non_empty(),
            "sentinel_username" => cfg.sentinel_username = non_empty(),
            "sentinel_password" => cfg.sentinel_password = non_empty().map(Secret::new),
            "min_replicas_ack" => {
                cfg.min_replicas_ack = check::replicas_str(&value).map_err(bad)?;
            }
            "min_replicas_ack_timeout" => {
                cfg.min_replicas_ack_timeout = check::seconds_str(&value).map_err(bad)?;
            }
            "layout" => cfg.layout = check::layout(&value).map_err(bad)?,
            _ => {
                return Err(err(format!(
                    "unknown setting {name:?} in the query; the settings are {}",
                    PARAMS.join(", ")
                )));
            }
        }
    }

    let mut warnings = Vec::new();
    let ack_timeout_given = seen.iter().any(|s| s == "min_replicas_ack_timeout");
    check::combination(
        &mut cfg,
        db_given,
        ack_timeout_given,
        &|_| KEY.to_owned(),
        &mut warnings,
    )?;
    Ok((LockStoreConfig::Redis(cfg), warnings))
}

/// A hint for URLs whose password may hold characters that split the URL.
fn encoding_hint(input: &str) -> &'static str {
    if input.contains(['@', '#']) {
        "; in the user name and password, write @ as %40, # as %23, / as %2F, ? as %3F \
         and % as %25"
    } else {
        ""
    }
}

/// Percent-decodes a part of the URL; `what` names it in the error, which
/// does not show it.
fn decode(part: &str, what: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            err(format!(
                "the {what} is not UTF-8 once percent-decoded; percent-encode its UTF-8 bytes"
            ))
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn redis(url: &str) -> RedisConfig {
        match LockStoreConfig::from_url(url) {
            Ok(LockStoreConfig::Redis(r)) => r,
            other => panic!("{url} => {other:?}"),
        }
    }

    /// Asserts a configuration error with the key `url` whose message
    /// contains every one of `words`.
    #[track_caller]
    fn url_err(url: &str, words: &[&str]) -> String {
        match LockStoreConfig::from_url(url) {
            Err(Error::Config { key, message }) => {
                assert_eq!(key, "url", "{message}");
                for w in words {
                    assert!(message.contains(w), "{url}: {w:?} not in {message:?}");
                }
                message
            }
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn memory_forms_give_the_in_memory_store() {
        for url in ["memory://", "MEMORY://", "in_memory", " in_memory "] {
            assert_eq!(
                LockStoreConfig::from_url(url).unwrap(),
                LockStoreConfig::InMemory
            );
        }
        url_err("memory://somewhere", &["memory:// alone"]);
        url_err("memory://?x=1", &["memory:// alone"]);
    }

    #[test]
    fn a_bare_url_takes_the_redis_url_defaults() {
        let r = redis("redis://redis.internal");
        let expected = RedisConfig {
            host: "redis.internal".into(),
            db: 0,
            ..RedisConfig::default()
        };
        assert_eq!(r, expected);
        assert_eq!((r.port, r.db, r.use_ssl), (6379, 0, false));
        assert_eq!(redis("redis://h/").db, 0);
        assert_eq!(redis("redis://h:6380/15").db, 15);
        assert_eq!(redis("redis://h:6380/15").port, 6380);
    }

    #[test]
    fn rediss_means_tls() {
        let r = redis("rediss://h:6380/1");
        assert!(r.use_ssl);
        assert_eq!((r.port, r.db), (6380, 1));
        assert!(redis("REDISS://h").use_ssl, "schemes are case-insensitive");
    }

    #[test]
    fn user_and_password_are_percent_decoded() {
        let r = redis("redis://app%20user:p%40ss%3Aw%2Fo%23rd%25@h/0");
        assert_eq!(r.username.as_deref(), Some("app user"));
        assert_eq!(
            r.password.as_ref().map(Secret::expose),
            Some("p@ss:w/o#rd%")
        );
        let r = redis("redis://:s%C3%A9cret@h");
        assert_eq!(r.username, None);
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("sécret"));
        // The last `@` ends the user info.
        let r = redis("redis://:a@b@h");
        assert_eq!(
            (r.password.as_ref().map(Secret::expose), r.host.as_str()),
            (Some("a@b"), "h")
        );
        let m = url_err("redis://:%FF%FE@h", &["password", "UTF-8"]);
        assert!(!m.contains("%FF"), "{m}");
        url_err("redis://app@h", &["username", "without a password"]);
        assert_eq!(redis("redis://:@h").password, None);
    }

    #[test]
    fn hosts_may_be_names_ipv4_or_bracketed_ipv6() {
        assert_eq!(redis("redis://127.0.0.1:7000").host, "127.0.0.1");
        assert_eq!(redis("redis://[::1]:7000").host, "::1");
        assert_eq!(redis("redis://[fe80::1]").host, "fe80::1");
        url_err("redis://", &["no host"]);
        url_err("redis:///1", &["no host"]);
        url_err("redis:h", &["no host"]);
        url_err("redis://[::1", &["not a usable URL"]);
        url_err("redis://a%20b", &["' '"]);
    }

    #[test]
    fn wrong_schemes_ports_and_paths_are_errors() {
        for url in [
            "http://h",
            "https://h:443",
            "unix:///tmp/redis.sock",
            "valkey://h",
        ] {
            url_err(
                url,
                &["unsupported scheme", "redis://", "rediss://", "memory://"],
            );
        }
        url_err("localhost:6379", &["unsupported scheme"]);
        url_err("localhost", &["no scheme", "redis://"]);
        url_err("", &["redis://"]);
        url_err("redis://h:0", &["0 is not a port"]);
        url_err("redis://h:65536", &["port", "1 to 65535"]);
        url_err("redis://h:-1", &["port"]);
        url_err("redis://h:x", &["port"]);
        url_err("redis://h/abc", &["\"/abc\"", "database"]);
        url_err("redis://h/1/2", &["\"/1/2\""]);
        url_err("redis://h/-1", &["\"/-1\""]);
        url_err("redis://h/99999999999999999999", &["database"]);
        url_err("redis://:pa#ss@h", &["%23"]);
        url_err("redis://:pass@h#x", &["#fragment", "%23"]);
        url_err("redis://:p/ss@h", &["%2F"]);
    }

    #[test]
    fn the_query_carries_the_other_settings() {
        let r = redis(
            "rediss://h/0?type=concurrent_redis&key_prefix=app1&socket_timeout=2.5\
             &ssl_certfile=%2Fetc%2Fc.pem&ssl_keyfile=k.pem&ssl_ca_certs=ca.pem",
        );
        assert_eq!(r.store_type, RedisStoreType::ConcurrentRedis);
        assert_eq!(r.key_prefix.as_deref(), Some("app1"));
        assert_eq!(r.socket_timeout, Duration::from_millis(2500));
        assert_eq!(r.ssl_certfile, Some(PathBuf::from("/etc/c.pem")));
        assert_eq!(r.ssl_keyfile, Some(PathBuf::from("k.pem")));
        assert_eq!(r.ssl_ca_certs, Some(PathBuf::from("ca.pem")));

        let r = redis("redis://h?deployment_mode=cluster&endpoints=n1:7000,%5B::1%5D:7001");
        assert_eq!(r.deployment_mode, DeploymentMode::Cluster);
        assert_eq!(r.endpoints, ["n1:7000", "[::1]:7001"]);
        assert_eq!(r.db, 0);

        let r = redis(
            "redis://:pw@h?deployment_mode=sentinel&endpoints=s1:26379,s2:26379&sentinel_service=mymaster",
        );
        assert_eq!(r.deployment_mode, DeploymentMode::Sentinel);
        assert_eq!(r.sentinel_service.as_deref(), Some("mymaster"));

        let r = redis("redis://h?min_replicas_ack=2&min_replicas_ack_timeout=0.2");
        assert_eq!(r.min_replicas_ack, 2);
        assert_eq!(r.min_replicas_ack_timeout, Duration::from_millis(200));

        assert_eq!(redis("redis://h").layout, RedisLayout::Rasa);
        let r = redis("redis://h?layout=native");
        assert_eq!(r.layout, RedisLayout::Native);
        assert!(
            r.display_url().ends_with("?layout=native"),
            "{}",
            r.display_url()
        );
        assert_eq!(redis(&r.display_url()).layout, RedisLayout::Native);
    }

    #[test]
    fn bad_query_settings_are_errors_naming_them() {
        url_err("redis://h?type=in_memory", &["\"type\"", "memory://"]);
        url_err(
            "redis://h?key_prefix=a-b",
            &["\"key_prefix\"", "alphanumeric"],
        );
        url_err(
            "redis://h?socket_timeout=0",
            &["\"socket_timeout\"", "greater than 0"],
        );
        url_err("redis://h?deployment_mode=x", &["\"deployment_mode\""]);
        url_err("redis://h?layout=hash", &["\"layout\"", "rasa", "native"]);
        url_err("redis://h?deployment_mode=cluster", &["cluster mode needs"]);
        url_err(
            "redis://h/2?deployment_mode=cluster&endpoints=a:1",
            &["must be 0"],
        );
        url_err(
            "redis://h?deployment_mode=sentinel&endpoints=a:1",
            &["sentinel_service"],
        );
        url_err("redis://h?endpoints=a:1,b", &["\"endpoints\"", "\"b\""]);
        url_err(
            "redis://h?key_prefix=a&key_prefix=b",
            &["\"key_prefix\"", "twice"],
        );
        url_err(
            "redis://h?db=2",
            &["unknown setting \"db\"", "socket_timeout"],
        );
        url_err("redis://h?ssl_keyfile=k.pem", &["ssl_certfile"]);
        url_err(
            "redis://h?min_replicas_ack=-1",
            &["\"min_replicas_ack\"", "number of replicas"],
        );
        url_err(
            "redis://h?min_replicas_ack=1&socket_timeout=1&min_replicas_ack_timeout=1",
            &["not shorter than socket_timeout"],
        );
    }

    #[test]
    fn errors_never_repeat_the_password() {
        for url in [
            "http://:topsecret@h",
            "redis://:topsecret@h:99999",
            "redis://:topsecret@h/x",
            "redis://:topsecret@h?nope=1",
            "redis://:topsecret@",
            "redis://:top#secret@h",
            "redis://u:topsecret@h?deployment_mode=cluster",
            "redis://u:123/topsecret@h",
            "redis://u:123?topsecret@h",
            "redis://u:123?topsecret=x@h",
        ] {
            let m = url_err(url, &[]);
            assert!(
                !m.contains("topsecret") && !m.contains("secret"),
                "{url}: {m}"
            );
        }
    }

    #[test]
    fn display_url_masks_the_password_and_reads_back() {
        let r = redis("redis://app:hunter2@h:6380/3");
        assert_eq!(r.display_url(), "redis://app:***@h:6380/3");
        assert!(!format!("{r:?}").contains("hunter2"));
        let r = redis("rediss://:hunter2@[::1]");
        assert_eq!(r.display_url(), "rediss://:***@[::1]:6379/0");
        // The endpoints.yml default db 1 is written out.
        assert_eq!(
            RedisConfig::default().display_url(),
            "redis://localhost:6379/1"
        );

        let full = RedisConfig {
            store_type: RedisStoreType::ConcurrentRedis,
            host: "redis.internal".into(),
            port: 7000,
            db: 0,
            username: Some("a user@x:y".into()),
            password: Some(Secret::new("hunter2")),
            use_ssl: true,
            ssl_certfile: Some("/etc/tls/c e.pem".into()),
            ssl_keyfile: Some("/etc/tls/k&=.pem".into()),
            ssl_ca_certs: Some("ca.pem".into()),
            key_prefix: Some("ünï1".into()),
            socket_timeout: Duration::from_millis(1500),
            deployment_mode: DeploymentMode::Sentinel,
            endpoints: vec!["s1:26379".into(), "[::1]:26380".into()],
            sentinel_service: Some("my master".into()),
            sentinel_username: Some("watcher".into()),
            sentinel_password: Some(Secret::new("s-hunter3")),
            min_replicas_ack: 1,
            min_replicas_ack_timeout: Duration::from_millis(300),
            layout: RedisLayout::Native,
        };
        let shown = full.display_url();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("hunter3"), "{shown}");
        let LockStoreConfig::Redis(back) = LockStoreConfig::from_url(&shown).unwrap() else {
            panic!("{shown}")
        };
        let masked = RedisConfig {
            password: Some(Secret::new("***")),
            sentinel_password: Some(Secret::new("***")),
            ..full
        };
        assert_eq!(back, masked, "{shown}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(url in "\\PC{0,80}") {
            let _ = LockStoreConfig::from_url(&url);
        }

        #[test]
        fn arbitrary_redis_urls_never_panic(
            url in "(redis|rediss|memory|http)://([a-z%0-9:@]{0,12}@)?[a-z0-9.\\[\\]:%]{0,16}(:[0-9]{0,6})?(/[0-9a-z/]{0,4})?(\\?[a-z_=&,:%0-9.]{0,40})?(#.{0,3})?",
        ) {
            match LockStoreConfig::from_url(&url) {
                Ok(_) => {}
                Err(Error::Config { key, .. }) => proptest::prop_assert_eq!(key, "url"),
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn user_and_password_round_trip_through_percent_encoding(
            user in "\\PC{1,12}",
            password in "\\PC{1,12}",
        ) {
            let url = format!(
                "redis://{}:{}@h",
                utf8_percent_encode(&user, COMPONENT),
                utf8_percent_encode(&password, COMPONENT),
            );
            let r = redis(&url);
            proptest::prop_assert_eq!(r.username.as_deref(), Some(user.as_str()));
            proptest::prop_assert_eq!(r.password.as_ref().map(Secret::expose), Some(password.as_str()));
        }
    }

    mod round_trip {
        use std::net::{Ipv4Addr, Ipv6Addr};

        use proptest::prelude::*;

        use super::*;

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,2}",
                any::<u32>().prop_map(|a| Ipv4Addr::from(a).to_string()),
                any::<u128>().prop_map(|a| Ipv6Addr::from(a).to_string()),
            ]
        }

        fn config() -> impl Strategy<Value = RedisConfig> {
            (
                (any::<bool>(), any::<bool>(), host(), 1u16.., 0i64..10_000),
                (
                    prop::option::of("\\PC{1,10}"),
                    prop::option::of("\\PC{1,10}"),
                    prop::option::of("[a-zA-Z0-9\u{fc}\u{5b57}]{1,6}"),
                    1u64..10_000_000,
                ),
                (
                    prop::option::of("\\PC{1,12}"),
                    prop::option::of("\\PC{1,12}"),
                    prop::option::of("\\PC{1,12}"),
                    prop::sample::select(
                        &[
                            DeploymentMode::Standard,
                            DeploymentMode::Cluster,
                            DeploymentMode::Sentinel,
                        ][..],
                    ),
                    prop::collection::vec("[a-z]{1,6}:[1-9][0-9]{0,3}", 0..3),
                    prop::option::of("\\PC{1,8}"),
                ),
            )
                .prop_map(
                    |(
                        (ssl, concurrent, host, port, db),
                        (username, password, key_prefix, timeout_ms),
                        (cert, key, ca, deployment_mode, mut endpoints, mut sentinel_service),
                    )| {
                        // Only what the parser accepts: a username needs a
                        // password, a client key its certificate; cluster and sentinel modes need their nodes
                        // (and a cluster has database 0 only, a sentinel setup
                        // its master's name).
                        let password = password.or_else(|| username.as_ref().map(|_| "pw".into()));
                        let cert = cert.or_else(|| key.as_ref().map(|_| "client.crt".into()));
                        let db = if deployment_mode == DeploymentMode::Cluster {
                            0
                        } else {
                            db
                        };
                        if deployment_mode != DeploymentMode::Standard && endpoints.is_empty() {
                            endpoints.push("node:6379".into());
                        }
                        if deployment_mode == DeploymentMode::Sentinel {
                            sentinel_service.get_or_insert_with(|| "mymaster".into());
                        }
                        // Replicas to wait for, with a wait shorter than the
                        // socket timeout (as the parser requires).
                        let min_replicas_ack = if timeout_ms >= 2 {
                            (timeout_ms % 3) as u32
                        } else {
                            0
                        };
                        let min_replicas_ack_timeout = if min_replicas_ack > 0 {
                            Duration::from_millis(timeout_ms / 2)
                        } else {
                            RedisConfig::default().min_replicas_ack_timeout
                        };
                        RedisConfig {
                            store_type: if concurrent {
                                RedisStoreType::ConcurrentRedis
                            } else {
                                RedisStoreType::Redis
                            },
                            host,
                            port,
                            db,
                            username,
                            password: password.map(Secret::new),
                            use_ssl: ssl,
                            ssl_certfile: cert.map(PathBuf::from),
                            ssl_keyfile: key.map(PathBuf::from),
                            ssl_ca_certs: ca.map(PathBuf::from),
                            key_prefix,
                            socket_timeout: Duration::from_millis(timeout_ms),
                            deployment_mode,
                            endpoints,
                            sentinel_service,
                            sentinel_username: None,
                            sentinel_password: None,
                            min_replicas_ack,
                            // Varied with the port's parity.
                            layout: if port % 2 == 0 {
                                RedisLayout::Native
                            } else {
                                RedisLayout::Rasa
                            },
                            min_replicas_ack_timeout,
                        }
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// What `display_url` writes, `from_url` reads back: the same
            /// configuration, the password shown (and read) as `***`.
            #[test]
            fn display_url_reads_back_as_the_same_configuration(c in config()) {
                let shown = c.display_url();
                prop_assert_eq!(c.password.is_some(), shown.contains(":***@"), "{}", shown);
                let back = match LockStoreConfig::from_url(&shown) {
                    Ok(LockStoreConfig::Redis(r)) => r,
                    other => return Err(TestCaseError::fail(format!("{shown} => {other:?}"))),
                };
                let masked = RedisConfig {
                    password: c.password.as_ref().map(|_| Secret::new("***")),
                    ..c
                };
                prop_assert_eq!(back, masked, "{}", shown);
            }
        }
    }
}
