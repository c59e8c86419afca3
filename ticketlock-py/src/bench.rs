//! Benchmark only (feature `bench-async-runtimes`): a lock held through
//! `pyo3-async-runtimes`, to compare its bridge with PyO3's coroutines.

use std::sync::Mutex;

use pyo3::prelude::*;

use crate::errors::to_py;

/// A held lock whose `release()` goes through `future_into_py`.
#[pyclass(module = "ticketlock._core", name = "_BenchRelease", frozen)]
pub(crate) struct Release {
    guard: Mutex<Option<ticketlock::LockGuard>>,
}

impl Release {
    pub(crate) fn new(guard: ticketlock::LockGuard) -> Self {
        Release {
            guard: Mutex::new(Some(guard)),
        }
    }
}

#[pymethods]
impl Release {
    fn release<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            if let Some(g) = guard {
                g.release()
                    .await
                    .map_err(|e| Python::attach(|py| to_py(py, e)))?;
            }
            Ok(())
        })
    }
}
