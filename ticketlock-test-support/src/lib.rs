//! Test support: a `redis-server` of its own per test, on a free port.
