//! Fencing tokens: a write under the lock that the database itself
//! refuses when a newer holder already wrote, so a holder whose lease ran
//! out (a long pause, a partition) cannot overwrite newer work.
//!
//! Each guard's token is strictly greater than every earlier holder's of
//! the conversation. The row keeps the last token that wrote it, and the
//! write is conditional on it:
//!
//! ```sql
//! UPDATE conversations SET state = $1, last_token = $2
//!  WHERE id = $3 AND last_token < $2
//! ```
//!
//! No row updated means a newer holder wrote first: the work is dropped.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/1 \
//! DATABASE_URL='host=127.0.0.1 user=postgres dbname=app' \
//!     cargo run --example fencing_postgres
//! ```

use std::time::Duration;

use ticketlock::{LockStore, RedisConfig, RedisLockStore};
use tokio_postgres::NoTls;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/1".into());
    let store: LockStore =
        RedisLockStore::from_connection_info(redis_url.as_str(), &RedisConfig::default())
            .await?
            .into();
    let database = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".into());
    let (db, connection) = tokio_postgres::connect(&database, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("database connection: {e}");
        }
    });
    db.batch_execute(
        "CREATE TABLE IF NOT EXISTS conversations (
             id text PRIMARY KEY,
             state text NOT NULL,
             last_token bigint NOT NULL
         );
         INSERT INTO conversations VALUES ('sender-42', '', -1) ON CONFLICT DO NOTHING",
    )
    .await?;

    let guard = store
        .lock("sender-42")
        .lifetime(Duration::from_secs(30))
        .await?;
    let token = i64::try_from(guard.fencing_token())?;
    // ... the work under the lock, which may take longer than the lease ...
    let state = format!("handled under token {token}");
    let written = db
        .execute(
            "UPDATE conversations SET state = $1, last_token = $2 \
             WHERE id = $3 AND last_token < $2",
            &[&state, &token, &"sender-42"],
        )
        .await?;
    if written == 1 {
        println!("written with token {token}");
        guard.release().await?;
    } else {
        // A newer holder wrote: this one's lease had run out. Its result
        // is stale and was refused by the database, not merged.
        println!("refused: a holder newer than token {token} wrote first");
    }
    Ok(())
}
