//! The admission of one connection: pure functions from what is known about it to *connect*
//! or *refuse* — and, for a refusal, what the client is told and how it is reported.
//!
//! [`Proxy`](crate::Proxy) is a thin driver around these functions: it reads (PROXY header,
//! hello), calls them, and acts (writes the answer, dials the hop). Everything that decides is
//! here, without sockets, clocks or a runtime:
//!
//! 1. [`admit_arrival`]: before a byte of the hello is read — the hop limit (a loop between
//!    gateways), then the source range;
//! 2. [`admit`]: after the sniff — the policy's decision (one decision, which carries the rule
//!    that allowed it) becomes a [`Connect`] (target, connection metadata, route, rule) or a
//!    [`Refusal`];
//! 3. [`Refusal::new`]: the one table from an [`Outcome`] to the answer — TLS alert, HTTP
//!    status and one-line reason, or silence.
//!
//! | outcome | TLS alert | HTTP |
//! |---|---|---|
//! | name not allowlisted, no or invalid name | `unrecognized_name` | 403 |
//! | source or port not allowed, a policy layer's denial | `access_denied` | 403 |
//! | malformed hello or request head | by the sniff error ([`Alert::for_sniff_error`]) | 400 |
//! | loop / too many gateways | `access_denied` | 508 |
//! | next hop unreachable | `internal_error` | 502 |
//! | next hop timed out | `internal_error` | 504 |
//! | the policy service failed | `internal_error` | 500 |
//! | sniff timeout, read error, bad PROXY header from a child | closed without answer | — |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lnm_core::{BoxError, ConnInfo, Name, Protocol, Target};
use lnm_policy::config::ListenerProtocol;
use lnm_policy::{Allowlist, Decision, Reason, Route, Rule};

use crate::deny::{Alert, http_response};
use crate::{Outcome, ProxySettings};

/// Who is on the other end, once a child gateway's PROXY header (if any) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Arrival {
    /// The client (the original one, from a trusted child's PROXY header).
    pub client: SocketAddr,
    /// Where the connection arrived.
    pub local: SocketAddr,
    /// How many lnm gateways it passed before this one.
    pub hops: u8,
}

impl Arrival {
    /// A connection from `client` to `local` that passed `hops` gateways before this one.
    pub fn new(client: SocketAddr, local: SocketAddr, hops: u8) -> Self {
        Arrival {
            client,
            local,
            hops,
        }
    }
}

/// What the sniffer learnt from the first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sniffed {
    /// TLS or HTTP.
    pub protocol: Protocol,
    /// The raw server name (SNI or `Host`), as sent.
    pub server_name: Option<Vec<u8>>,
}

impl Sniffed {
    /// A sniffed hello of `protocol` naming `server_name`.
    pub fn new(protocol: Protocol, server_name: Option<Vec<u8>>) -> Self {
        Sniffed {
            protocol,
            server_name,
        }
    }

    /// The name for logs (lossy text).
    pub fn name_text(&self) -> Option<String> {
        self.server_name
            .as_deref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
    }
}

/// An admitted connection: where to connect and what the hop may know about it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Connect {
    /// The destination (the sniffed name, the listener's destination port).
    pub target: Target,
    /// The metadata handed to the hop.
    pub info: ConnInfo,
    /// External (up) or internal (east-west): which hop.
    pub route: Route,
    /// The rule that allowed it.
    pub rule: Arc<Rule>,
}

/// A refused connection: how it is reported and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The outcome for the connection's report, log line and metrics.
    pub outcome: Outcome,
    /// What the client receives before the connection is closed (`None`: nothing).
    pub answer: Option<Answer>,
}

/// What a refused client receives: the answer a TLS server or an HTTP server would give.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer {
    /// The protocol the client speaks (the answer is in it).
    pub protocol: Protocol,
    /// The fatal alert, for TLS.
    pub alert: Alert,
    /// The status, for HTTP.
    pub status: u16,
    /// The status's reason phrase.
    pub phrase: &'static str,
    /// The one-line plain-text body, for HTTP.
    pub line: String,
}

impl Answer {
    /// The bytes to send: the alert record, or the HTTP response.
    pub fn bytes(&self) -> Vec<u8> {
        match self.protocol {
            Protocol::Http => http_response(self.status, self.phrase, &self.line),
            _ => self.alert.record().to_vec(),
        }
    }
}

impl Refusal {
    /// The refusal of a connection that ends with `outcome`, told to a client speaking
    /// `protocol`; `name` and `port` (the sniffed name, the destination port) go into the HTTP
    /// line where they help. This is the table of the [module docs](self).
    pub fn new(outcome: Outcome, protocol: Protocol, name: Option<&str>, port: u16) -> Refusal {
        let answer = |alert, status, phrase, line: String| {
            Some(Answer {
                protocol,
                alert,
                status,
                phrase,
                line,
            })
        };
        let answer = match &outcome {
            Outcome::Denied(reason) => {
                let alert = if reason.is_about_the_client() {
                    Alert::AccessDenied
                } else {
                    Alert::UnrecognizedName
                };
                let line = match (name, reason) {
                    (_, Reason::SourceNotAllowed) => "lnm: source address not allowed".to_owned(),
                    (Some(name), Reason::NotAllowlisted | Reason::PortNotAllowed { .. }) => {
                        format!("lnm: {name}:{port} denied: {reason}")
                    }
                    _ => format!("lnm: denied: {reason}"),
                };
                answer(alert, 403, "Forbidden", line)
            }
            Outcome::BadHello(e) => answer(
                Alert::for_sniff_error(e),
                400,
                "Bad Request",
                "lnm: malformed request".to_owned(),
            ),
            Outcome::TooManyHops { .. } => answer(
                Alert::AccessDenied,
                508,
                "Loop Detected",
                "lnm: too many gateways (loop)".to_owned(),
            ),
            Outcome::ConnectFailed(_) => answer(
                Alert::InternalError,
                502,
                "Bad Gateway",
                format!("lnm: {}:{port} unreachable", name.unwrap_or("-")),
            ),
            Outcome::ConnectTimeout { .. } => answer(
                Alert::InternalError,
                504,
                "Gateway Timeout",
                format!("lnm: {}:{port} unreachable", name.unwrap_or("-")),
            ),
            Outcome::PolicyFailed(_) => answer(
                Alert::InternalError,
                500,
                "Internal Server Error",
                "lnm: the policy could not decide".to_owned(),
            ),
            // The client is gone, silent, or not a client (a child gateway that broke the
            // PROXY protocol): nothing useful can be said.
            Outcome::SniffTimeout
            | Outcome::ReadError(_)
            | Outcome::BadProxyHeader(_)
            | Outcome::RelayError(_)
            | Outcome::Closed
            | Outcome::IdleTimeout => None,
        };
        Refusal { outcome, answer }
    }
}

/// Before anything of the hello is read: refuses a connection that went round a loop of
/// gateways (or through more than `settings.max_hops`), then one from a source outside the
/// allowlist's ranges.
pub fn admit_arrival(
    arrival: &Arrival,
    allowlist: &Allowlist,
    settings: &ProxySettings,
) -> Result<(), Refusal> {
    let protocol = listener_protocol(settings.protocol);
    if arrival.hops >= settings.max_hops {
        let outcome = Outcome::TooManyHops { hops: arrival.hops };
        return Err(Refusal::new(
            outcome,
            protocol,
            None,
            settings.destination_port,
        ));
    }
    if !allowlist.source_allowed(arrival.client.ip()) {
        let outcome = Outcome::Denied(Reason::SourceNotAllowed);
        return Err(Refusal::new(
            outcome,
            protocol,
            None,
            settings.destination_port,
        ));
    }
    Ok(())
}

/// After the sniff: the policy's `decision` on the sniffed hello (or the error of the policy
/// service) becomes a connection to open or a refusal. A [`Denied`](lnm_core::Denied) error
/// (what a tower filter layer over the policy fails with) is a denial with its reason; any
/// other error refuses the connection as [`Outcome::PolicyFailed`].
pub fn admit(
    arrival: &Arrival,
    sniffed: &Sniffed,
    decision: Result<Decision, BoxError>,
    settings: &ProxySettings,
) -> Result<Connect, Refusal> {
    let port = settings.destination_port;
    // The name as text only when a refusal's line needs it: an admitted connection takes none.
    let refuse = |outcome| {
        let name = sniffed.name_text();
        Refusal::new(outcome, sniffed.protocol, name.as_deref(), port)
    };
    let allowed = match decision {
        Ok(Decision::Allow(allowed)) => allowed,
        Ok(Decision::Deny(reason)) => return Err(refuse(Outcome::Denied(reason))),
        // A layer that denies by failing with `Denied` (as tower filters and `Enforce` do)
        // denied; any other error is a policy that could not decide.
        Err(e) => match e.downcast_ref::<lnm_core::Denied>() {
            Some(denied) => return Err(refuse(Outcome::Denied(denied.reason))),
            None => return Err(refuse(Outcome::PolicyFailed(Arc::from(e)))),
        },
    };
    // An allowed name is a valid name; a policy layer that allows without a valid name is
    // answered as the allowlist would answer it.
    let name = match sniffed.server_name.as_deref().map(Name::from_ascii) {
        Some(Ok(name)) => name,
        Some(Err(e)) => return Err(refuse(Outcome::Denied(Reason::InvalidName(e)))),
        None => return Err(refuse(Outcome::Denied(Reason::NoServerName))),
    };
    let info = ConnInfo::new(arrival.client, arrival.local)
        .with_level(settings.level)
        .with_hops(arrival.hops)
        .with_sniffed(sniffed.protocol, Some(name.clone()));
    Ok(Connect {
        target: Target::new(name, port),
        info,
        route: allowed.route,
        rule: allowed.rule,
    })
}

/// The refusal of an admitted connection whose next hop failed: a denial raised inside the hop
/// (a policy layer around it) is a denial; anything else is an unreachable next hop.
pub fn refuse_connect(connect: &Connect, error: lnm_core::Error) -> Refusal {
    let outcome = match error {
        lnm_core::Error::Denied(denied) => Outcome::Denied(denied.reason),
        other => Outcome::ConnectFailed(Arc::new(other)),
    };
    refusal_for(connect, outcome)
}

/// The refusal of an admitted connection whose next hop did not answer within `after`.
pub fn refuse_connect_timeout(connect: &Connect, after: Duration) -> Refusal {
    refusal_for(connect, Outcome::ConnectTimeout { after })
}

/// The refusal of a connection whose hello could not be sniffed: `first_bytes` (what was read)
/// tells which protocol to answer in on an `auto` listener.
pub fn refuse_unsniffed(
    outcome: Outcome,
    listener: ListenerProtocol,
    first_bytes: &[u8],
    port: u16,
) -> Refusal {
    Refusal::new(outcome, guess_protocol(listener, first_bytes), None, port)
}

fn refusal_for(connect: &Connect, outcome: Outcome) -> Refusal {
    let protocol = connect.info.protocol;
    Refusal::new(
        outcome,
        protocol,
        Some(connect.target.name.as_str()),
        connect.target.port,
    )
}

/// The protocol a listener's clients speak before anything was read.
fn listener_protocol(listener: ListenerProtocol) -> Protocol {
    match listener {
        ListenerProtocol::Http => Protocol::Http,
        _ => Protocol::Tls,
    }
}

/// The protocol of the first bytes, as far as they tell.
pub(crate) fn guess_protocol(listener: ListenerProtocol, buf: &[u8]) -> Protocol {
    match listener {
        ListenerProtocol::Tls => Protocol::Tls,
        ListenerProtocol::Http => Protocol::Http,
        ListenerProtocol::Auto => match buf.first() {
            Some(22) => Protocol::Tls,
            Some(b) if b.is_ascii_alphabetic() => Protocol::Http,
            _ => Protocol::Unknown,
        },
    }
}

#[cfg(test)]
mod tests;
