//! Building the lock store from the store flags shared by the subcommands,
//! and from the environment.
//!
//! Flags win over variables: `--endpoints`/`--redis`/`--postgres` over
//! `TICKETLOCK_ENDPOINTS`/`TICKETLOCK_REDIS`/`TICKETLOCK_POSTGRES`. A
//! password is best kept out of the URL (which `ps` shows): `--password-file
//! FILE` replaces the configured one (Redis or PostgreSQL),
//! `TICKETLOCK_REDIS_PASSWORD` fills in Redis's when the URL or endpoints
//! file has none.

use std::path::PathBuf;

use clap::Args;
use ticketlock::{LockStore, LockStoreConfig, Secret};

fn config_error(key: &str, message: impl Into<String>) -> ticketlock::Error {
    ticketlock::Error::Config {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The variables read for the store.
pub const REDIS_ENV: &str = "TICKETLOCK_REDIS";
pub const ENDPOINTS_ENV: &str = "TICKETLOCK_ENDPOINTS";
pub const POSTGRES_ENV: &str = "TICKETLOCK_POSTGRES";
pub const PASSWORD_ENV: &str = "TICKETLOCK_REDIS_PASSWORD";

/// Which lock store to use. Without either flag or variable: the in-memory
/// store, which serializes only within this process.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Rasa endpoints file whose `lock_store:` section configures the store
    /// [env: TICKETLOCK_ENDPOINTS].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["redis", "postgres"])]
    pub endpoints: Option<PathBuf>,

    /// Redis URL of the store: redis://[user@]host[:port][/db], or
    /// rediss:// for TLS [env: TICKETLOCK_REDIS]. Give the password with
    /// --password-file or TICKETLOCK_REDIS_PASSWORD rather than in the URL,
    /// which other users see in `ps`.
    #[arg(long, value_name = "URL", conflicts_with = "postgres")]
    pub redis: Option<String>,

    /// PostgreSQL URL of the store:
    /// postgresql://[user@]host[:port][/db][?sslmode=require]
    /// [env: TICKETLOCK_POSTGRES]. Give the password with --password-file
    /// rather than in the URL.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,

    /// Read the store's password from the first line of FILE (it replaces
    /// the one of the URL or endpoints file). Without it, for Redis,
    /// TICKETLOCK_REDIS_PASSWORD gives the password when the URL or file has
    /// none.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Refuse an endpoints file (or URL) with unknown or ignored settings
    /// (exit 78) instead of warning about them.
    #[arg(long)]
    pub strict: bool,
}

/// Where the store's configuration comes from.
enum Source {
    Endpoints(PathBuf),
    /// A Redis URL (`--redis`, `TICKETLOCK_REDIS`).
    Url(String),
    /// A PostgreSQL URL (`--postgres`, `TICKETLOCK_POSTGRES`), and the flag
    /// or variable that gave it, for messages.
    Postgres(String, &'static str),
    None,
}

impl StoreArgs {
    fn source(&self) -> ticketlock::Result<Source> {
        if let Some(path) = &self.endpoints {
            return Ok(Source::Endpoints(path.clone()));
        }
        if let Some(url) = &self.redis {
            return Ok(Source::Url(url.clone()));
        }
        if let Some(url) = &self.postgres {
            return Ok(Source::Postgres(url.clone(), "--postgres"));
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (endpoints, redis, postgres) = (var(ENDPOINTS_ENV), var(REDIS_ENV), var(POSTGRES_ENV));
        let set: Vec<&str> = [
            (ENDPOINTS_ENV, endpoints.is_some()),
            (REDIS_ENV, redis.is_some()),
            (POSTGRES_ENV, postgres.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, is_set)| is_set.then_some(name))
        .collect();
        if set.len() > 1 {
            return Err(config_error(
                set[0],
                format!(
                    "{} {} are set; unset all but one, or give --endpoints, --redis or \
                     --postgres",
                    if set.len() == 2 { "both" } else { "all of" },
                    set.join(" and ")
                ),
            ));
        }
        Ok(match (endpoints, redis, postgres) {
            (Some(path), _, _) => Source::Endpoints(path.into()),
            (None, Some(url), _) => Source::Url(url),
            (None, None, Some(url)) => Source::Postgres(url, POSTGRES_ENV),
            (None, None, None) => Source::None,
        })
    }

    /// The configuration the flags (or variables) name, in-memory without.
    pub fn config(&self) -> ticketlock::Result<LockStoreConfig> {
        let (mut config, warnings, shown) = match self.source()? {
            Source::Endpoints(path) => {
                let (config, warnings) = LockStoreConfig::from_endpoints_file_with_warnings(&path)?;
                (config, warnings, path.display().to_string())
            }
            Source::Url(url) => {
                // `redis://user@host` with the password given apart: put it
                // in before parsing, which refuses a user without one.
                let spliced = match self.password()? {
                    Some(pw) => with_password(&url, &pw),
                    None => None,
                };
                let (config, warnings) =
                    LockStoreConfig::from_url_with_warnings(spliced.as_deref().unwrap_or(&url))?;
                // Never the URL itself: it may hold a password.
                (config, warnings, "the Redis URL".to_string())
            }
            Source::Postgres(url, given_by) => {
                let (config, warnings) = LockStoreConfig::from_url_with_warnings(&url)?;
                if !matches!(config, LockStoreConfig::Postgres(_)) {
                    return Err(config_error(
                        given_by,
                        "not a postgresql:// URL; write postgresql://user@host:port/db",
                    ));
                }
                (config, warnings, "the PostgreSQL URL".to_string())
            }
            Source::None => (LockStoreConfig::InMemory, Vec::new(), String::new()),
        };
        if self.strict && !warnings.is_empty() {
            return Err(config_error(
                &shown,
                format!(
                    "{} (--strict: fix the settings, or drop --strict to only warn)",
                    warnings.join("; ")
                ),
            ));
        }
        for w in &warnings {
            eprintln!("ticketlock: warning: {shown}: {w}");
        }
        match &mut config {
            LockStoreConfig::Redis(redis) => {
                if (self.password_file.is_some() || redis.password.is_none())
                    && let Some(pw) = self.password()?
                {
                    redis.password = Some(Secret::new(pw));
                }
            }
            // TICKETLOCK_REDIS_PASSWORD is Redis's only.
            LockStoreConfig::Postgres(postgres) => {
                if let Some(file) = &self.password_file {
                    postgres.password = Some(Secret::new(read_password(file)?));
                }
            }
            _ if self.password_file.is_some() => {
                return Err(config_error(
                    "--password-file",
                    "it is for a Redis or PostgreSQL store; give --redis, --postgres or \
                     --endpoints (or TICKETLOCK_REDIS / TICKETLOCK_POSTGRES / \
                     TICKETLOCK_ENDPOINTS) as well",
                ));
            }
            _ => {}
        }
        Ok(config)
    }

    /// The password given apart from the URL or file: `--password-file`,
    /// else `TICKETLOCK_REDIS_PASSWORD`.
    fn password(&self) -> ticketlock::Result<Option<String>> {
        if let Some(file) = &self.password_file {
            return read_password(file).map(Some);
        }
        Ok(std::env::var(PASSWORD_ENV).ok().filter(|pw| !pw.is_empty()))
    }

    /// Whether a store was named at all (by a flag or a variable).
    pub fn given(&self) -> bool {
        !matches!(self.source(), Ok(Source::None))
    }

    /// Builds the store (reads `TICKET_LOCK_LIFETIME` for the default
    /// lifetime).
    pub async fn open(&self) -> ticketlock::Result<LockStore> {
        let store = LockStore::create(self.config()?).await?;
        tracing::info!(store = store.describe(), "lock store ready");
        Ok(store)
    }
}

/// `url` with `password` added to its user (`redis://user@host` ->
/// `redis://user:PASSWORD@host`), percent-encoded; `None` when the URL has
/// no user, or a password already.
fn with_password(url: &str, password: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host) = authority.rsplit_once('@')?;
    if user.is_empty() || user.contains(':') {
        return None;
    }
    let mut encoded = String::new();
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Some(format!("{scheme}://{user}:{encoded}@{host}{tail}"))
}

/// The first line of `file`, without its line ending.
fn read_password(file: &std::path::Path) -> ticketlock::Result<String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        config_error(
            "--password-file",
            format!(
                "{}: cannot read it: {e}; check the path and its permissions",
                file.display()
            ),
        )
    })?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(config_error(
            "--password-file",
            format!(
                "{}: the first line is empty; write the password on it",
                file.display()
            ),
        ));
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_put_into_a_url_with_a_user_only() {
        assert_eq!(
            with_password("redis://locker@h:1/0?x=1", "p w@:/").as_deref(),
            Some("redis://locker:p%20w%40%3A%2F@h:1/0?x=1")
        );
        assert_eq!(with_password("redis://h:1/0", "pw"), None);
        assert_eq!(with_password("redis://u:old@h", "pw"), None);
        assert_eq!(with_password("redis://:old@h", "pw"), None);
    }

    #[test]
    fn no_flag_means_the_in_memory_store() {
        // The variables are not read here (the test process may have them).
        let args = StoreArgs::default();
        if [REDIS_ENV, ENDPOINTS_ENV, POSTGRES_ENV]
            .iter()
            .all(|v| std::env::var_os(v).is_none())
        {
            assert!(!args.given());
            assert_eq!(args.config().unwrap(), LockStoreConfig::InMemory);
        }
    }
}
