//! The in-memory store: one process, any number of threads and tasks.
//!
//! # Implementation details
//! - Data: conversations are spread over a power-of-two number of shards,
//!   each a `Mutex<HashTable<Entry>>`; an entry is the id, the FIFO of
//!   tickets (sorted by number, `memory/queue.rs`), the next number and the
//!   record's epoch.
//!   Every operation takes one shard lock once and does O(1) work
//!   (amortised; a lookup by number is a binary search), so there is no
//!   global lock.
//! - Hashing: the id is hashed once per operation, with foldhash keyed by
//!   a random seed of each store (taken from `std`'s `RandomState`, so from
//!   the OS's random source), since ids come from users; the high bits pick
//!   the shard and the low bits the slot in its table, so the two do not
//!   correlate. SipHash (`std`'s default) cost 240 instructions per
//!   36-character id, foldhash about 30; hashing the id three times (shard,
//!   lookup, removal) was the largest cost of an uncontended cycle.
//! - Memory: an entry is removed as soon as its last ticket goes, so idle
//!   conversations cost nothing. Nearly every conversation has one ticket,
//!   which is kept inline in the entry: a conversation costs its table slot
//!   and its id, and a lock/release cycle allocates only the id.
//! - Clock: the kernel's coarse monotonic clock, as nanoseconds since the
//!   store was made in one `u64` (a read costs a sixth of what the precise
//!   clock costs; deadlines are
//!   set one tick later, so that no lease is shorter than asked), or
//!   tokio's own clock in a store made while it is paused, so that tests
//!   can pause and advance time (see `memory/clock.rs`); converted to Unix
//!   seconds only for the record view. An uncontended cycle reads it twice:
//!   the lease's deadline at issue, whether it was still live at release.
//! - Expiry: lazily, from the head of the queue, on every operation; a
//!   ticket behind the head is found expired on its owner's next look.
//! - Wake-ups: a waiting ticket gets a `Notify` when it first watches; a
//!   release or removal at the head signals the new head only (no herd).
//! - Fencing tokens and epochs come from a counter of each shard, under its
//!   mutex (one store-wide atomic counter was a line that every issue on
//!   every thread fought over; an atomic per shard, a locked instruction per
//!   issue on top of the lock's own). A conversation stays in its shard,
//!   so they increase across deletion of its record; a new record takes its
//!   epoch and its first holder's token in one step of the counter.
//! - Bounds: issue refuses a ticket when the queue already holds
//!   `max_queue_len` live tickets (counted under the shard lock, after
//!   dropping expired ones), and ids longer than [`crate::MAX_ID_LEN`].

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foldhash::SharedSeed;
use foldhash::fast::FoldHasher;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use tokio::sync::Notify;

use crate::backend::{Attempt, Backend, Issued, TicketId, Watch};
use crate::lock::{queue_full, validate_id};

mod clock;
mod queue;

use crate::{DEFAULT_MAX_QUEUE_LEN, Result, Ticket, TicketLock};
use clock::{Clock, Stamp};
use queue::{MemTicket, Queue};

/// A lock store that lives in this process's memory.
///
/// Cheap to clone: clones share the same locks. Fair (FIFO per
/// conversation), push-woken, and O(1) per operation under many threads.
#[derive(Clone)]
pub struct InMemoryLockStore {
    /// Padded, so that the `Arc`'s counts have a cache line of their own
    /// (see [`Shared`]).
    shared: Arc<Padded<Shared>>,
    /// This handle's bound on a queue; see [`InMemoryLockStore::with_max_queue_len`].
    max_queue_len: usize,
}

/// What every handle of a store reads on every operation. Kept in its
/// `Arc` as a [`Padded`] value, on a cache-line pair of its own: unpadded,
/// it shared a line with the `Arc`'s counts, which every guard writes (a
/// clone when made, a decrement when gone), and each thread's reads of
/// these fields missed after the other thread's guard (32 tasks on two
/// threads: 1.46 times the keyed map's speed with the line shared, 2.04
/// without; BENCHMARKS.md, issue 15).
struct Shared {
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// The keys of the id hash, random for each store.
    seed: SharedSeed,
    hash_key: u64,
    /// The Unix time of the clock's stamp zero, for the record view.
    base_unix: f64,
    clock: Clock,
}

/// A shard's conversations and the source of its fencing tokens and
/// epochs, both under its mutex.
struct Shard {
    table: HashTable<Entry>,
    tokens: Tokens,
}

/// A shard's fencing tokens and epochs: strictly increasing, and
/// interleaved over the shards (value `v` of shard `i` is
/// `v * shards + i`), so that they are also unique in the store. Taken
/// only under the shard's lock, so a plain number: an atomic's
/// read-modify-write cost a locked instruction per issue on top of the
/// lock's own.
struct Tokens {
    next: u64,
    index: u64,
    shards: u64,
}

impl Tokens {
    /// Takes `n` values: returns the first and the step to the next.
    fn take(&mut self, n: u64) -> (u64, u64) {
        let v = self.next;
        self.next += n;
        (v * self.shards + self.index, self.shards)
    }

    fn one(&mut self) -> u64 {
        self.take(1).0
    }
}

/// A value on cache lines of its own (two: CPUs fetch lines in pairs).
/// Shards (and the counter) sharing a line made threads working on
/// different shards invalidate each other's caches: throughput on two
/// threads halved in processes where the shard array happened to be laid
/// out across lines that way. The store's shared state is padded too, away
/// from its `Arc`'s counts.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shard is picked by the hash bits from here up (at most 16 of them,
/// see [`InMemoryLockStore::with_shards`]); the table uses the lowest bits
/// and the top seven.
const SHARD_SHIFT: u32 = 40;

struct Entry {
    id: Box<str>,
    tickets: Queue,
    next_number: u64,
    epoch: u64,
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
            shared: Arc::new(Padded(Shared {
                shards: (0..n)
                    .map(|i| {
                        Padded(Mutex::new(Shard {
                            table: HashTable::new(),
                            tokens: Tokens {
                                next: 1,
                                index: i as u64,
                                shards: n as u64,
                            },
                        }))
                    })
                    .collect(),
                seed: SharedSeed::from_u64(random_u64()),
                hash_key: random_u64(),
                base_unix: unix,
                clock: Clock::new(),
            })),
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
        self.shared.shards.iter().map(|s| lock(s).table.len()).sum()
    }

    /// Whether no conversation has a record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash(&self, id: &str) -> u64 {
        self.hash_bytes(id.as_bytes())
    }

    fn hash_bytes(&self, id: &[u8]) -> u64 {
        let mut h = FoldHasher::with_seed(self.shared.hash_key, &self.shared.seed);
        // The bytes alone: foldhash mixes the length in, and only ids go
        // into these tables, so no terminator is needed.
        h.write(id);
        h.finish()
    }

    /// The hash of an entry, for the table when it resizes.
    fn rehash(&self) -> impl Fn(&Entry) -> u64 + '_ {
        |e| self.hash(&e.id)
    }

    fn shard_index(&self, hash: u64) -> usize {
        (hash >> SHARD_SHIFT) as usize & (self.shared.shards.len() - 1)
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        lock(&self.shared.shards[self.shard_index(hash)])
    }

    /// Runs `f` on the entry of `id` (and its shard's tokens), if there is
    /// one, and removes the entry when `f` leaves it without tickets.
    fn with_entry<R>(&self, id: &str, f: impl FnOnce(&mut Entry, &mut Tokens) -> R) -> Option<R> {
        let hash = self.hash(id);
        let mut guard = self.shard(hash);
        let Shard { table, tokens } = &mut *guard;
        let Ok(mut slot) = table.find_entry(hash, |e| *e.id == *id) else {
            return None;
        };
        let result = f(slot.get_mut(), tokens);
        if slot.get().tickets.is_empty() {
            slot.remove();
            shrink(table, self.rehash());
        }
        Some(result)
    }

    fn now(&self) -> Stamp {
        self.shared.clock.now()
    }

    /// When a lease of `lifetime` from `now` ends.
    fn deadline(&self, now: Stamp, lifetime: Duration) -> Stamp {
        self.shared.clock.deadline(now, lifetime)
    }

    fn to_unix(&self, t: Stamp) -> f64 {
        self.shared.base_unix + t.as_secs_f64()
    }

    /// The stamp of a Unix time; one before the store was made is its
    /// stamp zero (long expired once the clock moved on).
    fn stamp_at_unix(&self, unix: f64) -> Stamp {
        Stamp::from_secs_f64(unix - self.shared.base_unix)
    }

    fn acquire_at_head(
        &self,
        tokens: &mut Tokens,
        entry: &mut Entry,
        now: Stamp,
        lifetime: Duration,
    ) -> Attempt {
        entry.tickets.head_mut().expires = self.deadline(now, lifetime);
        Attempt::Acquired {
            fencing_token: tokens.one(),
            lease: lifetime,
        }
    }

    /// [`Backend::issue`], done at once: the lock path takes a free lock
    /// without a future of the store's. The one clock read of an
    /// uncontended cycle's issue: the lease's deadline.
    #[inline]
    pub(crate) fn issue_now(&self, id: &str, lifetime: Duration) -> Result<Issued> {
        validate_id(id)?;
        let now = self.now();
        let hash = self.hash(id);
        let mut guard = self.shard(hash);
        let Shard { table, tokens } = &mut *guard;
        let entry = match table.entry(hash, |e| *e.id == *id, self.rehash()) {
            Slot::Occupied(slot) => slot.into_mut(),
            Slot::Vacant(slot) => {
                // A new conversation: its ticket is served at once.
                let (epoch, step) = tokens.take(2);
                slot.insert(Entry {
                    id: id.into(),
                    tickets: Queue::One(MemTicket {
                        number: 0,
                        expires: self.deadline(now, lifetime),
                        waker: None,
                    }),
                    next_number: 1,
                    epoch,
                });
                return Ok(Issued {
                    ticket: TicketId {
                        number: 0,
                        epoch: Some(epoch),
                    },
                    attempt: Attempt::Acquired {
                        fencing_token: epoch + step,
                        lease: lifetime,
                    },
                });
            }
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
            expires: self.deadline(now, lifetime),
            waker: None,
        });
        let ticket = TicketId {
            number,
            epoch: Some(entry.epoch),
        };
        let attempt = if entry.tickets.len() == 1 {
            self.acquire_at_head(tokens, entry, now, lifetime)
        } else {
            entry.queued(entry.tickets.len() - 1, now)
        };
        Ok(Issued { ticket, attempt })
    }

    /// Releases (or withdraws) `ticket` of the conversation whose id is
    /// `id`'s bytes, at once: what a release and a drop do. Bytes, so that
    /// a guard's inline copy of the id need not be checked as UTF-8 again.
    pub(crate) fn remove(&self, id: &[u8], ticket: TicketId) -> bool {
        // One clock read: whether the released ticket was still live is the
        // answer (a holder whose lease ran out was not exclusive any more).
        let now = self.now();
        let hash = self.hash_bytes(id);
        let mut shard = self.shard(hash);
        let Ok(mut slot) = shard.table.find_entry(hash, |e| e.id.as_bytes() == id) else {
            return false;
        };
        let entry = slot.get_mut();
        if !entry.matches(ticket) {
            return false;
        }
        // The usual case, a holder nobody waits behind: the entry goes at
        // once (pruning would find nothing else to drop).
        if let Queue::One(t) = &entry.tickets
            && t.number == ticket.number
        {
            let live = t.expires > now;
            slot.remove();
            shrink(&mut shard.table, self.rehash());
            return live;
        }
        // Expired tickets go first, as on Redis.
        entry.prune(now);
        let live = entry.index_of(ticket.number).is_some_and(|i| {
            let live = entry.tickets.get(i).is_some_and(|t| t.expires > now);
            entry.tickets.remove(i);
            if i == 0 {
                entry.prune(now);
                if let Some(head) = entry.tickets.front() {
                    head.wake();
                }
            }
            live
        });
        if entry.tickets.is_empty() {
            slot.remove();
            shrink(&mut shard.table, self.rehash());
        }
        live
    }
}

impl Entry {
    fn matches(&self, ticket: TicketId) -> bool {
        ticket.epoch.is_none_or(|e| e == self.epoch)
    }

    fn index_of(&self, number: u64) -> Option<usize> {
        match &self.tickets {
            Queue::One(t) => (t.number == number).then_some(0),
            Queue::Many(q) => q.binary_search_by_key(&number, |t| t.number).ok(),
        }
    }

    /// Drops expired tickets from the head; wakes the new head if any went.
    fn prune(&mut self, now: Stamp) {
        let mut pruned = false;
        while self.tickets.front().is_some_and(|t| t.expires <= now) {
            self.tickets.pop_front();
            pruned = true;
        }
        if pruned && let Some(head) = self.tickets.front() {
            head.wake();
        }
    }

    fn queued(&self, index: usize, now: Stamp) -> Attempt {
        Attempt::Queued {
            ahead: index as u64,
            holder_remaining: self.tickets.front().map(|h| h.expires.since(now)),
        }
    }
}

/// 64 unpredictable bits: `std`'s `RandomState` keys SipHash from the OS's
/// random source (once per thread, then a new key for each state).
fn random_u64() -> u64 {
    RandomState::new().hash_one(0u8)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No critical section here can panic half-way, so a poisoned shard is
    // still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives memory back after a burst: a table that emptied to a quarter of
/// its capacity is shrunk.
fn shrink(map: &mut HashTable<Entry>, rehash: impl Fn(&Entry) -> u64) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2, rehash);
    }
}

impl Backend for InMemoryLockStore {
    fn describe(&self) -> String {
        "in-memory".into()
    }

    async fn issue(&self, id: &str, lifetime: Duration) -> Result<Issued> {
        self.issue_now(id, lifetime)
    }

    async fn try_acquire(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<Attempt> {
        let now = self.now();
        let attempt = self.with_entry(id, |entry, tokens| {
            if !entry.matches(ticket) {
                return Attempt::Lost;
            }
            entry.prune(now);
            match entry.index_of(ticket.number) {
                None => Attempt::Lost,
                Some(0) => self.acquire_at_head(tokens, entry, now, lifetime),
                // A waiter silent for longer than its lifetime lost its
                // place (Redis drops every expired ticket; here it is found
                // on its owner's next look).
                Some(i) if entry.tickets.get(i).is_some_and(|t| t.expires <= now) => {
                    entry.tickets.remove(i);
                    Attempt::Lost
                }
                Some(i) => {
                    if let Some(t) = entry.tickets.get_mut(i) {
                        t.expires = self.deadline(now, lifetime);
                    }
                    entry.queued(i, now)
                }
            }
        });
        Ok(attempt.unwrap_or(Attempt::Lost))
    }

    async fn release(&self, id: &str, ticket: TicketId) -> Result<bool> {
        Ok(self.remove(id.as_bytes(), ticket))
    }

    fn release_on_drop(&self, id: &str, ticket: TicketId) {
        self.remove(id.as_bytes(), ticket);
    }

    async fn renew(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<bool> {
        let now = self.now();
        let held = self.with_entry(id, |entry, _| {
            if !entry.matches(ticket) {
                return false;
            }
            entry.prune(now);
            match entry.tickets.get_mut(0) {
                Some(head) if head.number == ticket.number => {
                    head.expires = self.deadline(now, lifetime);
                    true
                }
                _ => false,
            }
        });
        Ok(held.unwrap_or(false))
    }

    async fn check(&self, id: &str, ticket: TicketId) -> Result<bool> {
        let now = self.now();
        let hash = self.hash(id);
        let shard = self.shard(hash);
        Ok(shard
            .table
            .find(hash, |e| *e.id == *id)
            .filter(|e| e.matches(ticket))
            .is_some_and(|e| {
                e.tickets
                    .front()
                    .is_some_and(|h| h.number == ticket.number && h.expires > now)
            }))
    }

    async fn watch(&self, id: &str, ticket: TicketId) -> Result<Watch> {
        let hash = self.hash(id);
        let mut shard = self.shard(hash);
        let Some(entry) = shard
            .table
            .find_mut(hash, |e| *e.id == *id)
            .filter(|e| e.matches(ticket))
        else {
            return Ok(Watch::signalled());
        };
        let Some(t) = entry
            .index_of(ticket.number)
            .and_then(|i| entry.tickets.get_mut(i))
        else {
            return Ok(Watch::signalled());
        };
        let waker = t.waker.get_or_insert_with(|| Arc::new(Notify::new()));
        Ok(Watch::new(waker.clone()))
    }

    async fn get_lock(&self, id: &str) -> Result<Option<TicketLock>> {
        let hash = self.hash(id);
        let shard = self.shard(hash);
        Ok(shard.table.find(hash, |e| *e.id == *id).map(|e| {
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
        let hash = self.hash(id);
        let mut shard = self.shard(hash);
        let mut old = shard
            .table
            .find_entry(hash, |e| *e.id == *id)
            .ok()
            .map(|slot| slot.remove().0);
        if lock.tickets().len() == 0 {
            if let Some(old) = old {
                old.tickets.iter().for_each(MemTicket::wake);
            }
            shrink(&mut shard.table, self.rehash());
            return Ok(());
        }
        let mut tickets: Vec<MemTicket> = lock
            .tickets()
            .map(|t| MemTicket {
                number: t.number,
                expires: self.stamp_at_unix(t.expires),
                waker: None,
            })
            .collect();
        tickets.sort_by_key(|t| t.number);
        tickets.dedup_by_key(|t| t.number);
        // Waiters of tickets that stay keep their wakers; all are told to look.
        if let Some(old) = old.as_mut() {
            for t in &mut tickets {
                if let Some(o) = old.index_of(t.number).and_then(|i| old.tickets.get_mut(i)) {
                    t.waker = o.waker.take();
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
            (None, None) => shard.tokens.one(),
        };
        shard.table.insert_unique(
            hash,
            Entry {
                id: id.into(),
                tickets: tickets.into(),
                next_number,
                epoch,
            },
            self.rehash(),
        );
        Ok(())
    }

    async fn delete_lock(&self, id: &str) -> Result<()> {
        let hash = self.hash(id);
        let mut shard = self.shard(hash);
        if let Ok(slot) = shard.table.find_entry(hash, |e| *e.id == *id) {
            let (old, _) = slot.remove();
            old.tickets.iter().for_each(MemTicket::wake);
            shrink(&mut shard.table, self.rehash());
        }
        Ok(())
    }

    async fn update_lock(&self, id: &str) -> Result<()> {
        let now = self.now();
        self.with_entry(id, |entry, _| {
            let head = entry.tickets.front().map(|t| t.number);
            entry.tickets.retain(|t| t.expires > now);
            if let Some(h) = entry.tickets.front()
                && Some(h.number) != head
            {
                h.wake();
            }
        });
        Ok(())
    }

    async fn conversations(&self) -> Result<Vec<String>> {
        Ok(self
            .shared
            .shards
            .iter()
            .flat_map(|s| {
                lock(s)
                    .table
                    .iter()
                    .map(|e| e.id.to_string())
                    .collect::<Vec<_>>()
            })
            .collect())
    }
}

impl InMemoryLockStore {
    /// The store's held locks and waiting tickets now: a walk over the
    /// table, one shard lock at a time (no other cost on any path).
    pub(crate) fn stats(&self) -> crate::Stats {
        let now = self.now();
        let (mut held, mut waiting) = (0, 0);
        for shard in self.shared.shards.iter() {
            for entry in lock(shard).table.iter() {
                let q = &entry.tickets;
                if q.front().is_some_and(|t| t.expires > now) {
                    held += 1;
                }
                waiting += (1..q.len())
                    .filter(|&i| q.get(i).is_some_and(|t| t.expires > now))
                    .count() as u64;
            }
        }
        crate::Stats::new(held, waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_with_one_ticket_fits_one_table_slot() {
        // The id, the inline ticket, the next number and the epoch.
        assert!(std::mem::size_of::<Entry>() <= 72);
        // A ticket: its number, its expiry in nanoseconds, its waker.
        assert_eq!(std::mem::size_of::<MemTicket>(), 24);
    }

    #[test]
    fn the_store_state_and_each_shard_sit_on_cache_lines_of_their_own() {
        // The store's `Arc` counts, which every guard writes, sit just
        // before its data: data on a 128-byte boundary leaves them on
        // another line than the fields every operation reads.
        let store = InMemoryLockStore::with_shards(4);
        let data = Arc::as_ptr(&store.shared) as usize;
        assert_eq!(data % 128, 0, "the shared state is not line-aligned");
        // What the `Arc` holds is padded (fails if it holds `Shared` bare).
        assert_eq!(std::mem::align_of_val(&*store.shared), 128);
        let shards = &store.shared.shards;
        for pair in shards.windows(2) {
            let gap = std::ptr::from_ref(&pair[1]) as usize - std::ptr::from_ref(&pair[0]) as usize;
            assert!(gap >= 128, "two shards {gap} bytes apart");
        }
    }

    #[test]
    fn ids_spread_evenly_over_the_shards_and_each_store_hashes_its_own_way() {
        let (a, b) = (
            InMemoryLockStore::with_shards(8),
            InMemoryLockStore::with_shards(8),
        );
        let ids: Vec<String> = (0..8000)
            .map(|i| format!("4f1c9d0e-0000-4000-8000-{i:012x}"))
            .collect();
        let mut per_shard = [0u32; 8];
        for id in &ids {
            per_shard[(a.hash(id) >> SHARD_SHIFT) as usize & 7] += 1;
        }
        // 1000 expected per shard; a bias of the bits above SHARD_SHIFT
        // (ids differing only in their last characters) would show here.
        assert!(
            per_shard.iter().all(|&n| (850..1150).contains(&n)),
            "{per_shard:?}"
        );
        // Seeded per store: another store's hashes of the same ids differ.
        let same = ids.iter().filter(|id| a.hash(id) == b.hash(id)).count();
        assert_eq!(same, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn releasing_the_only_ticket_removes_the_record_and_says_whether_it_was_live() {
        let store = InMemoryLockStore::new();
        let lifetime = Duration::from_secs(10);
        let first = store.issue("c", lifetime).await.unwrap();
        assert!(matches!(first.attempt, Attempt::Acquired { .. }));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(store.release("c", first.ticket).await.unwrap());
        assert!(store.is_empty());
        let second = store.issue("c", lifetime).await.unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        // The lease ran out: the release says so, and the record goes all
        // the same.
        assert!(!store.release("c", second.ticket).await.unwrap());
        assert!(store.is_empty());
        // A ticket of another incarnation of the record is not released.
        let third = store.issue("c", lifetime).await.unwrap();
        assert!(!store.release("c", second.ticket).await.unwrap());
        assert!(store.check("c", third.ticket).await.unwrap());
        assert!(store.release("c", third.ticket).await.unwrap());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn saved_expiry_times_read_back_also_before_the_store_was_made() {
        let store = InMemoryLockStore::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let times = [now - 3600.0, now - 0.25, now + 30.0, now + 86_400.0 * 365.0];
        let lock = TicketLock::with_tickets(
            "c",
            times
                .iter()
                .enumerate()
                .map(|(i, &t)| Ticket::new(i as u64, t)),
        );
        store.save_lock(&lock).await.unwrap();
        let back = store.get_lock("c").await.unwrap().expect("saved");
        let read: Vec<(u64, f64)> = back.tickets().map(|t| (t.number, t.expires)).collect();
        assert_eq!(read.len(), times.len());
        for ((number, expires), (i, t)) in read.iter().zip(times.iter().enumerate()) {
            assert_eq!(*number, i as u64);
            // Nanoseconds in the store, a float of Unix seconds outside.
            assert!((expires - t).abs() < 1e-5, "{expires} read back for {t}");
        }
        // The expired head is expired for the store too.
        let head = TicketId::number(0);
        assert!(!store.check("c", head).await.unwrap());
    }

    #[tokio::test]
    async fn one_hash_picks_shard_and_slot_without_losing_entries() {
        let store = InMemoryLockStore::with_shards(4);
        for i in 0..10_000 {
            store
                .issue(&format!("c{i}"), Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 10_000);
        let mut ids = store.conversations().await.unwrap();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10_000);
        for i in 0..10_000 {
            assert!(
                store
                    .release(&format!("c{i}"), TicketId::number(0))
                    .await
                    .unwrap()
            );
        }
        assert!(store.is_empty());
        // Shrunk back after the burst.
        assert!(
            store
                .shared
                .shards
                .iter()
                .all(|s| lock(s).table.capacity() <= 64)
        );
    }
}
