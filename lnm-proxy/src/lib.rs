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
//! - [`Proxy`]: one connection from accept to close (source check, sniff with timeout and cap,
//!   policy decision through the tower [`PolicyService`](lnm_policy::PolicyService), TLS alert
//!   or HTTP 403 when denied, replay and relay with half-close and idle timeout, one log line);
//! - [`ProxyServer`]: accept loops with connection limits, accept-error backoff and graceful
//!   shutdown.
//!
//! # Layout
//! - `sniff/`: the sniffers
//! - `proxy.rs`: [`Proxy`], [`ConnReport`], [`Outcome`]
//! - `relay/`: the bidirectional relay (user-space copy; `splice(2)` for bulk on Linux)
//! - `deny.rs`: TLS alerts and HTTP error responses
//! - `server.rs`: [`ProxyServer`], [`ConnLimits`]
//! - `settings.rs`: [`ProxySettings`]
//! - `gateway.rs`: [`Gateway`], one level (listeners, DNS, admin) from its configuration, with reload
//! - `admin.rs`: the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`)
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
//! let proxy = Proxy::new(allowlist.into(), parent, Internal::new(), settings);
//! let server = ProxyServer::new(proxy, ConnLimits::default());
//! server.serve(tokio::net::TcpListener::bind("10.3.0.1:443").await?).await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod admission;
mod deny;
mod gateway;
pub mod parts;
mod proxy;
mod relay;
mod server;
mod settings;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sniff;

/// The tower crate this crate's services and layers are written for (its signatures expose
/// `tower::Service` and `tower::Layer`): use it to write your own layers at the same version.
pub use tower;
pub use deny::Alert;
#[cfg(feature = "dns")]
pub use gateway::GatewayResolver;
pub use gateway::{Gateway, GatewayBuilder, HopWrapper};
pub use proxy::{ConnReport, Observer, Outcome, Proxy, ProxyBuilder};
pub use server::{Accepted, ConnLimits, Incoming, ProxyServer};
pub use settings::ProxySettings;
