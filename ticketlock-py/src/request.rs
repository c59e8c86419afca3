//! `ticketlock.LockRequest`: the `async with` of one lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::{self, to_py};
use crate::guard::Guard;
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

/// A request for a conversation's lock: `async with store.lock(id) as guard`.
///
/// Entering waits for the lock (fair, FIFO, push-woken); a free lock is
/// taken during the first step of the coroutine, without a trip through the
/// event loop. Cancelling the waiting task withdraws the ticket at once.
/// Leaving releases the lock.
#[pyclass(module = "ticketlock._core", name = "LockRequest", frozen)]
pub(crate) struct LockRequest {
    store: ticketlock::LockStore,
    handle: Rt,
    generation: u64,
    conversation_id: String,
    options: Options,
    guard: Mutex<Option<Py<Guard>>>,
}

impl LockRequest {
    pub(crate) fn new(
        store: ticketlock::LockStore,
        handle: Rt,
        generation: u64,
        conversation_id: String,
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

    pub(crate) fn acquire(
        &self,
    ) -> InRuntime<
        impl std::future::Future<Output = ticketlock::Result<ticketlock::LockGuard>> + Send + 'static,
    > {
        let (store, id, o) = (
            self.store.clone(),
            self.conversation_id.clone(),
            self.options,
        );
        InRuntime::new(self.handle.clone(), self.generation, async move {
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
        })
    }

    /// The runtime of this request, if it is this process's and running:
    /// the one to poll it on.
    pub(crate) fn live_handle(&self) -> Option<&tokio::runtime::Handle> {
        let live = self.generation == crate::runtime::generation()
            && !crate::runtime::SHUT_DOWN.load(std::sync::atomic::Ordering::Acquire);
        live.then_some(&self.handle.handle)
    }

    /// The guard of an acquisition's result, remembered for `__aexit__`.
    pub(crate) fn entered(
        &self,
        py: Python<'_>,
        guard: ticketlock::Result<ticketlock::LockGuard>,
    ) -> PyResult<Py<Guard>> {
        let guard = guard.map_err(|e| to_py(py, e))?;
        let owned = Owned::new(self.handle.clone(), self.generation, Arc::new(guard));
        let guard = Py::new(py, Guard::new(owned))?;
        let mut slot = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this lock request was already entered: call store.lock() again",
            ));
        }
        *slot = Some(guard.clone_ref(py));
        Ok(guard)
    }

    /// The start of `__aexit__`: the release to await, if there is one.
    pub(crate) fn exiting(
        &self,
        failed: bool,
    ) -> PyResult<
        Option<
            InRuntime<
                impl std::future::Future<Output = ticketlock::Result<()>> + Send + 'static + use<>,
            >,
        >,
    > {
        let guard = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(guard) = guard else {
            return Ok(None);
        };
        if failed {
            // The body failed (or the task is being cancelled): release in
            // the background, so that a second cancellation cannot cut the
            // release short. `flush()` and interpreter exit wait for it.
            guard.get().abandon();
            return Ok(None);
        }
        guard.get().release_future()
    }

    /// The result of `__aexit__` from that of its release.
    pub(crate) fn exited(
        &self,
        py: Python<'_>,
        released: ticketlock::Result<()>,
    ) -> PyResult<bool> {
        match released {
            Ok(()) => Ok(false),
            Err(e @ ticketlock::Error::Expired { .. }) if self.options.warn_if_lost => {
                py.import("logging")?
                    .call_method1("getLogger", ("ticketlock",))?
                    .call_method1("warning", ("%s", e.to_string()))?;
                Ok(false)
            }
            Err(e) => Err(to_py(py, e)),
        }
    }
}

#[pymethods]
impl LockRequest {
    /// Waits for the lock and returns its guard.
    async fn __aenter__(&self) -> PyResult<Py<Guard>> {
        let guard = self.acquire().await?;
        Python::attach(|py| self.entered(py, guard))
    }

    /// Releases the lock. Raises `ExpiredError` when the lease had run out
    /// (the body may not have run alone) and the body raised nothing.
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    async fn __aexit__(
        &self,
        exc_type: Option<Py<PyAny>>,
        _exc: Option<Py<PyAny>>,
        _tb: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let Some(released) = self.exiting(exc_type.is_some())? else {
            return Ok(false);
        };
        match released.await? {
            // The common case, without attaching to the interpreter.
            Ok(()) => Ok(false),
            released => Python::attach(|py| self.exited(py, released)),
        }
    }

    /// The conversation whose lock this requests.
    #[getter]
    pub(crate) fn conversation_id(&self) -> &str {
        &self.conversation_id
    }
}
