//! Fuzz target: see [`fledge_fuzz::validate`].
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::validate(data));
