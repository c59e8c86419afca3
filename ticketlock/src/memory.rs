//! The in-memory store: one process, any number of threads and tasks.
//!
//! # Implementation details
//! - Data: conversations are spread over a power-of-two number of shards,
//!   each a `Mutex<HashMap<id, Entry>>`; an entry is the FIFO of tickets
//!   (sorted by number), the next number and the record's epoch. Every
//!   operation takes one shard lock once and does O(1) work (amortised; a
//!   lookup by number is a binary search), so there is no global lock.
//! - Memory: an entry is removed as soon as its last ticket goes, so idle
//!   conversations cost nothing.
//! - Clock: `tokio::time::Instant`, so tests can pause and advance time;
//!   converted to Unix seconds only for the record view.
//! - Expiry: lazily, from the head of the queue, on every operation; a
//!   ticket behind the head is found expired on its owner's next look.
//! - Wake-ups: a waiting ticket gets a `Notify` when it first watches; a
//!   release or removal at the head signals the new head only (no herd).
//! - Fencing tokens and epochs come from one store-wide counter, so they
//!   increase across deletion of a record.
//! - Bounds: issue refuses a ticket when the queue already holds
//!   `max_queue_len` live tickets (counted under the shard lock, after
//!   dropping expired ones), and ids longer than [`crate::MAX_ID_LEN`].

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{Attempt, Backend, Issued, TicketId, Watch};
use crate::lock::{queue_full, validate_id};
use crate::{DEFAULT_MAX_QUEUE_LEN, Result, Ticket, TicketLock};

/// A lock store that lives in this process's memory.
///
/// Cheap to clone: clones share the same locks. Fair (FIFO per
/// conversation), push-woken, and O(1) per operation under many threads.
#[derive(Clone)]
pub struct InMemoryLockStore {
    shared: Arc<Shared>,
    /// This handle's bound on a queue; see [`InMemoryLockStore::with_max_queue_len`].
    max_queue_len: usize,
}

struct Shared {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Source of fencing tokens and epochs; strictly increasing.
    counter: AtomicU64,
    /// The Unix time of `base`, for the record view.
    base_unix: f64,
    base: Instant,
}

type Shard = HashMap<Box<str>, Entry>;

struct Entry {
    tickets: VecDeque<MemTicket>,
    next_number: u64,
    epoch: u64,
}

struct MemTicket {
    number: u64,
    expires: Instant,
    waker: Option<Arc<Notify>>,
}

impl MemTicket {
    fn wake(&self) {
        if let Some(w) = &self.waker {
            w.notify_one();
        }
    }
}

impl Default for InMemoryLockStore {
    fn default() -> Self {
        InMemoryLockStore::new()
    }
}

impl std::fmt::Debug for InMemoryLockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryLockStore")
            .field("shards", &self.shared.shards.len())
            .field("conversations", &self.len())
            .field("max_queue_len", &self.max_queue_len)
            .finish()
    }
}

impl InMemoryLockStore {
    /// An empty store, sharded for this machine's parallelism.
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        InMemoryLockStore::with_shards(cpus * 8)
    }

    /// An empty store with at least `shards` shards (rounded up to a power of
    /// two).
    pub fn with_shards(shards: usize) -> Self {
        let n = shards.clamp(1, 1 << 16).next_power_of_two();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        InMemoryLockStore {
            shared: Arc::new(Shared {
                shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                counter: AtomicU64::new(1),
                base_unix: unix,
                base: Instant::now(),
            }),
            max_queue_len: DEFAULT_MAX_QUEUE_LEN,
        }
    }

    /// This handle, refusing to issue a ticket (with
    /// [`crate::Error::QueueFull`]) when the conversation's queue already
    /// holds `max_queue_len` live tickets (at least 1; default
    /// [`DEFAULT_MAX_QUEUE_LEN`]). Other handles on the same store keep
    /// their own bound.
    pub fn with_max_queue_len(mut self, max_queue_len: usize) -> Self {
        self.max_queue_len = max_queue_len.max(1);
        self
    }

    /// The most tickets this handle lets a queue hold.
    pub fn max_queue_len(&self) -> usize {
        self.max_queue_len
    }

    /// How many conversations have a record now.
    pub fn len(&self) -> usize {
        self.shared.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no conversation has a record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, id: &str) -> MutexGuard<'_, Shard> {
        let h = self.shared.hasher.hash_one(id) as usize;
        lock(&self.shared.shards[h & (self.shared.shards.len() - 1)])
    }

    fn next_token(&self) -> u64 {
        self.shared.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn to_unix(&self, t: Instant) -> f64 {
        let base = self.shared.base;
        if t >= base {
            self.shared.base_unix + (t - base).as_secs_f64()
        } else {
            self.shared.base_unix - (base - t).as_secs_f64()
        }
    }

    fn instant_at_unix(&self, unix: f64) -> Instant {
        let delta = unix - self.shared.base_unix;
        let base = self.shared.base;
        let d = Duration::try_from_secs_f64(delta.abs()).unwrap_or(Duration::from_secs(1 << 40));
        if delta >= 0.0 {
            base.checked_add(d)
                .unwrap_or(base + Duration::from_secs(1 << 30))
        } else {
            base.checked_sub(d).unwrap_or(base)
        }
    }

    fn acquire_at_head(&self, entry: &mut Entry, now: Instant, lifetime: Duration) -> Attempt {
        entry.tickets[0].expires = now + lifetime;
        Attempt::Acquired {
            fencing_token: self.next_token(),
            lease: lifetime,
        }
    }

    fn remove(&self, id: &str, ticket: TicketId) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(id);
        let Some(entry) = shard.get_mut(id).filter(|e| e.matches(ticket)) else {
            return false;
        };
        // Expired tickets go first, as on Redis: a holder whose lease ran
        // out learns here that it was not exclusive any more.
        entry.prune(now);
        let live = match entry.index_of(ticket.number) {
            None => false,
            Some(i) => {
                let live = entry.tickets[i].expires > now;
                entry.tickets.remove(i);
                if i == 0 {
                    entry.prune(now);
                    if let Some(head) = entry.tickets.front() {
                        head.wake();
                    }
                }
                live
            }
        };
        if entry.tickets.is_empty() {
            shard.remove(id);
            shrink(&mut shard);
        }
        live
    }
}

impl Entry {
    fn matches(&self, ticket: TicketId) -> bool {
        ticket.epoch.is_none_or(|e| e == self.epoch)
    }

    fn index_of(&self, number: u64) -> Option<usize> {
        self.tickets
            .binary_search_by_key(&number, |t| t.number)
            .ok()
    }

    /// Drops expired tickets from the head; wakes the new head if any went.
    fn prune(&mut self, now: Instant) {
        let mut pruned = false;
        while self.tickets.front().is_some_and(|t| t.expires <= now) {
            self.tickets.pop_front();
            pruned = true;
        }
        if pruned && let Some(head) = self.tickets.front() {
            head.wake();
        }
    }

    fn queued(&self, index: usize, now: Instant) -> Attempt {
        Attempt::Queued {
            ahead: index as u64,
            holder_remaining: self
                .tickets
                .front()
                .map(|h| h.expires.saturating_duration_since(now)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No critical section here can panic half-way, so a poisoned shard is
    // still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives memory back after a burst: a map that emptied to a quarter of its
/// capacity is shrunk.
fn shrink(map: &mut Shard) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

impl Backend for InMemoryLockStore {
    fn describe(&self) -> String {
        "in-memory".into()
    }

    async fn issue(&self, id: &str, lifetime: Duration) -> Result<Issued> {
        validate_id(id)?;
        let now = Instant::now();
        let mut shard = self.shard(id);
        let entry = match shard.get_mut(id) {
            Some(e) => e,
            None => shard.entry(id.into()).or_insert(Entry {
                tickets: VecDeque::with_capacity(1),
                next_number: 0,
                epoch: self.next_token(),
            }),
        };
        entry.prune(now);
        if entry.tickets.len() >= self.max_queue_len {
            // Only the head was pruned: waiters that vanished further back
            // still count until they are dropped here. The head is live, so
            // it stays and needs no wake-up.
            entry.tickets.retain(|t| t.expires > now);
            if entry.tickets.len() >= self.max_queue_len {
                return Err(queue_full(id, self.max_queue_len));
            }
        }
        let number = entry.next_number;
        entry.next_number += 1;
        entry.tickets.push_back(MemTicket {
            number,
            expires: now + lifetime,
            waker: None,
        });
        let ticket = TicketId {
            number,
            epoch: Some(entry.epoch),
        };
        let attempt = if entry.tickets.len() == 1 {
            self.acquire_at_head(entry, now, lifetime)
        } else {
            entry.queued(entry.tickets.len() - 1, now)
        };
        Ok(Issued { ticket, attempt })
    }

    async fn try_acquire(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<Attempt> {
        let now = Instant::now();
        let mut shard = self.shard(id);
        let Some(entry) = shard.get_mut(id).filter(|e| e.matches(ticket)) else {
            return Ok(Attempt::Lost);
        };
        entry.prune(now);
        let attempt = match entry.index_of(ticket.number) {
            None => Attempt::Lost,
            Some(0) => self.acquire_at_head(entry, now, lifetime),
            // A waiter silent for longer than its lifetime lost its place
            // (Redis drops every expired ticket; here it is found on its
            // owner's next look).
            Some(i) if entry.tickets[i].expires <= now => {
                entry.tickets.remove(i);
                Attempt::Lost
            }
            Some(i) => {
                entry.tickets[i].expires = now + lifetime;
                entry.queued(i, now)
            }
        };
        if entry.tickets.is_empty() {
            shard.remove(id);
        }
        Ok(attempt)
    }

    async fn release(&self, id: &str, ticket: TicketId) -> Result<bool> {
        Ok(self.remove(id, ticket))
    }

    fn release_on_drop(&self, id: &str, ticket: TicketId) {
        self.remove(id, ticket);
    }

    async fn renew(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut shard = self.shard(id);
        let Some(entry) = shard.get_mut(id).filter(|e| e.matches(ticket)) else {
            return Ok(false);
        };
        entry.prune(now);
        let held = entry
            .tickets
            .front()
            .is_some_and(|h| h.number == ticket.number);
        if held {
            entry.tickets[0].expires = now + lifetime;
        } else if entry.tickets.is_empty() {
            shard.remove(id);
        }
        Ok(held)
    }

    async fn check(&self, id: &str, ticket: TicketId) -> Result<bool> {
        let now = Instant::now();
        let shard = self.shard(id);
        Ok(shard
            .get(id)
            .filter(|e| e.matches(ticket))
            .is_some_and(|e| {
                e.tickets
                    .front()
                    .is_some_and(|h| h.number == ticket.number && h.expires > now)
            }))
    }

    async fn watch(&self, id: &str, ticket: TicketId) -> Result<Watch> {
        let mut shard = self.shard(id);
        let Some(entry) = shard.get_mut(id).filter(|e| e.matches(ticket)) else {
            return Ok(Watch::signalled());
        };
        let Some(i) = entry.index_of(ticket.number) else {
            return Ok(Watch::signalled());
        };
        let waker = entry.tickets[i]
            .waker
            .get_or_insert_with(|| Arc::new(Notify::new()));
        Ok(Watch::new(waker.clone()))
    }

    async fn get_lock(&self, id: &str) -> Result<Option<TicketLock>> {
        let shard = self.shard(id);
        Ok(shard.get(id).map(|e| {
            let mut lock = TicketLock::with_tickets(
                id,
                e.tickets
                    .iter()
                    .map(|t| Ticket::new(t.number, self.to_unix(t.expires))),
            );
            lock.set_epoch(Some(e.epoch));
            lock.set_last_issued(e.next_number.checked_sub(1));
            lock
        }))
    }

    async fn save_lock(&self, lock: &TicketLock) -> Result<()> {
        let id = lock.conversation_id();
        let mut shard = self.shard(id);
        let mut old = shard.remove(id);
        if lock.tickets().len() == 0 {
            if let Some(old) = old {
                old.tickets.iter().for_each(MemTicket::wake);
            }
            shrink(&mut shard);
            return Ok(());
        }
        let mut tickets: Vec<MemTicket> = lock
            .tickets()
            .map(|t| MemTicket {
                number: t.number,
                expires: self.instant_at_unix(t.expires),
                waker: None,
            })
            .collect();
        tickets.sort_by_key(|t| t.number);
        tickets.dedup_by_key(|t| t.number);
        // Waiters of tickets that stay keep their wakers; all are told to look.
        if let Some(old) = old.as_mut() {
            for t in &mut tickets {
                if let Some(i) = old.index_of(t.number) {
                    t.waker = old.tickets[i].waker.take();
                }
            }
            old.tickets.iter().for_each(MemTicket::wake);
        }
        tickets.iter().for_each(MemTicket::wake);
        let last = tickets.last().map_or(0, |t| t.number);
        let next_number = lock
            .last_issued()
            .map_or(0, |n| n + 1)
            .max(last + 1)
            .max(old.as_ref().map_or(0, |o| o.next_number));
        let epoch = match (lock.epoch(), &old) {
            (Some(e), _) => e,
            (None, Some(o)) => o.epoch,
            (None, None) => self.next_token(),
        };
        shard.insert(
            id.into(),
            Entry {
                tickets: tickets.into(),
                next_number,
                epoch,
            },
        );
        Ok(())
    }

    async fn delete_lock(&self, id: &str) -> Result<()> {
        let mut shard = self.shard(id);
        if let Some(old) = shard.remove(id) {
            old.tickets.iter().for_each(MemTicket::wake);
            shrink(&mut shard);
        }
        Ok(())
    }

    async fn update_lock(&self, id: &str) -> Result<()> {
        let now = Instant::now();
        let mut shard = self.shard(id);
        if let Some(entry) = shard.get_mut(id) {
            let head = entry.tickets.front().map(|t| t.number);
            entry.tickets.retain(|t| t.expires > now);
            if let Some(h) = entry.tickets.front()
                && Some(h.number) != head
            {
                h.wake();
            }
            if entry.tickets.is_empty() {
                shard.remove(id);
            }
        }
        Ok(())
    }

    async fn conversations(&self) -> Result<Vec<String>> {
        Ok(self
            .shared
            .shards
            .iter()
            .flat_map(|s| lock(s).keys().map(|k| k.to_string()).collect::<Vec<_>>())
            .collect())
    }
}
