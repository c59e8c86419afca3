//! The properties the fuzz targets check, shared with the stable corpus
//! replay in `ticketlock/tests/fuzz_replay.rs`.

pub mod checks;
