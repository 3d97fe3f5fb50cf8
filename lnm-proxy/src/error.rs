//! The error type of lnm-proxy: why a gateway could not start, and what a reload could not
//! apply.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why a [`Gateway`](crate::Gateway) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address of the configuration could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// What was to listen there: `"proxy listener"`, `"DNS server"` or `"admin endpoint"`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A worker thread or its runtime could not be started (`workers`; the system's thread
    /// limit, memory).
    #[error("cannot start the gateway's worker threads: {source}")]
    Workers {
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// [`GatewayBuilder::incoming`](crate::GatewayBuilder::incoming) named an address that is
    /// not a listener of the configuration.
    #[error(
        "a connection source was given for {bind}, which is not a listener of the configuration"
    )]
    UnknownListener {
        /// The address given.
        bind: SocketAddr,
    },
    /// The metrics recorder could not be built (bucket bounds rejected) or installed (a
    /// recorder was installed already) ([`telemetry`](crate::telemetry), feature
    /// `prometheus`).
    #[error("cannot set up the metrics recorder: {source}")]
    MetricsRecorder {
        /// The exporter's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The push to `openTelemetryMetricsCollectorAddr` could not be set up
    /// ([`telemetry`](crate::telemetry), feature `otlp`; without the feature, a configured
    /// collector is this error).
    #[error("cannot push metrics to the OpenTelemetry collector {collector}: {source}")]
    MetricsExporter {
        /// The collector, as dialled (`http://host:port`).
        collector: String,
        /// The exporter's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The DNS forwarder to `dns.upstream` could not be created.
    #[error("cannot start the DNS forwarder: {source}")]
    DnsUpstream {
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// What [`Gateway::reload`](crate::Gateway::reload) applied, and what needs a restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The changes that were not applied: they take effect at the next start.
    pub needs_restart: Vec<NeedsRestart>,
}

impl ReloadReport {
    /// Whether everything was applied.
    pub fn is_complete(&self) -> bool {
        self.needs_restart.is_empty()
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_complete() {
            return f.write_str("every change applied");
        }
        f.write_str("needs a restart: ")?;
        for (i, change) in self.needs_restart.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{change}")?;
        }
        Ok(())
    }
}

/// A configuration change that a running gateway cannot apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NeedsRestart {
    /// A listener was removed (it keeps serving until the restart).
    ListenerRemoved(SocketAddr),
    /// A listener was added (it is not bound until the restart).
    ListenerAdded(SocketAddr),
    /// The `dns` section changed (the new allowlist already applies to DNS).
    Dns,
    /// The admin address changed.
    Admin,
    /// The connection limits changed.
    Limits,
    /// The number of workers changed.
    Workers,
    /// `openTelemetryMetricsCollectorAddr` or `metricsExport` changed (the process's metrics
    /// exporters are set up once, at start).
    MetricsExport,
}

impl fmt::Display for NeedsRestart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeedsRestart::ListenerRemoved(addr) => write!(f, "listener {addr} was removed"),
            NeedsRestart::ListenerAdded(addr) => write!(f, "listener {addr} is new"),
            NeedsRestart::Dns => {
                f.write_str("the dns section changed (the allowlist was applied to DNS already)")
            }
            NeedsRestart::Admin => f.write_str("the admin address changed"),
            NeedsRestart::Limits => f.write_str("connection limits changed"),
            NeedsRestart::Workers => f.write_str("workers changed"),
            NeedsRestart::MetricsExport => f.write_str(
                "openTelemetryMetricsCollectorAddr or metricsExport changed (the metrics push)",
            ),
        }
    }
}
