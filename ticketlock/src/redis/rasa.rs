//! The rasa layout (the default): one string key per conversation,
//! `lock:<id>` or `<key_prefix>:lock:<id>`, holding Rasa's JSON record byte
//! for byte as Python writes it (tickets double-encoded, `expires` as float
//! seconds), followed by two optional fields of ours that Rasa ignores:
//! `last_issued` (numbers are never reused, even after the highest ticket
//! expired; written only then, since otherwise the queue tells it) and
//! `epoch` (tells incarnations of a record apart). Changed only by the
//! scripts beside this file (`rasa/*.lua`, built in `rasa/scripts.rs`).
//! Each reads the whole record (O(depth) bytes per call). Issue, release,
//! a grant and a keep-alive on a record nobody else wrote since we did
//! edit its text (`rasa/splice.lua`: plain finds and substrings); other
//! writes decode and re-encode the queue (O(depth) work in Lua).
//!
//! Wake-ups: a script whose change gives the queue a new head publishes the
//! head's number on the channel named like the key (`*` after save_lock and
//! delete_lock: everybody looks again); the woken waiter takes the lock
//! with a call of its own. A release by a Rasa process publishes nothing:
//! our waiters then see it at their next bounded look.
//!
//! Cross-layout: a hash with an epoch at the key is a native-layout
//! conversation; the scripts that meet one (`load()` in `common.lua`, and
//! delete) answer `LAYOUT native` rather than calling it corrupt or
//! deleting it. Any other non-string is a corrupt record, which delete
//! removes.
//!
//! Mixed fleets: our own queue sits beside the record at
//! `{T}:<record key>:ours` (see `rasa/ours.lua`): Rasa rewrites whole
//! records from what it read, so a stale write of a Rasa process can drop
//! or bring back tickets of ours; every script of ours repairs the record
//! from that queue, and answers how many tickets it repaired, which is
//! logged and counted here.

mod scripts;

use std::time::Duration;

use super::commands::Failure;
use super::{RedisLockStore, Replied, epoch_arg, keys, micros};
use crate::backend::{Attempt, Issued, TicketId};
use crate::lock::queue_full;
use crate::{Backend, Result, TicketLock};
pub(super) use scripts::CORRUPT;
use scripts::{ACQUIRED, FULL, GONE, QUEUED, SCRIPTS, SHARDED_SCRIPTS, Scripts};

/// The key of our own queue beside the record at `key`, in its slot.
fn ours_key(key: &str) -> String {
    keys::request_key(key, &"ours")
}

/// Takes the number of repairs (`rasa/ours.lua`) off the end of a
/// script's reply, logging and counting them.
fn repaired(
    store: &RedisLockStore,
    id: &str,
    script: &str,
    mut reply: Vec<i64>,
) -> Result<Vec<i64>> {
    let Some(repairs) = reply.pop() else {
        return Err(store.bad_reply(script, &reply));
    };
    if repairs > 0 {
        tracing::warn!(
            conversation_id = id,
            repairs,
            "redis: a stale write of a Rasa process had damaged the record (tickets of ours dropped or brought back); repaired it from our own queue"
        );
        crate::metrics::record_repairs(repairs.unsigned_abs());
    }
    Ok(reply)
}

/// A script whose answer is one number (and the repairs).
fn single(store: &RedisLockStore, id: &str, script: &str, reply: Vec<i64>) -> Result<i64> {
    match repaired(store, id, script, reply)?[..] {
        [value] => Ok(value),
        ref other => Err(store.bad_reply(script, other)),
    }
}

/// The scripts of the store's flavour (PUBLISH, or SPUBLISH on a cluster).
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

/// Loads the issue script, the one whose calls must keep their order
/// (see `preload.rs`); the others are loaded on NOSCRIPT when first used.
/// All of them at once took longer than a short socket timeout on a slow
/// link (the torture's slow proxy: most first calls failed).
pub(super) async fn load(store: &RedisLockStore) -> Result<(), Failure> {
    store.load_scripts(&[&scripts(store).issue]).await
}

/// One round trip of `issue` with the request id `request_id` (retried on
/// a fresh connection after a connection error: the request id makes the
/// retry answer with the ticket the first attempt made): see
/// [`Backend::issue`].
pub(super) async fn issue(
    store: &RedisLockStore,
    id: &str,
    lifetime: Duration,
    request_id: &str,
) -> Result<Issued> {
    let key = store.key_for(id);
    let request = keys::request_key(&key, &keys::request_suffix(request_id));
    let ours = ours_key(&key);
    let Replied {
        value: reply,
        unacked,
    } = store
        .script_args::<Vec<i64>, _>(
            &scripts(store).issue,
            &key,
            &[&request, &ours],
            id,
            (
                micros(lifetime),
                store.max_queue_len,
                store.request_ttl_ms(),
            ),
            true,
        )
        .await?;
    let reply = repaired(store, id, "issue", reply)?;
    let [number, epoch, status, a, remaining] = reply[..] else {
        return Err(store.bad_reply("issue", &reply));
    };
    if status == FULL {
        return Err(queue_full(id, store.max_queue_len));
    }
    let ticket = TicketId {
        number: number as u64,
        epoch: u64::try_from(epoch).ok(),
    };
    let attempt = match status {
        ACQUIRED => Attempt::Acquired {
            fencing_token: a as u64,
            lease: lifetime,
        },
        QUEUED => Attempt::Queued {
            ahead: a as u64,
            holder_remaining: u64::try_from(remaining).ok().map(Duration::from_micros),
        },
        GONE => Attempt::Lost,
        _ => return Err(store.bad_reply("issue", &reply)),
    };
    if let Some(e) = unacked.filter(|_| matches!(attempt, Attempt::Acquired { .. })) {
        // Not safely granted: withdraw it rather than leave it to expire.
        store.release_on_drop(id, ticket);
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
    let ours = ours_key(&key);
    let reply = store
        .script_args::<Vec<i64>, _>(
            &scripts(store).try_acquire,
            &key,
            &[&ours],
            id,
            (ticket.number, epoch_arg(ticket), micros(lifetime)),
            true,
        )
        .await?;
    let Replied {
        value: reply,
        unacked,
    } = reply;
    let reply = repaired(store, id, "try_acquire", reply)?;
    let attempt = match reply[..] {
        [ACQUIRED, token] => Attempt::Acquired {
            fencing_token: token as u64,
            lease: lifetime,
        },
        [QUEUED, ahead, remaining] => Attempt::Queued {
            ahead: ahead as u64,
            holder_remaining: u64::try_from(remaining).ok().map(Duration::from_micros),
        },
        [2] => Attempt::Lost,
        _ => return Err(store.bad_reply("try_acquire", &reply)),
    };
    // Only a granted lease needs the replicas (see `script`).
    match unacked {
        Some(e) if matches!(attempt, Attempt::Acquired { .. }) => Err(e),
        _ => Ok(attempt),
    }
}

pub(super) async fn release(store: &RedisLockStore, id: &str, ticket: TicketId) -> Result<bool> {
    let key = store.key_for(id);
    // The ticket is the release's request id: only its owner releases it.
    let request = keys::request_key(&key, &keys::release_suffix(ticket.number, ticket.epoch));
    let ours = ours_key(&key);
    let reply: Vec<i64> = store
        .script_args(
            &scripts(store).release,
            &key,
            &[&request, &ours],
            id,
            (ticket.number, epoch_arg(ticket), store.request_ttl_ms()),
            false,
        )
        .await?
        .acked()?;
    Ok(single(store, id, "release", reply)? == 1)
}

pub(super) async fn renew(
    store: &RedisLockStore,
    id: &str,
    ticket: TicketId,
    lifetime: Duration,
) -> Result<bool> {
    let key = store.key_for(id);
    let ours = ours_key(&key);
    let reply: Vec<i64> = store
        .script_args(
            &scripts(store).renew,
            &key,
            &[&ours],
            id,
            (ticket.number, epoch_arg(ticket), micros(lifetime)),
            true,
        )
        .await?
        .acked()?;
    Ok(single(store, id, "renew", reply)? == 1)
}

pub(super) async fn check(store: &RedisLockStore, id: &str, ticket: TicketId) -> Result<bool> {
    let key = store.key_for(id);
    let ours = ours_key(&key);
    let reply: Vec<i64> = store
        .script_args(
            &scripts(store).check,
            &key,
            &[&ours],
            id,
            (ticket.number, epoch_arg(ticket)),
            false,
        )
        .await?
        .acked()?;
    Ok(single(store, id, "check", reply)? == 1)
}

pub(super) async fn save_lock(store: &RedisLockStore, lock: &TicketLock) -> Result<()> {
    let id = lock.conversation_id();
    let key = store.key_for(id);
    let mut elements = String::with_capacity(56 * lock.tickets().len());
    let mut last_expires = f64::MIN;
    let mut max_number: i64 = -1;
    for (i, t) in lock.tickets().enumerate() {
        if i > 0 {
            elements.push_str(", ");
        }
        t.push_element(&mut elements);
        last_expires = last_expires.max(t.expires);
        max_number = max_number.max(i64::try_from(t.number).unwrap_or(i64::MAX));
    }
    if !last_expires.is_finite() {
        last_expires = 0.0;
    }
    let last_issued = lock
        .last_issued()
        .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let epoch = lock
        .epoch()
        .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX));
    let ours = ours_key(&key);
    let reply: Vec<i64> = store
        .script_with(
            &scripts(store).save,
            &key,
            &[&ours],
            id,
            &[
                &elements,
                &lock.tickets().len().to_string(),
                &format!("{last_expires:?}"),
                &max_number.to_string(),
                &last_issued.to_string(),
                &epoch.to_string(),
            ],
            false,
        )
        .await?
        .acked()?;
    single(store, id, "save", reply)?;
    Ok(())
}

pub(super) async fn update_lock(store: &RedisLockStore, id: &str) -> Result<()> {
    let key = store.key_for(id);
    let ours = ours_key(&key);
    let reply: Vec<i64> = store
        .script_with(&scripts(store).update, &key, &[&ours], id, &[], false)
        .await?
        .acked()?;
    let removed = single(store, id, "update", reply)?;
    if removed > 0 {
        tracing::debug!(
            conversation_id = id,
            removed,
            "redis: expired tickets removed"
        );
    }
    Ok(())
}

/// Deletes the record at `key` (any type); whether there was one.
pub(super) async fn delete(store: &RedisLockStore, key: &str, id: &str) -> Result<bool> {
    let ours = ours_key(key);
    let reply: Vec<i64> = store
        .script_with(&scripts(store).delete, key, &[&ours], id, &[], false)
        .await?
        .acked()?;
    Ok(single(store, id, "delete", reply)? == 1)
}
