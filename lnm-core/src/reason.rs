//! [`Reason`]: why a connection or a query was denied, and [`Denied`], the error that carries
//! it through tower stacks and hops.
//!
//! They live in the core crate because a denial can be raised anywhere a connection passes: by
//! the allowlist (`lnm-policy`), by a user's policy layer, or inside a [`Hop`](crate::Hop)
//! wrapped in a policy layer — and the proxy must report each of them as a denial, not as a
//! failure.

use crate::NameError;

/// Why a connection or query was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The name matches no allowlist entry.
    #[error("not allowlisted")]
    NotAllowlisted,
    /// The client's address is outside `sourceIpRange`.
    #[error("source address not allowed")]
    SourceNotAllowed,
    /// The client sent no server name (no SNI, no `Host`).
    #[error("no server name")]
    NoServerName,
    /// The server name is not a valid DNS name (IP literal, NUL byte, bad characters...).
    #[error("invalid server name: {0}")]
    InvalidName(NameError),
    /// The name is allowlisted only as an `internal` entry on other ports.
    #[error("port {port} not allowed for this name")]
    PortNotAllowed {
        /// The requested port.
        port: u16,
    },
    /// Denied by a policy of the application (a tower layer over the allowlist decision, or a
    /// hop): the label says which, and is used as is in logs and metrics, so keep it a stable
    /// `snake_case` word such as `"maintenance_window"`.
    #[error("denied by policy {0}")]
    Policy(&'static str),
}

impl Reason {
    /// A stable snake_case label for logs and metrics (for [`Reason::Policy`], its own label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::NotAllowlisted => "not_allowlisted",
            Reason::SourceNotAllowed => "source_not_allowed",
            Reason::NoServerName => "no_server_name",
            Reason::InvalidName(_) => "invalid_name",
            Reason::PortNotAllowed { .. } => "port_not_allowed",
            Reason::Policy(label) => label,
        }
    }

    /// Whether the denial is about who asked (source range, port, a policy), rather than about
    /// the name: TLS answers the former with `access_denied`, the latter with
    /// `unrecognized_name`.
    pub fn is_about_the_client(&self) -> bool {
        matches!(
            self,
            Reason::SourceNotAllowed | Reason::PortNotAllowed { .. } | Reason::Policy(_)
        )
    }
}

/// A denial as an error: what a policy middleware fails with (boxed, as tower filters do), and
/// what a hop returns as [`Error::Denied`](crate::Error::Denied).
///
/// ```
/// use lnm_core::{BoxError, Denied, Reason};
///
/// let err: BoxError = Box::new(Denied::new(Reason::NotAllowlisted));
/// assert_eq!(err.downcast_ref::<Denied>().unwrap().reason, Reason::NotAllowlisted);
/// assert_eq!(err.to_string(), "denied: not allowlisted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("denied: {reason}")]
#[non_exhaustive]
pub struct Denied {
    /// Why.
    pub reason: Reason,
}

impl Denied {
    /// A denial for `reason`.
    pub fn new(reason: Reason) -> Self {
        Denied { reason }
    }
}

impl From<Reason> for Denied {
    fn from(reason: Reason) -> Self {
        Denied { reason }
    }
}
