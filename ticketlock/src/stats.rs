//! A snapshot of a store's locks: [`LockStore::stats`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::LockStore;
use crate::store::Kind;

/// How many locks are held and how many tickets wait, now (like a
/// connection pool's status). Made by [`LockStore::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Locks held: conversations whose first ticket is live.
    pub held: u64,
    /// Live tickets waiting behind a holder.
    pub waiting: u64,
}

impl Stats {
    pub(crate) fn new(held: u64, waiting: u64) -> Self {
        Stats { held, waiting }
    }
}

impl LockStore {
    /// How many locks are held and tickets wait, now. Cheap: no round
    /// trip.
    ///
    /// In memory, the whole store's (a walk over its table). On a remote
    /// store, those of this process's handles of the store (its clones):
    /// guards alive, and tickets issued through them that are not served
    /// yet; other processes' locks are not counted (ask the server, e.g.
    /// `ticketlock inspect`, for those).
    pub fn stats(&self) -> Stats {
        match &self.kind {
            Kind::InMemory(m) => m.stats(),
            #[allow(unreachable_patterns)] // remote backends, by feature
            _ => counters(&self.kind).map_or_else(Stats::default, Counters::snapshot),
        }
    }
}

/// The counts of a remote store's handles in this process.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    held: AtomicU64,
    waiting: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats::new(
            self.held.load(Ordering::Relaxed),
            self.waiting.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn held(&self, delta: i64) {
        add(&self.held, delta);
    }

    pub(crate) fn waiting(&self, delta: i64) {
        add(&self.waiting, delta);
    }
}

fn add(a: &AtomicU64, delta: i64) {
    if delta >= 0 {
        a.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        a.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

/// The counters of `store`'s backend; `None` in memory, whose table tells
/// the counts (so its paths pay nothing for them).
#[inline]
pub(crate) fn counters(store: &Kind) -> Option<&Counters> {
    match store {
        #[cfg(feature = "redis")]
        Kind::Redis(r) => Some(r.counters()),
        #[cfg(feature = "postgres")]
        Kind::Postgres(p) => Some(p.counters()),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
