//! `ticketlock.LockStore`: a handle on a Rust [`ticketlock::LockStore`],
//! rebuilt from its configuration in a forked child.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use ticketlock::{LockStoreConfig, Ticket, TicketLock};

use crate::errors::{self, to_py};
use crate::remote::RemoteLockRequest;
use crate::request::{LockRequest, Options, seconds};
use crate::runtime::{self, Flush, Rt};

/// What a store is built from, again in a forked child.
// One per store: the size of the configuration does not matter.
#[allow(clippy::large_enum_variant)]
enum Source {
    /// In memory: a child gets an empty store of its own.
    Memory,
    /// A configuration (Redis): a child connects anew.
    Config(LockStoreConfig),
}

/// The store of one fork generation.
struct Built {
    generation: u64,
    store: ticketlock::LockStore,
    handle: Rt,
}

pub(crate) struct Cell {
    source: Source,
    built: Mutex<Option<Built>>,
}

impl Flush for Cell {
    fn live(&self) -> Option<ticketlock::LockStore> {
        let built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        built
            .as_ref()
            .filter(|b| b.generation == runtime::generation())
            .map(|b| b.store.clone())
    }
}

impl Cell {
    fn new(py: Python<'_>, source: Source) -> PyResult<Arc<Cell>> {
        let cell = Arc::new(Cell {
            source,
            built: Mutex::new(None),
        });
        cell.get(py)?;
        runtime::register(runtime::weak(&cell));
        Ok(cell)
    }

    /// The store of this process, its runtime handle and generation.
    pub(crate) fn get(&self, py: Python<'_>) -> PyResult<(ticketlock::LockStore, Rt, u64)> {
        let generation = runtime::generation();
        {
            let built = self.built.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = built.as_ref().filter(|b| b.generation == generation) {
                return Ok((b.store.clone(), b.handle.clone(), generation));
            }
        }
        let handle = runtime::handle()?;
        let store = match &self.source {
            Source::Memory => {
                let lifetime = ticketlock::lifetime_from_env().map_err(|e| to_py(py, e))?;
                ticketlock::LockStore::in_memory().with_default_lifetime(lifetime)
            }
            Source::Config(config) => {
                let config = config.clone();
                // Not under the mutex: connecting releases the GIL.
                runtime::block_on(py, ticketlock::LockStore::create(config))?
                    .map_err(|e| to_py(py, e))?
            }
        };
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = built.take() {
            if old.generation == generation {
                // Another thread built it meanwhile: keep the first.
                let kept = (old.store.clone(), old.handle.clone(), generation);
                *built = Some(old);
                drop(built);
                runtime::in_context(&handle, generation, store);
                return Ok(kept);
            }
            // The parent's: its connections are not this process's.
            std::mem::forget(old);
        }
        *built = Some(Built {
            generation,
            store: store.clone(),
            handle: handle.clone(),
        });
        Ok((store, handle, generation))
    }
}

/// A conversation lock store: fair FIFO locks per conversation id.
#[pyclass(module = "ticketlock._core", name = "LockStore", frozen)]
pub(crate) struct LockStore {
    pub(crate) cell: Arc<Cell>,
}

fn from_config(py: Python<'_>, config: LockStoreConfig) -> PyResult<LockStore> {
    let source = match config {
        LockStoreConfig::InMemory => Source::Memory,
        other => Source::Config(other),
    };
    Ok(LockStore {
        cell: Cell::new(py, source)?,
    })
}

#[pymethods]
impl LockStore {
    /// A store in this process's memory.
    #[staticmethod]
    fn in_memory(py: Python<'_>) -> PyResult<Self> {
        from_config(py, LockStoreConfig::InMemory)
    }

    /// A store from a `redis://` or `rediss://` URL; connects now.
    #[staticmethod]
    fn from_url(py: Python<'_>, url: &str) -> PyResult<Self> {
        let config = LockStoreConfig::from_url(url).map_err(|e| to_py(py, e))?;
        from_config(py, config)
    }

    /// A store from the `lock_store:` section of a Rasa `endpoints.yml`.
    #[staticmethod]
    fn from_endpoints(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let config = LockStoreConfig::from_endpoints_file(&path).map_err(|e| to_py(py, e))?;
        from_config(py, config)
    }

    /// A store from the text of an `endpoints.yml` file (or its JSON form).
    #[staticmethod]
    fn from_endpoints_yaml(py: Python<'_>, text: &str) -> PyResult<Self> {
        let config = LockStoreConfig::from_endpoints_yaml(text).map_err(|e| to_py(py, e))?;
        from_config(py, config)
    }

    /// Requests the lock of `conversation_id`: use as `async with`.
    #[pyo3(signature = (conversation_id, *, lifetime=None, timeout=None, auto_renew=false, wait_time=None, warn_if_lost=false))]
    #[allow(clippy::too_many_arguments)]
    fn lock(
        &self,
        py: Python<'_>,
        conversation_id: String,
        lifetime: Option<f64>,
        timeout: Option<f64>,
        auto_renew: bool,
        wait_time: Option<f64>,
        warn_if_lost: bool,
    ) -> PyResult<Py<PyAny>> {
        let options = Options {
            lifetime: lifetime.map(|s| seconds(py, "lifetime", s)).transpose()?,
            timeout: timeout.map(|s| seconds(py, "timeout", s)).transpose()?,
            wait_time: wait_time.map(|s| seconds(py, "wait_time", s)).transpose()?,
            auto_renew,
            warn_if_lost,
        };
        let (store, handle, generation) = self.cell.get(py)?;
        let request = LockRequest::new(store, handle, generation, conversation_id, options);
        // In memory a free lock is taken in the coroutine's first step, and
        // a wait is rare: PyO3's coroutines. A remote store waits on every
        // step: the hub's wake-ups (`remote.rs`).
        Ok(match self.cell.source {
            Source::Memory => Py::new(py, request)?.into_any(),
            Source::Config(_) => Py::new(py, RemoteLockRequest::new(request))?.into_any(),
        })
    }

    /// Benchmark only: takes the lock through `pyo3-async-runtimes`'
    /// `future_into_py` (on that crate's own runtime) and returns an
    /// awaitable of a function that releases it the same way.
    #[cfg(feature = "bench-async-runtimes")]
    fn _lock_via_future_into_py<'py>(
        &self,
        py: Python<'py>,
        conversation_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.cell.get(py)?.0;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let guard = store
                .lock(&conversation_id)
                .await
                .map_err(|e| Python::attach(|py| to_py(py, e)))?;
            Ok(crate::bench::Release::new(guard))
        })
    }

    /// The default lock lifetime, in seconds.
    #[getter]
    fn default_lifetime(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.cell.get(py)?.0.default_lifetime().as_secs_f64())
    }

    /// A description of the backend, without secrets.
    fn describe(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.cell.get(py)?.0.describe())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<ticketlock.LockStore {}>", self.describe(py)?))
    }

    /// Waits until the releases started in the background are done.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.cell.get(py)?.0;
        runtime::block_on(py, async move { store.flush().await })
    }

    /// The record of `conversation_id` as `(conversation_id, [(number,
    /// expires)], last_issued, epoch)`, or `None`.
    #[allow(clippy::type_complexity)]
    fn get_record(
        &self,
        py: Python<'_>,
        conversation_id: String,
    ) -> PyResult<Option<(String, Vec<(u64, f64)>, Option<u64>, Option<u64>)>> {
        let store = self.cell.get(py)?.0;
        let lock = runtime::block_on(py, async move { store.get_lock(&conversation_id).await })?
            .map_err(|e| to_py(py, e))?;
        Ok(lock.map(|l| {
            let tickets = l.tickets().map(|t| (t.number, t.expires)).collect();
            (
                l.conversation_id().to_string(),
                tickets,
                l.last_issued(),
                l.epoch(),
            )
        }))
    }

    /// Replaces the record of `conversation_id` (deletes it when empty).
    #[pyo3(signature = (conversation_id, tickets, last_issued=None, epoch=None))]
    fn save_record(
        &self,
        py: Python<'_>,
        conversation_id: String,
        tickets: Vec<(u64, f64)>,
        last_issued: Option<u64>,
        epoch: Option<u64>,
    ) -> PyResult<()> {
        let mut lock = TicketLock::with_tickets(
            conversation_id,
            tickets.into_iter().map(|(n, e)| Ticket::new(n, e)),
        );
        lock.set_last_issued(last_issued);
        lock.set_epoch(epoch);
        let store = self.cell.get(py)?.0;
        runtime::block_on(py, async move { store.save_lock(&lock).await })?
            .map_err(|e| to_py(py, e))
    }

    /// Deletes the record of `conversation_id`.
    fn delete_lock(&self, py: Python<'_>, conversation_id: String) -> PyResult<()> {
        let store = self.cell.get(py)?.0;
        runtime::block_on(py, async move { store.delete_lock(&conversation_id).await })?
            .map_err(|e| to_py(py, e))
    }

    /// Appends a ticket alive for `lifetime` seconds and returns its number.
    #[pyo3(signature = (conversation_id, lifetime=None))]
    fn issue_ticket(
        &self,
        py: Python<'_>,
        conversation_id: String,
        lifetime: Option<f64>,
    ) -> PyResult<u64> {
        let lifetime: Option<Duration> = lifetime
            .map(|s| seconds(py, "lock_lifetime", s))
            .transpose()?;
        let store = self.cell.get(py)?.0;
        runtime::block_on(py, async move {
            store.issue_ticket(&conversation_id, lifetime).await
        })?
        .map_err(|e| to_py(py, e))
    }

    /// Removes the expired tickets of the record.
    fn update_lock(&self, py: Python<'_>, conversation_id: String) -> PyResult<()> {
        let store = self.cell.get(py)?.0;
        runtime::block_on(py, async move { store.update_lock(&conversation_id).await })?
            .map_err(|e| to_py(py, e))
    }

    /// Whether any live ticket is queued for `conversation_id`.
    fn is_someone_waiting(&self, py: Python<'_>, conversation_id: String) -> PyResult<bool> {
        let store = self.cell.get(py)?.0;
        runtime::block_on(py, async move {
            store.is_someone_waiting(&conversation_id).await
        })?
        .map_err(|e| to_py(py, e))
    }

    /// Removes ticket `ticket_number`; the record goes when it is empty.
    fn finish_serving(
        &self,
        py: Python<'_>,
        conversation_id: String,
        ticket_number: u64,
    ) -> PyResult<()> {
        let store = self.cell.get(py)?.0;
        runtime::block_on(py, async move {
            store.finish_serving(&conversation_id, ticket_number).await
        })?
        .map_err(|e| to_py(py, e))
    }

    /// The Redis key of `conversation_id`'s record (`None` in memory).
    fn key_for(&self, py: Python<'_>, conversation_id: &str) -> PyResult<Option<String>> {
        Ok(self
            .cell
            .get(py)?
            .0
            .as_redis()
            .map(|r| r.key_for(conversation_id)))
    }

    /// The socket timeout in seconds (`None` in memory).
    #[getter]
    fn socket_timeout(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self
            .cell
            .get(py)?
            .0
            .as_redis()
            .map(|r| r.socket_timeout().as_secs_f64()))
    }

    /// Whether this is the in-memory store.
    #[getter]
    fn is_in_memory(&self) -> bool {
        matches!(self.cell.source, Source::Memory)
    }
}

/// Checks a Python-given number of seconds.
pub(crate) fn check_positive(py: Python<'_>, key: &str, s: f64) -> PyResult<()> {
    if s.is_finite() && s > 0.0 {
        Ok(())
    } else {
        Err(errors::config(
            py,
            key,
            &format!("{s} is not a positive number of seconds"),
        ))
    }
}
