//! `cargo +nightly fuzz run record_decode`: see FUZZING in ticketlock/fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ticketlock_fuzz::checks::record_decode(data));
