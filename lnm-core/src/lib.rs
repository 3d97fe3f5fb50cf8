//! # lnm-core: the shared vocabulary of Layered Network Management
//!
//! lnm lets machines in isolated industrial networks (ISA-95 / Purdue levels) reach their cloud
//! services through one gateway per level, without opening the network. This crate holds what
//! every other lnm crate shares:
//!
//! - [`Name`]: a validated, normalised DNS name (the unit every allowlist decision is about);
//! - [`Target`] and [`ConnInfo`]: where a proxied connection goes and what is known about it;
//! - the [`Hop`] trait: the pluggable transport to the next hop, with the built-in hops
//!   [`Direct`](hop::Direct) (real destination), [`Parent`](hop::Parent) (gateway one level up),
//!   [`Internal`](hop::Internal) (east-west) and [`Memory`](hop::Memory) (in-process network),
//!   and conversions between hops and tower services;
//! - the [`Resolve`] trait and its resolvers: the system's ([`SystemResolver`]) and a static
//!   map ([`StaticHosts`]); the resolver that asks explicit DNS servers is
//!   `lnm_dns::UpstreamResolver`, built on lnm-dns's one DNS client (this crate holds no DNS
//!   wire code);
//! - [`random_u64`]: the random numbers behind DNS query IDs and hash seeds;
//! - [`OwnAddrs`]: a gateway's own addresses, which hops refuse to dial (loop protection);
//! - [`socket`]: listening sockets as a gateway binds them, one `SO_REUSEPORT` copy per worker;
//! - [`Reason`] and [`Denied`]: why a connection was denied, wherever that was decided;
//! - [`Error`]: why a hop failed.
//!
//! # Layout
//! - `name.rs`: [`Name`] and [`NameError`]
//! - `target.rs`: [`Target`], [`ConnInfo`], [`Protocol`]
//! - `hop/`: the [`Hop`] trait (`mod.rs`), [`Stream`], one file per built-in hop, `service.rs`
//! - `resolve.rs`: [`Resolve`], [`SystemResolver`], [`StaticHosts`]
//! - `random.rs`: [`random_u64`]
//! - `own.rs`: [`OwnAddrs`]
//! - `socket.rs`: [`socket::tcp_listeners`], [`socket::udp_sockets`]
//! - `proxy_header.rs`: PROXY protocol v2 between gateways (client address, hop count)
//! - `reason.rs`: [`Reason`], [`Denied`]
//! - `error.rs`: [`Error`]
//!
//! # Example
//! A level-3 gateway forwards to its parent; a custom resolver and a timeout are one line each:
//! ```
//! use std::time::Duration;
//! use lnm_core::hop::{Direct, Parent};
//! use lnm_core::{StaticHosts, Target};
//!
//! let to_level4 = Parent::new(["10.4.0.1:443".parse().unwrap()])
//!     .connect_timeout(Duration::from_secs(5));
//! let hosts: StaticHosts = [("cloud.example".parse().unwrap(), "192.0.2.10".parse().unwrap())]
//!     .into_iter()
//!     .collect();
//! let at_level4 = Direct::with_resolver(hosts);
//! let target = Target::new("management.azure.com".parse().unwrap(), 443);
//! assert_eq!(target.to_string(), "management.azure.com:443");
//! ```

mod error;
pub mod hop;
mod name;
mod own;
pub mod proxy_header;
mod random;
mod reason;
pub mod resolve;
pub mod socket;
mod target;

/// The attribute that implements [`Hop`] (and other async traits of lnm) for your types:
/// `#[lnm_core::async_trait]`, so that no second crate is needed.
pub use async_trait::async_trait;
pub use error::{BoxError, Error};
pub use hop::{Hop, Stream};
/// The `ipnet` crate, whose [`IpNet`] (an address range such as `10.2.0.0/16`) lnm's source
/// ranges, refused ranges and PROXY-protocol peers are written in.
pub use ipnet::{self, IpNet};
pub use name::{MAX_LABEL_LEN, MAX_NAME_LEN, Name, NameBuf, NameError};
pub use own::OwnAddrs;
pub use random::random_u64;
pub use reason::{Denied, Reason};
pub use resolve::{Resolve, StaticHosts, SystemResolver};
pub use target::{ConnInfo, Protocol, Target};
/// The `tracing` crate lnm logs through (spans `conn{..}` and `dns{..}`, one event per
/// decision): log your own events into the same subscriber without a second dependency.
pub use tracing;
