//! Parsing of the `lock_store:` section of Rasa's `endpoints.yml`.
//!
//! Implementation details: saphyr-parser reads the file as YAML 1.2 (as
//! Rasa's ruamel reader does, so `yes` is a string, not a boolean) and
//! saphyr builds a tree that keeps each node's position and each scalar as
//! written. Scalars are typed here, per setting, so that every error names
//! its key and line, and so that a password such as `0x1F` stays as written.
//! Duplicate keys are refused (as ruamel does) and alias expansion is
//! bounded by saphyr; nesting depth is bounded here, before the tree is
//! built. Only the `lock_store:` section is looked at: other sections may
//! hold anything, including `${VAR}`s that are not set.
//!
//! Here: the settings' names and [`parse`]. Beside it: `yaml.rs` (loading
//! the tree, reading its nodes), `field.rs` (one setting's scalar, typed,
//! `${VAR}`s substituted), `section.rs` (the section's settings into a
//! [`LockStoreConfig`]), `postgres.rs` (the PostgreSQL store's settings)
//! and `tests.rs`.

use std::path::Path;

use saphyr::YamlData;

use super::LockStoreConfig;
use super::check::{self, Warning};
use crate::{Error, Result};

/// The error key for YAML text that did not come from a file.
const TEXT_SOURCE: &str = "endpoints.yml";

/// Nesting allowed in the file. Real endpoints files are a few levels deep;
/// the bound keeps a hostile file from overflowing the stack when the tree
/// is dropped.
const MAX_DEPTH: usize = 64;

/// The settings of the `lock_store:` section.
const SETTINGS: &[&str] = &[
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
    "sentinel_username",
    "sentinel_password",
    "min_replicas_ack",
    "min_replicas_ack_timeout",
    "layout",
    // The PostgreSQL store's (see endpoints/postgres.rs).
    "dialect",
    "query",
    "sslmode",
    "sslrootcert",
    "listen_url",
];

mod postgres;

type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

impl LockStoreConfig {
    /// Reads the `lock_store:` section of a Rasa `endpoints.yml` file;
    /// `${VAR}` references are replaced from the process environment.
    ///
    /// Other sections (`tracker_store:`, `action_endpoint:`, ...) are
    /// ignored. With no `lock_store:` section, or with `type: in_memory` or
    /// no `type`, the result is [`LockStoreConfig::InMemory`]; `type: redis`
    /// and `type: concurrent_redis` give [`LockStoreConfig::Redis`].
    ///
    /// # Settings
    ///
    /// | key | meaning | default |
    /// | --- | --- | --- |
    /// | `type` | `in_memory`, `redis` or `concurrent_redis`; `postgresql` (or Rasa's `SQL` with `dialect: postgresql`) for [`LockStoreConfig::Postgres`], whose keys the README's PostgreSQL section lists | `in_memory` |
    /// | `host` | host name or IP address (not a URL) | `localhost` |
    /// | `url` | Rasa's older name for `host` (deprecated; warns) | |
    /// | `port` | 1 to 65535 | 6379 |
    /// | `db` | database number, from 0; must be 0 in cluster mode | 1 (0 in cluster mode) |
    /// | `username`, `password` | ACL user and password; a username needs a password | none |
    /// | `use_ssl` | connect with TLS | false |
    /// | `ssl_certfile`, `ssl_keyfile`, `ssl_ca_certs` | PEM files for TLS | none |
    /// | `key_prefix` | letters and digits; keys become `<prefix>:lock:<id>` | none |
    /// | `socket_timeout` | seconds (may be fractional), greater than 0 | 10 |
    /// | `deployment_mode` | `standard`, `cluster` or `sentinel` | `standard` |
    /// | `endpoints` | list of `host:port` (cluster nodes or sentinels) | none |
    /// | `sentinel_service` | name of the master the sentinels watch | none |
    /// | `sentinel_username`, `sentinel_password` | ACL user and password on the sentinels (Rasa Pro) | none |
    /// | `min_replicas_ack` | ours, not Rasa's: replicas that must acknowledge each change (Redis `WAIT`); 0 does not wait | 0 |
    /// | `min_replicas_ack_timeout` | ours: seconds to wait for them, shorter than `socket_timeout` | 1 |
    /// | `layout` | ours: `rasa` (Rasa's records, shared with Rasa processes) or `native` (constant cost per call; no Rasa process may use the Redis), see [`crate::RedisLayout`] | `rasa` |
    ///
    /// Rasa ignores the settings of ours (it warns about unknown
    /// keys only in its own store types), so one file can serve both.
    ///
    /// Numbers and booleans may also be written as strings (`port: "6380"`,
    /// `use_ssl: "true"`), as a `${VAR}` always gives a string. `endpoints`
    /// may also be one comma-separated string (`endpoints: ${NODES}`).
    /// An empty or null value counts as not set. `type` is matched exactly,
    /// as in Rasa. A password without a username is accepted (Redis's
    /// `default` user), as in Rasa Open Source; a username needs a password.
    ///
    /// As in Rasa, a `key_prefix` that is not alphanumeric is ignored with a
    /// warning, and so is one that is not a string (`key_prefix: 123`: quote
    /// it), so that Rasa and ticketlock keep using the same keys. Unknown
    /// settings are ignored with a warning naming them. Warnings go to
    /// `tracing` at level WARN.
    ///
    /// # Environment variables
    ///
    /// `${NAME}` anywhere in a string value of the section is replaced by the
    /// variable's value, as Rasa does; a variable that is not set is an
    /// error naming the setting and the variable. Unlike Rasa, quoted
    /// values are substituted too (Rasa leaves `"${VAR}"` as written, which
    /// its users reported as a bug, RasaHQ/rasa#2761), and a bare `$NAME`
    /// is never expanded. Substituted values are not scanned again, so a
    /// value that must contain `${` can be passed through a variable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the file cannot be read (its key is the path),
    /// is not valid YAML (with line and column), or a setting is invalid
    /// (its key is `lock_store.<setting>`, its message says what to write).
    pub fn from_endpoints_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                &shown,
                format!(
                    "cannot read the endpoints file: {e}; check the path and that it is \
                     a readable UTF-8 text file"
                ),
            )
        })?;
        let env = |name: &str| std::env::var(name).ok();
        emit(parse(&text, &shown, &env))
    }

    /// Reads the `lock_store:` section from the text of an `endpoints.yml`
    /// file; `${VAR}` references are replaced from the process environment.
    ///
    /// See [`LockStoreConfig::from_endpoints_file`] for the settings. Errors
    /// about the YAML itself have the key `endpoints.yml`.
    pub fn from_endpoints_yaml(yaml: &str) -> Result<Self> {
        Self::from_endpoints_yaml_with_env(yaml, |name| std::env::var(name).ok())
    }

    /// As [`LockStoreConfig::from_endpoints_yaml`], with `env` looking up
    /// the variables that `${VAR}` references name (for tests, or another
    /// source of settings).
    pub fn from_endpoints_yaml_with_env(
        yaml: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        emit(parse(yaml, TEXT_SOURCE, &env))
    }
}

impl LockStoreConfig {
    /// As [`LockStoreConfig::from_endpoints_file`], but returns the
    /// warnings (unknown or ignored settings), each as one line
    /// `` `lock_store.<setting>`: <what is odd and what to write> ``,
    /// instead of logging them: for a program that shows them itself, or
    /// refuses the file when there are any.
    pub fn from_endpoints_file_with_warnings(
        path: impl AsRef<Path>,
    ) -> Result<(Self, Vec<String>)> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                &shown,
                format!(
                    "cannot read the endpoints file: {e}; check the path and that it is \
                     a readable UTF-8 text file"
                ),
            )
        })?;
        let env = |name: &str| std::env::var(name).ok();
        let (config, warnings) = parse(&text, &shown, &env)?;
        let lines = warnings
            .iter()
            .map(|w| format!("`{}`: {}", w.key, w.message))
            .collect();
        Ok((config, lines))
    }
}

/// The known setting nearest to a misspelt one (at most two edits away,
/// e.g. `prot` -> `port`), if any.
fn nearest_setting(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|s| (edit_distance(name, s), *s))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, s)| s)
}

/// Levenshtein distance, with a swap of two neighbours counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

fn emit(parsed: Result<(LockStoreConfig, Vec<Warning>)>) -> Result<LockStoreConfig> {
    let (config, warnings) = parsed?;
    for w in &warnings {
        w.emit();
    }
    Ok(config)
}

/// Parses the section; `source` names the text in errors about the YAML.
pub(crate) fn parse(
    yaml: &str,
    source: &str,
    env: Env<'_>,
) -> Result<(LockStoreConfig, Vec<Warning>)> {
    let docs = load(yaml, source)?;
    let root = match docs.as_slice() {
        [] => return Ok((LockStoreConfig::InMemory, Vec::new())),
        [root] => untag(root),
        more => {
            return Err(Error::config(
                source,
                format!(
                    "holds {} YAML documents (separated by `---`); an endpoints file holds one",
                    more.len()
                ),
            ));
        }
    };
    let sections = match &root.data {
        YamlData::Mapping(m) => m,
        _ if is_null(root) => return Ok((LockStoreConfig::InMemory, Vec::new())),
        _ => {
            return Err(Error::config(
                source,
                format!(
                    "{}: the top level is {}, not a mapping of sections; write sections \
                     such as `lock_store:` at the top level",
                    at(root),
                    kind(root)
                ),
            ));
        }
    };
    let mut found = sections
        .iter()
        .filter(|(k, _)| scalar_text(k) == Some("lock_store"));
    let Some((_, section)) = found.next() else {
        return Ok((LockStoreConfig::InMemory, Vec::new()));
    };
    if let Some((again, _)) = found.next() {
        return Err(Error::config(
            "lock_store",
            format!("{}: the section appears twice; keep one", at(again)),
        ));
    }
    let section = untag(section);
    let YamlData::Mapping(map) = &section.data else {
        if is_null(section) {
            return Ok((LockStoreConfig::InMemory, Vec::new()));
        }
        return Err(Error::config(
            "lock_store",
            format!(
                "{}: the section is {}, not a mapping of settings; write e.g. \
                 `lock_store: {{type: redis, host: localhost}}` or one setting per \
                 indented line",
                at(section),
                kind(section)
            ),
        ));
    };
    let mut warnings = Vec::new();
    let mut fields: Vec<Field<'_, '_>> = Vec::new();
    for (k, v) in map {
        let Some(name) = scalar_text(k) else {
            warnings.push(Warning::new(
                "lock_store",
                format!(
                    "{}: a setting name must be a word, not {}; this entry is ignored",
                    at(k),
                    kind(k)
                ),
            ));
            continue;
        };
        let field = Field {
            name: name.to_owned(),
            node: v,
        };
        if let Some(first) = fields.iter().find(|f| f.name == name) {
            return Err(Error::config(
                field.key(),
                format!(
                    "{}: set twice (first at {}); keep one",
                    at(k),
                    at(first.node)
                ),
            ));
        }
        if !SETTINGS.contains(&name) {
            let guess = nearest_setting(name)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            warnings.push(Warning::new(
                field.key(),
                format!(
                    "unknown setting, ignored; {guess}the lock store settings are {}",
                    SETTINGS.join(", ")
                ),
            ));
        }
        fields.push(field);
    }
    let section = Section {
        fields,
        env,
        warnings,
    };
    section.build()
}

mod field;
mod section;
#[cfg(test)]
mod tests;
mod yaml;

use field::Field;
use section::Section;
use yaml::{at, is_null, kind, load, scalar_text, untag};
