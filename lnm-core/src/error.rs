//! The error type of lnm-core: why a hop or a resolver could not deliver a connection.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Denied, Name, Target};

/// A boxed error, as tower services return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`Hop`](crate::Hop) or a [`Resolve`](crate::Resolve) implementation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The resolver could not answer for `name`.
    #[error("cannot resolve {name}: {source}")]
    Resolve {
        /// The name being resolved.
        name: Name,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The resolver answered, but with no address.
    #[error("{name} has no address")]
    NoAddress {
        /// The name that was resolved.
        name: Name,
    },
    /// Every address of the destination refused or failed.
    #[error("cannot connect to {target}: {}", Attempts(.attempts))]
    Connect {
        /// What was being connected to (a target or a parent gateway).
        target: String,
        /// Each address tried and its error, in order.
        attempts: Vec<(SocketAddr, io::Error)>,
    },
    /// No connection was established within the connect timeout.
    #[error("connecting to {target} timed out after {after:?}")]
    ConnectTimeout {
        /// What was being connected to.
        target: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The destination resolved to one of this gateway's own listeners: following it would loop.
    #[error("refusing {target}: it resolves to {addr}, one of this gateway's own listeners (loop)")]
    OwnAddress {
        /// The target that resolved to us.
        target: Target,
        /// The address that is ours.
        addr: SocketAddr,
    },
    /// The name resolved to an address the top level never dials (loopback, link-local,
    /// metadata services, configured private ranges): a confused-deputy attempt, or a DNS
    /// mistake.
    #[error(
        "refusing {target}: it resolves to {addr}, a refused destination range (loopback, link-local or configured)"
    )]
    RefusedDestination {
        /// The target.
        target: Target,
        /// The refused address.
        addr: SocketAddr,
    },
    /// The [`Internal`](crate::hop::Internal) hop has no address for the name.
    #[error("no internal destination is configured for {name}")]
    UnknownInternal {
        /// The name that has no entry.
        name: Name,
    },
    /// Nothing is bound at an in-memory address.
    #[error("nothing listens on in-memory address {addr:?}")]
    MemoryUnreachable {
        /// The address that was dialled.
        addr: String,
    },
    /// An in-memory address is bound already.
    #[error("in-memory address {addr:?} is already bound")]
    MemoryAddrInUse {
        /// The address.
        addr: String,
    },
    /// A hop was built without any address to dial.
    #[error("{hop} hop has no address to dial")]
    NoDestination {
        /// The kind of hop.
        hop: &'static str,
    },
    /// A DNS upstream answered with an error code.
    #[error("DNS upstream {server} answered {rcode} for {name}")]
    DnsRcode {
        /// The upstream server.
        server: SocketAddr,
        /// The name asked.
        name: Name,
        /// The response code, as text (e.g. `SERVFAIL`).
        rcode: String,
    },
    /// The connection was denied on its way through the hop (a policy layer around the hop,
    /// or a hop that enforces its own rules). The proxy reports, answers and counts it as a
    /// denial with this reason, not as an unreachable next hop.
    #[error("{0}")]
    Denied(#[from] Denied),
    /// A tower service used as a hop failed.
    #[error("hop service failed: {0}")]
    Service(#[source] BoxError),
}

struct Attempts<'a>(&'a [(SocketAddr, io::Error)]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no address tried");
        }
        for (i, (addr, err)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{addr}: {err}")?;
        }
        Ok(())
    }
}

impl Error {
    /// Whether the error says the destination is unreachable or refused (as opposed to a
    /// configuration problem such as a loop or a missing internal entry).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::ConnectTimeout { .. }
                | Error::MemoryUnreachable { .. }
                | Error::Resolve { .. }
                | Error::NoAddress { .. }
                | Error::DnsRcode { .. }
        )
    }
}
