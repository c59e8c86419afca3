//! `ticketlock.LockRequest`: the `async with` of one lock.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use crate::awaitable::{Awaitable, Op, Step, drive};
use crate::errors::{self, to_py};
use crate::guard::{Guard, Releasing};
use crate::runtime::{InRuntime, Owned, Rt};
use crate::store::check_positive;

/// The options of one request; `None` keeps the store's default.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    pub lifetime: Option<Duration>,
    pub timeout: Option<Duration>,
    pub wait_time: Option<Duration>,
    pub auto_renew: bool,
    /// Log a lease found gone at release (`ticketlock` logger, WARNING)
    /// instead of raising `ExpiredError`: Rasa's store does not raise there.
    pub warn_if_lost: bool,
}

/// A positive, finite number of seconds as a duration; `key` names it.
pub(crate) fn seconds(py: Python<'_>, key: &str, s: f64) -> PyResult<Duration> {
    check_positive(py, key, s)?;
    Duration::try_from_secs_f64(s).map_err(|_| {
        errors::config(
            py,
            key,
            &format!("{s} seconds is out of range; use a number of seconds below 10^19"),
        )
    })
}

/// The future of a lock's acquisition, named for a field.
type Acquiring =
    InRuntime<dyn Future<Output = ticketlock::Result<ticketlock::LockGuard>> + Send + 'static>;

/// A request for a conversation's lock: `async with store.lock(id) as guard`.
///
/// Entering waits for the lock (fair, FIFO, push-woken); a free lock is
/// taken during the first step of the awaitable, without a trip through
/// the event loop. Cancelling the waiting task withdraws the ticket at
/// once. Leaving releases the lock.
#[pyclass(module = "ticketlock._core", name = "LockRequest", frozen)]
pub(crate) struct LockRequest {
    store: ticketlock::LockStore,
    handle: Rt,
    generation: u64,
    conversation_id: Arc<str>,
    options: Options,
    guard: Mutex<Option<Py<Guard>>>,
}

impl LockRequest {
    pub(crate) fn new(
        store: ticketlock::LockStore,
        handle: Rt,
        generation: u64,
        conversation_id: Arc<str>,
        options: Options,
    ) -> Self {
        LockRequest {
            store,
            handle,
            generation,
            conversation_id,
            options,
            guard: Mutex::new(None),
        }
    }

    fn acquire(&self) -> Acquiring {
        let (store, id, o) = (
            self.store.clone(),
            self.conversation_id.clone(),
            self.options,
        );
        InRuntime::from_box(
            self.handle.clone(),
            self.generation,
            Box::pin(async move {
                let mut request = store.lock(&id).auto_renew(o.auto_renew);
                if let Some(l) = o.lifetime {
                    request = request.lifetime(l);
                }
                if let Some(t) = o.timeout {
                    request = request.timeout(t);
                }
                if let Some(w) = o.wait_time {
                    request = request.wait_time(w);
                }
                request.await
            }),
        )
    }

    /// The guard of an acquired lock, kept for `__aexit__`.
    fn entered(
        &self,
        py: Python<'_>,
        guard: ticketlock::Result<ticketlock::LockGuard>,
    ) -> PyResult<Py<Guard>> {
        let guard = guard.map_err(|e| to_py(py, e))?;
        let owned = Owned::new(self.handle.clone(), self.generation, Arc::new(guard));
        let guard = Py::new(py, Guard::new(owned, self.conversation_id.clone()))?;
        let mut slot = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this lock request was already entered: call store.lock() again",
            ));
        }
        *slot = Some(guard.clone_ref(py));
        Ok(guard)
    }

    /// The end of a release: `False` (exceptions are not suppressed), or
    /// the error of a lease found gone, raised or logged.
    fn left(&self, py: Python<'_>, released: ticketlock::Result<()>) -> PyResult<Py<PyAny>> {
        match released {
            Ok(()) => {}
            Err(e @ ticketlock::Error::Expired { .. }) if self.options.warn_if_lost => {
                py.import("logging")?
                    .call_method1("getLogger", ("ticketlock",))?
                    .call_method1("warning", ("%s", e.to_string()))?;
            }
            Err(e) => return Err(to_py(py, e)),
        }
        Ok(not_suppressed(py))
    }
}

/// `__aexit__`'s `False`: the body's exception, if any, propagates.
fn not_suppressed(py: Python<'_>) -> Py<PyAny> {
    pyo3::types::PyBool::new(py, false)
        .to_owned()
        .into_any()
        .unbind()
}

/// `__aenter__`'s step: takes the lock, then makes its guard.
pub(crate) struct Enter {
    request: Py<LockRequest>,
    acquiring: Option<Acquiring>,
    /// The `asyncio.Future` last yielded (see [`Step::Wait`]).
    parked: Option<Py<PyAny>>,
}

impl Enter {
    pub(crate) fn step(&mut self, py: Python<'_>) -> PyResult<Step> {
        let request = self.request.get();
        let acquiring = self.acquiring.get_or_insert_with(|| request.acquire());
        match drive(py, acquiring)? {
            Ok(acquired) => {
                self.acquiring = None;
                self.parked = None;
                Ok(Step::Done(request.entered(py, acquired)?.into_any()))
            }
            Err(yielded) => Ok(Step::wait(py, yielded, &mut self.parked)),
        }
    }
}

/// `__aexit__`'s step: the release, when there is one to await.
pub(crate) struct Leave {
    request: Py<LockRequest>,
    guard: Py<Guard>,
    releasing: Option<Releasing>,
    /// The `asyncio.Future` last yielded (see [`Step::Wait`]).
    parked: Option<Py<PyAny>>,
}

impl Leave {
    pub(crate) fn step(&mut self, py: Python<'_>) -> PyResult<Step> {
        let request = self.request.get();
        if self.releasing.is_none() {
            match self.guard.get().release_future() {
                Some(f) => self.releasing = Some(f),
                None => return Ok(Step::Done(request.left(py, Ok(()))?)),
            }
        }
        let releasing = self.releasing.as_mut().expect("set above");
        match drive(py, releasing)? {
            Ok(released) => {
                self.releasing = None;
                self.parked = None;
                self.guard.get().note_release(&released);
                Ok(Step::Done(request.left(py, released)?))
            }
            Err(yielded) => Ok(Step::wait(py, yielded, &mut self.parked)),
        }
    }
}

#[pymethods]
impl LockRequest {
    /// Waits for the lock; the awaitable returns its guard.
    fn __aenter__(slf: Bound<'_, Self>) -> Awaitable {
        Awaitable::new(Op::Enter(Enter {
            request: slf.unbind(),
            acquiring: None,
            parked: None,
        }))
    }

    /// Releases the lock. Raises `ExpiredError` when the lease had run out
    /// (the body may not have run alone) and the body raised nothing.
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __aexit__(
        slf: Bound<'_, Self>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> Awaitable {
        let request = slf.get();
        let guard = request
            .guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(guard) = guard else {
            return Awaitable::new(Op::Ready(not_suppressed(slf.py())));
        };
        if exc_type.is_some_and(|t| !t.is_none()) {
            // The body failed (or the task is being cancelled): release in
            // the background, so that a second cancellation cannot cut the
            // release short. `flush()` and interpreter exit wait for it.
            guard.get().abandon();
            return Awaitable::new(Op::Ready(not_suppressed(slf.py())));
        }
        Awaitable::new(Op::Leave(Leave {
            request: slf.unbind(),
            guard,
            releasing: None,
            parked: None,
        }))
    }

    /// The conversation whose lock this requests.
    #[getter]
    fn conversation_id(&self) -> &str {
        &self.conversation_id
    }
}
