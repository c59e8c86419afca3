//! `ticketlock run`: run a command while holding a conversation's lock, like
//! flock(1) for a conversation.

mod child;
mod lease;
mod signals;

use std::ffi::OsString;
use std::future::IntoFuture as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ticketlock::LockGuard;
use tokio::time::Instant;

use crate::cli::{lifetime_seconds, positive_seconds, seconds};
use crate::exit;
use crate::store::StoreArgs;
use crate::units::human;
use child::Program;
use lease::{Lost, OnLost};
use signals::Signals;

/// Options of `ticketlock run`.
#[derive(Debug, Args)]
#[command(
    after_help = "COMMAND sees TICKETLOCK_CONVERSATION_ID, TICKETLOCK_TICKET and \
                  TICKETLOCK_FENCING_TOKEN, and is killed (SIGKILL) if `run` itself dies (Linux). \
                  Exit status: COMMAND's (128+N if killed by signal N); 75 (or -E N) when \
                  the lease was lost, --timeout passed, -n found the lock held, or the queue is \
                  full; 69 when the store is unavailable, 78 for a configuration error, 64 for \
                  bad usage, 126/127 when COMMAND cannot be run / is not found."
)]
pub struct RunArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Lease lifetime in seconds, renewed while COMMAND runs (default:
    /// TICKET_LOCK_LIFETIME, else 60).
    #[arg(long, value_name = "SECS", value_parser = lifetime_seconds,
          allow_negative_numbers = true)]
    pub lifetime: Option<Duration>,

    /// Give up with status 75 (or -E) when the lock is not acquired within
    /// SECS (0: only if it is free now). Default: wait as long as it takes.
    #[arg(long, value_name = "SECS", value_parser = seconds,
          allow_negative_numbers = true)]
    pub timeout: Option<Duration>,

    /// Fail at once (status 75, or -E) when the lock is held: the same as
    /// --timeout 0, as in flock.
    #[arg(short = 'n', long = "nonblock", conflicts_with = "timeout")]
    pub nonblock: bool,

    /// The exit status for a conflict: the lock not acquired in time (-n,
    /// --timeout) or the lease lost while COMMAND ran. As flock's -E.
    #[arg(short = 'E', long = "conflict-exit-code", value_name = "N",
          default_value_t = exit::TEMPFAIL)]
    pub conflict_exit_code: u8,

    /// What to do to COMMAND when the lease is lost (a renewal finds the
    /// ticket gone, or no renewal reached the store for a whole lifetime):
    /// `term` sends SIGTERM, then SIGKILL after --on-lost-grace; `kill`
    /// sends SIGKILL; `ignore` lets it finish. `run` then exits with the
    /// conflict status in every case.
    #[arg(long = "on-lost", value_name = "ACTION", value_enum, default_value_t = OnLost::Term)]
    pub on_lost: OnLost,

    /// Seconds between the SIGTERM of --on-lost term and the SIGKILL.
    #[arg(long = "on-lost-grace", value_name = "SECS", value_parser = seconds,
          default_value = "5", allow_negative_numbers = true)]
    pub on_lost_grace: Duration,

    /// Longest pause between two looks at the queue while waiting (wake-ups
    /// are pushed; this bounds the wait after a missed one). Default 1.
    #[arg(long = "wait-time", value_name = "SECS", value_parser = positive_seconds,
          allow_negative_numbers = true)]
    pub wait_time: Option<Duration>,

    /// Use the in-memory store even though it cannot keep other processes
    /// out (without --redis/--postgres/--endpoints `run` refuses to, since it
    /// would not lock anything).
    #[arg(long)]
    pub allow_memory: bool,

    /// Run this line with `sh -c` instead of COMMAND (as flock's -c).
    #[arg(short = 'c', long = "command", value_name = "LINE",
          conflicts_with_all = ["command", "hold"])]
    pub shell: Option<String>,

    /// Take the lock and hold it until SIGINT, SIGTERM or SIGHUP (like
    /// `etcdctl lock NAME`): prints `ticket=N fencing_token=T` once held.
    #[arg(long, conflicts_with = "command")]
    pub hold: bool,

    /// The conversation whose lock to hold.
    #[arg(value_name = "CONVERSATION_ID")]
    pub conversation_id: String,

    /// The command to run while holding the lock, and its arguments (after
    /// `--`).
    #[arg(value_name = "COMMAND", num_args = 1.., trailing_var_arg = true,
          allow_hyphen_values = true, required_unless_present_any = ["shell", "hold"])]
    pub command: Vec<OsString>,
}

/// Takes the lock, runs the command, releases, and exits with the
/// command's status.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // What to run (`None`: --hold), settled before any ticket is taken.
    let program = match (&args.shell, args.command.split_first()) {
        _ if args.hold => None,
        (Some(line), _) => Some(Program::Shell(line)),
        (None, Some((program, arguments))) => Some(Program::Argv(program, arguments)),
        (None, None) => {
            return Err(exit::coded(
                exit::USAGE,
                "run: no COMMAND given; write it after `--`, or give -c LINE or --hold",
            ));
        }
    };
    let store = args.store.open().await?;
    if store.as_in_memory().is_some() && !args.allow_memory {
        let why = if args.store.given() {
            "the configured lock store is the in-memory one, which"
        } else {
            "no shared store given (--redis/--postgres/--endpoints); the in-memory store"
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
    // The lease is renewed here (see `lease`), not by the library's
    // renewer, so that a lifetime without a successful renewal counts as
    // lost too.
    let mut request = store.lock(id);
    if let Some(l) = args.lifetime {
        request = request.lifetime(l);
    }
    // -n (and --timeout 0) takes a ticket and looks whether it was served
    // at once: an acquire timeout of zero would also bound the issue's own
    // round trip, and call a free lock on a remote store held.
    let nonblock = args.nonblock || args.timeout == Some(Duration::ZERO);
    if let Some(t) = args.timeout.filter(|_| !nonblock) {
        request = request.timeout(t);
    }
    if let Some(w) = args.wait_time {
        request = request.wait_time(w);
    }
    let acquire = async {
        if !nonblock {
            return request.into_future().await.map(Some);
        }
        let queued = request.enqueue().await?;
        if queued.is_served() {
            queued.acquired().await.map(Some)
        } else {
            Ok(None) // Dropped: withdrawn (flushed below).
        }
    };
    let acquired = tokio::select! {
        acquired = acquire => Ok(acquired),
        signal = signals.recv() => Err(signal),
    };
    let conflict = |message: String| exit::coded(args.conflict_exit_code, message);
    let guard = match acquired {
        Ok(Ok(Some(guard))) => guard,
        Ok(Ok(None)) => {
            store.flush().await;
            let flag = if args.nonblock {
                "-n/--nonblock"
            } else {
                "--timeout 0"
            };
            return Err(conflict(format!(
                "run: the lock of conversation {id:?} is held ({flag}: not waiting); \
                 retry later, or wait for it with --timeout SECS"
            )));
        }
        Ok(Err(ticketlock::Error::Timeout { waited, .. })) => {
            store.flush().await;
            return Err(conflict(format!(
                "run: timed out after {} (--timeout) waiting for the lock of conversation \
                 {id:?}; the ticket was withdrawn: retry later, or raise --timeout",
                human(waited)
            )));
        }
        Ok(Err(e @ ticketlock::Error::QueueFull { .. })) => {
            return Err(conflict(e.to_string()));
        }
        Ok(Err(e @ ticketlock::Error::Unavailable { .. })) => {
            // The store did not answer a try and a retry: a withdrawal
            // would wait as long again before failing too, and the ticket,
            // no longer kept alive, expires within its lifetime anyway.
            return Err(e.into());
        }
        Ok(Err(e)) => {
            store.flush().await;
            return Err(e.into());
        }
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
    let outcome = match &program {
        None => hold(&guard, &mut signals).await,
        Some(program) => run_command(program, &guard, &args, &mut signals).await,
    };
    let released_in_time = release(guard).await;
    let outcome = outcome?;
    if outcome.lost || !released_in_time {
        if !outcome.lost {
            eprintln!(
                "ticketlock: run: the lease of conversation {id:?} ran out before the command \
                 ended, so another holder may have entered meanwhile: raise --lifetime, or check \
                 that the store stayed reachable"
            );
        }
        return Ok(ExitCode::from(args.conflict_exit_code));
    }
    Ok(ExitCode::from(outcome.status))
}

/// How the command (or the hold) ended.
struct Outcome {
    /// The exit status to give when the lease held throughout.
    status: u8,
    /// Whether the lease was lost meanwhile (and the user told).
    lost: bool,
}

/// Spawns the command, keeps the lease, forwards signals to the command,
/// acts on a lost lease, and gives its exit status.
async fn run_command(
    program: &Program<'_>,
    guard: &LockGuard,
    args: &RunArgs,
    signals: &mut Signals,
) -> anyhow::Result<Outcome> {
    let shown = program.shown();
    let mut child = child::spawn(program, guard)?;
    let keep = lease::keep(guard);
    tokio::pin!(keep);
    let mut lost = false;
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.with_context(|| format!("run: waiting for {shown}"))?,
            signal = signals.recv() => signals::forward(&child, signal),
            how = &mut keep, if !lost => {
                lost = true;
                kill_at = on_lost(&child, guard, &how, args);
            }
            () = sleep_until_some(kill_at), if kill_at.is_some() => {
                kill_at = None;
                eprintln!(
                    "ticketlock: run: {shown} still running {} after SIGTERM; sending SIGKILL",
                    human(args.on_lost_grace)
                );
                signals::send(&child, signals::KILL);
            }
        }
    };
    let status = child::status_code(status);
    if lost {
        eprintln!(
            "ticketlock: run: {shown} ended (status {status}) after the lease of conversation \
             {:?} was lost; exiting with {}: raise --lifetime, or check that the store stays \
             reachable",
            guard.conversation_id(),
            args.conflict_exit_code
        );
    }
    Ok(Outcome { status, lost })
}

/// Tells the user and acts on the command; gives when to SIGKILL it.
fn on_lost(
    child: &tokio::process::Child,
    guard: &LockGuard,
    how: &Lost,
    args: &RunArgs,
) -> Option<Instant> {
    let action = match args.on_lost {
        OnLost::Term => format!(
            "sending SIGTERM to the command (SIGKILL in {})",
            human(args.on_lost_grace)
        ),
        OnLost::Kill => "sending SIGKILL to the command".to_string(),
        OnLost::Ignore => {
            "the command runs on unprotected (--on-lost ignore): another holder may enter"
                .to_string()
        }
    };
    eprintln!(
        "ticketlock: run: the lease of conversation {:?} (ticket {}) was lost: {}; {action}",
        guard.conversation_id(),
        guard.ticket(),
        how.why(guard.lifetime()),
    );
    match args.on_lost {
        OnLost::Term => {
            signals::send(child, signals::TERM);
            Some(Instant::now() + args.on_lost_grace)
        }
        OnLost::Kill => {
            signals::send(child, signals::KILL);
            None
        }
        OnLost::Ignore => None,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `--hold`: prints the ticket and token, then keeps the lease until a
/// signal asks to let go (status 0) or the lease is lost.
async fn hold(guard: &LockGuard, signals: &mut Signals) -> anyhow::Result<Outcome> {
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "ticket={} fencing_token={}",
        guard.ticket(),
        guard.fencing_token()
    )
    .and_then(|()| stdout.flush())
    .context("run --hold: cannot write to stdout")?;
    drop(stdout);
    tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal = signals::name(signal), "letting go of the lock");
            Ok(Outcome { status: 0, lost: false })
        }
        how = lease::keep(guard) => {
            eprintln!(
                "ticketlock: run --hold: the lease of conversation {:?} (ticket {}) was lost: {}",
                guard.conversation_id(),
                guard.ticket(),
                how.why(guard.lifetime()),
            );
            Ok(Outcome { status: 0, lost: true })
        }
    }
}

/// Releases the lock; false when the lease turned out lost (the store no
/// longer had the ticket). Any other failure is a warning: the lease ends
/// after its lifetime anyway.
async fn release(guard: LockGuard) -> bool {
    let (id, ticket) = (guard.conversation_id().to_string(), guard.ticket());
    match guard.release().await {
        Ok(()) => {
            tracing::info!(conversation_id = id, ticket, "lock released");
            true
        }
        Err(ticketlock::Error::Expired { .. }) => false,
        Err(e) => {
            eprintln!("ticketlock: warning: could not release the lock: {e}");
            true
        }
    }
}
