//! The native layout: a conversation in three keys of one cluster slot,
//! each operation one script of constant cost (O(log depth) commands,
//! never a walk of the queue).
//!
//! # Data
//! - `K` = `lock:<id>` (or `<prefix>:lock:<id>`), a HASH: `n` = tickets
//!   issued so far (the next number; numbers never go back in an
//!   incarnation), `e` = the epoch (server µs when the conversation was
//!   created), `h` = the granted holder's number (absent: none), `p` = 1
//!   while that grant is provisional, `x` = the holder's lease end (server
//!   µs) in the uncontended state (below), `t` = the keys' deadline
//!   (server µs; see below), `r` = the request id of the
//!   issue that created the conversation (its ticket 0), and per waiting
//!   ticket a field `<number>` with its lifetime in µs and a field
//!   `w<number>` with the wake id of the process that waits for it (a
//!   ticket written by `save_lock` has none: nobody to push to).
//! - `{T}:K:q`, a ZSET of numbers scored by number: the FIFO order.
//! - `{T}:K:x`, a ZSET of numbers scored by expiry (server µs): a waiter's
//!   liveness, the holder's lease end. Expired: expiry < now.
//! - The uncontended state: a conversation whose only ticket is its
//!   holder, taken by the issue that created it, is K alone with three
//!   fields, `e`, `x` (its lease end) and `r`; `n` = 1 and `h` = 0 are
//!   implied by `x`, and there is no `q` and no `x` key. Issue, renew,
//!   check and release serve it with a handful of commands (an issue:
//!   `TIME`, `EXISTS`, `HSET`, `PEXPIRE`; its release: `TIME`, `HMGET`,
//!   `DEL`, `SET` of the release's request entry). The first operation of
//!   any other kind (a second ticket, a waiter's look, a save, an update)
//!   first moves the holder into `q` and `x` and writes `n` and `h`
//!   (`materialize` in `common.lua`), and the conversation stays in the
//!   general state until it is deleted.
//! - Every script takes K as its one key and `{T}:K:` as ARGV[1], and
//!   names the other keys, entries and channels from it (in K's slot, so
//!   a cluster accepts them as the call's own): the uncontended paths pay
//!   for no name they do not use, and the client builds one string per
//!   call.
//! - `{T}:K:w:<wake id>`: the wake-up channel of one process (its store's
//!   random wake id, 16 hex digits) for all its tickets of the
//!   conversation (SPUBLISH on a cluster): `<number> <token> <lease µs>`
//!   when the lock is granted to ticket `number`, `<number>` when that
//!   ticket should look (the grant ahead of it is provisional), `-` when
//!   the conversation was deleted, `*` to look again (after a save). One
//!   channel per process rather than per ticket: a process already
//!   subscribed issues its next ticket with no SSUBSCRIBE, SUNSUBSCRIBE or
//!   look (see `redis/subscriber.rs`).
//! - Request entries as in the rasa layout (`{T}:K:rq:<id>`,
//!   `{T}:K:rl:<epoch>:<number>`, `../request.lua`), except for the issue
//!   that creates the conversation, whose request id is K's field `r`. A
//!   release reads its entry only when its ticket is not there live (a
//!   first attempt that ran removed it). A retried issue that finds no
//!   conversation is served as a new one: whatever ticket its first
//!   attempt made is gone with the conversation.
//!
//! `T` is `K`'s hash tag, or `K` itself (`keys.rs`), so every key and
//! channel of a conversation is in `K`'s slot, and all start with `{`: a
//! SCAN of `lock:*` lists the conversations only. Every key lives at least
//! one second past the latest expiry in `x`: K's field `t` is the keys'
//! deadline, and a write whose new expiry it does not cover sets all three
//! to live twice the remaining time and a second (so most writes set no
//! TTL, and a key outlives its last ticket by at most that); the last
//! ticket gone, all three are deleted. The fencing token is `e +
//! number`, so tokens increase across deletion as in the rasa layout.
//!
//! # Operations (`native/*.lua`)
//! Every script but the release first drops up to 8 expired tickets (the
//! release leaves them to the walk below and to the next issue or look),
//! then, when nobody live holds the lock, grants it to the first live ticket of `q` (dropping dead
//! heads on the way). A grant to another client's ticket is pushed on its
//! process's channel: with one receiver or more, the lease runs a lifetime
//! from now; with none (its process is gone, or its subscription is down)
//! the grant
//! is provisional for the claim window (the request entries' TTL, two
//! socket timeouts and a second; never past the ticket's own expiry),
//! within which its waiter's next look claims it, and the next in line is
//! woken (`*`) to look when the window ends; then the next live ticket is
//! granted. A dead waiter is thus skipped within the claim window, never a
//! lifetime. A live waiter whose subscription was down claims the grant at
//! its next look (every waiter looks after a reconnection); one that looks
//! less often than the window can lose it. A release hands
//! the lock over in the same script (one script, one push); the waiter's
//! `Watch` takes the pushed grant without another call. A waiter's look
//! (try_acquire) writes only when less than two thirds of its lifetime is
//! left, or when it claims a grant. Cross-layout: a string at `K` is a
//! record of the rasa layout, answered with the `LAYOUT` error
//! ([`crate::Error::Config`] naming `lock_store.layout`), never read or
//! overwritten; a rasa-layout client meeting this hash gets the mirror
//! error.
//!
//! # Redis ACL
//! Each `redis.call` inside a script is checked against the user's ACL,
//! so the rule lists the scripts' own commands too (with `key_prefix: p`,
//! write `~p:lock:* ~{*}:p:lock:*` and `&{*}:p:lock:*`):
//!
//! ```text
//! ACL SETUSER ticketlock on >PASSWORD resetkeys ~lock:* ~{*}:lock:* resetchannels &{*}:lock:* -@all +fcall +function|load +evalsha +script|load +time +exists +hmget +hget +hset +hdel +type +zadd +zrem +zscore +zrank +zrange +zrangebyscore +zcard +pexpire +del +get +set +publish +scan +subscribe +unsubscribe +ping +select
//! ```
//!
//! `+fcall +function|load` are for Redis 7+ (Functions), `+evalsha
//! +script|load` for older servers and for the calls that wait for
//! replicas (`min_replicas_ack`). A cluster also needs `+spublish
//! +ssubscribe +sunsubscribe +cluster|slots`, sentinel mode `+role`,
//! `min_replicas_ack` `+wait`, as in the rasa layout (`redis.rs`).
//!
//! # Redis Functions
//! On Redis 7+ the operations are one library, `ticketlock_<hash>`
//! (`native/scripts.rs`), called with FCALL and loaded with FUNCTION LOAD
//! on first use or when the server says the function is not found; a
//! server without FCALL (before 7.0) is noticed at the first call and
//! served by EVALSHA from then on. Calls that grant with
//! `min_replicas_ack` go by EVALSHA, in one pipeline with WAIT.

mod scripts;

use std::time::Duration;

use super::{RedisLockStore, Replied, epoch_arg, keys, micros};
use crate::backend::{Attempt, Issued, TicketId};
use crate::lock::queue_full;
use crate::{Result, Ticket, TicketLock};
pub(super) use scripts::LAYOUT;
use scripts::{LIBRARY, Library, SCRIPTS, SHARDED_LIBRARY, SHARDED_SCRIPTS, Scripts};
use std::sync::atomic::Ordering;

use super::Reply;
use super::commands::Failure;

/// The issue script (see `RedisLockStore::preloads`).
pub(super) fn issue_script(store: &RedisLockStore) -> &'static redis::Script {
    &scripts(store).issue
}

fn scripts(store: &RedisLockStore) -> &'static Scripts {
    if store.inner.sharded {
        &SHARDED_SCRIPTS
    } else {
        &SCRIPTS
    }
}

fn library(store: &RedisLockStore) -> &'static Library {
    if store.inner.sharded {
        &SHARDED_LIBRARY
    } else {
        &LIBRARY
    }
}

/// The claim window of a provisional grant, in µs: the request entries'
/// TTL (two socket timeouts and a second), passed to every script that may
/// grant.
fn claim_us(store: &RedisLockStore) -> u64 {
    u64::try_from(u128::from(micros(store.inner.timeout)) * 2 + 1_000_000).unwrap_or(u64::MAX)
}

/// One argument of a call after the prefix: text as given, numbers
/// written as decimal straight into the command (no string of their own).
#[derive(Clone, Copy)]
enum Arg<'a> {
    Str(&'a str),
    U(u64),
    I(i64),
    /// Two numbers in one argument, `<a> <b>` (the issue's queue bound and
    /// entry TTL: one argument less for the server to convert).
    Pair(u64, u64),
    /// A ticket as the release takes it, `<epoch>:<number>` (`-:<number>`
    /// without an epoch): also its request entry's suffix after `rl:`.
    Ticket(TicketId),
}

impl redis::ToRedisArgs for Arg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        match *self {
            Arg::Str(s) => out.write_arg(s.as_bytes()),
            Arg::U(n) => n.write_redis_args(out),
            Arg::I(n) => n.write_redis_args(out),
            // Writes into the command's buffer cannot fail.
            Arg::Pair(a, b) => {
                let _ = write!(out.writer_for_next_arg(), "{a} {b}");
            }
            Arg::Ticket(TicketId {
                number,
                epoch: Some(e),
            }) => {
                let _ = write!(out.writer_for_next_arg(), "{e}:{number}");
            }
            Arg::Ticket(TicketId {
                number,
                epoch: None,
            }) => {
                let _ = write!(out.writer_for_next_arg(), "-:{number}");
            }
        }
    }
}

/// The issue's reply: the epoch alone when the issue created the
/// conversation and holds it with ticket 0 (the uncontended case: one
/// integer to read), else `[number, epoch, status, a, remaining]`.
enum IssueReply {
    Created(i64),
    Full(Vec<i64>),
}

impl redis::FromRedisValue for IssueReply {
    fn from_redis_value(v: redis::Value) -> std::result::Result<Self, redis::ParsingError> {
        match v {
            redis::Value::Int(epoch) => Ok(IssueReply::Created(epoch)),
            other => redis::from_redis_value(other).map(IssueReply::Full),
        }
    }
}

/// The command of one call: `head` (FCALL and the function's name, or
/// EVALSHA and the script's hash), the one key, the prefix of its other
/// names (`{T}:K:`, see `keys.rs`) and `args`, written once into a buffer
/// sized for them.
fn command(head: [&str; 2], key: &str, args: &[Arg<'_>]) -> redis::Cmd {
    // Numbers take at most 20 digits; the prefix is about twice the key.
    let bytes = head[0].len() + head[1].len() + 1 + key.len() * 3 + 4 + args.len() * 20 + 34;
    let mut cmd = redis::Cmd::with_capacity(args.len() + 5, bytes);
    cmd.arg(head[0])
        .arg(head[1])
        .arg(1)
        .arg(key)
        .arg(keys::NativePrefix(key));
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

/// Runs `operation` (`script`, or the library's function of that name) on
/// the conversation at `key`, its one key; ARGV[1] is the prefix of its
/// other keys and channels (`{T}:K:`, see `keys.rs`), from which the
/// scripts name them, `args` follow.
///
/// With FCALL (Redis Functions, 7.0+) where the server has it: the library
/// is loaded on first use and again when the server answers that the
/// function is not found (a restart without persistence, a new primary,
/// FUNCTION FLUSH). A server without the command (before 7.0) is told
/// once, and every later call goes by EVALSHA. With `min_replicas_ack`, a
/// call that grants goes by EVALSHA, in the pipeline with WAIT.
async fn run<T: redis::FromRedisValue + Send>(
    store: &RedisLockStore,
    script: &'static redis::Script,
    operation: &str,
    key: &str,
    args: &[Arg<'_>],
    grants: bool,
) -> Result<Replied<T>> {
    let waits = grants && store.inner.acks.is_some();
    if !waits && store.inner.functions.load(Ordering::Relaxed) {
        let turn = store.preloaded(key).await?;
        let call = command(["FCALL", library(store).function(operation)], key, args);
        match super::preload::sent_in_turn(turn, fcall(store, key, &call)).await {
            Some(value) => {
                return value.map(|value| Replied {
                    value,
                    unacked: None,
                });
            }
            None => {
                tracing::debug!("redis: the server has no FCALL (Redis < 7); using EVALSHA");
                store.inner.functions.store(false, Ordering::Relaxed);
            }
        }
    }
    let evalsha = command(["EVALSHA", script.get_hash()], key, args);
    store.evalsha(script, key, evalsha, grants).await
}

/// Loads what the layout calls (see `preload.rs`): the Functions library
/// where the server has FCALL (the server answering that it has none is
/// noted here, so that calls go by EVALSHA from the first), and the
/// scripts where calls go by EVALSHA (no FCALL, or `min_replicas_ack`).
pub(super) async fn load(store: &RedisLockStore) -> Result<(), Failure> {
    if store.inner.functions.load(Ordering::Relaxed) {
        let load = load_library(store);
        let loaded = store
            .inner
            .commands
            .run(|mut conn| {
                let load = &load;
                async move { load.query_async::<String>(&mut conn).await }
            })
            .await;
        match loaded {
            Ok(_) => {}
            Err(Failure::Redis(e)) if e.to_string().contains("unknown command") => {
                tracing::debug!("redis: the server has no FCALL (Redis < 7); using EVALSHA");
                store.inner.functions.store(false, Ordering::Relaxed);
            }
            Err(failure) => return Err(failure),
        }
    }
    if !store.inner.functions.load(Ordering::Relaxed) || store.inner.acks.is_some() {
        // The issue script alone, as in the rasa layout.
        store.load_scripts(&[&scripts(store).issue]).await?;
    }
    Ok(())
}

/// FUNCTION LOAD REPLACE of the layout's library (built only when
/// needed: it copies the library's whole source).
fn load_library(store: &RedisLockStore) -> redis::Cmd {
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD").arg("REPLACE").arg(&library(store).source);
    load
}

/// One FCALL (`call`, on the conversation at `key`); `None` when the
/// server has no such command.
async fn fcall<T: redis::FromRedisValue + Send>(
    store: &RedisLockStore,
    key: &str,
    call: &redis::Cmd,
) -> Option<Result<T>> {
    let result = store
        .inner
        .commands
        .run(|mut conn| async move {
            match call.query_async::<T>(&mut conn).await {
                Err(e) if e.to_string().contains("Function not found") => {
                    // The server lost the library (see `preload.rs`).
                    store.inner.preload.forget();
                    load_library(store).query_async::<String>(&mut conn).await?;
                    call.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await;
    match result {
        Err(Failure::Redis(e)) if e.to_string().contains("unknown command") => None,
        other => Some(other.map_err(|f| store.failure(f, key, Reply::Script))),
    }
}

pub(super) async fn issue(
    store: &RedisLockStore,
    id: &str,
    lifetime: Duration,
    request_id: &str,
) -> Result<Issued> {
    let key = store.key_for(id);
    let Replied {
        value: reply,
        unacked,
    } = run::<IssueReply>(
        store,
        &scripts(store).issue,
        "issue",
        &key,
        &[
            Arg::U(micros(lifetime)),
            // At least 1 (`with_max_queue_len`).
            Arg::Pair(store.max_queue_len as u64, store.request_ttl_ms()),
            Arg::Str(request_id),
            Arg::Str(&store.inner.wake_id),
        ],
        true,
    )
    .await?;
    let [number, epoch, status, a, remaining] = match reply {
        IssueReply::Created(epoch) => [0, epoch, 0, epoch, -1],
        IssueReply::Full(reply) => match reply[..] {
            [number, epoch, status, a, remaining] => [number, epoch, status, a, remaining],
            _ => return Err(store.bad_reply("issue", &reply)),
        },
    };
    if status == 2 {
        return Err(queue_full(id, store.max_queue_len));
    }
    let ticket = TicketId {
        number: number as u64,
        epoch: u64::try_from(epoch).ok(),
    };
    let attempt = match status {
        0 => Attempt::Acquired {
            fencing_token: a as u64,
            lease: lifetime,
        },
        1 => Attempt::Queued {
            ahead: a as u64,
            holder_remaining: u64::try_from(remaining).ok().map(Duration::from_micros),
        },
        3 => Attempt::Lost,
        _ => return Err(store.bad_reply("issue", &[number, epoch, status, a, remaining])),
    };
    if let Some(e) = unacked.filter(|_| matches!(attempt, Attempt::Acquired { .. })) {
        crate::Backend::release_on_drop(store, id, ticket);
        return Err(e);
    }
    Ok(Issued { ticket, attempt })
}

pub(super) async fn try_acquire(
    store: &RedisLockStore,
    id: &str,
    ticket: TicketId,
    lifetime: Duration,
) -> Result<Attempt> {
    let key = store.key_for(id);
    let Replied {
        value: reply,
        unacked,
    } = run::<Vec<i64>>(
        store,
        &scripts(store).try_acquire,
        "try_acquire",
        &key,
        &[
            Arg::U(ticket.number),
            Arg::I(epoch_arg(ticket)),
            Arg::U(micros(lifetime)),
            Arg::U(claim_us(store)),
        ],
        true,
    )
    .await?;
    let attempt = match reply[..] {
        [0, token, lease] => Attempt::Acquired {
            fencing_token: token as u64,
            lease: Duration::from_micros(u64::try_from(lease).unwrap_or(0)),
        },
        [1, ahead, remaining] => Attempt::Queued {
            ahead: ahead as u64,
            holder_remaining: u64::try_from(remaining).ok().map(Duration::from_micros),
        },
        [2] => Attempt::Lost,
        _ => return Err(store.bad_reply("try_acquire", &reply)),
    };
    match unacked {
        Some(e) if matches!(attempt, Attempt::Acquired { .. }) => Err(e),
        _ => Ok(attempt),
    }
}

pub(super) async fn release(store: &RedisLockStore, id: &str, ticket: TicketId) -> Result<bool> {
    let key = store.key_for(id);
    let removed: i64 = run(
        store,
        &scripts(store).release,
        "release",
        &key,
        &[
            Arg::Ticket(ticket),
            Arg::U(store.request_ttl_ms()),
            // The ticket a hand-off most likely grants (see release.lua).
            Arg::U(ticket.number + 1),
        ],
        false,
    )
    .await?
    .acked()?;
    Ok(removed == 1)
}

pub(super) async fn renew(
    store: &RedisLockStore,
    id: &str,
    ticket: TicketId,
    lifetime: Duration,
) -> Result<bool> {
    let key = store.key_for(id);
    let renewed: i64 = run(
        store,
        &scripts(store).renew,
        "renew",
        &key,
        &[
            Arg::U(ticket.number),
            Arg::I(epoch_arg(ticket)),
            Arg::U(micros(lifetime)),
            Arg::U(claim_us(store)),
        ],
        true,
    )
    .await?
    .acked()?;
    Ok(renewed == 1)
}

pub(super) async fn check(store: &RedisLockStore, id: &str, ticket: TicketId) -> Result<bool> {
    let key = store.key_for(id);
    let held: i64 = run(
        store,
        &scripts(store).check,
        "check",
        &key,
        &[Arg::U(ticket.number), Arg::I(epoch_arg(ticket))],
        false,
    )
    .await?
    .acked()?;
    Ok(held == 1)
}

/// The conversation as a [`TicketLock`] (expiries in seconds, the holder
/// first), for inspection.
pub(super) async fn get_lock(store: &RedisLockStore, id: &str) -> Result<Option<TicketLock>> {
    let key = store.key_for(id);
    let reply: Vec<u64> = run::<Vec<i64>>(store, &scripts(store).get, "get", &key, &[], false)
        .await?
        .acked()?
        .into_iter()
        .map(|v| u64::try_from(v).unwrap_or(u64::MAX))
        .collect();
    let [n, e, _holder, _provisional, ref pairs @ ..] = reply[..] else {
        return Ok(None);
    };
    let tickets = pairs
        .chunks_exact(2)
        .map(|p| Ticket::new(p[0], p[1] as f64 / 1e6))
        .collect::<Vec<_>>();
    let mut lock = TicketLock::with_tickets(id, tickets);
    lock.set_last_issued(n.checked_sub(1));
    lock.set_epoch(Some(e));
    Ok(Some(lock))
}

pub(super) async fn save_lock(store: &RedisLockStore, lock: &TicketLock) -> Result<()> {
    let key = store.key_for(lock.conversation_id());
    let last_issued = lock
        .last_issued()
        .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let epoch = lock
        .epoch()
        .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX));
    let mut args = vec![Arg::I(last_issued), Arg::I(epoch), Arg::U(claim_us(store))];
    for t in lock.tickets() {
        args.push(Arg::U(t.number));
        // Whole µs, rounded up: the ticket lives at least as long as given.
        args.push(Arg::U((t.expires.max(0.0) * 1e6).ceil() as u64));
    }
    let _: i64 = run(store, &scripts(store).save, "save", &key, &args, false)
        .await?
        .acked()?;
    Ok(())
}

pub(super) async fn update_lock(store: &RedisLockStore, id: &str) -> Result<()> {
    let key = store.key_for(id);
    let removed: i64 = run(
        store,
        &scripts(store).update,
        "update",
        &key,
        &[Arg::U(claim_us(store))],
        false,
    )
    .await?
    .acked()?;
    if removed > 0 {
        tracing::debug!(
            conversation_id = id,
            removed,
            "redis: expired tickets removed"
        );
    }
    Ok(())
}

/// Deletes the conversation at `key` (a key of another type too); whether
/// there was one.
pub(super) async fn delete(store: &RedisLockStore, key: &str) -> Result<bool> {
    let removed: i64 = run(store, &scripts(store).delete, "delete", key, &[], false)
        .await?
        .acked()?;
    Ok(removed == 1)
}
