//! The command line: global options and the subcommands.
//!
//! Each subcommand's options live in its own module; adding one is a variant
//! here and a module (plus its line in `app.rs`).

use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

use crate::records::{clear, inspect, list};
use crate::{bench, demo, exec, migrate, shell, torture};

/// Fair FIFO per-conversation locks, compatible with Rasa's lock store.
#[derive(Debug, Parser)]
#[command(name = "ticketlock", version, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace. Without
    /// it the level comes from RUST_LOG, else `error`.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate chat traffic under conversation locks and verify that every
    /// conversation's messages were handled one at a time, in arrival order.
    Demo(demo::DemoArgs),
    /// Run a command while holding a conversation's lock (like flock(1)).
    Run(exec::RunArgs),
    /// Show a conversation's record: who is served, each ticket's expiry,
    /// and the record exactly as stored.
    Inspect(inspect::InspectArgs),
    /// List the conversations that have a record, with their queues.
    List(list::ListArgs),
    /// Remove a conversation's record, or every record of this store.
    Clear(clear::ClearArgs),
    /// Measure a store against its baseline (throughput, contention, hand-off, memory).
    Bench(bench::BenchArgs),
    /// Create or upgrade the PostgreSQL store's schema.
    Migrate(migrate::MigrateArgs),
    /// Torture test: P processes x T tasks on K conversations of one Redis,
    /// every critical section checked; see RELIABILITY.md.
    Torture(torture::TortureArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff), of `ticketlock` or of one subcommand.
    Man(shell::ManArgs),
}

impl Command {
    /// Whether `--json` was given (a failure is then also printed as a JSON
    /// error object on stdout).
    pub fn json(&self) -> bool {
        match self {
            Command::Demo(a) => a.json,
            Command::Run(_) => false,
            Command::Inspect(a) => a.json,
            Command::List(a) => a.json,
            Command::Clear(a) => a.json,
            Command::Bench(a) => a.json,
            Command::Torture(a) => a.json,
            Command::Migrate(_) | Command::Completions(_) | Command::Man(_) => false,
        }
    }
}

/// Parses a number of seconds (`1`, `0.25`) that may be zero.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds; write e.g. 30 or 0.5"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "{s:?} is not a number of seconds; write a non-negative number, e.g. 30 or 0.5"
        ));
    }
    Duration::try_from_secs_f64(v).map_err(|_| format!("{s:?} seconds is too long"))
}

/// Parses a number of seconds greater than zero.
pub fn positive_seconds(s: &str) -> Result<Duration, String> {
    let d = seconds(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be greater than zero, e.g. 30 or 0.5"));
    }
    Ok(d)
}

/// Parses a lease lifetime: seconds, at least the library's shortest.
pub fn lifetime_seconds(s: &str) -> Result<Duration, String> {
    let d = positive_seconds(s)?;
    if d < ticketlock::MIN_LIFETIME {
        return Err(format!(
            "{s:?} is shorter than the shortest lifetime, {} (a waiter could not keep its \
             ticket alive between two looks); write e.g. 30 or 0.5",
            crate::units::human(ticketlock::MIN_LIFETIME)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        for bad in ["", "abc", "-1", "NaN", "inf", "1e300"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert!(positive_seconds("0").is_err());
        assert_eq!(positive_seconds("2"), Ok(Duration::from_secs(2)));
    }
}
