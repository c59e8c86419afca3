//! `ticketlock torture`: P processes × T tasks on K conversations of one
//! Redis, every critical section checked by a witness that does not trust
//! the lock, and a checker over what every process recorded.
//!
//! Hidden from the top-level help (it is a test instrument, not a tool for
//! a deployment), documented here, in its own `--help` and in RELIABILITY.md.
//!
//! # How a run goes
//! - The *coordinator* (the command as typed) spawns P *workers*: this same
//!   program with `torture --worker N`. Each worker opens one store (one
//!   command connection and one pub/sub connection, as an application
//!   would) and runs T tasks. Task `k` of worker `w` handles its messages
//!   one after the other until the run's deadline; message `m` goes to the
//!   conversation the seed picks for `(w, k, m)`, so every process and the
//!   checker agree on the plan without talking.
//! - Handling a message: take the conversation's lock, enter the critical
//!   section (take the *witness*, note the time), work for the planned
//!   time, write the holder's fencing token to the *downstream store*,
//!   leave (note the time, drop the witness), release the lock.
//! - Every step is one JSON line on the worker's stdout (see `event.rs`),
//!   written at once, so a worker killed with SIGKILL has told everything up
//!   to its death. The coordinator reads them all, may SIGKILL workers at
//!   random moments (`--kills`; every other kill strikes the next worker
//!   to enter a section, as soon as it says so, so that holders die inside
//!   their sections; each victim is replaced by a fresh worker), and at the
//!   end runs the checker
//!   (`check.rs`) and prints the figures (`--json` for one JSON object).
//!
//! # The witness and the downstream store
//! Both are files in the run's directory, independent of Redis, so they keep
//! telling the truth while Redis is killed, restarted or stalled:
//! - the witness of conversation c is an exclusive `flock` on
//!   `witness/c`, taken without waiting on entry: if another holder has it,
//!   two sections overlap. The kernel drops the lock of a killed process at
//!   its death, exactly when it stops acting (a Redis counter would stay
//!   incremented by a killed holder, and be forgotten by a restarted Redis).
//! - the downstream store of conversation c (`downstream/c`) keeps the
//!   highest fencing token written so far and refuses a lower one, as a
//!   database guarding itself with fencing tokens would.
//!
//! # Clock
//! Times are nanoseconds of the host's `CLOCK_MONOTONIC`, one clock shared
//! by every process on the machine (not Redis `TIME`: the server may be
//! down or stalled exactly when a time is needed). Runs are therefore on
//! one host; the Redis server may be elsewhere.
//!
//! # Retries
//! A message whose lock could not be taken with a transient error
//! (unavailable store, acquire timeout, or its ticket lost while it waited)
//! is tried again with a new ticket, after a short backoff, up to
//! `--max-attempts` and until `--grace` after the deadline; every retry is
//! counted by kind, and a message that runs out of tries is reported failed
//! with the last error kind. Once a message entered its section it is never
//! tried again (handled at most once); an error releasing it is recorded
//! on that section.
//!
//! # Fault log
//! Faults injected from outside (Redis killed, stalled, connections
//! dropped) are told to the checker through `--fault-log FILE`: one line
//! per event, `<CLOCK_MONOTONIC ns> <begin|end|at> <name>`. `begin`/`end`
//! of one name bound a window (an unmatched `begin` lasts to the end of
//! the run); `at` is an instant. The name `data-loss` marks the moment the
//! lock records vanished (a Redis without persistence killed): an overlap
//! between a holder from before it and one after is reported as explained
//! by data loss, not as a violation. Waits during and shortly after a
//! window are allowed to be longer (see `check.rs`).

#[cfg(unix)]
mod check;
#[cfg(unix)]
mod clock;
#[cfg(unix)]
mod coordinator;
#[cfg(unix)]
mod event;
#[cfg(unix)]
mod files;
#[cfg(unix)]
mod plan;
#[cfg(unix)]
mod rules;
#[cfg(unix)]
mod verdict;
#[cfg(unix)]
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::cli::{positive_seconds, seconds};
use crate::store::StoreArgs;

/// The environment variable that hands the Redis URL to the workers (not
/// their command line, which `ps` shows to every user).
const REDIS_URL_ENV: &str = "TICKETLOCK_TORTURE_REDIS";
/// As [`REDIS_URL_ENV`], for `--postgres`.
const POSTGRES_URL_ENV: &str = "TICKETLOCK_TORTURE_POSTGRES";

/// Options of `ticketlock torture`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Runs P processes x T tasks on K conversations of one Redis and checks \
    every critical section with a flock witness and a fencing-token store, then prints the \
    figures. Exit status 0 when every check passed, 1 when one failed, 69 when Redis cannot \
    be reached, 64/78 for bad options or configuration. See RELIABILITY.md."
)]
pub struct TortureArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Worker processes.
    #[arg(long, value_name = "P", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub processes: u32,

    /// Tasks in each worker process.
    #[arg(long, value_name = "T", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub tasks: u32,

    /// Conversations the messages go to.
    #[arg(long, value_name = "K", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conversations: u32,

    /// How long tasks keep taking new messages, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_seconds)]
    pub duration: Duration,

    /// Lock lifetime in seconds (no section renews; see --overrun-percent).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = positive_seconds)]
    pub lifetime: Duration,

    /// Shortest handling time of a message, in milliseconds.
    #[arg(long = "work-min-ms", value_name = "MS", default_value_t = 0)]
    pub work_min_ms: u64,

    /// Longest handling time of a message, in milliseconds (below the
    /// lifetime).
    #[arg(long = "work-max-ms", value_name = "MS", default_value_t = 5)]
    pub work_max_ms: u64,

    /// Percentage of sections that run 1.5 lifetimes without renewing, then
    /// write downstream, ask is_held, try to renew and release: each must
    /// learn it lost the lock, and its write must be refused when a newer
    /// holder wrote first.
    #[arg(long = "overrun-percent", value_name = "PCT", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub overrun_percent: u32,

    /// SIGKILL this many workers at random moments of the run (every other
    /// one strikes the next worker to enter a section, while it is inside),
    /// each replaced by a new worker.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub kills: u32,

    /// Give up taking a lock after this long (then retry), in seconds.
    #[arg(long = "acquire-timeout", value_name = "SECS", default_value = "10",
          value_parser = positive_seconds)]
    pub acquire_timeout: Duration,

    /// Attempts per message before it is reported failed.
    #[arg(long = "max-attempts", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// How long after the deadline messages in flight may still be retried,
    /// in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub grace: Duration,

    /// Longest acceptable gap, per hand-over, between a release and the
    /// next waiter's entry, in seconds; a conversation idle with waiters
    /// longer than this (plus a lifetime per killed holder or waiter, plus
    /// fault windows) is a violation.
    #[arg(long = "stall-slack", value_name = "SECS", default_value = "0.5",
          value_parser = positive_seconds)]
    pub stall_slack: Duration,

    /// Fault events injected from outside, one per line:
    /// `<CLOCK_MONOTONIC ns> <begin|end|at> <name>` (`data-loss` marks lost
    /// records). Created empty if missing; read at the end.
    #[arg(long = "fault-log", value_name = "FILE")]
    pub fault_log: Option<PathBuf>,

    /// Directory for the run's witness and downstream files, worker logs
    /// and `events.jsonl` (every event of the run, for a post-mortem).
    /// Default: a new one in the temp dir, removed after a verified run in
    /// which no message was given up.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Seed of the plan and of the kill schedule, to repeat a run.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Internal: run as worker N of a coordinator.
    #[arg(long, value_name = "N", hide = true)]
    pub worker: Option<u32>,

    /// Internal: the run's id (conversation ids are `torture-<id>-<k>`).
    #[arg(long = "run-id", value_name = "ID", hide = true)]
    pub run_id: Option<String>,

    /// Internal: the deadline, in CLOCK_MONOTONIC ns.
    #[arg(long = "deadline-ns", value_name = "NS", hide = true)]
    pub deadline_ns: Option<u64>,
}

/// Runs the coordinator, or a worker when `--worker` is given.
#[cfg(unix)]
pub async fn run(args: TortureArgs) -> anyhow::Result<ExitCode> {
    match args.worker {
        Some(index) => worker::run(args, index).await,
        None => coordinator::run(args).await,
    }
}

/// The torture needs `flock` and SIGKILL.
#[cfg(not(unix))]
pub async fn run(_args: TortureArgs) -> anyhow::Result<ExitCode> {
    Err(crate::exit::coded(
        crate::exit::USAGE,
        "torture: runs on Unix only (it needs flock and SIGKILL); run it on Linux or macOS",
    ))
}
