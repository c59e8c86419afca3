//! `ticketlock inspect ID`: one conversation's record, as the store reads it
//! and exactly as it is stored.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ticketlock::TicketLock;

use super::{NOT_FOUND, TicketView, now_serving, open, printable, redis, rfc3339, tickets_at};
use crate::exit;
use crate::store::StoreArgs;

/// Options of `ticketlock inspect`.
#[derive(Debug, Args)]
#[command(
    after_help = "Ticket status (serving, waiting, expired) and the remaining seconds \
                  are judged by the Redis server's clock. Exit status: 0 when the record was \
                  shown, 1 when the conversation has no record (as grep exits 1 when nothing \
                  matched), 65 when the record is corrupt (with --json its raw bytes are still \
                  printed), 69 when the store is unavailable, 78 for a configuration error, \
                  64 for bad usage (also: no --redis/--postgres/--endpoints)."
)]
pub struct InspectArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Print the record as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// The conversation whose record to show.
    #[arg(value_name = "CONVERSATION_ID")]
    pub conversation_id: String,
}

/// The record as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report<'a> {
    conversation_id: &'a str,
    key: &'a str,
    /// The server's time the statuses were judged at, Unix seconds.
    now: f64,
    now_serving: Option<u64>,
    last_issued: Option<u64>,
    epoch: Option<u64>,
    tickets: Vec<TicketView>,
    /// The stored string, exactly.
    raw: &'a str,
}

/// What `--json` prints for a record that cannot be read.
#[derive(Debug, Serialize)]
struct Corrupt<'a> {
    conversation_id: &'a str,
    key: &'a str,
    error: crate::json::ErrorObject,
    /// The stored bytes, invalid UTF-8 replaced; `None` when the key holds
    /// no string at all.
    raw: Option<String>,
}

/// Prints the record; see [`InspectArgs`] for the exit status.
pub async fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let id = args.conversation_id.as_str();
    if id.is_empty() {
        return Err(exit::coded(
            exit::USAGE,
            "inspect: an empty id names no conversation; give the conversation (sender) id",
        ));
    }
    let store = open(&args.store, "inspect").await?;
    let redis = redis(&store)?;
    let key = redis.key_for(id);
    let raw = match redis.raw_record(id).await {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Err(exit::coded_kind(
                NOT_FOUND,
                "no_record",
                format!("inspect: no record for conversation {id:?} (key {key:?})"),
            ));
        }
        Err(e @ ticketlock::Error::CorruptRecord { .. }) => {
            print_corrupt(&args, &key, &e, None)?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    // One read serves both views, so `raw` is exactly what was parsed.
    let lock = match TicketLock::from_record(id, &raw) {
        Ok(lock) => lock,
        Err(why) => {
            let e = ticketlock::Error::CorruptRecord {
                key: key.clone(),
                message: why.to_string(),
            };
            print_corrupt(&args, &key, &e, Some(&raw))?;
            return Err(e.into());
        }
    };
    let now = redis.server_time().await?;
    let tickets = tickets_at(&lock, now);
    let report = Report {
        conversation_id: lock.conversation_id(),
        key: &key,
        now,
        now_serving: now_serving(&tickets),
        last_issued: lock.last_issued(),
        epoch: lock.epoch(),
        tickets,
        // A record that parsed is JSON, hence UTF-8.
        raw: std::str::from_utf8(&raw).unwrap_or_default(),
    };
    if args.json {
        crate::json::print(&report)?;
    } else {
        print!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_corrupt(
    args: &InspectArgs,
    key: &str,
    e: &ticketlock::Error,
    raw: Option<&[u8]>,
) -> anyhow::Result<()> {
    let raw = raw.map(|r| String::from_utf8_lossy(r).into_owned());
    if args.json {
        let corrupt = Corrupt {
            conversation_id: &args.conversation_id,
            key,
            error: crate::json::ErrorObject::new(
                exit::DATA,
                exit::kind_of(exit::DATA),
                &e.to_string(),
            ),
            raw,
        };
        crate::json::print(&corrupt)?;
        crate::json::mark_error_printed();
    } else if let Some(raw) = raw {
        println!("key           {key:?}");
        println!("raw           {}", printable(&raw));
    }
    Ok(())
}

/// The human form: the facts, then one line per ticket, then the raw record.
fn table(r: &Report<'_>) -> String {
    let or_dash = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    let mut out = String::new();
    let _ = writeln!(out, "conversation  {:?}", r.conversation_id);
    let _ = writeln!(out, "key           {:?}", r.key);
    let _ = writeln!(out, "now serving   {}", or_dash(r.now_serving));
    let _ = writeln!(out, "last issued   {}", or_dash(r.last_issued));
    let _ = writeln!(out, "epoch         {}", or_dash(r.epoch));
    let _ = writeln!(
        out,
        "server time   {}",
        rfc3339(r.now).unwrap_or_else(|| r.now.to_string())
    );
    if r.tickets.is_empty() {
        let _ = writeln!(out, "tickets       none");
    } else {
        let _ = writeln!(out, "TICKET  STATUS   EXPIRES (UTC)             REMAINING");
        for t in &r.tickets {
            let _ = writeln!(
                out,
                "{:<6}  {:<7}  {:<24}  {:.3} s",
                t.number,
                t.status.as_str(),
                t.expires_at.as_deref().unwrap_or("-"),
                t.remaining_s
            );
        }
    }
    let _ = writeln!(out, "raw           {}", printable(r.raw));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Status;

    #[test]
    fn the_table_shows_every_fact_and_the_raw_record() {
        let report = Report {
            conversation_id: "c\n1",
            key: "lock:c\n1",
            now: 4_102_444_790.0,
            now_serving: Some(7),
            last_issued: Some(8),
            epoch: None,
            tickets: vec![
                TicketView {
                    number: 7,
                    expires: 4_102_444_800.5,
                    expires_at: rfc3339(4_102_444_800.5),
                    remaining_s: 10.5,
                    status: Status::Serving,
                },
                TicketView {
                    number: 8,
                    expires: 1e300,
                    expires_at: None,
                    remaining_s: -3.25,
                    status: Status::Expired,
                },
            ],
            raw: "{\"x\": \"\u{1b}[2J\"}",
        };
        let text = table(&report);
        assert_eq!(
            text,
            "conversation  \"c\\n1\"\n\
             key           \"lock:c\\n1\"\n\
             now serving   7\n\
             last issued   8\n\
             epoch         -\n\
             server time   2099-12-31T23:59:50.000Z\n\
             TICKET  STATUS   EXPIRES (UTC)             REMAINING\n\
             7       serving  2100-01-01T00:00:00.500Z  10.500 s\n\
             8       expired  -                         -3.250 s\n\
             raw           {\"x\": \"\\u{1b}[2J\"}\n"
        );
    }
}
