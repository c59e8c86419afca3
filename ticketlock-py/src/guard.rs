//! `ticketlock.Guard`: proof that a conversation's lock is held.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use crate::errors::to_py;
use crate::runtime::{InRuntime, Owned};

type Inner = Owned<Arc<ticketlock::LockGuard>>;

/// The guard of a held lock, yielded by `async with store.lock(id)`.
#[pyclass(module = "ticketlock._core", name = "Guard", frozen)]
pub(crate) struct Guard {
    inner: Mutex<Option<Inner>>,
    conversation_id: String,
    ticket: u64,
    fencing_token: u64,
    /// Set when the release found the ticket gone.
    lost_at_release: Arc<AtomicBool>,
}

impl Guard {
    pub(crate) fn new(inner: Inner) -> Self {
        let g = inner.get().expect("a new guard holds its lock");
        Guard {
            conversation_id: g.conversation_id().to_string(),
            ticket: g.ticket(),
            fencing_token: g.fencing_token(),
            inner: Mutex::new(Some(inner)),
            lost_at_release: Arc::new(AtomicBool::new(false)),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Option<Inner>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the held guard inside the runtime; `None` once released.
    fn with_guard<F, Fut, T>(&self, f: F) -> Option<InRuntime<Fut>>
    where
        F: FnOnce(Arc<ticketlock::LockGuard>) -> Fut,
        Fut: Future<Output = ticketlock::Result<T>> + Send + 'static,
    {
        let inner = self.inner();
        let owned = inner.as_ref()?;
        let g = owned.get()?.clone();
        Some(InRuntime::new(owned.rt().clone(), owned.generation(), f(g)))
    }

    /// Releases the lock in the background (by dropping it in the runtime).
    pub(crate) fn abandon(&self) {
        let owned = self.inner().take();
        drop(owned);
    }

    /// The release of the lock, to await; `None` when already released.
    pub(crate) fn release_future(
        &self,
    ) -> PyResult<
        Option<InRuntime<impl Future<Output = ticketlock::Result<()>> + Send + 'static + use<>>>,
    > {
        let Some(mut owned) = self.inner().take() else {
            return Ok(None);
        };
        let (handle, generation) = (owned.rt().clone(), owned.generation());
        let Some(g) = owned.take() else {
            return Ok(None);
        };
        let lost = self.lost_at_release.clone();
        Ok(Some(InRuntime::new(handle, generation, async move {
            match Arc::try_unwrap(g) {
                Ok(g) => {
                    let released = g.release().await;
                    if let Err(ticketlock::Error::Expired { .. }) = &released {
                        lost.store(true, Ordering::Relaxed);
                    }
                    released
                }
                // A renewal or check is in flight: the last of them to end
                // releases the lock (in the background).
                Err(_shared) => Ok(()),
            }
        })))
    }
}

fn released(py: Python<'_>, g: &Guard) -> PyErr {
    to_py(
        py,
        ticketlock::Error::Expired {
            conversation_id: g.conversation_id.clone(),
            ticket: g.ticket,
        },
    )
}

#[pymethods]
impl Guard {
    /// The conversation whose lock this is.
    #[getter]
    fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// The ticket number this guard was served with.
    #[getter]
    fn ticket(&self) -> u64 {
        self.ticket
    }

    /// A token greater than that of every earlier holder of the conversation:
    /// pass it to what is written under the lock (fencing).
    #[getter]
    fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// Whether the guard has learnt that its lease ran out, from a renewal,
    /// `is_held()` or the release (costs nothing).
    fn is_lost(&self) -> bool {
        let held = self.inner();
        match held.as_ref().and_then(|o| o.get()) {
            Some(g) => g.is_lost(),
            None => self.lost_at_release.load(Ordering::Relaxed),
        }
    }

    /// Asks the store whether this guard still holds the lock.
    async fn is_held(&self) -> PyResult<bool> {
        let Some(fut) = self.with_guard(|g| async move { g.is_held().await }) else {
            return Ok(false);
        };
        let held = fut.await?;
        Python::attach(|py| held.map_err(|e| to_py(py, e)))
    }

    /// Extends the lease to one lifetime from now; raises `ExpiredError`
    /// when it had already run out.
    async fn renew(&self) -> PyResult<()> {
        let fut = self.with_guard(|g| async move { g.renew().await });
        let Some(fut) = fut else {
            return Err(Python::attach(|py| released(py, self)));
        };
        let renewed = fut.await?;
        Python::attach(|py| renewed.map_err(|e| to_py(py, e)))
    }

    /// Releases the lock now (leaving the `async with` then does nothing).
    async fn release(&self) -> PyResult<()> {
        let fut = self.release_future()?;
        let Some(fut) = fut else {
            return Ok(());
        };
        let released = fut.await?;
        Python::attach(|py| released.map_err(|e| to_py(py, e)))
    }

    fn __repr__(&self) -> String {
        format!(
            "<ticketlock.Guard conversation_id={:?} ticket={} fencing_token={}>",
            self.conversation_id, self.ticket, self.fencing_token
        )
    }
}
