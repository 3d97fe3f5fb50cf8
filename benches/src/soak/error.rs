//! What can stop a soak run before it has a report.

use std::io;
use std::path::PathBuf;

/// Why a soak run could not produce a report (a failure of the load itself is in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoakError {
    /// A loopback socket of the driver (origin, upstream DNS, free port) could not be bound.
    #[error("cannot bind {what}: {source}")]
    Bind {
        /// What the socket was for.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The test CA or the TLS origin could not be made.
    #[error("simulated origin: {0}")]
    Sim(#[from] lnm_proxy::sim::SimError),
    /// A file of the run (the gateway's configuration, its log) could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The gateway binary could not be started.
    #[error("cannot start {gateway}: {source}")]
    Spawn {
        /// The binary.
        gateway: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The gateway exited or never answered `/readyz` 200 within the time given.
    #[error("the gateway was not ready within {waited:?}: {detail}")]
    NotReady {
        /// How long the driver waited.
        waited: std::time::Duration,
        /// The exit status or the last answer, and the end of its log.
        detail: String,
    },
    /// A signal could not be sent to the gateway.
    #[error("cannot signal the gateway (pid {pid}): {source}")]
    Signal {
        /// The gateway's process id.
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
}
