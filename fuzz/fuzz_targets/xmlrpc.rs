//! `cargo +nightly fuzz run xmlrpc`: see `surfstore::fuzzing::xmlrpc` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| surfstore::fuzzing::xmlrpc(data));
