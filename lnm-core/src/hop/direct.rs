//! [`Direct`]: resolve the real name and connect to it (the top level's hop).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;

use super::connect::{ATTEMPT_DELAY, connect_first, interleave};
use crate::{ConnInfo, Error, Hop, Name, OwnAddrs, Resolve, Stream, SystemResolver, Target};

/// The default connect timeout of the built-in hops.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the real destination: resolves `target.name` with a pluggable [`Resolve`]r, then
/// connects to `target.port` over IPv4 and IPv6 with happy eyeballs, within a connect timeout.
///
/// It refuses to dial any address in its [`OwnAddrs`]: a name that resolves back to this
/// gateway (for example because the host's resolver points at the gateway's own rewriting DNS)
/// would otherwise make the gateway connect to itself forever.
///
/// It also guards against being a confused deputy: an allowlisted name whose DNS answer points
/// at loopback, link-local (cloud metadata services live at 169.254.169.254), unspecified or
/// multicast addresses — or at the ranges set with [`Direct::refused_ranges`] — is refused,
/// unless the name is one of [`Direct::trust_names`] (the explicitly configured
/// `resolver.hosts`).
#[derive(Clone)]
pub struct Direct {
    resolver: Arc<dyn Resolve>,
    own: OwnAddrs,
    connect_timeout: Duration,
    refused: Arc<Vec<IpNet>>,
    trusted: Arc<HashSet<Name>>,
}

/// Destinations a top-level gateway never dials for a resolved name.
pub fn default_refused_ranges() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fe80::/10",
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
    ]
    .iter()
    .filter_map(|r| r.parse().ok())
    .collect()
}

impl Direct {
    /// A direct hop using the system resolver.
    pub fn new() -> Self {
        Direct::with_resolver(SystemResolver)
    }

    /// A direct hop using `resolver`.
    pub fn with_resolver(resolver: impl Resolve) -> Self {
        Direct {
            resolver: Arc::new(resolver),
            own: OwnAddrs::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            refused: Arc::new(default_refused_ranges()),
            trusted: Arc::default(),
        }
    }

    /// Sets the timeout for resolving and connecting together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Replaces the refused destination ranges (default: [`default_refused_ranges`]). Add the
    /// plant's private ranges here; an empty list turns the guard off (simulations on loopback).
    pub fn refused_ranges(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        self.refused = Arc::new(ranges.into_iter().collect());
        self
    }

    /// Names whose addresses were configured explicitly (`resolver.hosts`): exempt from the
    /// refused ranges (an operator may point a name at a loopback service on purpose).
    pub fn trust_names(mut self, names: impl IntoIterator<Item = Name>) -> Self {
        self.trusted = Arc::new(names.into_iter().collect());
        self
    }

    /// Shares the gateway's own addresses, which this hop will refuse to dial.
    pub fn own_addrs(mut self, own: OwnAddrs) -> Self {
        self.own = own;
        self
    }
}

impl Default for Direct {
    fn default() -> Self {
        Direct::new()
    }
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Hop for Direct {
    async fn connect(&self, target: &Target, _info: &ConnInfo) -> Result<Stream, Error> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let ips = tokio::time::timeout_at(deadline, self.resolver.resolve(&target.name))
            .await
            .map_err(|_| Error::ConnectTimeout {
                target: target.to_string(),
                after: self.connect_timeout,
            })??;
        let addrs: Vec<SocketAddr> = ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, target.port))
            .collect();
        if let Some(&addr) = addrs.iter().find(|a| self.own.contains(**a)) {
            return Err(Error::OwnAddress {
                target: target.clone(),
                addr,
            });
        }
        if !self.trusted.contains(&target.name) {
            let blocked = addrs.iter().find(|a| {
                let ip = a.ip().to_canonical();
                self.refused.iter().any(|net| net.contains(&ip))
            });
            if let Some(&addr) = blocked {
                return Err(Error::RefusedDestination {
                    target: target.clone(),
                    addr,
                });
            }
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let stream = connect_first(target, &interleave(&addrs), Some(ATTEMPT_DELAY), remaining)
            .await
            .map_err(|e| match e {
                Error::ConnectTimeout { target, .. } => Error::ConnectTimeout {
                    target,
                    after: self.connect_timeout,
                },
                other => other,
            })?;
        Ok(Stream::Tcp(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticHosts;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn hosts(name: &str, ips: &[&str]) -> StaticHosts {
        ips.iter()
            .map(|ip| (name.parse().unwrap(), ip.parse().unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn resolves_and_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hi").await.unwrap();
        });
        let hop = Direct::with_resolver(hosts("cloud.example", &["127.0.0.1"]))
            .trust_names(["cloud.example".parse().unwrap()]);
        let target = Target::new("cloud.example".parse().unwrap(), port);
        let mut stream = hop.connect(&target, &ConnInfo::default()).await.unwrap();
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
    }

    #[tokio::test]
    async fn refuses_its_own_listener() {
        let own = OwnAddrs::new();
        own.add_listener("0.0.0.0:8443".parse().unwrap());
        let hop = Direct::with_resolver(hosts("loop.example", &["127.0.0.1"]))
            .own_addrs(own)
            .refused_ranges([]);
        let target = Target::new("loop.example".parse().unwrap(), 8443);
        let err = hop
            .connect(&target, &ConnInfo::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::OwnAddress { .. }), "{err}");
        assert!(err.to_string().contains("loop"), "{err}");
    }

    #[tokio::test]
    async fn confused_deputy_destinations_are_refused() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            let hop = Direct::with_resolver(hosts("evil.example", &[ip]));
            let target = Target::new("evil.example".parse().unwrap(), 80);
            let err = hop
                .connect(&target, &ConnInfo::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::RefusedDestination { .. }),
                "{ip}: {err}"
            );
        }
        let hop = Direct::with_resolver(hosts("db.example", &["10.1.2.3"]))
            .refused_ranges(["10.0.0.0/8".parse().unwrap()]);
        let err = hop
            .connect(
                &Target::new("db.example".parse().unwrap(), 443),
                &ConnInfo::default(),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("10.1.2.3"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn unroutable_destination_times_out() {
        // 192.0.2.0/24 (TEST-NET-1) is never routed; with time paused the timeout fires at once
        // unless the connect fails first (no route): either is a clear, bounded error.
        let hop = Direct::with_resolver(hosts("blackhole.example", &["192.0.2.1"]))
            .connect_timeout(Duration::from_millis(300));
        let target = Target::new("blackhole.example".parse().unwrap(), 443);
        let err = hop
            .connect(&target, &ConnInfo::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::ConnectTimeout { .. } | Error::Connect { .. }),
            "{err}"
        );
    }
}
