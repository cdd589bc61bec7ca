//! `cargo +nightly fuzz run snapshot`: see `surfstore::fuzzing::snapshot` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| surfstore::fuzzing::snapshot(data));
