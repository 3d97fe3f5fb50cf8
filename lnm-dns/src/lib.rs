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
//!   another tower service: a [`Forwarder`] (upstreams in order, UDP with TCP retry, random IDs
//!   and ports, a bounded cache honouring TTLs and negative answers) or a [`Refuser`];
//! - [`DnsServer`]: serves any such service over UDP and TCP on one address;
//! - [`export`]: the allowlist as a dnsmasq configuration or a CoreDNS Corefile.
//!
//! The wire format is handled by the `domain` crate (NLnet Labs), kept behind lnm-dns's own
//! [`Query`] and [`Response`] types.
//!
//! # Layout
//! - `message.rs`: [`Query`], [`Response`]
//! - `rewrite.rs`: [`decide`], [`RewriteConfig`], [`Action`]
//! - `resolver.rs`: [`RewriteResolver`], [`Refuser`], [`Fallback`], [`DnsRequest`]
//! - `forward.rs` + `cache.rs`: [`Forwarder`]
//! - `server.rs`: [`DnsServer`], [`bind`]
//! - `udp.rs`: batched datagram receive and send (`recvmmsg`/`sendmmsg` on Linux)
//! - `export.rs`: dnsmasq and CoreDNS rendering
//!
//! # Example
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
pub mod export;
mod forward;
mod message;
mod resolver;
mod rewrite;
mod server;
mod udp;

/// Internals the fuzz targets in `fuzz/` drive; only built by `cargo fuzz` (`--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// The DNS cache's TTL ageing of a stored answer.
    pub fn aged(answer: &[u8], age: u32) -> Option<Vec<u8>> {
        crate::cache::aged(answer, age)
    }
}

pub use forward::{Forwarder, ForwarderConfig};
pub use message::{EDNS_UDP_SIZE, PLAIN_UDP_SIZE, Query, Rejected, Response};
pub use resolver::{DnsRequest, Fallback, Refuser, RewriteResolver, Transport};
pub use rewrite::{Action, RewriteConfig, decide};
pub use server::{DnsLimits, DnsServer, bind};
/// The tower crate this crate's services are written for: call them with
/// `lnm_dns::tower::ServiceExt` and write layers at the same version.
pub use tower;
