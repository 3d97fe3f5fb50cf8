//! # lnm-dns: the DNS rewrite resolver of Layered Network Management
//!
//! The hosts of a Purdue level resolve names through their level's gateway. For a name on the
//! allowlist (the very same matcher as the proxy), the gateway answers with its own address, so
//! the connection comes to its proxy; every other name is forwarded upstream or refused.
//!
//! - [`decide`]: the pure rewrite decision (allowlisted A → `answerIpv4`, AAAA → `answerIpv6`
//!   or empty NOERROR, HTTPS/SVCB and other types → empty NOERROR, never NXDOMAIN; not
//!   allowlisted → forward; outside `sourceIpRange` → REFUSED);
//! - [`RewriteResolver`]: the decision as a tower `Service<DnsRequest>`, whose fallback is
//!   another tower service: a [`Forwarder`] or a [`Refuser`];
//! - lnm's one upstream DNS client, in two shapes: the [`Forwarder`] (a tower service that
//!   forwards queries as they came) and the [`UpstreamResolver`] (an [`lnm_core::Resolve`] for
//!   the top-level gateway's real DNS). Both ask upstreams in order over UDP with a TCP retry,
//!   under random IDs and ports, with a bounded cache honouring TTLs (negative answers
//!   included) and one exchange for concurrent identical questions;
//! - [`DnsServer`]: serves any such service over UDP and TCP on one address;
//! - [`export`]: the allowlist as a dnsmasq configuration or a CoreDNS Corefile;
//! - [`Query`] and [`Response`]: build a query ([`Query::build`]), parse one, answer it; read
//!   an answer's code and addresses ([`Response::rcode`], [`Response::answers`]).
//!
//! The wire format is read and written with the `domain` crate (NLnet Labs). The few of its
//! types that lnm-dns's signatures expose are re-exported here — [`Rtype`], [`Class`],
//! [`Rcode`] — with [`Bytes`] and `domain` itself (for records lnm-dns does not read), so a
//! user of this crate needs no second DNS or bytes crate, and never matches their versions.
//!
//! # Layout
//! - `message.rs`: [`Query`], [`Response`]
//! - `rewrite.rs`: [`decide`], [`RewriteConfig`], [`Action`]
//! - `resolver.rs`: [`RewriteResolver`], [`Refuser`], [`Fallback`], [`DnsRequest`]
//! - `client.rs` + `cache.rs`: the upstream client (ordered upstreams, ID and question check,
//!   TCP retry, shared in-flight lookups) and its TTL cache
//! - `forward.rs`: [`Forwarder`], [`ForwarderConfig`] (the client as a tower service)
//! - `upstream.rs`: [`UpstreamResolver`] (the client as an [`lnm_core::Resolve`])
//! - `server.rs`: [`DnsServer`], [`bind`]
//! - `udp.rs`: batched datagram receive and send (`recvmmsg`/`sendmmsg` on Linux)
//! - `export.rs`: dnsmasq and CoreDNS rendering
//! - `error.rs`: [`Error`]
//!
//! # Example
//! Ask a rewrite resolver in process, as a tower service (the same service a [`DnsServer`]
//! serves):
//! ```
//! use lnm_dns::tower::ServiceExt;
//! use lnm_dns::{DnsRequest, Query, Rcode, Refuser, RewriteConfig, RewriteResolver, Rtype, Transport};
//! use lnm_policy::Allowlist;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lnm_dns::Error> {
//! let allowlist = Allowlist::builder().external("management.azure.com").unwrap().build();
//! let answers = RewriteConfig::new(vec!["10.3.0.1".parse().unwrap()], vec![]);
//! let resolver = RewriteResolver::new(allowlist.into(), answers, Refuser);
//!
//! let ask = |name: &str| -> Result<DnsRequest, lnm_dns::Error> {
//!     Ok(DnsRequest {
//!         query: Query::build(name, Rtype::A)?,
//!         source: "10.2.0.7:53000".parse().unwrap(),
//!         transport: Transport::Udp,
//!     })
//! };
//! let Ok(rewritten) = resolver.clone().oneshot(ask("management.azure.com")?).await;
//! assert_eq!(rewritten.answers(), ["10.3.0.1".parse::<std::net::IpAddr>().unwrap()]);
//! let Ok(refused) = resolver.oneshot(ask("elsewhere.example")?).await;
//! assert_eq!(refused.rcode(), Some(Rcode::REFUSED));
//! # Ok(())
//! # }
//! ```
//!
//! Serve it on a level's address, forwarding the names it does not rewrite:
//! ```no_run
//! use lnm_dns::{DnsLimits, DnsServer, Forwarder, ForwarderConfig, RewriteConfig, RewriteResolver};
//! use lnm_policy::Allowlist;
//!
//! # async fn run() -> std::io::Result<()> {
//! let allowlist = Allowlist::builder().external("management.azure.com").unwrap().build();
//! let upstream = Forwarder::new(ForwarderConfig::new(vec!["10.3.0.53:53".parse().unwrap()])).await?;
//! let resolver = RewriteResolver::new(
//!     allowlist.into(),
//!     RewriteConfig::new(vec!["10.3.0.1".parse().unwrap()], vec![]),
//!     upstream,
//! );
//! let (udp, tcp) = lnm_dns::bind("10.3.0.1:53".parse().unwrap()).await?;
//! DnsServer::new(resolver, DnsLimits::default()).serve(udp, tcp).await;
//! # Ok(())
//! # }
//! ```

mod cache;
mod client;
mod error;
pub mod export;
mod forward;
mod message;
mod resolver;
mod rewrite;
mod server;
mod udp;
mod upstream;

/// Internals the fuzz targets in `fuzz/` drive; only built by `cargo fuzz` (`--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// The DNS cache's TTL ageing of a stored answer.
    pub fn aged(answer: &[u8], age: u32) -> Option<Vec<u8>> {
        crate::cache::aged(answer, age)
    }

    /// The upstream client's check that an answer is for the query's question.
    pub fn answers_question(answer: &[u8], query: &[u8]) -> bool {
        crate::client::answers_question(answer, query)
    }
}

/// The buffer type of [`Query::parse`] and [`Response`] (the `bytes` crate).
pub use bytes::Bytes;
/// The DNS wire-format crate lnm-dns is written with (NLnet Labs' `domain`), for what
/// lnm-dns's own types do not cover (other record types, other sections).
pub use domain;
/// A record type (`Rtype::A`, `Rtype::AAAA`, `Rtype::HTTPS`, ...): what a [`Query`] asks for.
pub use domain::base::Rtype;
/// A DNS class (`Class::IN` for everything lnm answers).
pub use domain::base::iana::Class;
/// A response code (`Rcode::NOERROR`, `Rcode::NXDOMAIN`, `Rcode::REFUSED`, ...).
pub use domain::base::iana::Rcode;
pub use error::Error;
pub use forward::{Forwarder, ForwarderConfig};
pub use message::{EDNS_UDP_SIZE, PLAIN_UDP_SIZE, Query, Rejected, Response};
pub use resolver::{DnsRequest, Fallback, Refuser, RewriteResolver, Transport};
pub use rewrite::{Action, RewriteConfig, decide};
pub use server::{DnsLimits, DnsServer, bind, bind_workers};
/// The tower crate this crate's services are written for: call them with
/// `lnm_dns::tower::ServiceExt` and write layers at the same version.
pub use tower;
pub use upstream::UpstreamResolver;
