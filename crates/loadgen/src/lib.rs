//! fledge's load generator: an HTTP load engine on hyper 1 (HTTP/1.1 with keep-alive, HTTP/2
//! over h2c or TLS with rustls), closed-loop and open-loop pacing, latencies in HDR
//! histograms; the `fledge-loadgen run` CLI; and `fledge-loadgen serve`, a load tester
//! service that speaks the webhook API of Flagger's load tester (hey command lines run on the
//! native engine, gates, rollback gates).
#![forbid(unsafe_code)]

mod conn;
pub mod engine;
pub mod error;
pub mod hey;
pub mod plan;
pub mod report;
pub mod service;

pub use engine::{Observer, Progress, probe, run};
pub use error::Error;
pub use plan::{HttpVersion, Model, Plan, Target, TlsOptions};
pub use report::{ErrorKind, Report};
