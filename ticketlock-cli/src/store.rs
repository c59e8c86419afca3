//! Building the lock store from the store flags shared by the subcommands.

use std::path::PathBuf;

use clap::Args;
use ticketlock::{LockStore, LockStoreConfig};

/// Which lock store to use. Without either flag: the in-memory store, which
/// serializes only within this process.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Rasa endpoints file whose `lock_store:` section configures the store.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["redis", "postgres"])]
    pub endpoints: Option<PathBuf>,

    /// Redis URL of the store: redis://[user:password@]host[:port][/db], or
    /// rediss:// for TLS.
    #[arg(long, value_name = "URL", conflicts_with = "postgres")]
    pub redis: Option<String>,

    /// PostgreSQL URL of the store:
    /// postgresql://[user:password@]host[:port][/db][?sslmode=require].
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
}

impl StoreArgs {
    /// The configuration the flags name (in-memory without flags).
    pub fn config(&self) -> ticketlock::Result<LockStoreConfig> {
        if let Some(url) = &self.postgres {
            return match LockStoreConfig::from_url(url)? {
                c @ LockStoreConfig::Postgres(_) => Ok(c),
                _ => Err(ticketlock::Error::Config {
                    key: "--postgres".into(),
                    message: "not a postgresql:// URL; write \
                              postgresql://user:password@host:port/db"
                        .into(),
                }),
            };
        }
        match (&self.endpoints, &self.redis) {
            (Some(path), _) => LockStoreConfig::from_endpoints_file(path),
            (None, Some(url)) => LockStoreConfig::from_url(url),
            (None, None) => Ok(LockStoreConfig::InMemory),
        }
    }

    /// Whether a store was named at all.
    pub fn given(&self) -> bool {
        self.endpoints.is_some() || self.redis.is_some() || self.postgres.is_some()
    }

    /// Builds the store (reads `TICKET_LOCK_LIFETIME` for the default
    /// lifetime).
    pub async fn open(&self) -> ticketlock::Result<LockStore> {
        let store = LockStore::create(self.config()?).await?;
        tracing::info!(store = store.describe(), "lock store ready");
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flag_means_the_in_memory_store() {
        let args = StoreArgs::default();
        assert!(!args.given());
        assert_eq!(args.config().unwrap(), LockStoreConfig::InMemory);
    }
}
