//! ticketlock's error kinds as the Python classes of `ticketlock._errors`.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use ticketlock::Error;

/// The class `name` of `ticketlock._errors` (imported once).
fn class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module =
        MODULE.get_or_try_init(py, || py.import("ticketlock._errors").map(Bound::unbind))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// Builds the Python exception for `e`, with the fields a caller matches on
/// as attributes (`conversation_id`, `key`, ...).
pub(crate) fn to_py(py: Python<'_>, e: Error) -> PyErr {
    match build(py, &e) {
        Ok(err) => err,
        Err(lookup) => lookup,
    }
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let message = e.to_string();
    let (name, attrs): (&'static str, Vec<(&'static str, Py<PyAny>)>) = match e {
        Error::Timeout {
            conversation_id,
            waited,
        } => (
            "LockTimeoutError",
            vec![
                (
                    "conversation_id",
                    conversation_id.into_pyobject(py)?.into_any().unbind(),
                ),
                (
                    "waited",
                    waited.as_secs_f64().into_pyobject(py)?.into_any().unbind(),
                ),
            ],
        ),
        Error::Expired {
            conversation_id,
            ticket,
        } => (
            "ExpiredError",
            vec![
                (
                    "conversation_id",
                    conversation_id.into_pyobject(py)?.into_any().unbind(),
                ),
                ("ticket", ticket.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::Unavailable { backend, .. } => (
            "UnavailableError",
            vec![("backend", backend.into_pyobject(py)?.into_any().unbind())],
        ),
        Error::Config { key, .. } => (
            "ConfigError",
            vec![("key", key.into_pyobject(py)?.into_any().unbind())],
        ),
        Error::CorruptRecord { key, .. } => (
            "CorruptRecordError",
            vec![("key", key.into_pyobject(py)?.into_any().unbind())],
        ),
        Error::QueueFull {
            conversation_id,
            limit,
        } => (
            "QueueFullError",
            vec![
                (
                    "conversation_id",
                    conversation_id.into_pyobject(py)?.into_any().unbind(),
                ),
                ("limit", limit.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::InvalidId {
            conversation_id, ..
        } => (
            "InvalidIdError",
            vec![(
                "conversation_id",
                conversation_id.into_pyobject(py)?.into_any().unbind(),
            )],
        ),
        _ => ("LockError", vec![]),
    };
    let cls = class(py, name)?;
    let exc = cls.call1((message,))?;
    for (attr, value) in attrs {
        exc.setattr(attr, value)?;
    }
    Ok(PyErr::from_value(exc))
}

/// A configuration error raised from Python-facing argument checks.
pub(crate) fn config(py: Python<'_>, key: &str, message: &str) -> PyErr {
    to_py(
        py,
        Error::Config {
            key: key.into(),
            message: message.into(),
        },
    )
}

/// The error of a call made after the runtime stopped at interpreter exit.
pub(crate) fn shut_down() -> PyErr {
    PyRuntimeError::new_err(
        "ticketlock: the interpreter is exiting and ticketlock's runtime has stopped; \
         take locks before exit handlers run",
    )
}

/// The error of a request or guard carried into a forked child.
pub(crate) fn forked() -> PyErr {
    PyRuntimeError::new_err(
        "ticketlock: this lock request or guard was made before os.fork(); it belongs to the \
         parent process: take a new lock in the child",
    )
}
