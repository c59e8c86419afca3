//! A worker process: one store shared by T tasks, each handling its
//! messages one after the other, every step told as an event on stdout.

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use ticketlock::{LockGuard, LockStore};
use tokio::task::JoinSet;

use super::clock::{now_ns, ns};
use super::event::{Event, Outcome, emit};
use super::files::Files;
use super::plan::{Message, Plan};
use super::{POSTGRES_URL_ENV, REDIS_URL_ENV, TortureArgs};
use crate::exit;
use crate::store::StoreArgs;

/// What every task of the worker shares.
struct Ctx {
    worker: u32,
    store: LockStore,
    files: Files,
    plan: Plan,
    run_id: String,
    /// No new message after this (CLOCK_MONOTONIC ns).
    deadline: u64,
    /// No retry after this.
    give_up: u64,
    lifetime: Duration,
    acquire_timeout: Duration,
    max_attempts: u32,
}

/// Runs worker `worker` of the run the hidden arguments name.
pub async fn run(args: TortureArgs, worker: u32) -> anyhow::Result<ExitCode> {
    let (Some(run_id), Some(deadline), Some(dir)) =
        (args.run_id.clone(), args.deadline_ns, args.dir.clone())
    else {
        return Err(exit::coded(
            exit::USAGE,
            "torture: --worker is internal (the coordinator passes --run-id, --deadline-ns and \
             --dir with it); run `ticketlock torture` without it",
        ));
    };
    install_panic_hook(worker);
    exit_when_orphaned();
    let give_up = deadline.saturating_add(ns(args.grace));
    let store_args = StoreArgs {
        endpoints: args.store.endpoints.clone(),
        redis: std::env::var(REDIS_URL_ENV)
            .ok()
            .or_else(|| args.store.redis.clone()),
        postgres: std::env::var(POSTGRES_URL_ENV)
            .ok()
            .or_else(|| args.store.postgres.clone()),
        ..args.store.clone()
    };
    let (store, connect_attempts) = connect(&store_args, give_up).await?;
    emit(&Event::Ready {
        worker,
        pid: std::process::id(),
        connect_attempts,
        t: now_ns(),
    });
    let ctx = Arc::new(Ctx {
        worker,
        store,
        files: Files::open(&dir),
        plan: Plan {
            seed: args.seed.unwrap_or(0),
            conversations: args.conversations,
            work_min: Duration::from_millis(args.work_min_ms),
            work_max: Duration::from_millis(args.work_max_ms),
            overrun_percent: args.overrun_percent,
        },
        run_id,
        deadline,
        give_up,
        lifetime: args.lifetime,
        acquire_timeout: args.acquire_timeout,
        max_attempts: args.max_attempts,
    });
    let mut tasks = JoinSet::new();
    for task in 0..args.tasks {
        tasks.spawn(run_task(ctx.clone(), task));
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            // The panic hook has told the coordinator already.
            Err(e) => anyhow!("torture: worker {worker}: a task failed: {e}"),
        };
        failure.get_or_insert(failed);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Opens the store, retrying while it is unavailable (a worker started
/// while Redis is down waits for it).
async fn connect(args: &StoreArgs, give_up: u64) -> anyhow::Result<(LockStore, u32)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match args.open().await {
            Ok(store) => return Ok((store, attempts)),
            Err(e) if e.is_transient() && now_ns() < give_up => {
                tracing::info!(error = %e, "torture: store not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Tells the coordinator about a panic before the default hook prints it.
fn install_panic_hook(worker: u32) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        emit(&Event::Panic {
            worker,
            message: info.to_string(),
        });
        default(info);
    }));
}

/// The coordinator holds our stdin open; when it is gone, so is the run.
fn exit_when_orphaned() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(4);
    });
}

async fn run_task(ctx: Arc<Ctx>, task: u32) -> anyhow::Result<()> {
    let mut seq = 0;
    while now_ns() < ctx.deadline {
        handle(&ctx, task, seq).await?;
        seq += 1;
    }
    emit(&Event::Done {
        worker: ctx.worker,
        task,
        messages: seq,
        t: now_ns(),
    });
    Ok(())
}

/// Handles message `seq` of `task`: takes its lock (retrying transient
/// failures) and runs its section, or reports it failed.
async fn handle(ctx: &Ctx, task: u32, seq: u64) -> anyhow::Result<()> {
    let msg = ctx.plan.message(ctx.worker, task, seq);
    let id = format!("torture-{}-{}", ctx.run_id, msg.conv);
    let worker = ctx.worker;
    let mut attempt = 0;
    loop {
        attempt += 1;
        emit(&Event::Request {
            worker,
            task,
            msg: seq,
            conv: msg.conv,
            attempt,
            t: now_ns(),
        });
        let locked = ctx
            .store
            .lock(&id)
            .lifetime(ctx.lifetime)
            .timeout(ctx.acquire_timeout)
            .await;
        let e = match locked {
            Ok(guard) => return section(ctx, task, seq, msg, attempt, guard).await,
            Err(e) => e,
        };
        let kind = Outcome::of_error(&e);
        // A lost ticket (record gone, or kept silent through an outage) is
        // as safe to retry as an unreachable store: the message never
        // entered.
        let retriable = e.is_transient() || kind == Outcome::Expired;
        if retriable && attempt < ctx.max_attempts && now_ns() < ctx.give_up {
            emit(&Event::Retry {
                worker,
                task,
                msg: seq,
                attempt,
                kind,
                t: now_ns(),
            });
            tokio::time::sleep(ctx.plan.backoff(worker, task, seq, attempt)).await;
            continue;
        }
        tracing::warn!(error = %e, "torture: message {worker}/{task}/{seq} given up");
        emit(&Event::Fail {
            worker,
            task,
            msg: seq,
            attempt,
            kind,
            t: now_ns(),
        });
        return Ok(());
    }
}

/// The critical section of one message.
async fn section(
    ctx: &Ctx,
    task: u32,
    seq: u64,
    msg: Message,
    attempt: u32,
    guard: LockGuard,
) -> anyhow::Result<()> {
    let worker = ctx.worker;
    let witness = ctx.files.enter(msg.conv)?;
    let ticket = guard.ticket_id();
    emit(&Event::Enter {
        worker,
        task,
        msg: seq,
        conv: msg.conv,
        attempt,
        ticket: ticket.number,
        epoch: ticket.epoch,
        token: guard.fencing_token(),
        witness: !witness.overlapped(),
        t: now_ns(),
    });
    let work = if msg.overrun {
        ctx.lifetime * 3 / 2
    } else {
        msg.work
    };
    tokio::time::sleep(work).await;
    let downstream = ctx
        .files
        .write_downstream(msg.conv, guard.fencing_token())?;
    let wrote = now_ns();
    let (held, renewed) = if msg.overrun {
        let held = match guard.is_held().await {
            Ok(true) => Outcome::Ok,
            Ok(false) => Outcome::Expired,
            Err(e) => Outcome::of_error(&e),
        };
        (Some(held), Some(Outcome::of(&guard.renew().await)))
    } else {
        (None, None)
    };
    emit(&Event::Exit {
        worker,
        task,
        msg: seq,
        downstream,
        wrote,
        overrun: msg.overrun,
        held,
        renewed,
        t: now_ns(),
    });
    drop(witness);
    let outcome = Outcome::of(&guard.release().await);
    emit(&Event::Released {
        worker,
        task,
        msg: seq,
        outcome,
        t: now_ns(),
    });
    Ok(())
}
