//! How durations are shown to people: `1.0 s`, `12.5 ms`, `794 us`.
//!
//! Messages and human-readable reports use [`human`], the library's own
//! formatting, so the CLI's lines read like the library's errors; JSON
//! output carries durations as numbers of microseconds (see `json.rs`).

pub use ticketlock::human_duration as human;
