//! # lnm-policy: the allowlist engine of Layered Network Management
//!
//! Every lnm gateway decides, for each TLS/HTTP connection and each DNS query, whether the
//! server name may pass. This crate makes that decision — one matcher for the proxy and the DNS
//! resolver alike — and reads the configuration it comes from.
//!
//! - [`Allowlist::check`] is a pure function over (server name, source IP, port) returning a
//!   [`Decision`]: `Allow` with the [`Route`] (external or internal) and the rule that matched,
//!   or `Deny` with a [`Reason`]. Its cost is O(labels of the name), whatever the number of rules.
//! - [`AllowlistHandle`] shares the current allowlist and swaps a new one in atomically (reload
//!   without touching live connections).
//! - tower, named in tower's style: [`Policy`] (the leaf decision service), [`Enforce`] +
//!   [`EnforceLayer`] (only allowed requests reach the inner service, e.g. a hop), and
//!   [`BoxPolicy`] (any decision service, such as `Policy` under the application's own layers,
//!   behind one type: what the proxy asks).
//! - [`Config`] reads a level's configuration: an Azure IoT LNM custom resource (or its `spec`)
//!   unchanged, plus lnm's own sections (DESIGN §4).
//!
//! # Layout
//! - `pattern.rs`: [`Pattern`] (`name` / `*.suffix`)
//! - `decision.rs`: [`Request`], [`Decision`], [`Allowed`], [`Route`] ([`Reason`] is
//!   lnm-core's, re-exported)
//! - `allowlist.rs`: [`Allowlist`] (the label trie), [`AllowlistBuilder`], [`Rule`]
//! - `arc.rs`: [`ARC_DOMAINS`]
//! - `handle.rs`: [`AllowlistHandle`]
//! - `service.rs`: the tower adapters
//! - `config/`: [`Config`] and its sections, loading and validation
//! - `error.rs`: [`Error`]
//!
//! # Example
//! ```
//! use lnm_policy::{Config, Decision, Reason, Request};
//!
//! let loaded = Config::parse(r#"
//! level: 3
//! parentIpAddr: 10.4.0.1
//! allowList:
//!   domains:
//!     - destinationUrl: management.azure.com
//!       destinationType: external
//!     - destinationUrl: "*.blob.core.windows.net"
//!       destinationType: external
//!   sourceIpRange:
//!     - {addressPrefix: 10.2.0.0, prefixLen: 16}
//! "#, "level3.yaml").unwrap();
//! let allowlist = loaded.config.allowlist();
//! let from_l2 = "10.2.0.5".parse().unwrap();
//! assert!(allowlist.check(&Request::for_name("acct.blob.core.windows.net", from_l2, 443)).is_allowed());
//! assert_eq!(
//!     allowlist.check(&Request::for_name("badexample.com", from_l2, 443)),
//!     Decision::Deny(Reason::NotAllowlisted)
//! );
//! ```

mod allowlist;
mod arc;
pub mod config;
mod decision;
mod error;
mod handle;
mod pattern;
mod service;

pub use allowlist::{Allowlist, AllowlistBuilder, Rule, RuleOrigin};
pub use arc::ARC_DOMAINS;
pub use config::{Config, LoadedConfig};
pub use decision::{Allowed, Decision, Reason, Request, Route};
pub use error::Error;
pub use handle::AllowlistHandle;
/// Address ranges (`10.2.0.0/16`), as `sourceIpRange` and `acceptFrom` hold them.
pub use lnm_core::IpNet;
pub use pattern::Pattern;
/// The YAML parser whose error [`Error::Parse`] carries (with its line and column).
pub use serde_saphyr;
pub use service::{
    BoxPolicy, DecisionFuture, Denied, Enforce, EnforceLayer, Permitted, Policy, PolicyRequest,
};
/// The tower crate this crate's services and layers are written for (its signatures expose
/// `tower::Service` and `tower::Layer`): use it to write your own layers at the same version.
pub use tower;
