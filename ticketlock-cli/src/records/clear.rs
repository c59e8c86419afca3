//! `ticketlock clear`: removes one record, or every record of this store's
//! key prefix and database, and nothing else.
//!
//! Records are found with SCAN on this store's own pattern (`lock:*` or
//! `<prefix>:lock:*`) and each is removed as `delete_lock` does, so that its
//! waiters learn that their tickets are gone. Keys of other prefixes, other
//! databases or other programs are never named.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{NOT_FOUND, open, pattern, redis};
use crate::exit;
use crate::store::StoreArgs;

/// Options of `ticketlock clear`.
#[derive(Debug, Args)]
#[command(
    after_help = "Waiters of a removed record fail at their next look (their ticket \
                  is gone); a holder learns it at its next renewal. Exit status: 0 when \
                  removed (with --all also when there was nothing to remove), 1 when \
                  CONVERSATION_ID has no record or --all was not confirmed, 69 when the \
                  store is unavailable, 78 for a configuration error, 64 for bad usage \
                  (also: no --redis/--postgres/--endpoints, or --all without --yes when stdin is not a \
                  terminal)."
)]
pub struct ClearArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Remove every record of this store's key prefix and database (asks
    /// first on a terminal).
    #[arg(long, conflicts_with = "conversation_id")]
    pub all: bool,

    /// Do not ask before removing every record (needed for --all when stdin
    /// is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print what was removed as one JSON object: `{"removed": N, "keys": [..]}`.
    #[arg(long)]
    pub json: bool,

    /// The conversation whose record to remove.
    #[arg(value_name = "CONVERSATION_ID", required_unless_present = "all")]
    pub conversation_id: Option<String>,
}

/// Removes the record(s); see [`ClearArgs`] for the exit status.
pub async fn run(args: ClearArgs) -> anyhow::Result<ExitCode> {
    match &args.conversation_id {
        Some(id) => clear_one(&args, id).await,
        None => clear_all(&args).await,
    }
}

async fn clear_one(args: &ClearArgs, id: &str) -> anyhow::Result<ExitCode> {
    if id.is_empty() {
        return Err(exit::coded(
            exit::USAGE,
            "clear: an empty id names no conversation; give the conversation (sender) id, \
             or --all",
        ));
    }
    let store = open(&args.store, "clear").await?;
    let redis = redis(&store)?;
    let key = redis.key_for(id);
    if redis.remove_record(id).await? {
        if args.json {
            crate::json::print(&Removed {
                removed: 1,
                keys: vec![key],
            })?;
        } else {
            println!("removed the record of conversation {id:?} (key {key:?})");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Err(exit::coded_kind(
            NOT_FOUND,
            "no_record",
            format!("clear: no record for conversation {id:?} (key {key:?})"),
        ))
    }
}

async fn clear_all(args: &ClearArgs) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        return Err(exit::coded(
            exit::USAGE,
            "clear --all: stdin is not a terminal, so nobody can confirm; pass --yes to remove \
             every record of this store",
        ));
    }
    let store = open(&args.store, "clear").await?;
    let redis = redis(&store)?;
    let scope = format!("keys {:?} of {}", pattern(&redis), store.describe());
    let ids = store.conversations().await?;
    if ids.is_empty() {
        if args.json {
            crate::json::print(&Removed::default())?;
        } else {
            println!("no records to remove ({scope})");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&format!("remove {} record(s) ({scope})?", ids.len())).await? {
        return Err(exit::coded_kind(
            exit::FAILURE,
            "not_confirmed",
            "clear: not confirmed; nothing removed",
        ));
    }
    let mut removed = Removed::default();
    for id in &ids {
        // Counted only when it was still there: one may have expired since
        // the scan.
        if redis.remove_record(id).await? {
            removed.removed += 1;
            removed.keys.push(redis.key_for(id));
        }
    }
    if args.json {
        crate::json::print(&removed)?;
    } else {
        println!("removed {} record(s) ({scope})", removed.removed);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `--json` prints.
#[derive(Debug, Default, serde::Serialize)]
struct Removed {
    removed: usize,
    /// The keys removed.
    keys: Vec<String>,
}

/// Asks `question` on the terminal; true for `y` or `yes`.
async fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("ticketlock: clear --all: {question} [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await?
    .context("clear --all: cannot read the answer from stdin")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
