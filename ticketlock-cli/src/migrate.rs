//! `ticketlock migrate`: creates or upgrades the PostgreSQL store's schema
//! (tables, sequence, functions), for deployments whose application user
//! may not create them on first use.

use std::process::ExitCode;

use clap::Args;
use ticketlock::{LockStoreConfig, PostgresLockStore};

use crate::exit;
use crate::store::StoreArgs;

/// Options of `ticketlock migrate`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Creates the ticketlock_* tables, sequence and functions in the database \
    the PostgreSQL store names (--postgres URL, or --endpoints FILE with a postgresql \
    lock_store), or upgrades them; does nothing when they are current. Run it as a user \
    that may create them; the store then needs only to use them. Exit status 0 on success, \
    64/78 for bad options or configuration, 69 when the server cannot be reached."
)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs the migration.
pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let LockStoreConfig::Postgres(config) = args.store.config()? else {
        return Err(exit::coded(
            exit::USAGE,
            "migrate: only the PostgreSQL store has a schema; give --postgres URL or \
             --endpoints FILE with a postgresql lock_store",
        ));
    };
    if PostgresLockStore::migrate(&config).await? {
        println!(
            "created or upgraded the ticketlock schema in {}",
            config.describe()
        );
    } else {
        println!(
            "the ticketlock schema in {} is up to date",
            config.describe()
        );
    }
    Ok(ExitCode::SUCCESS)
}
