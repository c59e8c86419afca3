//! `--layout`: which Redis record layout the store under test uses, set by
//! the URL's `layout=` setting, and `both` to measure each in one run
//! against the same baselines.

use serde::Serialize;
use ticketlock::{LockStoreConfig, RedisConfig};

/// A Redis record layout.
#[derive(clap::ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Rasa's record: one JSON value per conversation (shared with Rasa).
    Rasa,
    /// The store's own layout: keys per conversation in one hash slot.
    Native,
}

/// What `--layout` asks for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutChoice {
    Rasa,
    Native,
    /// Each layout in turn, in the same runs.
    Both,
}

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::Rasa => "rasa",
            Layout::Native => "native",
        }
    }
}

impl LayoutChoice {
    /// The layouts to measure, in order.
    pub(crate) fn layouts(self) -> Vec<Layout> {
        match self {
            LayoutChoice::Rasa => vec![Layout::Rasa],
            LayoutChoice::Native => vec![Layout::Native],
            LayoutChoice::Both => vec![Layout::Rasa, Layout::Native],
        }
    }
}

/// `url` with `layout=<layout>` added to its query.
pub(crate) fn with_layout(url: &str, layout: Layout) -> anyhow::Result<String> {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let given = base.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("layout"))
    });
    anyhow::ensure!(
        !given,
        "--layout and the URL's own layout= setting were both given; keep one"
    );
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{sep}layout={}", layout.name());
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Ok(out)
}

/// The configuration of `url` with its layout set to `layout`.
///
/// A library that knows no `layout` setting has only the Rasa layout: for
/// `rasa` the URL is then read as it is; for `native` its error stands.
pub(crate) fn config(url: &str, layout: Layout) -> anyhow::Result<(LockStoreConfig, RedisConfig)> {
    let parsed = match LockStoreConfig::from_url(&with_layout(url, layout)?) {
        Err(e) if layout == Layout::Rasa && knows_no_layout(&e) => LockStoreConfig::from_url(url),
        other => other,
    }
    .map_err(|e| anyhow::anyhow!("--layout {}: {e}", layout.name()))?;
    let LockStoreConfig::Redis(redis) = &parsed else {
        anyhow::bail!("--layout is only for a Redis URL (redis:// or rediss://)");
    };
    let redis = redis.clone();
    Ok((parsed, redis))
}

/// Whether `e` is the URL parser's refusal of an unknown `layout` setting.
fn knows_no_layout(e: &ticketlock::Error) -> bool {
    e.to_string().contains("unknown setting \"layout\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_goes_in_the_query() {
        assert_eq!(
            with_layout("redis://h:1/0", Layout::Native).unwrap(),
            "redis://h:1/0?layout=native"
        );
        assert_eq!(
            with_layout("redis://h/0?key_prefix=a#x", Layout::Rasa).unwrap(),
            "redis://h/0?key_prefix=a&layout=rasa#x"
        );
        let err = with_layout("redis://h/0?layout=rasa", Layout::Native)
            .unwrap_err()
            .to_string();
        assert!(err.contains("both given"), "{err}");
        assert_eq!(LayoutChoice::Both.layouts(), [Layout::Rasa, Layout::Native]);
    }

    #[test]
    fn the_rasa_layout_reads_the_url_and_native_is_what_the_library_says() {
        let (_, redis) = config("redis://127.0.0.1:7/3", Layout::Rasa).unwrap();
        assert_eq!((redis.port, redis.db), (7, 3));
        // Without a library that knows layouts, `native` is its error about
        // the setting; with one, a configuration.
        match config("redis://127.0.0.1:7/3", Layout::Native) {
            Ok((_, redis)) => assert_eq!(redis.port, 7),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.starts_with("--layout native: ") && e.contains("layout"),
                    "{e}"
                );
            }
        }
        let err = config("memory://", Layout::Rasa).unwrap_err().to_string();
        assert!(
            err.starts_with("--layout rasa: ") && err.contains("memory://"),
            "{err}"
        );
    }
}
