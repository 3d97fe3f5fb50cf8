//! A shared, atomically swappable allowlist.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{Allowlist, Decision, Request};

/// A cheap-to-clone handle on the current [`Allowlist`], shared by every listener and the DNS
/// resolver of a gateway.
///
/// [`store`](Self::store) swaps a new allowlist in atomically: checks that already started
/// finish on the old one, every later check sees the new one, and live connections (which were
/// decided when they started) are not touched.
#[derive(Debug, Clone)]
pub struct AllowlistHandle {
    current: Arc<ArcSwap<Allowlist>>,
}

impl AllowlistHandle {
    /// A handle on `allowlist`.
    pub fn new(allowlist: Allowlist) -> Self {
        AllowlistHandle {
            current: Arc::new(ArcSwap::from_pointee(allowlist)),
        }
    }

    /// The current allowlist (a snapshot; later swaps do not change it).
    pub fn load(&self) -> Arc<Allowlist> {
        self.current.load_full()
    }

    /// The current allowlist, borrowed for one decision: cheaper than [`load`](Self::load)
    /// (no reference count is taken in the common case), for the per-connection and per-query
    /// paths. Do not hold it across an `.await`: use [`load`](Self::load) for that.
    pub fn current(&self) -> impl std::ops::Deref<Target = Allowlist> + '_ {
        Borrowed(self.current.load())
    }

    /// Replaces the allowlist for every later check.
    pub fn store(&self, allowlist: Allowlist) {
        self.current.store(Arc::new(allowlist));
    }

    /// Checks against the current allowlist.
    pub fn check(&self, request: &Request<'_>) -> Decision {
        self.current.load().check(request)
    }

    /// Checks a DNS query against the current allowlist.
    pub fn check_query(&self, name: &[u8], source: IpAddr) -> Decision {
        self.current.load().check_query(name, source)
    }

    /// Whether `source` may use the gateway under the current allowlist.
    pub fn source_allowed(&self, source: IpAddr) -> bool {
        self.current.load().source_allowed(source)
    }
}

/// The guard of [`AllowlistHandle::current`].
struct Borrowed(arc_swap::Guard<Arc<Allowlist>>);

impl std::ops::Deref for Borrowed {
    type Target = Allowlist;

    fn deref(&self) -> &Allowlist {
        &self.0
    }
}

impl From<Allowlist> for AllowlistHandle {
    fn from(allowlist: Allowlist) -> Self {
        AllowlistHandle::new(allowlist)
    }
}
