//! The crate's error type.

/// Why a load plan cannot run: bad input, stated in one line for the person who wrote it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A command line, flag or field the engine cannot take.
    #[error("{0}")]
    Invalid(String),
    /// A `hey` flag fledge-loadgen does not carry out, and why.
    #[error("hey flag {flag} is not supported: {why}")]
    Unsupported {
        /// The flag as written.
        flag: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// TLS could not be set up (unreadable CA file, no root certificates).
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Shorthand for [`Error::Invalid`].
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}
