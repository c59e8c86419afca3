//! `cargo +nightly fuzz run url`: see FUZZING in ticketlock/fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ticketlock_fuzz::checks::url(data));
