//! Fuzz target: see [`fledge_fuzz::hey`].
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::hey(data));
