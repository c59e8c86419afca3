//! `cargo +nightly fuzz run endpoints_yaml`: see FUZZING in ticketlock/fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ticketlock_fuzz::checks::endpoints_yaml(data));
