//! The URL form: `redis://user:pass@host:port/db`, `rediss://`.
