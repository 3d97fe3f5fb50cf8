//! The [`Hop`] trait: the pluggable transport from one gateway to the next, and the built-in hops.
//!
//! # Layout
//! - [`Stream`]: the byte stream a hop hands back (TCP, in-memory pipe or any boxed I/O);
//! - [`direct`]: resolve the real name and connect (top level);
//! - [`parent`]: dial the parent gateway, failing over in order (lower levels);
//! - [`internal`]: a static name → address map for east-west destinations;
//! - [`memory`]: an in-process network of named listeners, for simulations and tests;
//! - [`service`]: hops as tower services and tower services as hops.

mod connect;
pub mod direct;
pub mod internal;
pub mod memory;
pub mod parent;
pub mod service;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;

use crate::{ConnInfo, Error, Target};

pub use direct::{Direct, default_refused_ranges};
pub use internal::Internal;
pub use memory::{Memory, MemoryListener, MemoryNetwork};
pub use parent::Parent;
pub use service::{HopRequest, HopService, TowerHop};
pub use stream::{BoxedIo, Io, Stream};

/// A hop shared by every listener (and every connection) of a gateway.
pub type SharedHop = Arc<dyn Hop>;

/// Opens a byte stream toward a [`Target`] for one proxied connection.
///
/// A hop is the only thing that differs between a top-level gateway (which dials the real
/// destination), a lower level (which dials its parent gateway) and an east-west route (which
/// dials a machine on its own level). Implement it to reach the next hop some other way: through
/// an HTTP CONNECT proxy, a VPN socket, a unix socket, with extra logging...
///
/// ```
/// use async_trait::async_trait;
/// use lnm_core::{ConnInfo, Error, Hop, Stream, Target};
///
/// /// Refuses every connection (a useful placeholder in tests).
/// struct Nowhere;
///
/// #[async_trait]
/// impl Hop for Nowhere {
///     async fn connect(&self, target: &Target, _info: &ConnInfo) -> Result<Stream, Error> {
///         Err(Error::NoDestination { hop: "nowhere" })
///     }
/// }
/// ```
#[async_trait]
pub trait Hop: Send + Sync + 'static {
    /// Opens a stream toward `target` for the connection described by `info`.
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error>;
}

#[async_trait]
impl<H: Hop + ?Sized> Hop for Arc<H> {
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error> {
        (**self).connect(target, info).await
    }
}

#[async_trait]
impl<H: Hop + ?Sized> Hop for Box<H> {
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error> {
        (**self).connect(target, info).await
    }
}
