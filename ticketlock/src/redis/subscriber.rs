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
//! which is now next in line as far as this process knows), a native
//! ticket's grant (`<number> <token> <lease µs>`, see `stash.rs`), or `*`
//! for everybody on the channel. Registration waits
//! until the server confirmed the subscription, so a release published after
//! the waiter's next look at the queue cannot be missed. A registration on a
//! channel confirmed earlier also learns since when every message on it has
//! reached the process (`heard_since`: its confirmation, unbroken since;
//! cleared when the connection or the subscription dropped or moved): a
//! native waiter whose ticket was asked for after that needs no look. When
//! the connection drops, the task reconnects, subscribes again and wakes
//! every waiter to look, which covers whatever was published in between. The
//! task stops when the last handle of the store is dropped.
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
use tokio::time::Instant;

use super::connection::Target;
use crate::backend::{GrantSlot, TicketId};

mod link;
mod stash;

use link::{
    Connection, Deliver, Event, Failure, Link, connect, next_event, subscribe, unsubscribe,
};
use stash::{Message, Stash, for_epoch};

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
    /// Since when every message on the channel has reached this process:
    /// set when the server confirms the subscription, cleared when one
    /// may have been lost (the connection, or the subscription, dropped or
    /// moved) until it is confirmed again.
    heard_since: Option<Instant>,
    /// Whether the channel keeps the messages that found none of the
    /// waiters they name, for a waiter that registers just after them (a
    /// native process channel, whose waiters may skip their look); a
    /// rasa-layout key channel does not: its waiters always look.
    keeps: bool,
    /// Those messages (`stash.rs`).
    stash: Stash,
}

struct Waiter {
    registration: u64,
    number: u64,
    /// The ticket's epoch (native layout), checked against a grant's token.
    epoch: Option<u64>,
    notify: Arc<Notify>,
    /// A native-layout ticket's: where its pushed grant goes.
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

    /// Registers `notify` to be signalled when `ticket` of the record
    /// announced on `channel` may have become served (and `grant` to take
    /// its pushed grant), and waits (at most the socket timeout) for the
    /// subscription to be confirmed. Also answers since when every message
    /// on the channel has reached the waiter: live, or from the stash of
    /// those that came before it registered, which the channel keeps when
    /// `keep` says so (`None`: not kept, not confirmed, or not continuously
    /// since its confirmation).
    pub(crate) async fn register(
        &self,
        channel: &[u8],
        ticket: TicketId,
        notify: Arc<Notify>,
        grant: Option<GrantSlot>,
        keep: bool,
    ) -> (Registration, Subscribed, Option<Instant>) {
        let (registration, confirmation, heard_since) = {
            let mut state = lock(&self.shared.state);
            let registration = state.next_registration;
            state.next_registration += 1;
            let entry = state.channels.entry(channel.to_vec()).or_default();
            let waiter = Waiter {
                registration,
                number: ticket.number,
                epoch: ticket.epoch,
                notify,
                grant,
            };
            if keep {
                entry.keeps = true;
                entry.stash.replay(&waiter);
            }
            entry.waiters.push(waiter);
            let confirmation = (!entry.confirmed).then(|| {
                let (tx, rx) = oneshot::channel();
                entry.pending.push(tx);
                rx
            });
            let heard_since = entry
                .heard_since
                .filter(|_| keep)
                .map(|s| entry.stash.lost().map_or(s, |l| s.max(l)));
            if confirmation.is_some() {
                state.to_join.push(channel.to_vec());
            }
            (registration, confirmation, heard_since)
        };
        let registration = Registration {
            shared: self.shared.clone(),
            channel: channel.to_vec(),
            registration,
        };
        let Some(confirmation) = confirmation else {
            return (registration, Subscribed::Confirmed, heard_since);
        };
        self.shared.kick.notify_one();
        let subscribed = match tokio::time::timeout(self.shared.timeout, confirmation).await {
            Ok(Ok(Ok(()))) => Subscribed::Confirmed,
            Ok(Ok(Err(refusal))) => Subscribed::Refused(refusal),
            Ok(Err(_)) | Err(_) => Subscribed::Unconfirmed,
        };
        // Confirmed just now: messages from before may have been missed.
        (registration, subscribed, None)
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
                    deafen(&shared, None);
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
                    deafen(&shared, Some(&channel));
                    full = true;
                    wake_channel(&shared, &channel);
                }
                Event::Dropped(channel) => {
                    tracing::debug!(channel = %String::from_utf8_lossy(&channel), "shard channel dropped by the server; subscribing again");
                    deafen(&shared, Some(&channel));
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
                    deafen(&shared, None);
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
                    deafen(&shared, None);
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
    if channel.heard_since.is_none() {
        channel.heard_since = Some(Instant::now());
    }
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
/// a native process channel, `<number> <token> <lease µs>` is ticket
/// `number`'s grant, left in its slot before the wake-up; a number alone
/// wakes as above; `-` (the conversation was deleted) and `*` wake
/// everybody to look. On a native channel, a message that finds none of
/// the waiters it names is kept in its stash for one that registers just
/// after.
fn deliver(shared: &Shared, channel: &[u8], payload: &[u8]) {
    let message = Message::parse(payload);
    let mut state = lock(&shared.state);
    let Some(entry) = state.channels.get_mut(channel) else {
        return;
    };
    let named = match message {
        Message::Grant { number, grant } => {
            // A waiter of the same number in another incarnation (the
            // conversation was deleted and made again) only looks; the
            // grant is kept for its own ticket's waiter.
            let mut found = false;
            for w in entry.waiters.iter().filter(|w| w.number == number) {
                if for_epoch(&grant, w) {
                    found = true;
                    if let Some(slot) = &w.grant {
                        slot.put(grant);
                    }
                }
                w.notify.notify_one();
            }
            found
        }
        Message::Head(n) => {
            let behind = entry
                .waiters
                .iter()
                .map(|w| w.number)
                .filter(|&m| m > n)
                .min();
            let mut found = false;
            for w in &entry.waiters {
                if w.number == n {
                    found = true;
                }
                if w.number == n || behind == Some(w.number) {
                    w.notify.notify_one();
                }
            }
            found
        }
        Message::All => {
            entry.waiters.iter().for_each(|w| w.notify.notify_one());
            false
        }
    };
    if !named && entry.keeps {
        entry.stash.keep(message);
    }
}

/// After a message may have been lost on `channel` (every channel for
/// `None`): its waiters can no longer count on having heard everything
/// until the subscription is confirmed again.
fn deafen(shared: &Shared, channel: Option<&[u8]>) {
    let mut state = lock(&shared.state);
    match channel {
        Some(name) => {
            if let Some(entry) = state.channels.get_mut(name) {
                entry.heard_since = None;
            }
        }
        None => state
            .channels
            .values_mut()
            .for_each(|entry| entry.heard_since = None),
    }
}

#[cfg(test)]
mod tests {
    use super::stash::STASH_LEN;
    use super::*;
    use crate::backend::Attempt;

    /// A subscriber with no task, its one channel `ch` (a native process
    /// channel, which keeps unmatched messages) confirmed at `since`.
    fn subscribed(since: Instant) -> Subscriber {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            kick: Notify::new(),
            timeout: Duration::from_secs(1),
        });
        let channel = Channel {
            confirmed: true,
            heard_since: Some(since),
            keeps: true,
            ..Channel::default()
        };
        lock(&shared.state).channels.insert(b"ch".to_vec(), channel);
        Subscriber { shared }
    }

    fn ticket(number: u64, epoch: u64) -> TicketId {
        TicketId {
            number,
            epoch: Some(epoch),
        }
    }

    /// A native waiter of `ticket(number, epoch)` on `ch`, with a grant
    /// slot: its registration, wake-up, slot, and heard-since time.
    async fn waiter(
        sub: &Subscriber,
        number: u64,
        epoch: u64,
    ) -> (Registration, Arc<Notify>, GrantSlot, Option<Instant>) {
        let (notify, slot) = (Arc::new(Notify::new()), GrantSlot::default());
        let (registration, subscribed, heard) = sub
            .register(
                b"ch",
                ticket(number, epoch),
                notify.clone(),
                Some(slot.clone()),
                true,
            )
            .await;
        assert!(matches!(subscribed, Subscribed::Confirmed));
        (registration, notify, slot, heard)
    }

    async fn signalled(notify: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(1), notify.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_grant_that_comes_before_its_waiter_registers_is_kept_for_it() {
        let since = Instant::now();
        let sub = subscribed(since);
        let (_r0, other, other_slot, _) = waiter(&sub, 4, 100).await;
        // Ticket 5 (epoch 100: token 105) is granted before it registers.
        deliver(&sub.shared, b"ch", b"5 105 60000000");
        assert!(!signalled(&other).await, "another ticket's grant woke 4");
        assert_eq!(other_slot.take(), None);
        let (_r1, notify, slot, heard) = waiter(&sub, 5, 100).await;
        assert_eq!(heard, Some(since));
        assert!(signalled(&notify).await);
        match slot.take() {
            Some(Attempt::Acquired {
                fencing_token: 105,
                lease,
            }) => assert!(lease <= Duration::from_secs(60) && lease > Duration::from_secs(59)),
            other => panic!("not the kept grant: {other:?}"),
        }
        // Taken once: a later waiter of the same number finds nothing.
        let (_r2, late, late_slot, _) = waiter(&sub, 5, 100).await;
        assert_eq!(late_slot.take(), None);
        assert!(!signalled(&late).await);
    }

    #[tokio::test]
    async fn a_kept_grant_of_another_incarnation_only_wakes_the_waiter_to_look() {
        let sub = subscribed(Instant::now());
        deliver(&sub.shared, b"ch", b"5 105 60000000");
        let (_r, notify, slot, _) = waiter(&sub, 5, 200).await;
        assert_eq!(slot.take(), None);
        assert!(signalled(&notify).await);
    }

    #[tokio::test]
    async fn a_live_grant_for_another_incarnation_is_kept_for_its_own_ticket() {
        let sub = subscribed(Instant::now());
        let (_old, notify, slot, _) = waiter(&sub, 5, 200).await;
        // Ticket 5 of epoch 100 (token 105) is granted while the waiter of
        // ticket 5 of epoch 200 is registered: that one only looks.
        deliver(&sub.shared, b"ch", b"5 105 60000000");
        assert_eq!(slot.take(), None);
        assert!(signalled(&notify).await);
        let (_r, _, own, _) = waiter(&sub, 5, 100).await;
        assert!(
            matches!(
                own.take(),
                Some(Attempt::Acquired {
                    fencing_token: 105,
                    ..
                })
            ),
            "the grant was not kept for ticket 5 of epoch 100"
        );
    }

    #[tokio::test]
    async fn kept_wake_ups_reach_the_waiters_they_may_concern() {
        let sub = subscribed(Instant::now());
        deliver(&sub.shared, b"ch", b"7");
        let below = Arc::new(Notify::new());
        let _r = sub
            .register(b"ch", ticket(6, 1), below.clone(), None, true)
            .await;
        assert!(!signalled(&below).await, "a head above 6 woke it");
        let above = Arc::new(Notify::new());
        let _r = sub
            .register(b"ch", ticket(8, 1), above.clone(), None, true)
            .await;
        assert!(signalled(&above).await);
        deliver(&sub.shared, b"ch", b"-");
        let any = Arc::new(Notify::new());
        let _r = sub
            .register(b"ch", ticket(1, 1), any.clone(), None, true)
            .await;
        assert!(signalled(&any).await);
    }

    /// A rasa-layout key channel keeps nothing: its waiters always look
    /// after registering, so a head message for another process's ticket
    /// must not make them look twice.
    #[tokio::test]
    async fn a_channel_of_the_rasa_layout_keeps_no_message() {
        let sub = subscribed(Instant::now());
        lock(&sub.shared.state)
            .channels
            .get_mut(&b"ch"[..])
            .unwrap()
            .keeps = false;
        deliver(&sub.shared, b"ch", b"3");
        deliver(&sub.shared, b"ch", b"*");
        let notify = Arc::new(Notify::new());
        let (_r, _, heard) = sub
            .register(b"ch", ticket(7, 1), notify.clone(), None, false)
            .await;
        assert!(!signalled(&notify).await, "an old message woke the waiter");
        assert_eq!(heard, None, "a rasa waiter must look");
    }

    #[tokio::test]
    async fn a_full_stash_or_a_lost_connection_makes_waiters_look() {
        let since = Instant::now();
        let sub = subscribed(since);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let first = Instant::now();
        for n in 0..=STASH_LEN as u64 {
            deliver(
                &sub.shared,
                b"ch",
                format!("{n} {} 1000", 100 + n).as_bytes(),
            );
        }
        let (_r, _, heard) = sub
            .register(b"ch", ticket(99, 100), Arc::new(Notify::new()), None, true)
            .await;
        let heard = heard.expect("still subscribed");
        assert!(heard >= first, "the lost message's time is not in it");
        deafen(&sub.shared, None);
        let (_r, _, heard) = sub
            .register(b"ch", ticket(98, 100), Arc::new(Notify::new()), None, true)
            .await;
        assert_eq!(heard, None);
        confirm(&sub.shared, &[b"ch".to_vec()]);
        let (_r, _, heard) = sub
            .register(b"ch", ticket(97, 100), Arc::new(Notify::new()), None, true)
            .await;
        assert!(heard.is_some_and(|h| h > first));
    }
}
