//! `cargo +nightly fuzz run wal_segment`: see `surfstore::fuzzing::wal_segment` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| surfstore::fuzzing::wal_segment(data));
