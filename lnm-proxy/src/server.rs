//! Accepting connections: limits, accept-error backoff, graceful shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use lnm_core::Stream;
use lnm_core::hop::MemoryListener;
use lnm_policy::config::{Limits, defaults};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Proxy;

/// Where a listener's connections come from: the inbound half of lnm's pluggable transports.
///
/// A [`Gateway`](crate::Gateway) binds TCP by default; an application hands it another source
/// per listener with [`GatewayBuilder::incoming`](crate::GatewayBuilder::incoming).
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// A TCP listener the application bound itself (socket activation, its own socket
    /// options).
    Tcp(TcpListener),
    /// A listener of an in-process [`MemoryNetwork`](lnm_core::hop::MemoryNetwork).
    Memory(MemoryListener),
    /// Any other source: the application accepts connections its own way (a unix socket, a
    /// VPN, a test harness) and sends them here. The listener ends when every sender is
    /// dropped.
    Channel(tokio::sync::mpsc::Receiver<Accepted>),
}

impl Incoming {
    /// A channel source: the sender to hand connections in, and the source to give a listener.
    pub fn channel(capacity: usize) -> (tokio::sync::mpsc::Sender<Accepted>, Incoming) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (tx, Incoming::Channel(rx))
    }
}

/// One connection handed to a listener through [`Incoming::Channel`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Accepted {
    /// The connection.
    pub stream: Stream,
    /// The client's address (what the source ranges and the logs see).
    pub client: SocketAddr,
}

impl Accepted {
    /// A connection from `client`.
    pub fn new(stream: impl Into<Stream>, client: SocketAddr) -> Self {
        Accepted {
            stream: stream.into(),
            client,
        }
    }
}

/// Concurrent connection limits of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// In total.
    pub max_connections: usize,
    /// Per client address.
    pub max_per_source: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: defaults::MAX_CONNECTIONS,
            max_per_source: defaults::MAX_CONNECTIONS_PER_SOURCE,
        }
    }
}

impl From<&Limits> for ConnLimits {
    fn from(limits: &Limits) -> Self {
        ConnLimits {
            max_connections: limits.max_connections,
            max_per_source: limits.max_connections_per_source,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Decrements the active-connections gauge when a connection task ends (also on abort).
struct ActiveGuard;

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        metrics::gauge!("lnm_connections_active").decrement(1.0);
    }
}

/// Releases a connection's slot when the connection ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

/// Serves a [`Proxy`] on listeners (TCP or in-memory) until shut down.
///
/// - Connections over [`ConnLimits`] are closed at once (and logged), before anything is read.
/// - When accepting fails for lack of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), the
///   accept loop backs off (1 ms doubling to 1 s) instead of spinning, and recovers by itself.
/// - [`shutdown`](Self::shutdown) stops accepting; [`drain`](Self::drain) waits for open
///   connections up to a deadline and then closes the rest.
#[derive(Debug, Clone)]
pub struct ProxyServer {
    proxy: Arc<ArcSwap<Proxy>>,
    limits: ConnLimits,
    counts: Arc<Mutex<Counts>>,
    tracker: TaskTracker,
    stop_accepting: CancellationToken,
    abort: CancellationToken,
}

impl ProxyServer {
    /// A server for `proxy` with `limits`.
    pub fn new(proxy: Proxy, limits: ConnLimits) -> Self {
        ProxyServer {
            proxy: Arc::new(ArcSwap::from_pointee(proxy)),
            limits,
            counts: Arc::default(),
            tracker: TaskTracker::new(),
            stop_accepting: CancellationToken::new(),
            abort: CancellationToken::new(),
        }
    }

    /// The proxy new connections are handed to.
    pub fn proxy(&self) -> Arc<Proxy> {
        self.proxy.load_full()
    }

    /// Hands new connections to `proxy` from now on (reload): connections already open keep
    /// the proxy they started with.
    pub fn replace(&self, proxy: Proxy) {
        self.proxy.store(Arc::new(proxy));
    }

    /// Open connections right now.
    pub fn active(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Accepts on `listener` until [`shutdown`](Self::shutdown).
    pub async fn serve(&self, listener: TcpListener) {
        let local = listener.local_addr().ok();
        // Bound to one address, every connection's local address is the listener's: no
        // getsockname per connection. A wildcard bind asks the socket.
        let fixed_local = local.filter(|addr| !addr.ip().is_unspecified());
        let mut backoff = Duration::from_millis(1);
        loop {
            let accepted = tokio::select! {
                () = self.stop_accepting.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, client)) => {
                    backoff = Duration::from_millis(1);
                    let _ = stream.set_nodelay(true);
                    let local = match fixed_local {
                        Some(local) => local,
                        None => stream
                            .local_addr()
                            .unwrap_or_else(|_| local.unwrap_or(client)),
                    };
                    self.spawn(Stream::Tcp(stream), client, local);
                }
                Err(e) if is_resource_exhaustion(&e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed for lack of resources; backing off");
                    tokio::select! {
                        () = self.stop_accepting.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                // Per-connection errors (the client reset before accept): just go on.
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
    }

    /// Serves the connections of `incoming` until [`shutdown`](Self::shutdown) (or until the
    /// source ends); `local` is the address reported for connections that do not come from a
    /// TCP listener.
    pub async fn serve_incoming(&self, incoming: Incoming, local: SocketAddr) {
        match incoming {
            Incoming::Tcp(listener) => self.serve(listener).await,
            Incoming::Memory(listener) => self.serve_memory(listener, local).await,
            Incoming::Channel(mut connections) => loop {
                let accepted = tokio::select! {
                    () = self.stop_accepting.cancelled() => return,
                    accepted = connections.recv() => accepted,
                };
                let Some(Accepted { stream, client }) = accepted else {
                    return;
                };
                self.spawn(stream, client, local);
            },
        }
    }

    /// Accepts on an in-memory listener until [`shutdown`](Self::shutdown); `local` is the
    /// address reported for these connections.
    pub async fn serve_memory(&self, mut listener: MemoryListener, local: SocketAddr) {
        loop {
            let accepted = tokio::select! {
                () = self.stop_accepting.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Some((stream, client)) = accepted else {
                return;
            };
            self.spawn(Stream::Memory(stream), client, local);
        }
    }

    fn spawn(&self, stream: Stream, client: SocketAddr, local: SocketAddr) {
        let Some(slot) = self.take_slot(client) else {
            return;
        };
        let proxy = self.proxy.load_full();
        let abort = self.abort.clone();
        // One span per connection: every line logged while it lasts carries who and where
        // (the server name is recorded once sniffed).
        let span = tracing::info_span!(
            "conn",
            %client,
            listener = %local,
            level = proxy.settings().level,
            sni = tracing::field::Empty,
        );
        let serving = async move {
            let _slot = slot;
            metrics::gauge!("lnm_connections_active").increment(1.0);
            let _active = ActiveGuard;
            tokio::select! {
                _ = proxy.serve(stream, client, local) => {}
                () = abort.cancelled() => {
                    tracing::info!(%client, "connection closed at the end of the shutdown drain");
                }
            }
        };
        self.tracker
            .spawn(tracing::Instrument::instrument(serving, span));
    }

    fn take_slot(&self, client: SocketAddr) -> Option<Slot> {
        let source = client.ip().to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.limits.max_connections {
            metrics::counter!("lnm_connections_total", "decision" => "deny", "reason" => "limit_total").increment(1);
            tracing::warn!(%client, decision = "deny", reason = "limit_total", limit = self.limits.max_connections, "too many connections; closed");
            return None;
        }
        let per_source = counts.per_source.entry(source).or_insert(0);
        if *per_source >= self.limits.max_per_source {
            metrics::counter!("lnm_connections_total", "decision" => "deny", "reason" => "limit_per_source").increment(1);
            tracing::warn!(%client, decision = "deny", reason = "limit_per_source", limit = self.limits.max_per_source, "too many connections from this source; closed");
            return None;
        }
        *per_source += 1;
        counts.total += 1;
        Some(Slot {
            counts: self.counts.clone(),
            source,
        })
    }

    /// Stops accepting on every listener this server serves.
    pub fn shutdown(&self) {
        self.stop_accepting.cancel();
    }

    /// Stops accepting, waits up to `deadline` for open connections to finish, then closes the
    /// remaining ones. Returns how many had to be closed.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.shutdown();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let remaining = self.active();
        self.abort.cancel();
        self.tracker.wait().await;
        remaining
    }
}

/// Errors that say "no resources now", as opposed to one connection failing.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux numbering).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12)) || e.kind() == io::ErrorKind::OutOfMemory
}
