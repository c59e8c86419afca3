//! The package's own tokio runtime, and the bridge that lets Python
//! coroutines poll ticketlock's futures.
//!
//! Implementation details:
//!
//! - **Bridge.** Awaitables are PyO3's own coroutines (`async fn` methods,
//!   feature `experimental-async`): Python's `send` polls the Rust future on
//!   the calling thread, so a free lock is taken during the first `send`,
//!   without a trip through the event loop; a pending future parks on an
//!   `asyncio.Future` that its waker resolves with `call_soon_threadsafe`.
//!   `throw` (a cancelled task) and `close` drop the Rust future at once,
//!   which withdraws the ticket. `pyo3-async-runtimes`' `future_into_py` was
//!   measured against it (BENCHMARKS.md): it spawns every future on the
//!   runtime and completes it through the event loop, so even a free lock
//!   costs a cross-thread hand-off, and its callbacks into Python from
//!   runtime threads are what can abort an interpreter at exit.
//! - **Wake-ups.** PyO3's waker takes the GIL, so a wake-up from tokio's
//!   worker goes through the relay thread below (in-memory waits, the
//!   guard's methods). A request on Redis waits on every step, and the
//!   relay's hops and GIL waits bounded its rate: its steps are woken
//!   through the event loop's hub instead (`hub.rs`, `remote.rs`), with
//!   no GIL and one loop wake-up for all that complete together.
//! - **Runtime context.** The futures use tokio timers and spawn background
//!   releases, so every poll and every drop happens inside
//!   [`tokio::runtime::Handle::enter`] ([`InRuntime`]).
//! - **Lifecycle.** The runtime (one worker thread: the work is I/O) is made
//!   on first use. A forked child has the parent's memory but none of its
//!   threads: `os.register_at_fork` bumps [`GENERATION`], and anything made
//!   in an older generation (the runtime, stores, guards, pending requests)
//!   is forgotten rather than dropped, so the child neither joins threads
//!   that do not exist nor releases its parent's locks. At interpreter exit
//!   (`atexit`) [`shutdown`] flushes every store's background releases and
//!   stops the runtime before Python finalizes, so no runtime thread calls
//!   into a finalizing interpreter; later calls fail with a clear error.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::{Handle, Runtime};

use crate::errors;

/// Bumped in a forked child: what an older generation made belongs to the
/// parent.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Set at interpreter exit, once the runtime is stopped.
pub(crate) static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

struct Slot {
    generation: u64,
    pid: u32,
    runtime: Runtime,
    rt: Rt,
    relay_thread: std::thread::JoinHandle<()>,
}

/// The runtime's handle and the relay of its wake-ups: what a future needs
/// to be polled by Python.
#[derive(Clone)]
pub(crate) struct Rt {
    pub(crate) handle: Handle,
    relay: mpsc::Sender<Option<Waker>>,
}

/// A wake-up of a Python coroutine, passed to the relay thread.
///
/// Waking a coroutine takes the GIL (PyO3's waker resolves an
/// `asyncio.Future`). Done on the runtime's thread, inside whatever lock
/// the waking code holds, it deadlocks with a Python thread that holds the
/// GIL and polls a future needing that lock. So the runtime's thread only
/// sends the waker to a thread of its own, which holds no lock of ours
/// while it waits for the GIL.
struct Relayed {
    inner: Waker,
    relay: mpsc::Sender<Option<Waker>>,
}

impl Wake for Relayed {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !SHUT_DOWN.load(Ordering::Acquire) {
            // The relay is gone only after shutdown: nothing to wake then.
            let _ = self.relay.send(Some(self.inner.clone()));
        }
    }
}

fn relay_thread(rx: mpsc::Receiver<Option<Waker>>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ticketlock-wake".into())
        .spawn(move || {
            while let Ok(Some(first)) = rx.recv() {
                // One GIL acquisition for every wake-up already queued:
                // PyO3's wakers take the GIL again, cheaply, inside.
                let stop = Python::attach(|_py| {
                    first.wake();
                    loop {
                        match rx.try_recv() {
                            Ok(Some(w)) => w.wake(),
                            Ok(None) => return true,
                            Err(mpsc::TryRecvError::Empty) => return false,
                            Err(mpsc::TryRecvError::Disconnected) => return true,
                        }
                    }
                });
                if stop {
                    return;
                }
            }
        })
}

/// Only touched with the GIL held (every caller is Python code), so a fork,
/// which holds the GIL, never copies it locked.
static RUNTIME: Mutex<Option<Slot>> = Mutex::new(None);

/// Stores to flush at exit.
static STORES: Mutex<Vec<Weak<dyn Flush>>> = Mutex::new(Vec::new());

/// A store whose background releases can be awaited.
pub(crate) trait Flush: Send + Sync {
    /// The store of the current generation, if it was built.
    fn live(&self) -> Option<ticketlock::LockStore>;
}

/// The current fork generation.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Called in a forked child (`os.register_at_fork(after_in_child=...)`).
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Remembers a store so that [`shutdown`] flushes it.
pub(crate) fn register(store: Weak<dyn Flush>) {
    let mut stores = lock(&STORES);
    stores.retain(|s| s.strong_count() > 0);
    stores.push(store);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime, made on first use and again in a forked child.
pub(crate) fn handle() -> PyResult<Rt> {
    if SHUT_DOWN.load(Ordering::Acquire) {
        return Err(errors::shut_down());
    }
    let (generation, pid) = (generation(), std::process::id());
    let mut slot = lock(&RUNTIME);
    if let Some(s) = slot
        .as_ref()
        .filter(|s| s.generation == generation && s.pid == pid)
    {
        return Ok(s.rt.clone());
    }
    if let Some(old) = slot.take() {
        // The parent's: its threads are not in this process.
        std::mem::forget(old);
    }
    // A Python process has no rustls provider of its own: install ring's
    // (unless something in the process already did), so `rediss://` works.
    ticketlock::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ticketlock")
        .enable_all()
        .build()
        .map_err(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!(
                "ticketlock: cannot start its tokio runtime: {e}"
            ))
        })?;
    let (tx, rx) = mpsc::channel();
    let relay_thread = relay_thread(rx).map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!(
            "ticketlock: cannot start its wake-up thread: {e}"
        ))
    })?;
    let rt = Rt {
        handle: runtime.handle().clone(),
        relay: tx,
    };
    *slot = Some(Slot {
        generation,
        pid,
        runtime,
        rt: rt.clone(),
        relay_thread,
    });
    Ok(rt)
}

/// Runs `fut` to completion on the calling thread, with the GIL released.
pub(crate) fn block_on<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = T> + Send,
) -> PyResult<T> {
    let rt = handle()?;
    Ok(py.detach(|| rt.handle.block_on(fut)))
}

/// Flushes every store and stops the runtime (registered with `atexit`).
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) {
    if SHUT_DOWN.swap(true, Ordering::AcqRel) {
        return;
    }
    let generation = generation();
    let Some(slot) = lock(&RUNTIME).take() else {
        return;
    };
    if slot.generation != generation || slot.pid != std::process::id() {
        std::mem::forget(slot);
        return;
    }
    let stores: Vec<_> = lock(&STORES).iter().filter_map(Weak::upgrade).collect();
    let live: Vec<_> = stores.iter().filter_map(|s| s.live()).collect();
    let Slot {
        runtime,
        rt,
        relay_thread,
        ..
    } = slot;
    // Released: the relay thread may need the GIL to wake a coroutine.
    py.detach(move || {
        rt.handle.block_on(async {
            for store in &live {
                // Bounded by the socket timeout inside; this bounds a bug.
                let _ = tokio::time::timeout(Duration::from_secs(30), store.flush()).await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        // Stopped and joined before Python finalizes: it calls into Python.
        let _ = rt.relay.send(None);
        let _ = relay_thread.join();
    });
}

/// A future polled and dropped inside the runtime's context; dropped
/// without running its destructor when it belongs to a parent process.
pub(crate) struct InRuntime<F: Future + Send + 'static> {
    fut: Option<Pin<Box<F>>>,
    rt: Rt,
    generation: u64,
    /// The caller's waker and its relayed form, kept while the caller
    /// polls with the same waker.
    waker: Option<(Waker, Waker)>,
}

impl<F: Future + Send + 'static> InRuntime<F> {
    pub(crate) fn new(rt: Rt, generation: u64, fut: F) -> Self {
        InRuntime {
            fut: Some(Box::pin(fut)),
            rt,
            generation,
            waker: None,
        }
    }

    fn relayed(&mut self, caller: &Waker) -> Waker {
        match &self.waker {
            Some((c, relayed)) if c.will_wake(caller) => relayed.clone(),
            _ => {
                let relayed = Waker::from(Arc::new(Relayed {
                    inner: caller.clone(),
                    relay: self.rt.relay.clone(),
                }));
                self.waker = Some((caller.clone(), relayed.clone()));
                relayed
            }
        }
    }
}

impl<F: Future + Send + 'static> Future for InRuntime<F> {
    type Output = PyResult<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let waker = this.relayed(cx.waker());
        this.poll_with(&waker)
    }
}

impl<F: Future + Send + 'static> InRuntime<F> {
    /// Polls with `waker` as it is: one that needs no GIL to wake (the
    /// event loop's hub, `crate::hub`), so no relay.
    pub(crate) fn poll_with(&mut self, waker: &Waker) -> Poll<PyResult<F::Output>> {
        let this = self;
        if SHUT_DOWN.load(Ordering::Acquire) {
            return Poll::Ready(Err(errors::shut_down()));
        }
        if this.generation != generation() {
            return Poll::Ready(Err(errors::forked()));
        }
        if this.fut.is_none() {
            return Poll::Ready(Err(errors::shut_down()));
        }
        let _entered = this.rt.handle.enter();
        let fut = this.fut.as_mut().expect("checked above");
        match fut.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(v) => {
                this.fut = None;
                Poll::Ready(Ok(v))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A future polled by hand with a waker of the caller's choice
/// ([`InRuntime::poll_with`]), boxed where its type cannot be named.
pub(crate) trait PollWith: Send {
    type Output;
    fn poll_with(&mut self, waker: &Waker) -> Poll<PyResult<Self::Output>>;
}

impl<F: Future + Send + 'static> PollWith for InRuntime<F> {
    type Output = F::Output;
    fn poll_with(&mut self, waker: &Waker) -> Poll<PyResult<F::Output>> {
        InRuntime::poll_with(self, waker)
    }
}

impl<F: Future + Send + 'static> Drop for InRuntime<F> {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            in_context(&self.rt, self.generation, fut);
        }
    }
}

/// Drops `value` inside the runtime's context (its destructor may spawn a
/// release), or forgets it when it was made by a parent process.
pub(crate) fn in_context<T>(rt: &Rt, made_in: u64, value: T) {
    if made_in != generation() {
        std::mem::forget(value);
    } else {
        let _entered = rt.handle.enter();
        drop(value);
    }
}

/// A value dropped by [`in_context`].
pub(crate) struct Owned<T> {
    value: Option<T>,
    rt: Rt,
    generation: u64,
}

impl<T> Owned<T> {
    pub(crate) fn new(rt: Rt, generation: u64, value: T) -> Self {
        Owned {
            value: Some(value),
            rt,
            generation,
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    pub(crate) fn take(&mut self) -> Option<T> {
        self.value.take()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn rt(&self) -> &Rt {
        &self.rt
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            in_context(&self.rt, self.generation, v);
        }
    }
}

/// Keeps the `Arc` type in use for [`register`]'s callers.
pub(crate) fn weak<T: Flush + 'static>(store: &Arc<T>) -> Weak<dyn Flush> {
    let weak: Weak<T> = Arc::downgrade(store);
    weak
}
