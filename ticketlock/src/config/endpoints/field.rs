//! One setting of the `lock_store:` section: its scalar typed as YAML 1.2's
//! core schema does, after `${VAR}` substitution, and read as the type the
//! setting takes.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Env;
use super::yaml::{at, kind, untag};
use crate::config::check;
use crate::{Error, Result};

/// One setting of the section.
pub(super) struct Field<'a, 'i> {
    pub(super) name: String,
    pub(super) node: &'a MarkedYaml<'i>,
}

/// A scalar typed as YAML 1.2's core schema does, strings after `${VAR}`
/// substitution.
pub(super) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// A scalar setting: its value, and its text as written (after
/// substitution), for settings that take any scalar as a string.
pub(super) struct Resolved {
    pub(super) value: Value,
    pub(super) text: String,
}

impl Field<'_, '_> {
    pub(super) fn key(&self) -> String {
        format!("lock_store.{}", self.name)
    }

    pub(super) fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::config(self.key(), format!("{}: {problem}", at(self.node)))
    }

    pub(super) fn scalar(&self, env: Env<'_>) -> Result<Resolved> {
        scalar(self.node, env).map_err(|problem| self.err(problem))
    }

    /// A setting that takes a string; numbers and booleans count as their
    /// text. Empty and null are `None`.
    pub(super) fn string(&self, env: Env<'_>) -> Result<Option<String>> {
        let r = self.scalar(env)?;
        Ok(match r.value {
            Value::Null => None,
            _ if r.text.is_empty() => None,
            _ => Some(r.text),
        })
    }

    pub(super) fn port(&self, env: Env<'_>) -> Result<Option<u16>> {
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

    pub(super) fn db(&self, env: Env<'_>) -> Result<Option<i64>> {
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

    pub(super) fn replicas(&self, env: Env<'_>) -> Result<Option<u32>> {
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

    pub(super) fn boolean(&self, env: Env<'_>) -> Result<Option<bool>> {
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

    pub(super) fn seconds(&self, env: Env<'_>) -> Result<Option<std::time::Duration>> {
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
pub(super) fn scalar(node: &MarkedYaml<'_>, env: Env<'_>) -> Result<Resolved, String> {
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
pub(super) fn substitute(s: &str, env: Env<'_>) -> Result<String, String> {
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
