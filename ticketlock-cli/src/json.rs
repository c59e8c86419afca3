//! The one JSON style of every `--json` output, applied in one place.
//!
//! Every subcommand prints its JSON through [`print`], which enforces the
//! style documented in the README ("JSON output"):
//!
//! - one object per line (`list` prints one per conversation; the others one);
//! - every duration is a whole number of microseconds, its name ending in
//!   `_us`: a field measured in seconds (`lifetime_s`) or milliseconds
//!   (`max_ms`) is converted and renamed, and an object of percentiles in
//!   one (`wait_ms: {"p50": ..}`) becomes fields of its parent
//!   (`wait_p50_us`);
//! - rates end in `_per_s` (never converted); other fractional numbers are
//!   rounded to 3 decimals, except timestamps (`expires`, `now`: Unix
//!   seconds, exactly as stored or read);
//! - a failed command prints `{"error": {"exit_code", "kind", "message"}}`
//!   ([`error`]), besides its line on stderr.
//!
//! Sources keep the units natural to them; the style is the printer's job,
//! so that no subcommand can drift from it.

use serde::Serialize;
use serde_json::{Map, Number, Value};

/// Fields that hold timestamps: printed as they are.
const TIMESTAMPS: &[&str] = &["expires", "now"];

/// Prints `value` as one line of JSON in the house style.
pub fn print(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", line(value)?);
    Ok(())
}

/// `value` as one line of JSON in the house style.
pub fn line(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&styled(serde_json::to_value(
        value,
    )?))?)
}

/// The error object a failed command prints under `--json`.
pub fn error(exit_code: u8, kind: &str, message: &str) -> String {
    serde_json::json!({ "error": ErrorObject::new(exit_code, kind, message) }).to_string()
}

/// The `error` member of a failure's JSON.
#[derive(Debug, Serialize)]
pub struct ErrorObject {
    pub exit_code: u8,
    /// What kind of failure, from the exit status: `usage`, `corrupt_record`,
    /// `unavailable`, `conflict`, `config`, `no_record`, `failure`, ...
    pub kind: String,
    pub message: String,
}

impl ErrorObject {
    pub fn new(exit_code: u8, kind: &str, message: &str) -> Self {
        ErrorObject {
            exit_code,
            kind: kind.to_string(),
            message: message.to_string(),
        }
    }

    /// The object for `e`, as the command-line reports it.
    pub fn of(e: &anyhow::Error) -> Self {
        let code = crate::exit::code_of(e);
        ErrorObject::new(
            code,
            crate::exit::kind_of_error(e),
            &crate::exit::chain_line(e),
        )
    }
}

static ERROR_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes that the command printed its failure as JSON itself (with more
/// than the error object, e.g. `inspect`'s raw bytes of a corrupt record).
pub fn mark_error_printed() {
    ERROR_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`mark_error_printed`] was called.
pub fn error_printed() -> bool {
    ERROR_PRINTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Applies the style to a whole value.
pub fn styled(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(styled_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(styled).collect()),
        Value::Number(n) => rounded(&n),
        other => other,
    }
}

fn styled_map(map: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        if TIMESTAMPS.contains(&key.as_str()) {
            out.insert(key, value);
            continue;
        }
        let Some((stem, per_us)) = duration_field(&key) else {
            out.insert(key, styled(value));
            continue;
        };
        match value {
            // `wait_ms: {"p50": 1.5}` -> `wait_p50_us: 1500`.
            Value::Object(inner) if inner.values().all(Value::is_number) => {
                for (k, v) in inner {
                    out.insert(format!("{stem}_{k}_us"), micros(&v, per_us));
                }
            }
            Value::Array(items) => {
                let items = items.iter().map(|v| micros(v, per_us)).collect();
                out.insert(format!("{stem}_us"), Value::Array(items));
            }
            v @ Value::Number(_) => {
                out.insert(format!("{stem}_us"), micros(&v, per_us));
            }
            other => {
                out.insert(format!("{stem}_us"), styled(other));
            }
        }
    }
    out
}

/// A duration field's stem and how many microseconds its unit is.
fn duration_field(key: &str) -> Option<(&str, f64)> {
    if key.ends_with("_per_s") {
        return None;
    }
    for (suffix, per_us) in [("_us", 1.0), ("_ms", 1e3), ("_s", 1e6)] {
        if let Some(stem) = key.strip_suffix(suffix)
            && !stem.is_empty()
        {
            return Some((stem, per_us));
        }
    }
    None
}

/// A number in some unit as whole microseconds (other values as they are).
fn micros(value: &Value, per_us: f64) -> Value {
    match value.as_f64() {
        Some(v) if v.is_finite() => {
            let us = (v * per_us).round();
            if us >= 0.0 && us < u64::MAX as f64 {
                Value::from(us as u64)
            } else if us < 0.0 && us > i64::MIN as f64 {
                Value::from(us as i64)
            } else {
                Value::from(us)
            }
        }
        _ => value.clone(),
    }
}

/// Integers as they are; other numbers to 3 decimals.
fn rounded(n: &Number) -> Value {
    if n.is_i64() || n.is_u64() {
        return Value::Number(n.clone());
    }
    match n.as_f64() {
        Some(f) => {
            let r = (f * 1000.0).round() / 1000.0;
            Number::from_f64(r).map_or(Value::Null, Value::Number)
        }
        None => Value::Number(n.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_become_whole_microseconds_and_other_floats_are_rounded() {
        let v = styled(json!({
            "lifetime_s": 0.5,
            "elapsed_s": 3.045_301_911_999_999_8,
            "handoff_p50_us": 12.6,
            "wait_ms": {"p50": 1.25, "p99": 2.0, "max": 3.5},
            "work_ms": [10, 20],
            "throughput_msg_per_s": 1_234.567_89,
            "ratio": 0.987_654,
            "expires": 1_795_892_618.747_127_5,
            "seed": 42,
            "nested": [{"max_ms": 0.001}],
        }));
        assert_eq!(
            v,
            json!({
                "lifetime_us": 500_000,
                "elapsed_us": 3_045_302,
                "handoff_p50_us": 13,
                "wait_p50_us": 1250,
                "wait_p99_us": 2000,
                "wait_max_us": 3500,
                "work_us": [10_000, 20_000],
                "throughput_msg_per_s": 1234.568,
                "ratio": 0.988,
                "expires": 1_795_892_618.747_127_5,
                "seed": 42,
                "nested": [{"max_us": 1}],
            })
        );
    }

    #[test]
    fn negative_durations_stay_negative() {
        assert_eq!(
            styled(json!({"remaining_s": -1.5})),
            json!({"remaining_us": -1_500_000})
        );
    }

    #[test]
    fn the_error_object_has_code_kind_and_message() {
        let v: Value = serde_json::from_str(&error(69, "unavailable", "down")).unwrap();
        assert_eq!(
            v,
            json!({"error": {"exit_code": 69, "kind": "unavailable", "message": "down"}})
        );
    }
}
