//! `ticketlock list`: the conversations that have a record, with their
//! queue, found with SCAN (never KEYS, whose cost blocks the server).

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ticketlock::TicketLock;

use super::{
    Records, Status, TicketView, now_serving, open, pattern, printable, redis, tickets_at,
};
use crate::exit;
use crate::store::StoreArgs;

/// How many records are read at once.
const IN_FLIGHT: usize = 32;

/// Options of `ticketlock list`.
#[derive(Debug, Args)]
#[command(
    after_help = "Conversations are listed by id. TICKETS counts live tickets (expired \
                  ones are dropped by the next write and by the record's TTL); SERVING is the \
                  ticket served now, by the Redis server's clock. Exit status: 0, or 65 when a \
                  record is corrupt (the others are still listed), 69 when the store is \
                  unavailable, 78 for a configuration error, 64 for bad usage (also: no \
                  --redis/--postgres/--endpoints)."
)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Print one JSON object per conversation, one per line.
    #[arg(long)]
    pub json: bool,

    /// Show at most N conversations (the first N by id).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// One conversation as `--json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    conversation_id: String,
    key: String,
    /// The tickets, as `inspect` shows them (`None` for a corrupt record).
    tickets: Option<Vec<TicketView>>,
    /// How many of them are live.
    live: Option<usize>,
    /// How many are expired (dropped by the next write).
    expired: Option<usize>,
    now_serving: Option<u64>,
    /// Why the record cannot be read, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Lists the records; see [`ListArgs`] for the exit status.
pub async fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let store = open(&args.store, "list").await?;
    let redis = redis(&store)?;
    let mut ids = store.conversations().await?;
    ids.sort_unstable();
    let total = ids.len();
    if let Some(limit) = args.limit {
        ids.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let now = redis.server_time().await?;

    let mut corrupt: Vec<String> = Vec::new();
    let mut shown = 0;
    for chunk in ids.chunks(IN_FLIGHT) {
        let reads: Vec<_> = chunk
            .iter()
            .map(|id| {
                let (redis, id) = (redis.clone(), id.clone());
                tokio::spawn(async move { read(&redis, &id, now).await })
            })
            .collect();
        for read in reads {
            // A record removed since the scan is skipped.
            let Some(row) = read.await?? else { continue };
            if row.error.is_some() {
                corrupt.push(row.key.clone());
            }
            if args.json {
                crate::json::print(&row)?;
            } else {
                if shown == 0 {
                    println!("TICKETS  SERVING  CONVERSATION");
                }
                println!("{}", line(&row));
            }
            shown += 1;
        }
    }
    if shown == 0 {
        eprintln!(
            "ticketlock: list: no records (keys {:?} of {})",
            pattern(&redis),
            store.describe()
        );
    } else if ids.len() < total {
        eprintln!(
            "ticketlock: list: showed the first {} of {total} conversations (--limit)",
            ids.len()
        );
    }
    if let Some(first) = corrupt.first() {
        return Err(exit::coded(
            exit::DATA,
            format!(
                "list: {} corrupt record(s), the first at key {first:?}; look at them with \
                 `ticketlock inspect` and remove them with `ticketlock clear` if they are not \
                 lock records",
                corrupt.len()
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The row of `id`, `None` when it has no record (any more).
async fn read(redis: &Records, id: &str, now: f64) -> ticketlock::Result<Option<Row>> {
    let key = redis.key_for(id);
    let parsed = match redis.raw_record(id).await {
        Ok(None) => return Ok(None),
        Ok(Some(raw)) => TicketLock::from_record(id, &raw).map_err(|e| e.to_string()),
        Err(ticketlock::Error::CorruptRecord { message, .. }) => Err(message),
        Err(e) => return Err(e),
    };
    Ok(Some(match parsed {
        Ok(lock) => {
            let tickets = tickets_at(&lock, now);
            let expired = tickets
                .iter()
                .filter(|t| t.status == Status::Expired)
                .count();
            Row {
                conversation_id: id.to_string(),
                key,
                live: Some(tickets.len() - expired),
                expired: Some(expired),
                now_serving: now_serving(&tickets),
                tickets: Some(tickets),
                error: None,
            }
        }
        Err(message) => Row {
            conversation_id: id.to_string(),
            key,
            tickets: None,
            live: None,
            expired: None,
            now_serving: None,
            error: Some(message),
        },
    }))
}

fn line(row: &Row) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{:<7}  {:<7}  {}",
        or_dash(row.live.map(|n| n.to_string())),
        or_dash(row.now_serving.map(|n| n.to_string())),
        printable(&row.conversation_id)
    );
    if let Some(e) = &row.error {
        line.push_str(&format!("  (corrupt record: {})", printable(e)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_dashes_for_what_is_unknown() {
        let mut row = Row {
            conversation_id: "a\tb".into(),
            key: "lock:a\tb".into(),
            tickets: None,
            live: Some(2),
            expired: Some(1),
            now_serving: Some(10),
            error: None,
        };
        assert_eq!(line(&row), "2        10       a\\u{9}b");
        row.live = Some(0);
        row.now_serving = None;
        assert_eq!(line(&row), "0        -        a\\u{9}b");
        row.live = None;
        row.error = Some("not JSON".into());
        assert_eq!(
            line(&row),
            "-        -        a\\u{9}b  (corrupt record: not JSON)"
        );
    }
}
