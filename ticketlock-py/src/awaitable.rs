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

use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Poll, Wake, Waker};

use pyo3::exceptions::{PyBaseException, PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

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
    /// In a mutex for `Sync` (a future is only `Send`); only the task
    /// awaiting it steps it, so it is never contended but by misuse.
    op: Mutex<Op>,
}

impl Awaitable {
    pub(crate) fn new(op: Op) -> Self {
        Awaitable { op: Mutex::new(op) }
    }

    /// The operation, or an error when another thread is stepping it (a
    /// step calls into Python, which may switch threads: waiting for the
    /// lock with the GIL held could deadlock).
    fn op(&self) -> PyResult<std::sync::MutexGuard<'_, Op>> {
        match self.op.try_lock() {
            Ok(op) => Ok(op),
            Err(TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
                "this awaitable is already being awaited in another thread",
            )),
        }
    }

    fn step(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut op = self.op()?;
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
        self.close()?;
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
    fn close(&self) -> PyResult<()> {
        // Dropped outside the lock: a future's destructor may do anything.
        let op = std::mem::replace(&mut *self.op()?, Op::Done);
        drop(op);
        Ok(())
    }
}

/// Polls `fut` for a step of an [`Awaitable`]: `Ok(output)` when it is
/// ready, else `Err(object to yield)`.
///
/// Always with a no-op waker first: a free lock, and a future just woken,
/// are usually ready and need no `asyncio.Future`; and a stopped runtime
/// (interpreter exit) or a fork is reported before any Python code runs in
/// the step (see [`Names`] for why that matters at exit).
pub(crate) fn drive<F>(
    py: Python<'_>,
    fut: &mut InRuntime<F>,
) -> PyResult<Result<F::Output, Py<PyAny>>>
where
    F: std::future::Future + Send + ?Sized + 'static,
{
    if let Poll::Ready(v) = fut.poll_with(Waker::noop()) {
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
    let names = names(py)?;
    let yielded = future
        .bind(py)
        .call_method0(names.dunder_await.bind(py))?
        .call_method0(names.dunder_next.bind(py))?;
    Ok(Err(yielded.unbind()))
}

/// The Python names and functions the steps use, made once at import.
///
/// Not on first use: filling a `PyOnceLock` (or an `intern!`) releases the
/// GIL for a moment, and a daemon thread that takes it back while the
/// interpreter finalizes is ended with `pthread_exit`, whose unwinding
/// aborts the process when it meets PyO3's trampoline (glibc: "exception
/// not rethrown"). A first wait or wake-up at exit did that.
///
/// Nor does any Python code run inside a step for the same reason (the
/// eval loop may hand the GIL to another thread at any call): the future is
/// made by `asyncio.Future(loop=...)`, a C type, not by the loop's
/// `create_future()`, and the callback that resolves it is Python code of
/// its own (`ticketlock._wake`), outside any native frame.
struct Names {
    get_running_loop: Py<PyAny>,
    future_class: Py<PyAny>,
    release_waiter: Py<PyAny>,
    call_soon_threadsafe: Py<PyString>,
    is_closed: Py<PyString>,
    dunder_await: Py<PyString>,
    dunder_next: Py<PyString>,
    loop_key: Py<PyString>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

/// Makes [`Names`]; called when `ticketlock._core` is imported.
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    names(py).map(|_| ())
}

fn names(py: Python<'_>) -> PyResult<&'static Names> {
    NAMES.get_or_try_init(py, || {
        let name = |s: &str| PyString::intern(py, s).unbind();
        let asyncio = py.import("asyncio")?;
        Ok::<_, PyErr>(Names {
            get_running_loop: asyncio.getattr("get_running_loop")?.unbind(),
            future_class: asyncio.getattr("Future")?.unbind(),
            release_waiter: py
                .import("ticketlock._wake")?
                .getattr("release_waiter")?
                .unbind(),
            call_soon_threadsafe: name("call_soon_threadsafe"),
            is_closed: name("is_closed"),
            dunder_await: name("__await__"),
            dunder_next: name("__next__"),
            loop_key: name("loop"),
        })
    })
}

/// A new `asyncio.Future` of the running loop, and the loop.
fn new_future(py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let names = names(py)?;
    let event_loop = names.get_running_loop.call0(py)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(names.loop_key.bind(py), event_loop.bind(py))?;
    let future = names.future_class.call(py, (), Some(&kwargs))?;
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
                let loop_closed = names(py)
                    .and_then(|n| self.event_loop.call_method0(py, n.is_closed.bind(py)))
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
        let names = names(py)?;
        self.event_loop.call_method1(
            py,
            names.call_soon_threadsafe.bind(py),
            (names.release_waiter.bind(py), self.future.bind(py)),
        )?;
        Ok(())
    }
}
