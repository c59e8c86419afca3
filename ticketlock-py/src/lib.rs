//! The native core of the `ticketlock` Python package: a thin layer over
//! the `ticketlock` crate. The Python API is in `python/ticketlock/`.

#[cfg(feature = "bench-async-runtimes")]
mod bench;
mod errors;
mod guard;
mod hub;
mod remote;
mod request;
mod runtime;
mod store;

use pyo3::prelude::*;

/// `ticketlock._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::LockStore>()?;
    m.add_class::<request::LockRequest>()?;
    m.add_class::<guard::Guard>()?;
    m.add_class::<remote::RemoteLockRequest>()?;
    m.add_class::<hub::Hub>()?;
    m.add_function(wrap_pyfunction!(runtime::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::_shutdown, m)?)?;
    m.add(
        "DEFAULT_LIFETIME",
        ticketlock::DEFAULT_LIFETIME.as_secs_f64(),
    )?;
    Ok(())
}
