//! `cargo +nightly fuzz run http_request`: see `surfstore::fuzzing::http_request` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| surfstore::fuzzing::http_request(data));
