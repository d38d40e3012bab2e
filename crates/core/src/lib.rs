#![forbid(unsafe_code)]
//! The fledge rollout engine.
