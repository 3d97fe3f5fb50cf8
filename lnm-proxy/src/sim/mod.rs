//! Simulated Purdue topologies for integration tests and demos (feature `sim`).
//!
//! [`Topology::builder`] starts a cloud origin (TLS, with a throw-away CA from [`TestPki`]),
//! one gateway per level — proxy, DNS rewrite server, and optional internal (east-west)
//! services — and hands back each level's addresses and a [`Client`] that behaves like a host
//! of that level: it resolves through its level's DNS and connects through its level's proxy.
//! Everything runs on loopback sockets ([`Network::Loopback`]) or fully in-process
//! ([`Network::InMemory`]: the listeners' connections and the hops go through a
//! [`MemoryNetwork`](lnm_core::hop::MemoryNetwork), DNS is asked in process). Either way each
//! level is a real [`Gateway`](crate::Gateway), built from a typed configuration by the same
//! [`GatewayBuilder`](crate::GatewayBuilder) code as a production level — so an application's
//! own gateway (its hops, policy layer, observers: [`LevelSpec::gateway`]) can be one level of
//! the topology.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lnm_proxy::sim::SimError> {
//! use lnm_proxy::sim::{LevelSpec, Network, Topology};
//!
//! let topology = Topology::builder()
//!     .cloud(&["management.azure.com", "*.blob.core.windows.net"])
//!     .level(LevelSpec::new(4).allow("management.azure.com").allow("*.blob.core.windows.net"))
//!     .level(LevelSpec::new(3).allow("management.azure.com"))
//!     .network(Network::InMemory)
//!     .start()
//!     .await?;
//! let host = topology.client(3)?;
//! let body = host.https_get("management.azure.com", "/health").await?;
//! assert_eq!(body, "origin sni=management.azure.com path=/health");
//! assert!(host.https_get("acct.blob.core.windows.net", "/").await.is_err(), "not allowed at level 3");
//! # Ok(())
//! # }
//! ```
//!
//! An application's gateway as level 3 — here with a policy layer that closes one name:
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lnm_proxy::sim::SimError> {
//! use lnm_policy::{Decision, Reason};
//! use lnm_proxy::sim::{LevelSpec, Network, Topology};
//!
//! use lnm_proxy::tower::{ServiceBuilder, layer::layer_fn};
//!
//! let closed = layer_fn(|policy| {
//!     ServiceBuilder::new()
//!         .map_response(|d: Decision| match d {
//!             Decision::Allow(a) if a.rule.pattern.to_string() == "closed.example.com" => {
//!                 Decision::Deny(Reason::Policy("closed"))
//!             }
//!             other => other,
//!         })
//!         .service(policy)
//! });
//! let topology = Topology::builder()
//!     .cloud(&["*.example.com"])
//!     .level(LevelSpec::new(4).allow("*.example.com"))
//!     .level(
//!         LevelSpec::new(3)
//!             .allow("open.example.com")
//!             .allow("closed.example.com")
//!             .gateway(move |gateway| gateway.policy_layer(closed.clone())),
//!     )
//!     .network(Network::InMemory)
//!     .start()
//!     .await?;
//! let host = topology.client(3)?;
//! assert!(host.https_get("open.example.com", "/").await.is_ok());
//! assert!(host.https_get("closed.example.com", "/").await.is_err());
//! # Ok(())
//! # }
//! ```

mod origin;
mod pki;
mod topology;

pub use origin::{read_request_head, tls_origin, tls_origin_in_memory};
pub use pki::TestPki;
pub use topology::{Client, LevelHandle, LevelSpec, Network, Topology, TopologyBuilder};
/// The TLS crates [`TestPki`] hands out configurations of, at the versions lnm uses.
pub use {rustls, tokio_rustls};

/// Why a simulation step failed. Each variant keeps its cause as a source; the DNS variants
/// tell a name the level refused from one that found no address upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The topology description is inconsistent (no level, a level out of range, a port or
    /// level that does not exist).
    #[error("simulation setup: {0}")]
    Config(String),
    /// A pattern, name or range of the description is invalid.
    #[error("simulation setup: {0}")]
    Invalid(#[source] lnm_core::BoxError),
    /// Creating the test certificates failed.
    #[error("test PKI: {0}")]
    Pki(#[source] lnm_core::BoxError),
    /// An origin or the cloud's DNS could not be bound.
    #[error("cannot bind {what}: {source}")]
    Bind {
        /// What was to listen.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A level's gateway did not start.
    #[error("level {level} did not start: {source}")]
    Start {
        /// The level.
        level: u8,
        /// Why.
        #[source]
        source: crate::Error,
    },
    /// The level's DNS refused the name (not allowlisted there, and no upstream to ask).
    #[error("DNS refused {name}")]
    DnsRefused {
        /// The name asked.
        name: String,
    },
    /// The level's DNS answered without an address (a name forwarded upstream and not found,
    /// or a type without records).
    #[error("DNS: {name}: {rcode} without an address")]
    DnsNoAddress {
        /// The name asked.
        name: String,
        /// The response code, as text (`NXDOMAIN`, `NOERROR`, `SERVFAIL`...).
        rcode: String,
    },
    /// The name resolved, but not to the level's gateway (the client would bypass the proxy).
    #[error("DNS: {name} resolved to {addrs:?}, not to the gateway {gateway}")]
    NotTheGateway {
        /// The name asked.
        name: String,
        /// What it resolved to.
        addrs: Vec<std::net::IpAddr>,
        /// The level's gateway.
        gateway: std::net::IpAddr,
    },
    /// The DNS exchange itself failed (no answer, an unreadable answer, no DNS on the level).
    #[error("DNS: {0}")]
    Dns(String),
    /// The TLS handshake with `name` failed (a denial shows here as a received alert).
    #[error("TLS with {name}: {source}")]
    Tls {
        /// The server name.
        name: String,
        /// The error (a `rustls::Error` inside, for alerts).
        #[source]
        source: std::io::Error,
    },
    /// Connecting, reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl SimError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimError {
        let context = context.into();
        move |source| SimError::Io { context, source }
    }
}
