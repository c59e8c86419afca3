//! The schema: tables and functions, created on first use or by
//! `ticketlock migrate`, and its version.
//!
//! The whole migration is one transaction under an advisory lock, so two
//! processes starting at once do not race, and a failed migration leaves
//! nothing half made. Functions are replaced (`CREATE OR REPLACE`), so a
//! newer ticketlock upgrades them in place; tables of an older version are
//! altered in place by `sql/upgrade.sql`, keeping their live tickets.
//!
//! Versions: 1, a row per conversation keyed by its epoch and a row per
//! ticket; 2, the row keyed by the id's digest and holding short queues
//! itself (`sql/schema.sql`); 3, the same tables, with the functions that
//! answer in one array (`ticketlock_issue_packed`, ...). The version rose
//! for the functions alone so that a build of version 2, which would
//! replace them with its own (and break this build's calls), refuses the
//! schema instead ("upgrade ticketlock").

use tokio_postgres::error::SqlState;

use super::connection::Connector;
use crate::{Error, Result};

/// The version this build writes and expects.
pub(crate) const VERSION: i32 = 3;

/// An arbitrary key of the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x7469_636b_6574_6c6b; // "ticketlk"

/// Drops this schema's functions first: `CREATE OR REPLACE` cannot
/// change a function's parameters or result.
const DROP_FUNCTIONS: &str = r"DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.proname LIKE 'ticketlock\_%' AND n.nspname = current_schema()
    LOOP
        EXECUTE 'DROP FUNCTION ' || f;
    END LOOP;
END $$";

const FILES: &[&str] = &[
    include_str!("sql/upgrade.sql"),
    include_str!("sql/schema.sql"),
    include_str!("sql/common.sql"),
    include_str!("sql/issue.sql"),
    include_str!("sql/try_acquire.sql"),
    include_str!("sql/release.sql"),
    include_str!("sql/renew.sql"),
    include_str!("sql/check.sql"),
    include_str!("sql/update.sql"),
    include_str!("sql/save.sql"),
    include_str!("sql/delete.sql"),
];

/// A checksum of the SQL this build installs (FNV-1a, as a bigint).
fn checksum() -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in FILES.iter().flat_map(|f| f.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// The installed version and checksum: `None` when the schema is missing.
pub(crate) async fn installed(
    client: &tokio_postgres::Client,
    c: &Connector,
) -> Result<Option<(i32, i64)>> {
    match client
        .query_typed_opt(
            "SELECT version, checksum FROM ticketlock_schema LIMIT 1",
            &[],
        )
        .await
    {
        Ok(row) => Ok(row.map(|r| (r.get(0), r.get(1)))),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(c.error(e)),
    }
}

/// Creates or upgrades the schema. Returns whether anything was done.
pub(crate) async fn migrate(client: &tokio_postgres::Client, c: &Connector) -> Result<bool> {
    let from = installed(client, c).await?;
    if let Some((v, sum)) = from {
        if v > VERSION {
            return Err(newer(v));
        }
        if v == VERSION && sum == checksum() {
            return Ok(false);
        }
    }
    let mut sql =
        format!("BEGIN;\nSELECT pg_advisory_xact_lock({MIGRATION_LOCK});\n{DROP_FUNCTIONS};\n");
    for f in FILES {
        sql.push_str(f);
        sql.push_str(";\n");
    }
    sql.push_str(&format!(
        "DELETE FROM ticketlock_schema;\nINSERT INTO ticketlock_schema VALUES ({VERSION}, {});\nCOMMIT;",
        checksum()
    ));
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(true),
        Err(e) => {
            // Leave the connection usable for the caller's next statement.
            let _ = client.batch_execute("ROLLBACK").await;
            let what = match from {
                Some((v, _)) if v < VERSION => {
                    format!("upgrading the ticketlock schema from version {v} to {VERSION}")
                }
                Some(_) => "replacing the ticketlock functions".to_string(),
                None => "creating the ticketlock schema".to_string(),
            };
            Err(match c.error(e) {
                // A privilege refused: the message says to run `ticketlock
                // migrate`; say what was being done.
                Error::Config { key, message } => {
                    Error::config(key, format!("{what} failed: {message}"))
                }
                Error::Unavailable { message, .. } if !message.contains("connection") => {
                    Error::config(
                        "lock_store",
                        format!(
                            "{what} failed ({message}); run `ticketlock migrate` as a user \
                             that may create and alter tables and functions in this \
                             database (the owner of the ticketlock_* tables)"
                        ),
                    )
                }
                other => other,
            })
        }
    }
}

fn newer(v: i32) -> Error {
    Error::config(
        "lock_store",
        format!(
            "the database holds ticketlock schema version {v}, newer than this build's \
             {VERSION}; upgrade ticketlock"
        ),
    )
}

/// Checks the schema on connecting, creating it when missing or older.
pub(crate) async fn ensure(client: &tokio_postgres::Client, c: &Connector) -> Result<()> {
    match installed(client, c).await? {
        Some((v, sum)) if v == VERSION && sum == checksum() => Ok(()),
        Some((v, _)) if v > VERSION => Err(newer(v)),
        _ => migrate(client, c).await.map(drop),
    }
}
