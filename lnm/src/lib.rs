//! # lnm: Layered Network Management for Rust
//!
//! One dependency for all of lnm: machines in isolated industrial networks (ISA-95 / Purdue
//! levels 2, 3, 4; only level 4 has internet) reach their cloud services through one gateway
//! per level — a DNS rewrite resolver and a transparent, allowlist-checking forwarding proxy
//! that never terminates TLS.
//!
//! The root holds the shared vocabulary (lnm-core: [`Hop`], [`Target`], [`ConnInfo`],
//! [`Name`], [`Reason`], [`Denied`], the built-in [`hop`]s and [`resolve`]rs); each part is a
//! module:
//!
//! | module | crate | holds |
//! |---|---|---|
//! | [`policy`] | `lnm-policy` | the allowlist, its tower services, the configuration |
//! | [`dns`] (feature `dns`) | `lnm-dns` | the DNS rewrite resolver, forwarder, server |
//! | [`proxy`] (feature `proxy`) | `lnm-proxy` | sniffers, admission, proxy, [`Gateway`], guides, `sim` (feature `sim`), `telemetry` (features `prometheus`, `otlp`: `/metrics` and the OTLP push) |
//!
//! Features: `proxy`, `dns`, `splice` (default), `sim`, `prometheus`, `otlp` (the metrics
//! recorder of a gateway process; `otlp` pushes to an OpenTelemetry collector). The guides are in
//! [`proxy::guide`]: build your own edge gateway, simulate Purdue levels in your tests, run a
//! level.
//!
//! ```
//! use lnm::policy::config::{Config, DomainEntry};
//! use lnm::policy::{Decision, Request};
//!
//! let config = Config::level(3)
//!     .with_parent("10.4.0.1".parse().unwrap())
//!     .allow(DomainEntry::external("*.blob.core.windows.net").unwrap());
//! let allowlist = config.allowlist();
//! let from_l2 = "10.2.0.5".parse().unwrap();
//! let decision = allowlist.check(&Request::for_name("acct.blob.core.windows.net", from_l2, 443));
//! assert!(matches!(decision, Decision::Allow(a) if a.rule.to_string().starts_with("*.blob")));
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use lnm_core::*;
pub use lnm_policy as policy;
pub use lnm_policy::tower;

#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use lnm_dns as dns;

#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use lnm_proxy as proxy;

/// One level, from its configuration, every part replaceable (see [`proxy::GatewayBuilder`]).
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use lnm_proxy::{Gateway, GatewayBuilder};

/// A level's configuration: an Azure IoT LNM custom resource, or built in code.
pub use lnm_policy::Config;
