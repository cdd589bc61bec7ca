//! `cargo +nightly fuzz run index_txt`: see `surfstore::fuzzing::index_txt` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| surfstore::fuzzing::index_txt(data));
