//! Push wake-ups: one pub/sub connection per store, shared by its waiters.
//!
//! A waiter registers its ticket's `Notify` under the record's channel; a
//! background task keeps the connection subscribed to exactly the channels
//! that have waiters, and each message becomes a wake-up of the waiters it
//! names. On one server speaking RESP3 the message is delivered by the
//! client library's task that reads the connection (`link.rs`), so a
//! pushed grant crosses one task on its way from the socket to its
//! waiter; over RESP2 and in a cluster it goes through this task. Its
//! requests go one at a time (so that subscribe and
//! unsubscribe requests can never overtake each other): the channels that
//! gained their first waiter since the last request are subscribed in one
//! request, those that lost their last in one more, each checked against
//! the confirmed set when it is sent; only after a reconnection does it
//! compare every wanted channel with the confirmed ones. Messages that
//! arrive while a request is out are delivered at once. A message names the new
//! head's number (its waiter, and the lowest registered ticket above it,
//! which is now next in line as far as this process knows), or `*` for
//! everybody on the channel. Registration waits
//! until the server confirmed the subscription, so a release published after
//! the waiter's next look at the queue cannot be missed. When the connection
//! drops, the task reconnects, subscribes again and wakes every waiter to
//! look, which covers whatever was published in between. The task stops when
//! the last handle of the store is dropped.
//!
//! Where the connection goes: the one server; in sentinel mode the primary
//! the sentinels name at each (re)connection; in a cluster, a RESP3 cluster
//! connection subscribed with SSUBSCRIBE (sharded pub/sub), one channel per
//! command since each lives in its own key's slot, so each subscription is
//! held by the node that owns the slot. The cluster connection moves
//! subscriptions itself when it learns of a new slot map or reconnects a
//! node; a subscription confirmed that way, one the server dropped (its
//! slot migrated), and a node's connection lost are all told here: the
//! channel's waiters are woken to look again, a dropped subscription is
//! made again, and after a lost node every subscription is made again
//! (which finds the slots' new owners after a failover) before every
//! waiter is woken.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::connection::Target;
use crate::backend::{Attempt, GrantSlot};

mod link;

use link::{
    Connection, Deliver, Event, Failure, Link, connect, next_event, subscribe, unsubscribe,
};

/// The registry of waiters and the handle to the task serving it.
#[derive(Clone)]
pub(crate) struct Subscriber {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the wanted channels change.
    kick: Notify,
    timeout: Duration,
}

#[derive(Default)]
struct State {
    channels: HashMap<Vec<u8>, Channel>,
    next_registration: u64,
    /// Channels with a registration waiting for its confirmation, in the
    /// order they came (a channel may be named more than once).
    to_join: Vec<Vec<u8>>,
    /// Channels that lost their last waiter (they may have gained one
    /// again since).
    to_leave: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Channel {
    waiters: Vec<Waiter>,
    /// Whether the server confirmed the subscription after this entry was
    /// made (an entry made while the channel was being left waits for the
    /// subscription that follows).
    confirmed: bool,
    /// Registrations waiting for the confirmation: told `Ok`, or the
    /// server's refusal.
    pending: Vec<oneshot::Sender<Result<(), String>>>,
}

struct Waiter {
    registration: u64,
    number: u64,
    notify: Arc<Notify>,
    /// A native-layout ticket's own channel: where a pushed grant goes.
    grant: Option<GrantSlot>,
}

/// A waiter's place in the registry; dropping it unregisters.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    channel: Vec<u8>,
    registration: u64,
}

/// What [`Subscriber::register`] learnt about the subscription.
pub(crate) enum Subscribed {
    /// The server confirmed it: every later message reaches the waiter.
    Confirmed,
    /// Not confirmed in time (the server is unreachable): the waiter relies
    /// on its bounded re-checks, and is woken when the connection is back.
    Unconfirmed,
    /// The server refused it (e.g. an ACL without the channel).
    Refused(String),
}

impl Subscriber {
    /// Starts the task on the current runtime; it runs until `stop` is
    /// dropped (or fires).
    pub(crate) fn start(
        target: Target,
        timeout: Duration,
        stop: oneshot::Receiver<()>,
    ) -> Subscriber {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            kick: Notify::new(),
            timeout,
        });
        tokio::spawn(run(shared.clone(), target, stop));
        Subscriber { shared }
    }

    /// Registers `notify` to be signalled when ticket `number` of the record
    /// announced on `channel` may have become served, and waits (at most the
    /// socket timeout) for the subscription to be confirmed.
    pub(crate) async fn register(
        &self,
        channel: &[u8],
        number: u64,
        notify: Arc<Notify>,
        grant: Option<GrantSlot>,
    ) -> (Registration, Subscribed) {
        let (registration, confirmation) = {
            let mut state = lock(&self.shared.state);
            let registration = state.next_registration;
            state.next_registration += 1;
            let entry = state.channels.entry(channel.to_vec()).or_default();
            entry.waiters.push(Waiter {
                registration,
                number,
                notify,
                grant,
            });
            let confirmation = (!entry.confirmed).then(|| {
                let (tx, rx) = oneshot::channel();
                entry.pending.push(tx);
                rx
            });
            if confirmation.is_some() {
                state.to_join.push(channel.to_vec());
            }
            (registration, confirmation)
        };
        let registration = Registration {
            shared: self.shared.clone(),
            channel: channel.to_vec(),
            registration,
        };
        let Some(confirmation) = confirmation else {
            return (registration, Subscribed::Confirmed);
        };
        self.shared.kick.notify_one();
        let subscribed = match tokio::time::timeout(self.shared.timeout, confirmation).await {
            Ok(Ok(Ok(()))) => Subscribed::Confirmed,
            Ok(Ok(Err(refusal))) => Subscribed::Refused(refusal),
            Ok(Err(_)) | Err(_) => Subscribed::Unconfirmed,
        };
        (registration, subscribed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        let Some(entry) = state.channels.get_mut(&self.channel) else {
            return;
        };
        entry
            .waiters
            .retain(|w| w.registration != self.registration);
        if entry.waiters.is_empty() {
            state.channels.remove(&self.channel);
            state.to_leave.push(std::mem::take(&mut self.channel));
            drop(state);
            self.shared.kick.notify_one();
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // No critical section here panics half-way: a poisoned lock is still
    // consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run(shared: Arc<Shared>, target: Target, mut stop: oneshot::Receiver<()>) {
    let mut conn: Option<Connection> = None;
    let mut backoff = Duration::from_millis(25);
    // Whether waiters must be told to look again once subscribed: after a
    // reconnection, messages may have been lost.
    let mut resync = false;
    // Whether the subscriptions must be compared with every wanted channel
    // (a new connection, a channel the server dropped or moved) rather
    // than with the queued changes alone.
    let mut full = true;
    // A RESP3 connection delivers its messages itself, from the task that
    // reads them; cleared when the server has no RESP3.
    let pushed: Deliver = {
        let shared = shared.clone();
        Arc::new(move |channel: &[u8], payload: &[u8]| deliver(&shared, channel, payload))
    };
    let mut resp3 = true;
    loop {
        if conn.is_none() {
            let wanted = !lock(&shared.state).channels.is_empty();
            if wanted {
                match connect(&target, shared.timeout, &pushed, &mut resp3).await {
                    Ok(c) => {
                        tracing::debug!("pub/sub connection established");
                        if resync {
                            crate::metrics::reconnect("pubsub");
                        }
                        conn = Some(c);
                        full = true;
                        backoff = Duration::from_millis(25);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "pub/sub connection failed; retrying");
                        tokio::select! {
                            _ = &mut stop => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            let done = if full || resync {
                reconcile_all(&shared, c).await
            } else {
                apply_changes(&shared, c).await
            };
            match done {
                Ok(()) => {
                    full = false;
                    if std::mem::take(&mut resync) {
                        wake_all(&shared);
                    }
                }
                Err((Failure::Refused(why), channels)) => {
                    tracing::warn!(error = why, "subscription refused by the server");
                    refuse(&shared, &channels, &why);
                    // Not asked again until a registration wants it (the
                    // same request would be refused again); whatever else
                    // is queued goes on.
                    full = false;
                    if std::mem::take(&mut resync) {
                        wake_all(&shared);
                    }
                }
                Err((Failure::Lost(why), _)) => {
                    tracing::debug!(error = why, "pub/sub connection lost; reconnecting");
                    conn = None;
                    resync = true;
                    continue;
                }
            }
        } else {
            // Nothing wanted and no connection: what was queued is moot.
            let mut state = lock(&shared.state);
            state.to_join.clear();
            state.to_leave.clear();
        }
        if changes_queued(&shared) && conn.is_some() {
            continue;
        }
        tokio::select! {
            _ = &mut stop => return,
            () = shared.kick.notified() => {}
            event = next_event(&mut conn) => match event {
                Event::Message { channel, payload } => deliver(&shared, &channel, &payload),
                Event::Moved(channel) => {
                    full = true;
                    wake_channel(&shared, &channel);
                }
                Event::Dropped(channel) => {
                    tracing::debug!(channel = %String::from_utf8_lossy(&channel), "shard channel dropped by the server; subscribing again");
                    if let Some(c) = conn.as_mut() {
                        c.subscribed.remove(&channel);
                    }
                    full = true;
                    wake_channel(&shared, &channel);
                }
                Event::NodeLost => {
                    // Subscribe to everything again: that finds the nodes
                    // that own the slots now (a failover may be under
                    // way), and the waiters are told to look once it is
                    // done, not while the node is still out.
                    tracing::debug!("a cluster node's pub/sub connection was lost; subscribing again");
                    if let Some(c) = conn.as_mut() {
                        c.subscribed.clear();
                        if let Link::Sharded { expected, .. } = &mut c.link {
                            expected.clear();
                        }
                    }
                    resync = true;
                    full = true;
                }
                Event::Nothing => {}
                Event::Closed => {
                    tracing::debug!("pub/sub connection closed; reconnecting");
                    conn = None;
                    resync = true;
                }
            },
        }
    }
}

fn changes_queued(shared: &Shared) -> bool {
    let state = lock(&shared.state);
    !state.to_join.is_empty() || !state.to_leave.is_empty()
}

/// Compares every wanted channel with the confirmed ones and makes them
/// the same; then tells every registration on a subscribed channel.
async fn reconcile_all(shared: &Shared, c: &mut Connection) -> Result<(), (Failure, Vec<Vec<u8>>)> {
    let wanted: HashSet<Vec<u8>> = {
        let mut state = lock(&shared.state);
        state.to_join.clear();
        state.to_leave.clear();
        state.channels.keys().cloned().collect()
    };
    let leave: Vec<Vec<u8>> = c.subscribed.difference(&wanted).cloned().collect();
    unsubscribe(c, leave, shared.timeout, &mut |ch, p| {
        deliver(shared, ch, p)
    })
    .await?;
    let join: Vec<Vec<u8>> = wanted.difference(&c.subscribed).cloned().collect();
    let joined = subscribe(c, &join, shared.timeout, &mut |ch, p| {
        deliver(shared, ch, p)
    })
    .await;
    confirm_all(shared, &c.subscribed);
    joined
}

/// Subscribes, in one request, to the channels that gained a waiter since
/// the last request and tells their registrations; then leaves, in one
/// more, those whose last waiter went. Each list is checked against the
/// wanted and the confirmed channels when its request is sent: a channel
/// left and wanted again in between is kept, one wanted and left again is
/// not subscribed.
async fn apply_changes(shared: &Shared, c: &mut Connection) -> Result<(), (Failure, Vec<Vec<u8>>)> {
    let (mut join, ready) = {
        let mut state = lock(&shared.state);
        let queued = std::mem::take(&mut state.to_join);
        let mut join = Vec::new();
        let mut ready = Vec::new();
        let mut seen = HashSet::new();
        for ch in queued {
            if !state.channels.contains_key(&ch) || !seen.insert(ch.clone()) {
                continue;
            }
            if c.subscribed.contains(&ch) {
                ready.push(ch);
            } else {
                join.push(ch);
            }
        }
        (join, ready)
    };
    confirm(shared, &ready);
    if !join.is_empty() {
        let joined = subscribe(c, &join, shared.timeout, &mut |ch, p| {
            deliver(shared, ch, p)
        })
        .await;
        join.retain(|ch| c.subscribed.contains(ch));
        confirm(shared, &join);
        joined?;
    }
    let leave: Vec<Vec<u8>> = {
        let mut state = lock(&shared.state);
        let queued = std::mem::take(&mut state.to_leave);
        let mut seen = HashSet::new();
        queued
            .into_iter()
            .filter(|ch| {
                !state.channels.contains_key(ch)
                    && c.subscribed.contains(ch)
                    && seen.insert(ch.clone())
            })
            .collect()
    };
    unsubscribe(c, leave, shared.timeout, &mut |ch, p| {
        deliver(shared, ch, p)
    })
    .await
}

fn wake_channel(shared: &Shared, channel: &[u8]) {
    let state = lock(&shared.state);
    if let Some(entry) = state.channels.get(channel) {
        entry.waiters.iter().for_each(|w| w.notify.notify_one());
    }
}

/// Tells the registrations on `channels` that are subscribed that they are.
fn confirm(shared: &Shared, channels: &[Vec<u8>]) {
    let mut state = lock(&shared.state);
    for name in channels {
        if let Some(channel) = state.channels.get_mut(name) {
            confirm_channel(channel);
        }
    }
}

/// Tells the registrations on subscribed channels that they are.
fn confirm_all(shared: &Shared, subscribed: &HashSet<Vec<u8>>) {
    let mut state = lock(&shared.state);
    for (name, channel) in state.channels.iter_mut() {
        if subscribed.contains(name) {
            confirm_channel(channel);
        }
    }
}

fn confirm_channel(channel: &mut Channel) {
    if !channel.confirmed {
        channel.confirmed = true;
        for tx in channel.pending.drain(..) {
            let _ = tx.send(Ok(()));
        }
    }
}

/// After a reconnection: every waiter looks again.
fn wake_all(shared: &Shared) {
    let state = lock(&shared.state);
    for channel in state.channels.values() {
        channel.waiters.iter().for_each(|w| w.notify.notify_one());
    }
}

fn refuse(shared: &Shared, channels: &[Vec<u8>], why: &str) {
    let mut state = lock(&shared.state);
    for name in channels {
        if let Some(channel) = state.channels.get_mut(name) {
            for tx in channel.pending.drain(..) {
                let _ = tx.send(Err(why.to_string()));
            }
        }
    }
}

/// Wakes the waiters a message names. On a Rasa-layout key channel: for
/// the new head's number, its waiter and the lowest registered ticket above
/// it (the new next in line, as far as this process knows: it then looks
/// every `wait_time`, since a Rasa process's release would publish
/// nothing); everybody on the channel for `*` (or anything unexpected). On
/// a native ticket's own channel, `<token> <lease µs>` is its grant, left
/// in its slot before the wake-up; `-` (its conversation was deleted) and
/// the rest wake it to look.
fn deliver(shared: &Shared, channel: &[u8], payload: &[u8]) {
    let text = std::str::from_utf8(payload).ok();
    let number = text.and_then(|p| p.parse::<u64>().ok());
    let grant = text.and_then(parse_grant);
    let state = lock(&shared.state);
    let Some(entry) = state.channels.get(channel) else {
        return;
    };
    let behind = number.and_then(|n| {
        entry
            .waiters
            .iter()
            .map(|w| w.number)
            .filter(|&m| m > n)
            .min()
    });
    for w in &entry.waiters {
        if let Some(slot) = &w.grant {
            if let Some(attempt) = grant {
                slot.put(attempt);
            }
            w.notify.notify_one();
        } else if number.is_none_or(|n| n == w.number) || behind == Some(w.number) {
            w.notify.notify_one();
        }
    }
}

/// A native grant push: `<fencing token> <lease µs>`.
fn parse_grant(payload: &str) -> Option<Attempt> {
    let (token, lease) = payload.split_once(' ')?;
    Some(Attempt::Acquired {
        fencing_token: token.parse().ok()?,
        lease: Duration::from_micros(lease.parse().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_pushes_are_read_and_other_payloads_are_not_grants() {
        assert_eq!(
            parse_grant("1795892618747127 60000000"),
            Some(Attempt::Acquired {
                fencing_token: 1795892618747127,
                lease: Duration::from_secs(60),
            })
        );
        for other in ["-", "*", "17", "1 x", "x 1", "1 2 3", ""] {
            assert_eq!(parse_grant(other), None, "{other:?}");
        }
    }
}
