//! `cargo +nightly fuzz run peer_wire`: see `surfstore::fuzzing::peer_wire` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| surfstore::fuzzing::peer_wire(data));
