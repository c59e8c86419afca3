//! `ticketlock.Guard`: proof that a conversation's lock is held.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use crate::errors::to_py;
use crate::runtime::{InRuntime, Owned};

type Inner = Owned<Arc<ticketlock::LockGuard>>;

/// The future of a guard's release, named for a field.
pub(crate) type Releasing = InRuntime<dyn Future<Output = ticketlock::Result<()>> + Send + 'static>;

/// The guard of a held lock, yielded by `async with store.lock(id)`.
#[pyclass(module = "ticketlock._core", name = "Guard", frozen)]
pub(crate) struct Guard {
    inner: Mutex<Option<Inner>>,
    conversation_id: Arc<str>,
    ticket: u64,
    fencing_token: u64,
    /// Set when the release found the ticket gone.
    lost_at_release: AtomicBool,
}

impl Guard {
    /// `conversation_id` is the request's (shared, not copied).
    pub(crate) fn new(inner: Inner, conversation_id: Arc<str>) -> Self {
        let g = inner.get().expect("a new guard holds its lock");
        Guard {
            conversation_id,
            ticket: g.ticket(),
            fencing_token: g.fencing_token(),
            inner: Mutex::new(Some(inner)),
            lost_at_release: AtomicBool::new(false),
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
    /// Pass its result to [`Guard::note_release`].
    pub(crate) fn release_future(&self) -> Option<Releasing> {
        let mut owned = self.inner().take()?;
        let (handle, generation) = (owned.rt().clone(), owned.generation());
        let g = owned.take()?;
        Some(InRuntime::from_box(
            handle,
            generation,
            Box::pin(async move {
                match Arc::try_unwrap(g) {
                    Ok(g) => g.release().await,
                    // A renewal or check is in flight: the last of them to
                    // end releases the lock (in the background).
                    Err(_shared) => Ok(()),
                }
            }),
        ))
    }

    /// Remembers a release that found the lease gone, for `is_lost()`.
    pub(crate) fn note_release(&self, released: &ticketlock::Result<()>) {
        if let Err(ticketlock::Error::Expired { .. }) = released {
            self.lost_at_release.store(true, Ordering::Relaxed);
        }
    }
}

fn released(py: Python<'_>, g: &Guard) -> PyErr {
    to_py(
        py,
        ticketlock::Error::Expired {
            conversation_id: g.conversation_id.to_string(),
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
        let Some(fut) = self.release_future() else {
            return Ok(());
        };
        let released = fut.await?;
        self.note_release(&released);
        Python::attach(|py| released.map_err(|e| to_py(py, e)))
    }

    fn __repr__(&self) -> String {
        format!(
            "<ticketlock.Guard conversation_id={:?} ticket={} fencing_token={}>",
            self.conversation_id, self.ticket, self.fencing_token
        )
    }
}
