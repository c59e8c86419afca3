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

use std::path::{Path, PathBuf};

use saphyr::{MarkedYaml, Scalar, YamlData, YamlLoader};
use saphyr_parser::{Event, Marker, Parser, SpannedEventReceiver};

use super::check::{self, Warning};
use super::{LockStoreConfig, RedisConfig, RedisStoreType, Secret};
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

/// Loads the YAML documents, refusing nesting deeper than [`MAX_DEPTH`].
///
/// Events are pulled one by one rather than with `Parser::load`, which
/// recurses once per nesting level.
fn load<'i>(yaml: &'i str, source: &str) -> Result<Vec<MarkedYaml<'i>>> {
    let syntax = |info: &str, mark: &Marker| {
        Error::config(
            source,
            format!(
                "not valid YAML: {info} at line {}, column {}; fix the file there",
                mark.line(),
                mark.col() + 1
            ),
        )
    };
    let mut loader: YamlLoader<'i, MarkedYaml<'i>> = YamlLoader::default();
    // Keep scalars as written: they are typed per setting.
    loader.early_parse(false);
    let mut depth = 0usize;
    for event in Parser::new_from_str(yaml) {
        let (event, span) = event.map_err(|e| syntax(e.info(), e.marker()))?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(syntax(
                        &format!("nested more than {MAX_DEPTH} levels deep"),
                        &span.start,
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        loader.on_event(event, span);
        if let Some(e) = loader.error() {
            return Err(syntax(e.info(), e.marker()));
        }
    }
    Ok(loader.into_documents())
}

fn untag<'a, 'i>(mut node: &'a MarkedYaml<'i>) -> &'a MarkedYaml<'i> {
    while let YamlData::Tagged(_, inner) = &node.data {
        node = inner;
    }
    node
}

/// The text of a scalar node as written.
fn scalar_text<'a>(node: &'a MarkedYaml<'_>) -> Option<&'a str> {
    match &untag(node).data {
        YamlData::Representation(text, _, _) => Some(text),
        YamlData::Value(Scalar::String(text)) => Some(text),
        _ => None,
    }
}

fn is_null(node: &MarkedYaml<'_>) -> bool {
    match &node.data {
        YamlData::Representation(text, style, tag) => matches!(
            Scalar::parse_from_cow_and_metadata(text.clone(), *style, tag.as_ref()),
            Some(Scalar::Null)
        ),
        YamlData::Value(v) => v.is_null(),
        _ => false,
    }
}

fn kind(node: &MarkedYaml<'_>) -> &'static str {
    match &untag(node).data {
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        _ => "a single value",
    }
}

/// Where a node starts, for messages.
fn at(node: &MarkedYaml<'_>) -> String {
    let m = node.span.start;
    format!("line {}, column {}", m.line(), m.col() + 1)
}

/// One setting of the section.
struct Field<'a, 'i> {
    name: String,
    node: &'a MarkedYaml<'i>,
}

/// A scalar typed as YAML 1.2's core schema does, strings after `${VAR}`
/// substitution.
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// A scalar setting: its value, and its text as written (after
/// substitution), for settings that take any scalar as a string.
struct Resolved {
    value: Value,
    text: String,
}

impl Field<'_, '_> {
    fn key(&self) -> String {
        format!("lock_store.{}", self.name)
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::config(self.key(), format!("{}: {problem}", at(self.node)))
    }

    fn scalar(&self, env: Env<'_>) -> Result<Resolved> {
        scalar(self.node, env).map_err(|problem| self.err(problem))
    }

    /// A setting that takes a string; numbers and booleans count as their
    /// text. Empty and null are `None`.
    fn string(&self, env: Env<'_>) -> Result<Option<String>> {
        let r = self.scalar(env)?;
        Ok(match r.value {
            Value::Null => None,
            _ if r.text.is_empty() => None,
            _ => Some(r.text),
        })
    }

    fn port(&self, env: Env<'_>) -> Result<Option<u16>> {
        let r = self.scalar(env)?;
        let port = match r.value {
            Value::Null => return Ok(None),
            Value::Int(i) => check::port_int(i),
            Value::Str(s) => check::port_str(&s),
            Value::Bool(_) | Value::Float(_) => Err(format!(
                "{} is not a port number; write a whole number from 1 to 65535, e.g. 6379",
                r.text
            )),
        };
        port.map(Some).map_err(|p| self.err(p))
    }

    fn db(&self, env: Env<'_>) -> Result<Option<i64>> {
        let r = self.scalar(env)?;
        let db = match r.value {
            Value::Null => return Ok(None),
            Value::Int(i) => check::db_int(i),
            Value::Str(s) => check::db_str(&s),
            Value::Bool(_) | Value::Float(_) => Err(format!(
                "{} is not a database number; write a whole number from 0 up, e.g. 1",
                r.text
            )),
        };
        db.map(Some).map_err(|p| self.err(p))
    }

    fn replicas(&self, env: Env<'_>) -> Result<Option<u32>> {
        let r = self.scalar(env)?;
        let n = match r.value {
            Value::Null => return Ok(None),
            Value::Int(i) => check::replicas_int(i),
            Value::Str(s) => check::replicas_str(&s),
            Value::Bool(_) | Value::Float(_) => Err(format!(
                "{} is not a number of replicas; write a whole number from 0 up, e.g. 1",
                r.text
            )),
        };
        n.map(Some).map_err(|p| self.err(p))
    }

    fn boolean(&self, env: Env<'_>) -> Result<Option<bool>> {
        let r = self.scalar(env)?;
        let b = match r.value {
            Value::Null => return Ok(None),
            Value::Bool(b) => Ok(b),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            Value::Str(s) => check::bool_str(&s),
            Value::Int(_) | Value::Float(_) => {
                Err(format!("{} is not a boolean; write true or false", r.text))
            }
        };
        b.map(Some).map_err(|p| self.err(p))
    }

    fn seconds(&self, env: Env<'_>) -> Result<Option<std::time::Duration>> {
        let r = self.scalar(env)?;
        let d = match r.value {
            Value::Null => return Ok(None),
            // Seconds fit an f64 exactly far beyond any useful timeout.
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => check::seconds(i as f64, &r.text),
            Value::Float(f) => check::seconds(f, &r.text),
            Value::Str(s) => check::seconds_str(&s),
            Value::Bool(_) => Err(format!(
                "{} is not a number of seconds; write e.g. 10 or 0.5",
                r.text
            )),
        };
        d.map(Some).map_err(|p| self.err(p))
    }
}

/// Types a scalar node and substitutes `${VAR}`s in strings.
fn scalar(node: &MarkedYaml<'_>, env: Env<'_>) -> Result<Resolved, String> {
    let node = untag(node);
    let (typed, text) = match &node.data {
        YamlData::Representation(text, style, tag) => {
            let typed = Scalar::parse_from_cow_and_metadata(text.clone(), *style, tag.as_ref())
                .ok_or_else(|| {
                    let tag = tag.as_ref().map_or_else(String::new, |t| {
                        if t.is_yaml_core_schema() {
                            format!("!!{}", t.suffix)
                        } else {
                            t.to_string()
                        }
                    });
                    // The text is not shown: it may be a password.
                    format!("the value does not fit its tag {tag}; remove the tag or fix the value")
                })?;
            (typed, text.to_string())
        }
        YamlData::Value(v) => (v.clone(), String::new()),
        YamlData::Sequence(_) | YamlData::Mapping(_) => {
            return Err(format!(
                "expected a single value, found {}; write the value on the same line",
                kind(node)
            ));
        }
        YamlData::Tagged(..) | YamlData::Alias(_) | YamlData::BadValue => {
            return Err("this value cannot be read; write a plain value".into());
        }
    };
    Ok(match typed {
        Scalar::String(s) => {
            let s = substitute(&s, env)?;
            Resolved {
                value: Value::Str(s.clone()),
                text: s,
            }
        }
        Scalar::Null => Resolved {
            value: Value::Null,
            text,
        },
        Scalar::Boolean(b) => Resolved {
            value: Value::Bool(b),
            text: if text.is_empty() { b.to_string() } else { text },
        },
        Scalar::Integer(i) => Resolved {
            value: Value::Int(i),
            text: if text.is_empty() { i.to_string() } else { text },
        },
        Scalar::FloatingPoint(f) => Resolved {
            value: Value::Float(f.0),
            text: if text.is_empty() {
                f.0.to_string()
            } else {
                text
            },
        },
    })
}

/// Replaces each `${NAME}` with the variable's value.
fn substitute(s: &str, env: Env<'_>) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(
                "`${` without a closing `}`; write ${NAME} to use the environment \
                 variable NAME (a value that must contain `${` can be passed through \
                 a variable)"
                    .into(),
            );
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{name}}}` does not name an environment variable; write ${{NAME}} \
                 with letters, digits and underscores"
            ));
        }
        match env(name) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(format!(
                    "environment variable {name} is not set (referenced as ${{{name}}}); \
                     set it, or write the value here"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The settings of the section, read one by one.
struct Section<'a, 'i, 'e> {
    fields: Vec<Field<'a, 'i>>,
    env: Env<'e>,
    warnings: Vec<Warning>,
}

impl<'a, 'i, 'e> Section<'a, 'i, 'e> {
    fn get(&self, name: &str) -> Option<&Field<'a, 'i>> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// An error about a setting, at its position.
    fn err(&self, name: &str, problem: impl std::fmt::Display) -> Error {
        match self.get(name) {
            Some(f) => f.err(problem),
            None => Error::config(format!("lock_store.{name}"), problem.to_string()),
        }
    }

    /// Applies `read` to the setting if present.
    fn read<T>(
        &self,
        name: &str,
        read: impl FnOnce(&Field<'a, 'i>, Env<'e>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        match self.get(name) {
            Some(f) => read(f, self.env),
            None => Ok(None),
        }
    }

    fn build(mut self) -> Result<(LockStoreConfig, Vec<Warning>)> {
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
    fn key_prefix(&mut self) -> Result<Option<String>> {
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
    fn endpoints(&self) -> Result<Vec<String>> {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::DeploymentMode;

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
        let (config, warnings) =
            parse_ok("lock_store:\n  type: in_memory\n  host: redis\n  port: 1\n");
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
        let (_, warnings) =
            parse_ok("lock_store:\n  type: redis\n  min_replicas_ack_timeout: 0.5\n");
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
        let yaml =
            "lock_store:\n  type: ${STORE}\n  deployment_mode: ${MODE}\n  endpoints: ${NODES}\n";
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
}
