//! `ticketlock._core.Hub`: the wake-ups of one event loop, without the GIL.
//!
//! Implementation details:
//!
//! - A waiting request parks on an `asyncio.Future` of its loop. The waker
//!   that tokio's worker calls moves that future onto the hub's queue (no
//!   GIL: a `Py` is moved, not touched) and, if the queue had not been
//!   signalled since the loop last drained it, writes one byte to a socket
//!   pair whose other end the loop watches (`loop.add_reader`). So the
//!   wake-ups of all the requests that complete together cost one write and
//!   one loop wake-up, and no thread waits for the GIL.
//! - The loop's reader callback (`ticketlock._wait`) takes the whole queue
//!   and resolves each future in Python. This module runs no Python code
//!   and never releases the GIL while it holds it: a daemon thread's loop
//!   may still drain while the interpreter finalizes, and such a thread is
//!   ended (`pthread_exit`) only where it waits for the GIL, which must not
//!   be inside Rust frames.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Wake;

use pyo3::prelude::*;

use crate::runtime::SHUT_DOWN;

/// A request's first poll, left to tokio's worker ([`Hub::_flush`]).
pub(crate) trait Deferred: Send + Sync {
    /// Polls once (on the worker); a ready result is kept for the next
    /// step and its future woken.
    fn poll(&self);
}

/// The deferred first polls, and the runtime to run them on.
type Batch = (Vec<Arc<dyn Deferred>>, Option<tokio::runtime::Handle>);

struct Queue {
    ready: Vec<Py<PyAny>>,
    /// A byte was written since the loop last took the queue.
    signalled: bool,
}

pub(crate) struct Inner {
    reader: UnixStream,
    writer: UnixStream,
    queue: Mutex<Queue>,
    /// First polls to hand to tokio's worker at once, and its runtime.
    deferred: Mutex<Batch>,
}

impl Inner {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, future: Py<PyAny>) {
        let signal = {
            let mut q = self.queue();
            q.ready.push(future);
            !std::mem::replace(&mut q.signalled, true)
        };
        if signal {
            // Full (WouldBlock) means bytes are already waiting for the loop.
            let _ = (&self.writer).write(&[1]);
        }
    }
}

/// The wake-ups of one event loop (made by `ticketlock._wait`).
#[pyclass(module = "ticketlock._core", name = "Hub", frozen)]
pub(crate) struct Hub {
    pub(crate) inner: Arc<Inner>,
}

#[pymethods]
impl Hub {
    #[new]
    fn new() -> PyResult<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Hub {
            inner: Arc::new(Inner {
                reader,
                writer,
                queue: Mutex::new(Queue {
                    ready: Vec::new(),
                    signalled: false,
                }),
                deferred: Mutex::new((Vec::new(), None)),
            }),
        })
    }

    /// The file descriptor the loop watches for reading.
    fn fileno(&self) -> i32 {
        self.inner.reader.as_raw_fd()
    }

    /// The futures woken since the last call (clears the signal).
    fn take(&self) -> Vec<Py<PyAny>> {
        let mut buf = [0u8; 64];
        // Read before the signal is cleared: a wake-up after this read
        // either finds it set (and is in the queue taken below) or writes
        // anew.
        while let Ok(n) = (&self.inner.reader).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        let mut q = self.inner.queue();
        q.signalled = false;
        std::mem::take(&mut q.ready)
    }

    /// Hands the deferred first polls to tokio's worker, all in one task:
    /// one wake-up of the worker for the batch, whose commands it then
    /// writes to the server together, instead of a wake-up (and a write)
    /// for each request polled on this thread. Called once per loop
    /// iteration that deferred any (`loop.call_soon`).
    fn _flush(&self) {
        let (batch, handle) = {
            let mut d = self
                .inner
                .deferred
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut d.0), d.1.take())
        };
        let Some(handle) = handle else {
            return;
        };
        if batch.is_empty() || SHUT_DOWN.load(Ordering::Acquire) {
            // Exit began: such waits are not resumed (as parked ones).
            return;
        }
        drop(handle.spawn(async move {
            for first in batch {
                first.poll();
            }
        }));
    }
}

impl Hub {
    /// Leaves a request's first poll to the next [`Hub::_flush`], on
    /// `handle`'s worker; `true` when the caller is to schedule that flush
    /// (the batch was empty).
    pub(crate) fn defer(&self, handle: &tokio::runtime::Handle, first: Arc<dyn Deferred>) -> bool {
        let mut d = self
            .inner
            .deferred
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        d.0.push(first);
        if d.1.is_none() {
            d.1 = Some(handle.clone());
        }
        d.0.len() == 1
    }
}

/// Wakes the parked steps of one request: queues the future its coroutine
/// awaits on the hub of its loop. One per request, reused by every poll of
/// its entry and exit (one allocation, and the same waker each time, which
/// the futures it is given to recognise with `will_wake`).
#[derive(Default)]
pub(crate) struct Wakeup {
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The hub of the loop that awaits `future`.
    hub: Option<Arc<Inner>>,
    /// The future a waiting coroutine awaits, moved to the hub by a wake.
    future: Option<Py<PyAny>>,
    /// A wake came while no future was parked (during or after a poll).
    woken: bool,
}

impl Wakeup {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a poll: forgets earlier wakes (the poll sees their cause).
    pub(crate) fn reset(&self) {
        let stale = {
            let mut slot = self.slot();
            slot.woken = false;
            slot.future.take()
        };
        // Not under the lock; the coroutine holds its own reference.
        drop(stale);
    }

    /// After a pending poll: parks `future` to be resolved through `hub`
    /// by the next wake. Gives it back when a wake came since [`reset`]
    /// (the poll may have missed what it signalled: poll again).
    pub(crate) fn park(&self, hub: &Hub, future: Py<PyAny>) -> Result<(), Py<PyAny>> {
        let mut slot = self.slot();
        if slot.woken {
            return Err(future);
        }
        if !slot
            .hub
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(h, &hub.inner))
        {
            slot.hub = Some(hub.inner.clone());
        }
        slot.future = Some(future);
        Ok(())
    }
}

impl Hub {
    /// Resolves `future` at the loop's next drain (a step that keeps
    /// waking itself while it is polled).
    pub(crate) fn push(&self, future: Py<PyAny>) {
        self.inner.push(future);
    }
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if SHUT_DOWN.load(Ordering::Acquire) {
            // The loops' tasks are not resumed after exit began.
            return;
        }
        let parked = {
            let mut slot = self.slot();
            match slot.future.take() {
                Some(future) => slot.hub.clone().map(|hub| (hub, future)),
                None => {
                    slot.woken = true;
                    None
                }
            }
        };
        if let Some((hub, future)) = parked {
            hub.push(future);
        }
    }
}
