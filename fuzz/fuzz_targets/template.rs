//! Fuzz target: see [`fledge_fuzz::template`].
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::template(data));
