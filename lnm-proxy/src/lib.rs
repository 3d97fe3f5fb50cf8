//! # lnm-proxy: the sniffing forward proxy of Layered Network Management
//!
//! One lnm gateway per Purdue level accepts the TLS (and plain HTTP) connections of the level
//! below, learns the server name from the first bytes — the SNI of the ClientHello or the HTTP
//! `Host` — asks the allowlist, and forwards the **untouched bytes** through a
//! [`Hop`](lnm_core::Hop): to the parent gateway, to the real destination at the top level, or
//! to an internal destination on its own level. TLS is never terminated.
//!
//! - [`sniff`]: pure, incremental sniffers ([`TlsSniffer`](sniff::TlsSniffer),
//!   [`HttpSniffer`](sniff::HttpSniffer));
//! - [`admission`]: the per-connection decision as pure functions (hop limit, source, the
//!   policy's decision → connect or refuse, and the one table from outcome to TLS alert / HTTP
//!   status / log line);
//! - [`Proxy`]: one connection from accept to close — a thin driver around [`admission`]
//!   (sniff with timeout and cap, ask the policy — any [`BoxPolicy`](lnm_policy::BoxPolicy) —,
//!   answer a refusal, or replay and relay with half-close and idle timeout, one log line);
//! - [`ProxyServer`]: accept loops over any connection source ([`Incoming`]) with connection
//!   limits, accept-error backoff and graceful shutdown;
//! - [`Gateway`]: one level from its configuration, every part replaceable through
//!   [`GatewayBuilder`] (hops, a policy layer, connection sources, observers), with DNS, admin
//!   and reload; [`parts`] builds a level's hops and resolver from the configuration;
//! - `sim` (feature `sim`): whole Purdue topologies of gateways for tests and demos;
//! - `telemetry` (features `prometheus`, `otlp`): the metrics recorder of a gateway process,
//!   for `/metrics` and the OTLP/gRPC push to an OpenTelemetry collector.
//!
//! # Layout
//! - `sniff/`: the sniffers
//! - `proxy.rs`: [`Proxy`], [`ConnReport`], [`Outcome`]
//! - `relay/`: the bidirectional relay (user-space copy, a bigger buffer for bulk;
//!   `splice(2)` for bulk on Linux with `relay.zeroCopy`)
//! - `deny.rs`: TLS alerts and HTTP error responses
//! - `server.rs`: [`ProxyServer`], [`ConnLimits`]
//! - `settings.rs`: [`ProxySettings`]
//! - `error.rs`: [`Error`], [`ReloadReport`]
//! - `admission.rs`: the pure admission functions and the refusal table
//! - `gateway.rs`: [`Gateway`], [`GatewayBuilder`]: one level (listeners, DNS, admin) from its
//!   configuration, with reload
//! - `parts.rs`: configuration → hops, DNS resolver
//! - `admin.rs`: the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`)
//! - `workers.rs`: thread-per-core workers (one current-thread runtime per CPU)
//! - `logging.rs`: [`logging::batched`], log output written in batches off the hot path
//! - `telemetry/`: the metrics recorder of a process, the Prometheus text and the OTLP push
//!   (features `prometheus`, `otlp`)
//!
//! Start with a guide: [build your own edge gateway](guide::own_gateway), simulate Purdue
//! levels in your tests (`guide::simulate`, feature `sim`), [run a level](guide::run_a_level).
//! lnm logs through `tracing`: nothing is printed until the application installs a subscriber
//! (`tracing_subscriber::fmt::init()`).
//!
//! # Example
//! A level-3 proxy on loopback that forwards allowlisted TLS connections to its parent:
//! ```no_run
//! use lnm_core::hop::{Internal, Parent};
//! use lnm_policy::{Allowlist, config::ListenerProtocol};
//! use lnm_proxy::{ConnLimits, Proxy, ProxyServer, ProxySettings};
//!
//! # async fn run() -> std::io::Result<()> {
//! let allowlist = Allowlist::builder().external("*.blob.core.windows.net").unwrap().build();
//! let parent = Parent::new(["10.4.0.1:443".parse().unwrap()]);
//! let settings = ProxySettings::new(ListenerProtocol::Tls, 443).level(3);
//! let proxy = Proxy::builder(allowlist.into(), settings)
//!     .external(parent)
//!     .internal(Internal::new())
//!     .build();
//! let server = ProxyServer::new(proxy, ConnLimits::default());
//! server.serve(tokio::net::TcpListener::bind("10.3.0.1:443").await?).await;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Guides, one per way of using lnm: each page walks through one job, with code that is
/// compiled with the crate and a runnable example built in CI.
pub mod guide {
    #[doc = include_str!("../guide/own-gateway.md")]
    pub mod own_gateway {}
    #[doc = include_str!("../guide/simulate.md")]
    #[cfg(feature = "sim")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
    pub mod simulate {}
    #[doc = include_str!("../guide/run-a-level.md")]
    pub mod run_a_level {}
}

pub mod admin;
pub mod admission;
mod deny;
mod error;
mod gateway;
pub mod logging;
pub mod parts;
mod proxy;
mod relay;
mod server;
mod settings;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
pub mod sniff;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod telemetry;
mod workers;

pub use deny::Alert;
pub use error::{Error, NeedsRestart, ReloadReport};
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use gateway::GatewayResolver;
pub use gateway::{Gateway, GatewayBuilder, HopWrapper};
/// Address ranges, as [`ProxySettings::proxy_protocol_from`] holds them.
pub use lnm_core::IpNet;
/// How a listener learns the server name (TLS, HTTP, or either): what [`ProxySettings`]
/// takes, beside the sniffers that implement it.
pub use lnm_policy::config::ListenerProtocol;
pub use proxy::{ConnReport, Observer, Outcome, Proxy, ProxyBuilder};
pub use server::{Accepted, ConnLimits, Incoming, ProxyServer};
pub use settings::ProxySettings;
/// The tower crate this crate's services and layers are written for (its signatures expose
/// `tower::Service` and `tower::Layer`): use it to write your own layers at the same version.
pub use tower;
