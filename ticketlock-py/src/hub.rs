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
use std::task::{Wake, Waker};

use pyo3::prelude::*;

use crate::runtime::SHUT_DOWN;

struct Queue {
    ready: Vec<Py<PyAny>>,
    /// A byte was written since the loop last took the queue.
    signalled: bool,
}

pub(crate) struct Inner {
    reader: UnixStream,
    writer: UnixStream,
    queue: Mutex<Queue>,
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
}

/// Wakes one parked step: queues its future on the hub of its loop.
pub(crate) struct Wakeup {
    hub: Arc<Inner>,
    future: Mutex<Option<Py<PyAny>>>,
}

impl Wakeup {
    pub(crate) fn waker(hub: &Hub, future: Py<PyAny>) -> Waker {
        Waker::from(Arc::new(Wakeup {
            hub: hub.inner.clone(),
            future: Mutex::new(Some(future)),
        }))
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
        let future = self.future.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(future) = future {
            self.hub.push(future);
        }
    }
}
