//! Checks shared by the `endpoints.yml` and URL forms.
//!
//! Each value check returns the problem and what to write instead; the
//! caller attaches its key (`lock_store.port`, `url`) and position.

use std::net::Ipv6Addr;
use std::time::Duration;

use super::{DeploymentMode, RedisConfig, RedisLayout};
use crate::{Error, Result};

/// A warning about a setting that is accepted but ignored or deprecated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Warning {
    /// The setting, e.g. `lock_store.url`.
    pub(crate) key: String,
    /// What is odd and what to write instead.
    pub(crate) message: String,
}

impl Warning {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Warning {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Logs the warning.
    pub(crate) fn emit(&self) {
        tracing::warn!(
            setting = %self.key,
            "lock store configuration: `{}`: {}",
            self.key,
            self.message
        );
    }
}

const PORT_HINT: &str = "write a whole number from 1 to 65535, e.g. 6379";
const DB_HINT: &str = "write a whole number from 0 up, e.g. 1";
const TIMEOUT_HINT: &str = "write a number of seconds greater than 0, e.g. 10 or 0.5";
const ENDPOINT_HINT: &str = "write host:port, e.g. redis-node-1:6379 (IPv6 as [::1]:6379)";

/// A host name or IP address; IPv6 may be bracketed. Returns it as the
/// client connects to it (IPv6 without brackets).
pub(crate) fn host(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("the host is empty; write a host name or IP address, e.g. localhost".into());
    }
    if let Some((scheme, _)) = value.split_once("://") {
        // Do not echo the value: a URL may carry a password.
        return Err(format!(
            "a {scheme}:// URL was given, but this setting is the host name alone \
             (Rasa's `url` is a host name too); write the host here and the port, \
             db and password as their own settings"
        ));
    }
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    if bare.parse::<Ipv6Addr>().is_ok() {
        return Ok(bare.to_owned());
    }
    if let Some(c) = bad_host_char(value) {
        return Err(format!(
            "{value:?} contains {c:?}, which cannot be part of a host name; \
             write a host name or IP address, e.g. redis.example.com"
        ));
    }
    if value.contains(':') {
        return Err(format!(
            "{value:?} is not a host name: write the port as its own setting \
             (`port:`), and IPv6 addresses without a port, e.g. ::1"
        ));
    }
    Ok(value.to_owned())
}

fn bad_host_char(value: &str) -> Option<char> {
    value.chars().find(|&c| {
        c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#' | '[' | ']' | ',')
    })
}

/// A `host:port` entry of `endpoints`, returned trimmed.
pub(crate) fn endpoint(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(format!("an entry is empty; {ENDPOINT_HINT}"));
    }
    let Some((host, port)) = split_endpoint_raw(v) else {
        return Err(format!("{v:?} has no port; {ENDPOINT_HINT}"));
    };
    let bare = match host.strip_prefix('[') {
        Some(inner) => match inner.strip_suffix(']') {
            Some(ip) if ip.parse::<Ipv6Addr>().is_ok() => ip,
            _ => {
                return Err(format!(
                    "{v:?}: {host:?} is not an IPv6 address in brackets; {ENDPOINT_HINT}"
                ));
            }
        },
        None if host.contains(':') => {
            return Err(format!(
                "{v:?}: an IPv6 address needs brackets; {ENDPOINT_HINT}"
            ));
        }
        None => host,
    };
    if bare.is_empty() {
        return Err(format!("{v:?} has no host; {ENDPOINT_HINT}"));
    }
    if bare.contains("://") {
        return Err(format!("{v:?} is a URL; {ENDPOINT_HINT}"));
    }
    if let Some(c) = bad_host_char(bare) {
        return Err(format!("{v:?} contains {c:?}; {ENDPOINT_HINT}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(v.to_owned()),
        _ => Err(format!(
            "{v:?}: {port:?} is not a port number from 1 to 65535; {ENDPOINT_HINT}"
        )),
    }
}

fn split_endpoint_raw(v: &str) -> Option<(&str, &str)> {
    v.rsplit_once(':')
}

/// Splits a checked `endpoints` entry into the host (IPv6 without brackets)
/// and the port.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis backend
pub(crate) fn split_endpoint(v: &str) -> Option<(&str, u16)> {
    let (host, port) = split_endpoint_raw(v)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse().ok()?))
}

pub(crate) fn port_int(i: i64) -> Result<u16, String> {
    match u16::try_from(i) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("{i} is not a port number; {PORT_HINT}")),
    }
}

pub(crate) fn port_str(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i64>() {
        Ok(i) => port_int(i),
        Err(_) => Err(format!("{s:?} is not a port number; {PORT_HINT}")),
    }
}

pub(crate) fn db_int(i: i64) -> Result<i64, String> {
    if i >= 0 {
        Ok(i)
    } else {
        Err(format!("{i} is not a database number; {DB_HINT}"))
    }
}

pub(crate) fn db_str(s: &str) -> Result<i64, String> {
    match s.trim().parse::<i64>() {
        Ok(i) => db_int(i),
        Err(_) => Err(format!("{s:?} is not a database number; {DB_HINT}")),
    }
}

const REPLICAS_HINT: &str = "write a whole number of replicas from 0 (do not wait) up, e.g. 1";

/// `min_replicas_ack`: a number of replicas, 0 for none.
pub(crate) fn replicas_int(i: i64) -> Result<u32, String> {
    u32::try_from(i).map_err(|_| format!("{i} is not a number of replicas; {REPLICAS_HINT}"))
}

pub(crate) fn replicas_str(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(i) => replicas_int(i),
        Err(_) => Err(format!(
            "{s:?} is not a number of replicas; {REPLICAS_HINT}"
        )),
    }
}

/// Seconds, whole or fractional, greater than 0. `shown` is the value as
/// written, for the message.
pub(crate) fn seconds(secs: f64, shown: &str) -> Result<Duration, String> {
    if secs > 0.0
        && let Ok(d) = Duration::try_from_secs_f64(secs)
        && !d.is_zero()
    {
        return Ok(d);
    }
    Err(format!(
        "{shown} is not a usable number of seconds; {TIMEOUT_HINT}"
    ))
}

pub(crate) fn seconds_str(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(f) => seconds(f, &format!("{s:?}")),
        Err(_) => Err(format!("{s:?} is not a number of seconds; {TIMEOUT_HINT}")),
    }
}

/// The strings pydantic (Rasa Pro) accepts for a boolean, plus any case.
pub(crate) fn bool_str(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "t" | "y" => Ok(true),
        "false" | "no" | "off" | "0" | "f" | "n" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean; write true or false")),
    }
}

pub(crate) fn deployment_mode(s: &str) -> Result<DeploymentMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "standard" => Ok(DeploymentMode::Standard),
        "cluster" => Ok(DeploymentMode::Cluster),
        "sentinel" => Ok(DeploymentMode::Sentinel),
        _ => Err(format!(
            "{s:?} is not a deployment mode; write standard, cluster or sentinel"
        )),
    }
}

pub(crate) fn layout(s: &str) -> Result<RedisLayout, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "rasa" => Ok(RedisLayout::Rasa),
        "native" => Ok(RedisLayout::Native),
        _ => Err(format!(
            "{s:?} is not a layout; write rasa (Rasa's records, the default: a Redis shared \
             with Rasa processes) or native (ours: constant cost per call, for a Redis no Rasa \
             process uses)"
        )),
    }
}

/// Whether Rasa accepts `prefix` as a key prefix: Python's `str.isalnum()`,
/// which is Unicode-aware (as is `char::is_alphanumeric`). Matching Rasa here
/// matters: a prefix one side takes and the other drops would make a Rasa
/// server and ticketlock use different keys, and so different locks.
pub(crate) fn key_prefix_ok(prefix: &str) -> bool {
    !prefix.is_empty() && prefix.chars().all(char::is_alphanumeric)
}

pub(crate) const KEY_PREFIX_HINT: &str = "use only letters and digits, e.g. myapp";

/// Checks that need several settings together, and settles the database
/// number in cluster mode. `key` names a setting in the caller's form.
pub(crate) fn combination(
    cfg: &mut RedisConfig,
    db_given: bool,
    ack_timeout_given: bool,
    key: &dyn Fn(&str) -> String,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    if cfg.username.is_some() && cfg.password.is_none() {
        return Err(Error::config(
            key("username"),
            "a username was given without a password (Rasa Pro refuses this too); \
             set the password as well, or remove the username",
        ));
    }
    if cfg.ssl_keyfile.is_some() && cfg.ssl_certfile.is_none() {
        return Err(Error::config(
            key("ssl_keyfile"),
            "a client key was given without its certificate; set ssl_certfile as well, \
             or remove ssl_keyfile",
        ));
    }
    if !cfg.use_ssl {
        for (name, set) in [
            ("ssl_certfile", cfg.ssl_certfile.is_some()),
            ("ssl_keyfile", cfg.ssl_keyfile.is_some()),
            ("ssl_ca_certs", cfg.ssl_ca_certs.is_some()),
        ] {
            if set {
                warnings.push(Warning::new(
                    key(name),
                    "ignored because TLS is off; set use_ssl: true (or use rediss://) to connect with TLS",
                ));
            }
        }
    }
    match cfg.deployment_mode {
        DeploymentMode::Standard => {
            if !cfg.endpoints.is_empty() {
                warnings.push(Warning::new(
                    key("endpoints"),
                    "ignored in standard mode, which connects to host and port; \
                     set deployment_mode to cluster or sentinel to use them",
                ));
            }
        }
        DeploymentMode::Cluster => {
            if db_given && cfg.db != 0 {
                return Err(Error::config(
                    key("db"),
                    format!(
                        "db is {} but must be 0 in cluster mode (Redis Cluster has only \
                         database 0); set it to 0 or leave it out",
                        cfg.db
                    ),
                ));
            }
            // Rasa's default of 1 cannot apply to a cluster.
            cfg.db = 0;
            if cfg.endpoints.is_empty() {
                return Err(Error::config(
                    key("endpoints"),
                    "cluster mode needs the cluster nodes: set endpoints to a list of \
                     host:port, e.g. [\"node1:6379\", \"node2:6379\"]",
                ));
            }
        }
        DeploymentMode::Sentinel => {
            if cfg.endpoints.is_empty() {
                return Err(Error::config(
                    key("endpoints"),
                    "sentinel mode needs the sentinels: set endpoints to a list of \
                     host:port, e.g. [\"sentinel1:26379\", \"sentinel2:26379\"]",
                ));
            }
            if cfg.sentinel_service.is_none() {
                return Err(Error::config(
                    key("sentinel_service"),
                    "sentinel mode needs the name of the monitored master; \
                     set sentinel_service, e.g. mymaster",
                ));
            }
        }
    }
    if cfg.min_replicas_ack > 0 {
        if cfg.min_replicas_ack_timeout >= cfg.socket_timeout {
            return Err(Error::config(
                key("min_replicas_ack_timeout"),
                format!(
                    "{:?} is not shorter than socket_timeout ({:?}), so a call would time out \
                     before the replicas are counted; make it shorter, e.g. 1 second",
                    cfg.min_replicas_ack_timeout, cfg.socket_timeout
                ),
            ));
        }
    } else if ack_timeout_given {
        warnings.push(Warning::new(
            key("min_replicas_ack_timeout"),
            "ignored because min_replicas_ack is 0 (no waiting for replicas); \
             set min_replicas_ack to the number of replicas that must acknowledge each change",
        ));
    }
    if cfg.deployment_mode != DeploymentMode::Sentinel {
        for (name, set) in [
            ("sentinel_username", cfg.sentinel_username.is_some()),
            ("sentinel_password", cfg.sentinel_password.is_some()),
        ] {
            if set {
                warnings.push(Warning::new(
                    key(name),
                    "ignored outside sentinel mode; set deployment_mode: sentinel to use it",
                ));
            }
        }
    }
    if cfg.sentinel_service.is_some() && cfg.deployment_mode != DeploymentMode::Sentinel {
        warnings.push(Warning::new(
            key("sentinel_service"),
            "ignored outside sentinel mode; set deployment_mode: sentinel to use it",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host("localhost").unwrap(), "localhost");
        assert_eq!(host("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(host("::1").unwrap(), "::1");
        assert_eq!(host("[fe80::1]").unwrap(), "fe80::1");
        for bad in ["", "a b", "host:6379", "redis://x", "a/b", "u@h", "[::1"] {
            assert!(host(bad).is_err(), "{bad:?}");
        }
        let e = host("redis://:secret@h:1").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint(" node1:7000 ").unwrap(), "node1:7000");
        assert_eq!(endpoint("[::1]:26379").unwrap(), "[::1]:26379");
        assert_eq!(split_endpoint("[::1]:26379"), Some(("::1", 26379)));
        assert_eq!(split_endpoint("node1:7000"), Some(("node1", 7000)));
        for bad in [
            "",
            "node1",
            ":6379",
            "node1:",
            "node1:0",
            "node1:65536",
            "node1:x",
            "::1:6379",
            "[nope]:1",
            "a b:1",
            "redis://a:1",
        ] {
            let e = endpoint(bad).unwrap_err();
            assert!(e.contains("host:port"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(port_str(" 6380 ").unwrap(), 6380);
        assert!(port_str("0").is_err() && port_int(65536).is_err() && port_int(-1).is_err());
        assert_eq!(db_str("0").unwrap(), 0);
        assert!(db_int(-1).is_err() && db_str("x").is_err());
        assert_eq!(seconds_str("0.5").unwrap(), Duration::from_millis(500));
        for bad in ["0", "-1", "nan", "inf", "1e400", "1e-20", "x"] {
            assert!(seconds_str(bad).is_err(), "{bad}");
        }
        assert!(bool_str("TRUE").unwrap() && !bool_str("off").unwrap());
        assert!(bool_str("maybe").is_err());
        assert_eq!(deployment_mode("Cluster").unwrap(), DeploymentMode::Cluster);
        assert!(deployment_mode("replica").is_err());
        assert_eq!(layout("Native").unwrap(), RedisLayout::Native);
        assert_eq!(layout("rasa").unwrap(), RedisLayout::Rasa);
        assert!(layout("hash").unwrap_err().contains("rasa"));
        assert_eq!(replicas_str(" 2 ").unwrap(), 2);
        assert_eq!(replicas_int(0).unwrap(), 0);
        for bad in ["-1", "1.5", "x", "99999999999"] {
            assert!(replicas_str(bad).unwrap_err().contains("replicas"), "{bad}");
        }
        assert!(key_prefix_ok("abc123") && key_prefix_ok("ünïcode"));
        assert!(!key_prefix_ok("") && !key_prefix_ok("a:b") && !key_prefix_ok("a_b"));
    }
}
