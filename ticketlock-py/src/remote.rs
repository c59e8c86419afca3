//! `ticketlock.RedisLockRequest`: the `async with` of a lock on a remote
//! store, whose every step waits for a server.
//!
//! Implementation details: entering and leaving are Python coroutines
//! (`ticketlock._wait`) over the steps below. Each step polls the Rust
//! future once, with the request's one waker, which needs no GIL
//! ([`crate::hub`]); while it is pending the coroutine awaits a future of
//! its loop, which the loop's hub resolves. So a wake-up takes no thread
//! hop but the one from tokio's worker to the loop, and the wake-ups of
//! every request that completes at once share one loop wake-up. The first
//! poll of an entry or an exit, the one that sends its command, is not made
//! on the loop's thread: the hub hands the first polls of one loop
//! iteration to tokio's worker together (`Hub._flush`), so the worker is
//! woken once for them and writes their commands to the server together,
//! where each poll on the loop's thread woke it (an `eventfd` write) and
//! made it write one command. A cancelled or closed coroutine calls the
//! `_cancel` step, which drops the Rust request at once (and so withdraws
//! its ticket), also while its first poll is still deferred.

use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::guard::Guard;
use crate::hub::{Deferred, Hub, Wakeup};
use crate::request::LockRequest;
use crate::runtime::PollWith;

type Pending<T> = Box<dyn PollWith<Output = ticketlock::Result<T>>>;

enum Step<T> {
    NotStarted,
    Polling(Pending<T>),
    /// Completed at its first poll on tokio's worker, not yet taken.
    Ready(PyResult<ticketlock::Result<T>>),
    Done,
}

type Shared<T> = Arc<Mutex<Step<T>>>;

/// What a step gave.
enum Stepped<R> {
    /// Waiting for the parked future (or, without one, step again).
    Pending,
    /// Waiting for the parked future; the first poll is deferred to the
    /// hub's next flush, which the caller schedules when `true`.
    Deferred(bool),
    Done(R),
}

impl<R: for<'py> IntoPyObject<'py>> Stepped<R> {
    /// `None` (pending), `...` (pending: schedule the hub's flush),
    /// `False` (pending, flush scheduled already) or the result.
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match self {
            Stepped::Pending => py.None(),
            Stepped::Deferred(true) => py.Ellipsis(),
            Stepped::Deferred(false) => py.None(),
            Stepped::Done(r) => r.into_py_any(py)?,
        })
    }
}

/// A step's first poll, on tokio's worker ([`Hub::flush`]).
struct FirstPoll<T> {
    step: Shared<T>,
    waker: Waker,
}

impl<T: Send + 'static> Deferred for FirstPoll<T> {
    fn poll(&self) {
        let mut step = lock(&self.step);
        // Cancelled (or stepped) meanwhile: nothing to do.
        let Step::Polling(pending) = &mut *step else {
            return;
        };
        if let Poll::Ready(result) = pending.poll_with(&self.waker) {
            *step = Step::Ready(result);
            drop(step);
            self.waker.wake_by_ref();
        }
    }
}

impl<T> Step<T> {
    fn is_done(&self) -> bool {
        matches!(self, Step::Done)
    }
}

/// Polls of one step in a row while wakes keep coming during the poll,
/// before the coroutine is sent through the loop once.
const REPOLLS: usize = 3;

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
    entering: Shared<ticketlock::LockGuard>,
    exiting: Shared<()>,
    /// The one waker of every poll of this request, and what it wakes.
    wakeup: Arc<Wakeup>,
    waker: Waker,
    /// The future the coroutine waits on, held where the garbage collector
    /// does not see it (as PyO3's coroutines hold theirs): a task left
    /// waiting at interpreter exit is not collected, and so not reported
    /// as "destroyed but pending", when the runtime's stop drops its waker.
    parked: Mutex<Option<Py<PyAny>>>,
}

impl RemoteLockRequest {
    pub(crate) fn new(request: LockRequest) -> Self {
        let wakeup = Arc::new(Wakeup::default());
        RemoteLockRequest {
            request,
            entering: Arc::new(Mutex::new(Step::NotStarted)),
            exiting: Arc::new(Mutex::new(Step::NotStarted)),
            waker: Waker::from(wakeup.clone()),
            wakeup,
            parked: Mutex::new(None),
        }
    }

    /// One step of entering or leaving: polls `step`'s request (started
    /// by `start` on the first step) and gives its result to `done`. While
    /// it is pending with a `future`, the future is parked: the next wake
    /// queues it on `hub`, which the loop drains. Without one, nothing is
    /// parked: the caller steps again with one. The first poll (which sends
    /// the request's command) is left to the hub's flush, on tokio's worker.
    #[allow(clippy::too_many_arguments)]
    fn step<T: Send + 'static, R>(
        &self,
        py: Python<'_>,
        shared: &Shared<T>,
        hub: &Hub,
        future: Option<Py<PyAny>>,
        start: impl FnOnce() -> PyResult<Option<Pending<T>>>,
        finished: impl FnOnce() -> PyResult<R>,
        done: impl FnOnce(Python<'_>, ticketlock::Result<T>) -> PyResult<R>,
    ) -> PyResult<Stepped<R>> {
        let mut step = lock(shared);
        if let Step::NotStarted = *step {
            match start()? {
                Some(pending) => *step = Step::Polling(pending),
                None => {
                    *step = Step::Done;
                    return finished().map(Stepped::Done);
                }
            }
            if let (Some(f), Some(handle)) = (&future, self.request.live_handle()) {
                self.wakeup.reset();
                if self.wakeup.park(hub, f.clone_ref(py)).is_ok() {
                    drop(step);
                    *lock(&self.parked) = future;
                    let first = Arc::new(FirstPoll {
                        step: shared.clone(),
                        waker: self.waker.clone(),
                    });
                    return Ok(Stepped::Deferred(hub.defer(handle, first)));
                }
            }
        }
        let pending = match &mut *step {
            Step::Polling(pending) => pending,
            Step::Ready(_) => {
                let Step::Ready(result) = std::mem::replace(&mut *step, Step::Done) else {
                    unreachable!("matched above");
                };
                drop(step);
                lock(&self.parked).take();
                return done(py, result?).map(Stepped::Done);
            }
            Step::NotStarted | Step::Done => return finished().map(Stepped::Done),
        };
        let mut future = future;
        for _ in 0..REPOLLS {
            self.wakeup.reset();
            match pending.poll_with(&self.waker) {
                Poll::Ready(result) => {
                    *step = Step::Done;
                    drop(step);
                    lock(&self.parked).take();
                    return done(py, result?).map(Stepped::Done);
                }
                Poll::Pending => {
                    let Some(f) = future.take() else {
                        return Ok(Stepped::Pending);
                    };
                    match self.wakeup.park(hub, f.clone_ref(py)) {
                        Ok(()) => {
                            *lock(&self.parked) = Some(f);
                            return Ok(Stepped::Pending);
                        }
                        // Woken while polled: poll again.
                        Err(_) => future = Some(f),
                    }
                }
            }
        }
        // Still woken at every poll: resolve the future at the loop's next
        // drain, so that the loop runs meanwhile.
        if let Some(f) = future {
            hub.push(f.clone_ref(py));
            *lock(&self.parked) = Some(f);
        }
        Ok(Stepped::Pending)
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

    /// One step of entering: the guard, or `None` while pending (then
    /// `future`, of the running loop, if given, is resolved through `hub`,
    /// the loop's, by the next wake), or `...` while pending when the
    /// caller is to schedule `hub._flush()` (the first poll is deferred).
    fn _enter_step(
        &self,
        py: Python<'_>,
        hub: &Bound<'_, Hub>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.step(
            py,
            &self.entering,
            hub.get(),
            future,
            || Ok(Some(Box::new(self.request.acquire()))),
            || Err::<Py<Guard>, _>(already()),
            |py, result| self.request.entered(py, result),
        )?
        .into_py(py)
    }

    /// One step of leaving: `False` once released, or `None` or `...`
    /// while pending (as `_enter_step`).
    fn _exit_step(
        &self,
        py: Python<'_>,
        hub: &Bound<'_, Hub>,
        future: Option<Py<PyAny>>,
        failed: bool,
    ) -> PyResult<Py<PyAny>> {
        self.step(
            py,
            &self.exiting,
            hub.get(),
            future,
            || {
                Ok(self
                    .request
                    .exiting(failed)?
                    .map(|release| Box::new(release) as Pending<()>))
            },
            || Ok(false),
            |py, result| self.request.exited(py, result),
        )?
        .into_py(py)
    }

    /// Drops a pending acquisition (withdrawing its ticket).
    fn _enter_cancel(&self) {
        let pending = std::mem::replace(&mut *lock(&self.entering), Step::Done);
        drop(pending);
        self.wakeup.reset();
        lock(&self.parked).take();
    }

    /// Stops waiting for a release (it goes on in the background).
    fn _exit_cancel(&self) {
        let mut step = lock(&self.exiting);
        if !step.is_done() {
            drop(std::mem::replace(&mut *step, Step::Done));
        }
        drop(step);
        self.wakeup.reset();
        lock(&self.parked).take();
    }

    /// The conversation whose lock this requests.
    #[getter]
    fn conversation_id(&self) -> &str {
        self.request.conversation_id()
    }
}
