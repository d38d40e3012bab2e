#![forbid(unsafe_code)]
//! The fledge controller.
