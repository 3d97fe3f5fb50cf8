//! Where a connection goes ([`Target`]) and what is known about it ([`ConnInfo`]).

use std::fmt;
use std::net::SocketAddr;

use crate::Name;

/// The destination of a proxied connection: a server name and a port.
///
/// The name is the one the client asked for (SNI or `Host`); each [`Hop`](crate::Hop) decides
/// what to do with it (resolve it, hand it to the parent, look it up in a static map).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The server name.
    pub name: Name,
    /// The destination port.
    pub port: u16,
}

impl Target {
    /// A target for `name` on `port`.
    pub fn new(name: Name, port: u16) -> Self {
        Target { name, port }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

/// How the proxy learnt the server name of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// The SNI of a TLS ClientHello.
    Tls,
    /// The `Host` header (or absolute-form URI) of an HTTP/1.x request.
    Http,
    /// Not sniffed (yet).
    #[default]
    Unknown,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tls => "tls",
            Protocol::Http => "http",
            Protocol::Unknown => "unknown",
        })
    }
}

/// Metadata about one proxied connection that a [`Hop`](crate::Hop) may use: who the client is,
/// where it arrived, at which level, after how many gateways, and what was sniffed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The original client (after PROXY protocol, when a child gateway sent one).
    pub client: SocketAddr,
    /// The local address the connection arrived on.
    pub local: SocketAddr,
    /// The Purdue level of the gateway handling the connection.
    pub level: u8,
    /// How many lnm gateways the connection already passed before this one.
    pub hops: u8,
    /// How the server name was learnt.
    pub protocol: Protocol,
    /// The sniffed server name, if any.
    pub server_name: Option<Name>,
}

impl ConnInfo {
    /// Metadata for a connection from `client` that arrived on `local`; level and hop count 0,
    /// nothing sniffed.
    pub fn new(client: SocketAddr, local: SocketAddr) -> Self {
        ConnInfo {
            client,
            local,
            level: 0,
            hops: 0,
            protocol: Protocol::Unknown,
            server_name: None,
        }
    }

    /// Sets the gateway level.
    pub fn with_level(mut self, level: u8) -> Self {
        self.level = level;
        self
    }

    /// Sets the number of gateways already passed.
    pub fn with_hops(mut self, hops: u8) -> Self {
        self.hops = hops;
        self
    }

    /// Records what was sniffed.
    pub fn with_sniffed(mut self, protocol: Protocol, server_name: Option<Name>) -> Self {
        self.protocol = protocol;
        self.server_name = server_name;
        self
    }
}

impl Default for ConnInfo {
    fn default() -> Self {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        ConnInfo::new(unspecified, unspecified)
    }
}
