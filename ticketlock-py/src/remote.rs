//! `ticketlock.RedisLockRequest`: the `async with` of a lock on a remote
//! store, whose every step waits for a server.
//!
//! Implementation details: entering and leaving are Python coroutines
//! (`ticketlock._wait`) over the steps below. Each step polls the Rust
//! future once on the loop's thread, with a waker that needs no GIL
//! ([`crate::hub`]); while it is pending the coroutine awaits a future of
//! its loop, which the loop's hub resolves. So a wake-up takes no thread
//! hop but the one from tokio's worker to the loop, and the wake-ups of
//! every request that completes at once share one loop wake-up. A
//! cancelled or closed coroutine calls the `_cancel` step, which drops the
//! Rust request at once (and so withdraws its ticket).

use std::sync::Mutex;
use std::task::Poll;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::guard::Guard;
use crate::hub::{Hub, Wakeup};
use crate::request::LockRequest;
use crate::runtime::PollWith;

type Pending<T> = Box<dyn PollWith<Output = ticketlock::Result<T>>>;

enum Step<T> {
    NotStarted,
    Polling(Pending<T>),
    Done,
}

impl<T> Step<T> {
    fn is_done(&self) -> bool {
        matches!(self, Step::Done)
    }
}

/// The `ticketlock._wait` function `name` (imported once).
fn waiting<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let f = cell.get_or_try_init(py, || {
        py.import("ticketlock._wait")?
            .getattr(name)
            .map(Bound::unbind)
    })?;
    Ok(f.bind(py).clone())
}

/// A request for a conversation's lock on Redis: `async with store.lock(id)
/// as guard`.
///
/// Entering waits for the lock (fair, FIFO, push-woken). Cancelling the
/// waiting task withdraws the ticket at once. Leaving releases the lock.
#[pyclass(module = "ticketlock._core", name = "RedisLockRequest", frozen)]
pub(crate) struct RemoteLockRequest {
    request: LockRequest,
    entering: Mutex<Step<ticketlock::LockGuard>>,
    exiting: Mutex<Step<()>>,
    /// The future the coroutine waits on, held where the garbage collector
    /// does not see it (as PyO3's coroutines hold theirs): a task left
    /// waiting at interpreter exit is not collected, and so not reported
    /// as "destroyed but pending", when the runtime's stop drops its waker.
    parked: Mutex<Option<Py<PyAny>>>,
}

impl RemoteLockRequest {
    pub(crate) fn new(request: LockRequest) -> Self {
        RemoteLockRequest {
            request,
            entering: Mutex::new(Step::NotStarted),
            exiting: Mutex::new(Step::NotStarted),
            parked: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn already() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(
        "this lock request was already entered: call store.lock() again",
    )
}

/// Polls `pending` once with a waker that resolves `future` through `hub`.
fn poll<T>(
    pending: &mut Pending<T>,
    hub: &Hub,
    future: Py<PyAny>,
) -> Poll<PyResult<ticketlock::Result<T>>> {
    let waker = Wakeup::waker(hub, future);
    pending.poll_with(&waker)
}

#[pymethods]
impl RemoteLockRequest {
    /// Waits for the lock and returns its guard.
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        static ENTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        waiting(slf.py(), &ENTER, "enter")?.call1((slf,))
    }

    /// Releases the lock. Raises `ExpiredError` when the lease had run out
    /// (the body may not have run alone) and the body raised nothing.
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        exc_type: Option<Bound<'py, PyAny>>,
        _exc: Option<Bound<'py, PyAny>>,
        _tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static EXIT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let failed = exc_type.is_some_and(|t| !t.is_none());
        waiting(slf.py(), &EXIT, "exit")?.call1((slf, failed))
    }

    /// One step of entering: the guard, or `None` while `future` (of the
    /// running loop) is to be awaited, resolved through `hub`.
    fn _enter_step(
        &self,
        py: Python<'_>,
        hub: &Bound<'_, Hub>,
        future: Py<PyAny>,
    ) -> PyResult<Option<Py<Guard>>> {
        let mut step = lock(&self.entering);
        if let Step::NotStarted = *step {
            *step = Step::Polling(Box::new(self.request.acquire()));
        }
        let Step::Polling(pending) = &mut *step else {
            return Err(already());
        };
        match poll(pending, hub.get(), future.clone_ref(py)) {
            Poll::Pending => {
                *lock(&self.parked) = Some(future);
                Ok(None)
            }
            Poll::Ready(result) => {
                *step = Step::Done;
                drop(step);
                lock(&self.parked).take();
                self.request.entered(py, result?).map(Some)
            }
        }
    }

    /// One step of leaving: `False` once released, or `None` while
    /// `future` is to be awaited.
    fn _exit_step(
        &self,
        py: Python<'_>,
        hub: &Bound<'_, Hub>,
        future: Py<PyAny>,
        failed: bool,
    ) -> PyResult<Option<bool>> {
        let mut step = lock(&self.exiting);
        if let Step::NotStarted = *step {
            match self.request.exiting(failed)? {
                Some(release) => *step = Step::Polling(Box::new(release)),
                None => {
                    *step = Step::Done;
                    return Ok(Some(false));
                }
            }
        }
        let Step::Polling(pending) = &mut *step else {
            return Ok(Some(false));
        };
        match poll(pending, hub.get(), future.clone_ref(py)) {
            Poll::Pending => {
                *lock(&self.parked) = Some(future);
                Ok(None)
            }
            Poll::Ready(result) => {
                *step = Step::Done;
                drop(step);
                lock(&self.parked).take();
                self.request.exited(py, result?).map(Some)
            }
        }
    }

    /// Drops a pending acquisition (withdrawing its ticket).
    fn _enter_cancel(&self) {
        let pending = std::mem::replace(&mut *lock(&self.entering), Step::Done);
        drop(pending);
        lock(&self.parked).take();
    }

    /// Stops waiting for a release (it goes on in the background).
    fn _exit_cancel(&self) {
        let mut step = lock(&self.exiting);
        if !step.is_done() {
            drop(std::mem::replace(&mut *step, Step::Done));
        }
        drop(step);
        lock(&self.parked).take();
    }

    /// The conversation whose lock this requests.
    #[getter]
    fn conversation_id(&self) -> &str {
        self.request.conversation_id()
    }
}
