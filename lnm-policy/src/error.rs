//! The error type of lnm-policy.

use std::io;
use std::path::PathBuf;

/// Why an allowlist pattern or a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An allowlist pattern is not `name` or `*.suffix`.
    #[error("invalid domain pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The configuration is not valid YAML/JSON, has an unknown key or a bad value. The message
    /// names the key, the line and the column.
    #[error("{file}: {source}")]
    Parse {
        /// The file (or `<input>` for text).
        file: String,
        /// The parser's error, with its location.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The configuration parsed, but its values contradict each other.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The file (or `<input>` for text).
        file: String,
        /// The key at fault, as a path (`dns.answerIpv4`).
        key: String,
        /// What is wrong.
        message: String,
    },
}
