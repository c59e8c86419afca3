//! The `lock_store:` section's settings, read one by one into a
//! [`LockStoreConfig`], with the warnings the reading gives.

use std::path::PathBuf;

use saphyr::YamlData;

use super::field::{Field, Value};
use super::yaml::{at, untag};
use super::{Env, SETTINGS};
use crate::config::check::{self, Warning};
use crate::config::{LockStoreConfig, RedisConfig, RedisStoreType, Secret};
use crate::{Error, Result};

/// The settings of the section, read one by one.
pub(super) struct Section<'a, 'i, 'e> {
    pub(super) fields: Vec<Field<'a, 'i>>,
    pub(super) env: Env<'e>,
    pub(super) warnings: Vec<Warning>,
}

impl<'a, 'i, 'e> Section<'a, 'i, 'e> {
    pub(super) fn get(&self, name: &str) -> Option<&Field<'a, 'i>> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// An error about a setting, at its position.
    pub(super) fn err(&self, name: &str, problem: impl std::fmt::Display) -> Error {
        match self.get(name) {
            Some(f) => f.err(problem),
            None => Error::config(format!("lock_store.{name}"), problem.to_string()),
        }
    }

    /// Applies `read` to the setting if present.
    pub(super) fn read<T>(
        &self,
        name: &str,
        read: impl FnOnce(&Field<'a, 'i>, Env<'e>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        match self.get(name) {
            Some(f) => read(f, self.env),
            None => Ok(None),
        }
    }

    pub(super) fn build(mut self) -> Result<(LockStoreConfig, Vec<Warning>)> {
        let store_type = match self.read("type", Field::string)?.as_deref() {
            None | Some("in_memory") => {
                let ignored: Vec<&str> = self
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .filter(|n| *n != "type" && SETTINGS.contains(n))
                    .collect();
                if !ignored.is_empty() {
                    self.warnings.push(Warning::new(
                        "lock_store.type",
                        format!(
                            "the in-memory store is used, so {} ignored; set type: redis \
                             to use Redis",
                            if ignored.len() == 1 {
                                format!("{} is", ignored[0])
                            } else {
                                format!("{} are", ignored.join(", "))
                            }
                        ),
                    ));
                }
                return Ok((LockStoreConfig::InMemory, self.warnings));
            }
            Some("redis") => RedisStoreType::Redis,
            Some("concurrent_redis") => RedisStoreType::ConcurrentRedis,
            Some("postgresql" | "postgres") => return self.postgres(false),
            Some("SQL" | "sql") => return self.postgres(true),
            Some(other) => {
                return Err(self.err(
                    "type",
                    format!(
                        "{other:?} is not a supported lock store type; write in_memory, \
                         redis, concurrent_redis or postgresql (Rasa would import a custom lock store \
                         class from this module path; ticketlock cannot load Python classes)"
                    ),
                ));
            }
        };
        let mut cfg = RedisConfig {
            store_type,
            ..RedisConfig::default()
        };

        let url = self.read("url", Field::string)?;
        let host = self.read("host", Field::string)?;
        let (host_field, host) = match (url, host) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "lock_store.url",
                    "both url and host are set; url is Rasa's older name for host: keep only host",
                ));
            }
            (Some(url), None) => {
                self.warnings.push(Warning::new(
                    "lock_store.url",
                    "deprecated, as in Rasa Pro: it is the host name, not a URL; rename it to \
                     host (unless Rasa Open Source reads this file too: it knows only url)",
                ));
                ("url", Some(url))
            }
            (None, host) => ("host", host),
        };
        if let Some(host) = host {
            cfg.host = check::host(&host).map_err(|p| self.err(host_field, p))?;
        }
        if let Some(port) = self.read("port", Field::port)? {
            cfg.port = port;
        }
        let db = self.read("db", Field::db)?;
        if let Some(db) = db {
            cfg.db = db;
        }
        cfg.username = self.read("username", Field::string)?;
        cfg.password = self.read("password", Field::string)?.map(Secret::new);
        cfg.use_ssl = self.read("use_ssl", Field::boolean)?.unwrap_or(false);
        cfg.ssl_certfile = self.read("ssl_certfile", Field::string)?.map(PathBuf::from);
        cfg.ssl_keyfile = self.read("ssl_keyfile", Field::string)?.map(PathBuf::from);
        cfg.ssl_ca_certs = self.read("ssl_ca_certs", Field::string)?.map(PathBuf::from);
        cfg.key_prefix = self.key_prefix()?;
        if let Some(t) = self.read("socket_timeout", Field::seconds)? {
            cfg.socket_timeout = t;
        }
        if let Some(f) = self.get("deployment_mode")
            && let Some(mode) = f.string(self.env)?
        {
            cfg.deployment_mode = check::deployment_mode(&mode).map_err(|p| f.err(p))?;
        }
        cfg.endpoints = self.endpoints()?;
        cfg.sentinel_service = self.read("sentinel_service", Field::string)?;
        cfg.sentinel_username = self.read("sentinel_username", Field::string)?;
        cfg.sentinel_password = self
            .read("sentinel_password", Field::string)?
            .map(Secret::new);
        if let Some(n) = self.read("min_replicas_ack", Field::replicas)? {
            cfg.min_replicas_ack = n;
        }
        let ack_timeout = self.read("min_replicas_ack_timeout", Field::seconds)?;
        if let Some(t) = ack_timeout {
            cfg.min_replicas_ack_timeout = t;
        }
        if let Some(f) = self.get("layout")
            && let Some(layout) = f.string(self.env)?
        {
            cfg.layout = check::layout(&layout).map_err(|p| f.err(p))?;
        }

        check::combination(
            &mut cfg,
            db.is_some(),
            ack_timeout.is_some(),
            &|name| format!("lock_store.{name}"),
            &mut self.warnings,
        )?;
        Ok((LockStoreConfig::Redis(cfg), self.warnings))
    }

    /// Rasa keeps a prefix only if it is an alphanumeric string, and warns
    /// otherwise; so do we, so that both use the same keys.
    pub(super) fn key_prefix(&mut self) -> Result<Option<String>> {
        let Some(f) = self.get("key_prefix") else {
            return Ok(None);
        };
        let r = f.scalar(self.env)?;
        let problem = match r.value {
            Value::Null => return Ok(None),
            Value::Str(s) if s.is_empty() => return Ok(None),
            Value::Str(s) if check::key_prefix_ok(&s) => return Ok(Some(s)),
            Value::Str(s) => format!(
                "{s:?} is not alphanumeric, so it is ignored and keys get no prefix, as Rasa \
                 does; {}",
                check::KEY_PREFIX_HINT
            ),
            _ => format!(
                "{} is not a string, so Rasa ignores it, and so does ticketlock to use the \
                 same keys; quote it (key_prefix: \"{}\") to use it as a prefix",
                r.text, r.text
            ),
        };
        let key = f.key();
        let problem = format!("{}: {problem}", at(f.node));
        self.warnings.push(Warning::new(key, problem));
        Ok(None)
    }

    /// A list of `host:port`, or one comma-separated string.
    pub(super) fn endpoints(&self) -> Result<Vec<String>> {
        let Some(f) = self.get("endpoints") else {
            return Ok(Vec::new());
        };
        let node = untag(f.node);
        let mut out = Vec::new();
        if let YamlData::Sequence(items) = &node.data {
            for (i, item) in items.iter().enumerate() {
                let entry = Field {
                    name: format!("endpoints[{i}]"),
                    node: item,
                };
                let Some(text) = entry.string(self.env)? else {
                    return Err(
                        entry.err("the entry is empty; write host:port, e.g. redis-node-1:6379")
                    );
                };
                out.push(check::endpoint(&text).map_err(|p| entry.err(p))?);
            }
        } else if let Some(text) = f.string(self.env)? {
            for part in text.split(',') {
                out.push(check::endpoint(part).map_err(|p| f.err(p))?);
            }
        }
        Ok(out)
    }
}
