//! A blocking API, for synchronous callers (threads, not tasks).
//!
//! [`LockStore`] wraps the async [`crate::LockStore`] with a tokio
//! current-thread runtime of its own, driven by one background thread that
//! the store owns: every method blocks the calling thread until the answer
//! is in, while the store's background work (Redis wake-ups, automatic
//! renewal) runs on that thread. Fairness, timeouts and the record format
//! are those of the async store; a blocking process and an async one share
//! locks through the same backend.
//!
//! Do not call these methods from async code: they block the thread, and
//! panic when called from within a tokio runtime (use the async API there).
//!
//! ```
//! use std::time::Duration;
//! use ticketlock::blocking::LockStore;
//!
//! let store = LockStore::in_memory()?;
//! let guard = store.lock("sender-42")?;
//! // ... work under the lock ...
//! guard.release()?;
//! assert!(store.try_lock("sender-42")?.is_some());
//! # Ok::<(), ticketlock::Error>(())
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::{Error, LockOptions, Result, Stats, StoreSource};

/// A lock store for synchronous code: [`crate::LockStore`] behind blocking
/// calls. Cheap to clone: clones share the store and its thread.
#[derive(Clone, Debug)]
pub struct LockStore {
    // Dropped before the driver: the store's connections go first.
    store: crate::LockStore,
    driver: Arc<Driver>,
}

/// The runtime's thread; stopped (and joined) with the last handle.
#[derive(Debug)]
struct Driver {
    handle: Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = take(&self.stop) {
            let _ = stop.send(());
        }
        if let Some(thread) = take(&self.thread) {
            let _ = thread.join();
        }
    }
}

fn take<T>(m: &Mutex<Option<T>>) -> Option<T> {
    m.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl Driver {
    fn start() -> Result<Driver> {
        let failed = |e: std::io::Error| {
            Error::unavailable(
                "blocking runtime",
                format!("cannot start the store's runtime thread: {e}"),
                Some(Box::new(e)),
            )
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ticketlock".into())
            .spawn(move || {
                // Drives the IO and timers for every `Handle::block_on`
                // until the last handle goes.
                let _ = runtime.block_on(stopped);
            })
            .map_err(failed)?;
        Ok(Driver {
            handle,
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }
}

impl LockStore {
    /// A store built as [`crate::LockStore::create`] builds it: from a
    /// configuration (connecting to Redis), or nothing (in memory).
    pub fn create(source: impl Into<StoreSource>) -> Result<Self> {
        let driver = Arc::new(Driver::start()?);
        let source = source.into();
        let store = driver.block_on(crate::LockStore::create(source))?;
        Ok(LockStore { store, driver })
    }

    /// A new in-memory store (for one process's threads).
    pub fn in_memory() -> Result<Self> {
        let driver = Arc::new(Driver::start()?);
        Ok(LockStore {
            store: crate::LockStore::in_memory(),
            driver,
        })
    }

    /// Blocks until the lock of `conversation_id` is held, with the
    /// store's default options. Fair: holders of a conversation enter in
    /// the order their tickets were issued. See [`crate::LockStore::lock`].
    pub fn lock(&self, conversation_id: &str) -> Result<LockGuard> {
        self.lock_with(
            conversation_id,
            LockOptions::new(self.store.default_lifetime()),
        )
    }

    /// [`LockStore::lock`] with `options` (lifetime, timeout,
    /// auto-renewal; renewal runs on the store's thread).
    pub fn lock_with(&self, conversation_id: &str, options: LockOptions) -> Result<LockGuard> {
        let guard = self.driver.block_on(
            self.store
                .lock(conversation_id)
                .options(options)
                .into_future(),
        )?;
        Ok(self.guard(guard))
    }

    /// Takes the lock if it is free now; `None` when it is held or others
    /// wait. Never waits. See [`crate::LockStore::try_lock`].
    pub fn try_lock(&self, conversation_id: &str) -> Result<Option<LockGuard>> {
        let guard = self.driver.block_on(self.store.try_lock(conversation_id))?;
        Ok(guard.map(|g| self.guard(g)))
    }

    /// Held locks and waiting tickets now; see [`crate::LockStore::stats`].
    pub fn stats(&self) -> Stats {
        self.store.stats()
    }

    /// Waits for releases started in the background; see
    /// [`crate::LockStore::flush`].
    pub fn flush(&self) {
        self.driver.block_on(self.store.flush());
    }

    /// The async store inside, for the record-level API. Its futures must
    /// be run by an async runtime, not by this store's thread.
    pub fn as_async(&self) -> &crate::LockStore {
        &self.store
    }

    fn guard(&self, guard: crate::LockGuard) -> LockGuard {
        LockGuard {
            guard: Some(guard),
            driver: self.driver.clone(),
        }
    }
}

use std::future::IntoFuture as _;

/// A held lock, for synchronous code. Released by [`LockGuard::release`],
/// or (ignoring the answer) when dropped; both block until the store
/// answered.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    guard: Option<crate::LockGuard>,
    driver: Arc<Driver>,
}

impl LockGuard {
    fn inner(&self) -> &crate::LockGuard {
        self.guard.as_ref().expect("present until released")
    }

    /// The conversation whose lock this is.
    pub fn conversation_id(&self) -> &str {
        self.inner().conversation_id()
    }

    /// The ticket number this guard was served with.
    pub fn ticket(&self) -> u64 {
        self.inner().ticket()
    }

    /// The fencing token; see [`crate::LockGuard::fencing_token`].
    pub fn fencing_token(&self) -> u64 {
        self.inner().fencing_token()
    }

    /// How long the caller waited for the lock.
    pub fn waited(&self) -> Duration {
        self.inner().waited()
    }

    /// Whether the guard learnt that its lease ran out.
    pub fn is_lost(&self) -> bool {
        self.inner().is_lost()
    }

    /// Extends the lease; see [`crate::LockGuard::renew`].
    pub fn renew(&self) -> Result<()> {
        self.driver.block_on(self.inner().renew())
    }

    /// Asks the store whether this guard still holds the lock.
    pub fn is_held(&self) -> Result<bool> {
        self.driver.block_on(self.inner().is_held())
    }

    /// Releases the lock and wakes the next waiter; see
    /// [`crate::LockGuard::release`].
    pub fn release(mut self) -> Result<()> {
        let guard = self.guard.take().expect("present until released");
        self.driver.block_on(guard.release())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Released here, blocking: the async guard's own fallback spawns
        // onto the current runtime, which this thread does not have.
        if let Some(guard) = self.guard.take() {
            let _ = self.driver.block_on(guard.release());
        }
    }
}
