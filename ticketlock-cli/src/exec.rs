//! `ticketlock run`: run a command while holding a conversation's lock, like
//! flock(1) for a conversation.

mod signals;

use std::ffi::OsString;
use std::future::IntoFuture as _;
use std::io::ErrorKind;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ticketlock::LockGuard;

use crate::cli::{positive_seconds, seconds};
use crate::exit;
use crate::store::StoreArgs;
use signals::Signals;

/// Options of `ticketlock run`.
#[derive(Debug, Args)]
#[command(
    after_help = "COMMAND sees TICKETLOCK_CONVERSATION_ID, TICKETLOCK_TICKET and \
                  TICKETLOCK_FENCING_TOKEN. Exit status: COMMAND's (128+N if killed by \
                  signal N); 75 when --timeout passed or the queue is full, 69 when the store is unavailable, \
                  78 for a configuration error, 64 for bad usage, 126/127 when COMMAND \
                  cannot be run / is not found."
)]
pub struct RunArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Lease lifetime in seconds, renewed while COMMAND runs (default:
    /// TICKET_LOCK_LIFETIME, else 60).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds,
          allow_negative_numbers = true)]
    pub lifetime: Option<Duration>,

    /// Give up with status 75 when the lock is not acquired within SECS
    /// (0: only if it is free now). Default: wait as long as it takes.
    #[arg(long, value_name = "SECS", value_parser = seconds,
          allow_negative_numbers = true)]
    pub timeout: Option<Duration>,

    /// Longest pause between two looks at the queue while waiting (wake-ups
    /// are pushed; this bounds the wait after a missed one). Default 1.
    #[arg(long = "wait-time", value_name = "SECS", value_parser = positive_seconds,
          allow_negative_numbers = true)]
    pub wait_time: Option<Duration>,

    /// Use the in-memory store even though it cannot keep other processes
    /// out (without --redis/--endpoints `run` refuses to, since it would not
    /// lock anything).
    #[arg(long)]
    pub allow_memory: bool,

    /// The conversation whose lock to hold.
    #[arg(value_name = "CONVERSATION_ID")]
    pub conversation_id: String,

    /// The command to run while holding the lock, and its arguments (after
    /// `--`).
    #[arg(value_name = "COMMAND", required = true, num_args = 1..,
          trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// Takes the lock, runs the command, releases, and exits with the
/// command's status.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open().await?;
    if store.as_in_memory().is_some() && !args.allow_memory {
        let why = if args.store.given() {
            "the configured lock store is the in-memory one, which"
        } else {
            "no shared store given (--redis/--endpoints); the in-memory store"
        };
        return Err(exit::coded(
            exit::USAGE,
            format!(
                "run: {why} only serializes within this process, so it would not keep other \
                 processes out: give --redis URL or --endpoints FILE (with a redis lock_store), \
                 or pass --allow-memory to run anyway"
            ),
        ));
    }
    // Installed before waiting, so that an interrupt while queued withdraws
    // the ticket (by dropping the request) instead of killing us holding it.
    let mut signals = Signals::install().context("run: cannot install signal handlers")?;

    let id = args.conversation_id.as_str();
    let mut request = store.lock(id).auto_renew(true);
    if let Some(l) = args.lifetime {
        request = request.lifetime(l);
    }
    if let Some(t) = args.timeout {
        request = request.timeout(t);
    }
    if let Some(w) = args.wait_time {
        request = request.wait_time(w);
    }
    let acquired = tokio::select! {
        acquired = request.into_future() => Ok(acquired),
        signal = signals.recv() => Err(signal),
    };
    let guard = match acquired {
        Ok(acquired) => acquired?,
        Err(signal) => {
            // The dropped request withdraws its ticket in the background:
            // wait for that before exiting, or the ticket would hold up the
            // queue until it expired.
            store.flush().await;
            eprintln!(
                "ticketlock: run: {} while waiting for the lock of {id:?}; gave up",
                signals::name(signal)
            );
            return Ok(ExitCode::from(signals::exit_code(signal)));
        }
    };
    tracing::info!(
        conversation_id = id,
        ticket = guard.ticket(),
        fencing_token = guard.fencing_token(),
        "lock acquired"
    );
    let outcome = run_command(&args.command, &guard, &mut signals).await;
    release(guard).await;
    outcome.map(ExitCode::from)
}

/// Spawns the command with the lock's facts in its environment, forwards
/// signals to it, and gives its exit status.
async fn run_command(
    command: &[OsString],
    guard: &LockGuard,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let (program, arguments) = command
        .split_first()
        .context("run: no COMMAND given; write it after `--`")?;
    let shown = program.to_string_lossy();
    let mut child = tokio::process::Command::new(program)
        .args(arguments)
        .env("TICKETLOCK_CONVERSATION_ID", guard.conversation_id())
        .env("TICKETLOCK_TICKET", guard.ticket().to_string())
        .env(
            "TICKETLOCK_FENCING_TOKEN",
            guard.fencing_token().to_string(),
        )
        .spawn()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => exit::coded(
                exit::NOT_FOUND,
                format!("run: command not found: {shown}; check its name and PATH"),
            ),
            ErrorKind::PermissionDenied => exit::coded(
                exit::CANNOT_EXECUTE,
                format!("run: cannot execute {shown}: permission denied; make it executable"),
            ),
            _ => exit::coded(
                exit::CANNOT_EXECUTE,
                format!("run: cannot execute {shown}: {e}"),
            ),
        })?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.with_context(|| format!("run: waiting for {shown}"))?,
            signal = signals.recv() => signals::forward(&child, signal),
        }
    };
    Ok(status_code(status))
}

/// The shell's convention: the exit code, or 128+N when killed by signal N.
fn status_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // An exit status is 0..=255 on Unix; clamp elsewhere.
        return u8::try_from(code).unwrap_or(exit::FAILURE);
    }
    signals::killed_by(status).map_or(exit::FAILURE, signals::exit_code)
}

/// Releases the lock; a lease lost while the command ran is worth a
/// warning, as the command may not have run alone.
async fn release(guard: LockGuard) {
    let (id, ticket) = (guard.conversation_id().to_string(), guard.ticket());
    match guard.release().await {
        Ok(()) => tracing::info!(conversation_id = id, ticket, "lock released"),
        Err(ticketlock::Error::Expired { .. }) => eprintln!(
            "ticketlock: warning: the lease of conversation {id:?} (ticket {ticket}) was lost \
             while the command ran, so another holder may have entered meanwhile: raise \
             --lifetime, or check that the store stayed reachable"
        ),
        Err(e) => eprintln!("ticketlock: warning: could not release the lock: {e}"),
    }
}
