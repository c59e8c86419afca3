//! `ticketlock demo`: simulated chat traffic under conversation locks, and a
//! check that every conversation's messages were handled one at a time, in
//! arrival order.
//!
//! A dispatcher takes the messages in arrival order and, for each, takes the
//! conversation's ticket before the next message is looked at; workers pick
//! the messages (with their pending lock) off a queue in the same order and
//! handle them under the lock. Handing the ticket out at dispatch time is
//! what makes the lock's FIFO order the arrival order: if each worker took
//! its own ticket, message k+1 could get its ticket before message k, whose
//! worker had not reached the store yet.

mod traffic;
mod verify;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use ticketlock::{LockStore, QueuedTicket};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use crate::cli::positive_seconds;
use crate::exit;
use crate::store::StoreArgs;
use traffic::Message;
use verify::{Record, Violation, Violations};

/// The most messages one run may simulate (its records are kept in memory).
const MAX_MESSAGES: u64 = 10_000_000;

/// How many violations are printed when the check fails.
const PRINTED_VIOLATIONS: usize = 10;

/// Options of `ticketlock demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many conversations send messages.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub conversations: u32,

    /// How many messages each conversation sends.
    #[arg(long, value_name = "M", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,

    /// How many workers handle messages concurrently.
    #[arg(long, value_name = "W", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub workers: u32,

    /// Simulated handling time of one message, in microseconds.
    #[arg(long = "work-us", value_name = "U", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(..=60_000_000))]
    pub work_us: u64,

    /// Lock lifetime in seconds (default: TICKET_LOCK_LIFETIME, else 60).
    /// Set it below the handling time to watch the check catch holders whose
    /// lease ran out.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds,
          allow_negative_numbers = true)]
    pub lifetime: Option<Duration>,

    /// Seed of the random interleaving, to repeat a run.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Print the summary as one JSON object (and no progress bar).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs the demo; exit 0 only when every check passed.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let total = u64::from(args.conversations) * u64::from(args.messages);
    if total > MAX_MESSAGES {
        return Err(exit::coded(
            exit::USAGE,
            format!(
                "demo: {total} messages ({} conversations × {}) is more than the {MAX_MESSAGES} \
                 one run can keep; lower --conversations or --messages",
                args.conversations, args.messages
            ),
        ));
    }
    let store = args.store.open().await?;
    let lifetime = args.lifetime.unwrap_or(store.default_lifetime());
    let seed = args.seed.unwrap_or_else(traffic::fresh_seed);
    let setup = Setup {
        conversations: args.conversations,
        workers: args.workers,
        work: Duration::from_micros(args.work_us),
        lifetime,
        ids: conversation_ids(args.conversations),
    };
    let arrivals = traffic::arrivals(args.conversations, args.messages, seed);
    let progress = progress_bar(total, args.json);

    let started = Instant::now();
    let outcome = simulate(&store, &setup, arrivals, &progress).await;
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let Outcome { records, observed } = outcome?;

    let mut violations = observed;
    violations.extend(verify::verify(args.conversations, args.messages, &records));
    let summary = Summary::new(&args, &store, seed, total, &records, elapsed, &violations);
    if args.json {
        crate::json::print(&summary)?;
    } else {
        for v in violations.first.iter().take(PRINTED_VIOLATIONS) {
            eprintln!("ticketlock: demo: violation: {v}");
        }
        if violations.total > PRINTED_VIOLATIONS {
            eprintln!(
                "ticketlock: demo: ... and {} more violations",
                violations.total - PRINTED_VIOLATIONS
            );
        }
        println!("{}", summary.line());
    }
    Ok(if summary.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    })
}

/// What the simulation needs besides the store and the traffic.
struct Setup {
    conversations: u32,
    workers: u32,
    work: Duration,
    lifetime: Duration,
    ids: Arc<[String]>,
}

/// Conversation ids unique to this run, so that runs sharing a store do not
/// meet in one conversation.
fn conversation_ids(n: u32) -> Arc<[String]> {
    let run = traffic::fresh_seed() as u32;
    (0..n).map(|i| format!("demo-{run:08x}-{i}")).collect()
}

fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} messages ({rate})",
    ) {
        bar.set_style(style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} msg/s", state.per_sec());
            },
        ));
    }
    bar
}

/// A message on its way to a worker, with its ticket already in the queue.
struct Job {
    msg: Message,
    queued: ticketlock::Result<QueuedTicket>,
}

/// What the workers saw.
struct Outcome {
    records: Vec<Record>,
    /// Violations seen at run time (double entries, lost leases and tickets).
    observed: Violations,
}

/// State shared by the workers.
struct Shared {
    /// How many workers are inside each conversation's critical section now.
    inside: Box<[AtomicU32]>,
    /// Counts entries into critical sections: the handling order.
    entries: AtomicU64,
    start: Instant,
    progress: ProgressBar,
}

async fn simulate(
    store: &LockStore,
    setup: &Setup,
    arrivals: Vec<Message>,
    progress: &ProgressBar,
) -> anyhow::Result<Outcome> {
    let shared = Arc::new(Shared {
        inside: (0..setup.conversations)
            .map(|_| AtomicU32::new(0))
            .collect(),
        entries: AtomicU64::new(0),
        start: Instant::now(),
        progress: progress.clone(),
    });
    // As deep as there are workers: a ticket is taken only when its message
    // can be picked up soon, so waiting tickets stay polled (and alive).
    let (tx, rx) = mpsc::channel::<Job>(setup.workers as usize);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = JoinSet::new();
    for _ in 0..setup.workers {
        workers.spawn(worker(
            rx.clone(),
            shared.clone(),
            setup.ids.clone(),
            setup.work,
        ));
    }
    let dispatcher = tokio::spawn(dispatch(
        store.clone(),
        setup.ids.clone(),
        setup.lifetime,
        arrivals,
        tx,
    ));

    let mut outcome = Outcome {
        records: Vec::new(),
        observed: Violations::default(),
    };
    while let Some(joined) = workers.join_next().await {
        match joined.context("a demo worker failed")? {
            Ok(part) => {
                outcome.records.extend(part.records);
                outcome.observed.extend(part.observed);
            }
            Err(e) => {
                dispatcher.abort();
                return Err(e);
            }
        }
    }
    dispatcher.await.context("the demo dispatcher failed")?;
    Ok(outcome)
}

/// Takes the messages in arrival order and takes each one's ticket before
/// looking at the next, so that each conversation's tickets are issued in
/// arrival order on any store; workers then wait for their turn.
async fn dispatch(
    store: LockStore,
    ids: Arc<[String]>,
    lifetime: Duration,
    arrivals: Vec<Message>,
    tx: mpsc::Sender<Job>,
) {
    for msg in arrivals {
        let Ok(slot) = tx.reserve().await else {
            return; // The workers stopped on an error.
        };
        let id = &ids[msg.conv as usize];
        let queued = store.lock(id).lifetime(lifetime).enqueue().await;
        slot.send(Job { msg, queued });
    }
}

/// Handles messages off the queue until it is closed and empty.
async fn worker(
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    shared: Arc<Shared>,
    ids: Arc<[String]>,
    work: Duration,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome {
        records: Vec::new(),
        observed: Violations::default(),
    };
    loop {
        let job = queue.lock().await.recv().await;
        let Some(Job { msg, queued }) = job else {
            return Ok(out);
        };
        let acquired = match queued {
            Ok(queued) => queued.acquired().await,
            Err(e) => Err(e),
        };
        let Message { conv, seq } = msg;
        let guard = match acquired {
            Ok(guard) => guard,
            Err(ticketlock::Error::Expired { .. }) => {
                out.observed.push(Violation::TicketLost {
                    conversation: conv,
                    seq,
                });
                shared.progress.inc(1);
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("demo: locking conversation {:?}", ids[conv as usize])
                });
            }
        };

        let inside = &shared.inside[conv as usize];
        let order = shared.entries.fetch_add(1, Ordering::SeqCst);
        let others = inside.fetch_add(1, Ordering::SeqCst);
        let enter = shared.start.elapsed();
        if others > 0 {
            out.observed.push(Violation::DoubleEntry {
                conversation: conv,
                seq,
                inside: others,
            });
        }
        handle(work).await;
        let exit = shared.start.elapsed();
        inside.fetch_sub(1, Ordering::SeqCst);
        out.records.push(Record {
            conv,
            seq,
            ticket: guard.ticket(),
            fencing_token: guard.fencing_token(),
            order,
            enter,
            exit,
            waited: guard.waited(),
        });
        let ticket = guard.ticket();
        match guard.release().await {
            Ok(()) => {}
            Err(ticketlock::Error::Expired { .. }) => out.observed.push(Violation::LeaseLost {
                conversation: conv,
                seq,
                ticket,
            }),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("demo: releasing conversation {:?}", ids[conv as usize])
                });
            }
        }
        shared.progress.inc(1);
    }
}

/// Simulated handling. Timers have millisecond resolution, so short work
/// is a spin that yields to the other tasks between looks at the clock.
async fn handle(work: Duration) {
    if work >= Duration::from_millis(2) {
        tokio::time::sleep(work).await;
        return;
    }
    let until = Instant::now() + work;
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

/// The facts of a run, printed as one line or one JSON object.
#[derive(Debug, Serialize)]
struct Summary {
    messages: u64,
    handled: u64,
    conversations: u32,
    messages_per_conversation: u32,
    workers: u32,
    work_us: u64,
    lifetime_s: f64,
    store: String,
    seed: u64,
    elapsed_s: f64,
    throughput_msg_per_s: f64,
    wait_p50_us: u64,
    wait_p99_us: u64,
    wait_max_us: u64,
    verified: bool,
    violations: usize,
    first_violations: Vec<Violation>,
}

impl Summary {
    fn new(
        args: &DemoArgs,
        store: &LockStore,
        seed: u64,
        total: u64,
        records: &[Record],
        elapsed: Duration,
        violations: &Violations,
    ) -> Self {
        let mut waits: Vec<Duration> = records.iter().map(|r| r.waited).collect();
        waits.sort_unstable();
        let micros = |d: Duration| d.as_micros().try_into().unwrap_or(u64::MAX);
        Summary {
            messages: total,
            handled: records.len() as u64,
            conversations: args.conversations,
            messages_per_conversation: args.messages,
            workers: args.workers,
            work_us: args.work_us,
            lifetime_s: args
                .lifetime
                .unwrap_or(store.default_lifetime())
                .as_secs_f64(),
            store: store.describe(),
            seed,
            elapsed_s: elapsed.as_secs_f64(),
            throughput_msg_per_s: records.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            wait_p50_us: micros(percentile(&waits, 50)),
            wait_p99_us: micros(percentile(&waits, 99)),
            wait_max_us: micros(waits.last().copied().unwrap_or_default()),
            verified: violations.is_empty(),
            violations: violations.total,
            first_violations: violations.first.clone(),
        }
    }

    fn line(&self) -> String {
        let verdict = if self.verified {
            "order verified".to_string()
        } else {
            format!(
                "NOT verified: {} violations (repeat with --seed {})",
                self.violations, self.seed
            )
        };
        format!(
            "demo: {} messages, {} conversations, {} workers, {}: {:.0} msg/s, wait p50 {} p99 {}, {verdict}",
            self.messages,
            self.conversations,
            self.workers,
            self.store,
            self.throughput_msg_per_s,
            human_micros(self.wait_p50_us),
            human_micros(self.wait_p99_us),
        )
    }
}

/// The nearest-rank `p`th percentile of sorted values (zero when empty).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn human_micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}us"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99), Duration::from_micros(99));
        assert_eq!(percentile(&v[..1], 99), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn waits_print_in_a_readable_unit() {
        assert_eq!(human_micros(12), "12us");
        assert_eq!(human_micros(3_456), "3.5ms");
        assert_eq!(human_micros(2_500_000), "2.50s");
    }

    fn msg(conv: u32, seq: u32) -> Message {
        Message { conv, seq }
    }

    /// The dispatcher takes every message's ticket when it hands it out, so
    /// the requests are served in arrival order however the workers await
    /// them.
    #[tokio::test(start_paused = true)]
    async fn dispatch_issues_tickets_in_arrival_order() {
        let (tx, mut rx) = mpsc::channel(8);
        let arrivals = vec![msg(0, 0), msg(0, 1), msg(0, 2)];
        let ids = conversation_ids(1);
        let store = LockStore::in_memory();
        dispatch(store, ids, Duration::from_secs(60), arrivals, tx).await;
        let mut jobs = Vec::new();
        while let Some(job) = rx.recv().await {
            jobs.push(job);
        }
        assert_eq!(
            jobs.iter().map(|j| j.msg).collect::<Vec<_>>(),
            [msg(0, 0), msg(0, 1), msg(0, 2)]
        );
        let mut queued = jobs.into_iter().map(|j| j.queued.unwrap());
        let (first, middle, last) = (
            queued.next().unwrap(),
            queued.next().unwrap(),
            queued.next().unwrap(),
        );
        assert_eq!([first.ticket(), middle.ticket(), last.ticket()], [0, 1, 2]);
        // Await the last one first: it must wait for the middle one.
        let mut last = tokio::spawn(last.acquired());
        let first = first.acquired().await.unwrap();
        first.release().await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), &mut last)
                .await
                .is_err(),
            "message 2 entered before message 1"
        );
        let middle = middle.acquired().await.unwrap();
        middle.release().await.unwrap();
        let last = last.await.unwrap().unwrap();
        assert_eq!(last.ticket(), 2);
    }

    /// The whole pipeline on a contended run (few conversations, many
    /// workers): verified.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn arrival_order_is_kept_under_contention() {
        {
            let (conversations, messages) = (3, 60);
            let setup = Setup {
                conversations,
                workers: 12,
                work: Duration::from_micros(50),
                lifetime: Duration::from_secs(60),
                ids: conversation_ids(conversations),
            };
            let store = LockStore::in_memory();
            let arrivals = traffic::arrivals(conversations, messages, 7);
            let out = simulate(&store, &setup, arrivals, &ProgressBar::hidden())
                .await
                .unwrap();
            assert!(out.observed.is_empty(), "{:?}", out.observed.first);
            let v = verify::verify(conversations, messages, &out.records);
            assert!(v.is_empty(), "{:?}", v.first);
            assert_eq!(out.records.len(), 180);
            // Contended: some messages waited at least a handling time.
            assert!(
                out.records.iter().any(|r| r.waited >= setup.work),
                "no message waited"
            );
            assert!(store.as_in_memory().unwrap().is_empty());
        }
    }
}
