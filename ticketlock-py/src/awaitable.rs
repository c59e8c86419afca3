//! Hand-written awaitables: `await` on a Rust future without a coroutine
//! object, for the steps of every lock (`__aenter__`, `__aexit__`).
//!
//! Implementation details:
//!
//! - **Fast path.** [`Awaitable`] is its own iterator (`__await__` returns
//!   it). Its first `send`/`__next__` polls the Rust future with a no-op
//!   waker; a future that is ready (a free lock in memory, a release) ends
//!   the step there by raising `StopIteration(value)`. The value is not a
//!   tuple, so CPython takes it from the exception state without building
//!   the exception object.
//! - **Waiting.** A future that is not ready is polled again at once with a
//!   waker that resolves a fresh `asyncio.Future` of the running loop
//!   (through the relay thread, with `call_soon_threadsafe`); a wake-up
//!   between the two polls is not lost, as the second poll looks again.
//!   The step yields that future as `await future` would, and polls again
//!   when the task resumes.
//! - **Cancellation.** `throw` (a cancelled task) and `close` drop the Rust
//!   future at once, inside the runtime's context (which withdraws a
//!   waiting ticket); so does dropping the awaitable.

use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};

use pyo3::exceptions::{PyBaseException, PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;

use crate::request::{Enter, Leave};
use crate::runtime::InRuntime;

/// What a step of an [`Awaitable`] did.
pub(crate) enum Step {
    /// Finished, with this result.
    Done(Py<PyAny>),
    /// Must wait: this `asyncio.Future` is to be yielded to the event loop.
    ///
    /// The step keeps it too (`parked`), as PyO3's coroutines do: while the
    /// task waits, the task, its future and the awaitable then form a cycle
    /// that the collector cannot see through, so a task still waiting when
    /// the interpreter exits is not collected during finalization (asyncio
    /// would log "Task was destroyed but it is pending!"). The cycle ends
    /// when the future is resolved or cancelled.
    Wait(Py<PyAny>),
}

impl Step {
    pub(crate) fn wait(py: Python<'_>, yielded: Py<PyAny>, parked: &mut Option<Py<PyAny>>) -> Step {
        *parked = Some(yielded.clone_ref(py));
        Step::Wait(yielded)
    }
}

/// What an [`Awaitable`] awaits.
pub(crate) enum Op {
    Enter(Enter),
    Leave(Leave),
    /// Nothing to wait for: the step returns this.
    Ready(Py<PyAny>),
    /// Finished, or closed.
    Done,
}

/// The awaitable of `__aenter__` or `__aexit__` of a lock request.
#[pyclass(module = "ticketlock._core", name = "_Awaitable", frozen)]
pub(crate) struct Awaitable {
    /// In a mutex for `Sync` (a future is only `Send`); never contended,
    /// as only the task awaiting it steps it.
    op: Mutex<Op>,
}

impl Awaitable {
    pub(crate) fn new(op: Op) -> Self {
        Awaitable { op: Mutex::new(op) }
    }

    fn op(&self) -> std::sync::MutexGuard<'_, Op> {
        self.op.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn step(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut op = self.op();
        let stepped = match &mut *op {
            Op::Enter(e) => e.step(py),
            Op::Leave(l) => l.step(py),
            Op::Ready(value) => Ok(Step::Done(value.clone_ref(py))),
            Op::Done => {
                return Err(PyRuntimeError::new_err(
                    "cannot reuse an awaitable that was already awaited",
                ));
            }
        };
        match stepped {
            Ok(Step::Wait(yielded)) => Ok(yielded),
            Ok(Step::Done(value)) => {
                *op = Op::Done;
                Err(PyStopIteration::new_err(value))
            }
            Err(e) => {
                *op = Op::Done;
                Err(e)
            }
        }
    }
}

#[pymethods]
impl Awaitable {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    /// Drops the Rust future (withdrawing a waiting ticket), then raises
    /// the exception thrown in (a task's cancellation).
    #[pyo3(signature = (typ, val=None, _tb=None))]
    fn throw(
        &self,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.close();
        if typ.is_instance_of::<PyBaseException>() {
            return Err(PyErr::from_value(typ));
        }
        let exc = match val {
            Some(v) if v.is_instance_of::<PyBaseException>() => v,
            Some(v) if !v.is_none() => typ.call1((v,))?,
            _ => typ.call0()?,
        };
        Err(PyErr::from_value(exc))
    }

    /// Drops the Rust future (withdrawing a waiting ticket).
    fn close(&self) {
        // Dropped outside the lock: a future's destructor may do anything.
        let op = std::mem::replace(&mut *self.op(), Op::Done);
        drop(op);
    }
}

/// Polls `fut` for a step of an [`Awaitable`]: `Ok(output)` when it is
/// ready, else `Err(object to yield)`. `first` polls with a no-op waker
/// before making an `asyncio.Future` (a free lock needs none).
pub(crate) fn drive<F>(
    py: Python<'_>,
    fut: &mut InRuntime<F>,
    first: bool,
) -> PyResult<Result<F::Output, Py<PyAny>>>
where
    F: std::future::Future + Send + ?Sized + 'static,
{
    if first && let Poll::Ready(v) = fut.poll_with(Waker::noop()) {
        return Ok(Ok(v?));
    }
    let (event_loop, future) = new_future(py)?;
    let waker = fut.relay(Waker::from(Arc::new(Resolve {
        event_loop,
        future: future.clone_ref(py),
    })));
    if let Poll::Ready(v) = fut.poll_with(&waker) {
        return Ok(Ok(v?));
    }
    // As `await future` does: its iterator marks it as awaited by a task
    // (`_asyncio_future_blocking`) and yields it.
    let yielded = future
        .bind(py)
        .call_method0(pyo3::intern!(py, "__await__"))?
        .call_method0(pyo3::intern!(py, "__next__"))?;
    Ok(Err(yielded.unbind()))
}

/// A new `asyncio.Future` of the running loop, and the loop.
fn new_future(py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let get = GET_RUNNING_LOOP.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    let event_loop = get.call0(py)?;
    let future = event_loop.call_method0(py, pyo3::intern!(py, "create_future"))?;
    Ok((event_loop, future))
}

/// Resolves an `asyncio.Future` from any thread; woken only on the relay
/// thread, with the GIL held.
struct Resolve {
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
}

impl Wake for Resolve {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        Python::attach(|py| {
            if let Err(e) = self.resolve(py) {
                // Nothing to tell in a waker: the task is gone with its
                // loop, or Python is exiting.
                let loop_closed = self
                    .event_loop
                    .call_method0(py, "is_closed")
                    .and_then(|c| c.extract::<bool>(py))
                    .unwrap_or(true);
                if !loop_closed {
                    e.write_unraisable(py, None);
                }
            }
        });
    }
}

impl Resolve {
    fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        static RELEASE: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();
        let release = RELEASE.get_or_try_init(py, || {
            wrap_pyfunction!(release_waiter, py).map(Bound::unbind)
        })?;
        self.event_loop.call_method1(
            py,
            pyo3::intern!(py, "call_soon_threadsafe"),
            (release, self.future.bind(py)),
        )?;
        Ok(())
    }
}

/// Sets the result of `future` unless it is done (a cancelled task's is).
#[pyfunction]
fn release_waiter(future: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = future.py();
    if !future
        .call_method0(pyo3::intern!(py, "done"))?
        .is_truthy()?
    {
        future.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
    }
    Ok(())
}
