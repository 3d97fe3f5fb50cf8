//! The input and output of a policy check.

use std::fmt;
use std::net::IpAddr;

use std::sync::Arc;

use crate::Rule;
pub use lnm_core::Reason;

/// What a policy check looks at: the server name as it arrived (SNI, `Host`, DNS question), the
/// client's address, and the destination port (the listener's `destinationPort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The raw server name, if the client sent one. It is validated by the check itself, so an
    /// invalid name is a [`Reason::InvalidName`] decision, not an error.
    pub server_name: Option<&'a [u8]>,
    /// The client's address (IPv4-mapped IPv6 addresses are matched as IPv4).
    pub source: IpAddr,
    /// The destination port.
    pub port: u16,
}

impl<'a> Request<'a> {
    /// A request for `server_name` from `source` to `port`.
    pub fn new(server_name: Option<&'a [u8]>, source: IpAddr, port: u16) -> Self {
        Request {
            server_name,
            source,
            port,
        }
    }

    /// A request for a textual server name.
    pub fn for_name(name: &'a str, source: IpAddr, port: u16) -> Self {
        Request {
            server_name: Some(name.as_bytes()),
            source,
            port,
        }
    }
}

/// A rule's position in its allowlist (the trie's internal reference; decisions carry the
/// rule itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RuleId(pub(crate) u32);

impl RuleId {
    /// The rule's position in its allowlist.
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where an allowed connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Route {
    /// Up: to the parent gateway, or to the real destination at the top level.
    External,
    /// East-west: to a destination on this gateway's own level.
    Internal,
}

impl Route {
    /// `"external"` or `"internal"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::External => "external",
            Route::Internal => "internal",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An allowed connection: its route and the rule that allowed it.
///
/// The rule is shared with the allowlist that decided, so a decision names its rule correctly
/// however many times the allowlist is swapped afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Allowed {
    /// Where it goes.
    pub route: Route,
    /// Which rule matched.
    pub rule: Arc<Rule>,
}

/// The outcome of [`Allowlist::check`](crate::Allowlist::check).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Forward the connection.
    Allow(Allowed),
    /// Refuse it.
    Deny(Reason),
}

impl Decision {
    /// Whether the decision allows.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// What allowed it, if allowed.
    pub fn allowed(&self) -> Option<&Allowed> {
        match self {
            Decision::Allow(allowed) => Some(allowed),
            Decision::Deny(_) => None,
        }
    }

    /// The denial reason, if denied.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(reason) => Some(*reason),
        }
    }
}
