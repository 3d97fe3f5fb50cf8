//! Every default of the configuration, as one named constant each (DESIGN §4).
//!
//! The parser, the runtime settings (`lnm_proxy::ProxySettings`, `lnm_proxy::ConnLimits`, the
//! DNS rewrite) and the docs all use these constants; no default is written a second time.

use std::time::Duration;

/// `limits.maxConnections`: concurrent proxied connections in total.
pub const MAX_CONNECTIONS: usize = 10_000;
/// `limits.maxConnectionsPerSource`: concurrent proxied connections per client address.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 1_000;
/// `limits.maxHops`: gateways a connection may pass before it is refused as a loop.
pub const MAX_HOPS: u8 = 8;
/// `limits.listenBacklog`: connections the kernel queues per proxy listener before they are
/// accepted (a burst of clients); the kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;
/// `workers`: the most thread-per-core workers a gateway runs (a typo guard: each worker is a
/// thread with its own sockets).
pub const MAX_WORKERS: usize = 1024;
/// `limits.maxClientHello`: the largest ClientHello handshake message (4-byte header + body,
/// record headers not counted), in bytes.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;
/// The largest HTTP request head the sniffer buffers, in bytes (not configurable).
pub const MAX_HTTP_HEAD: usize = 16 * 1024;
/// `timeouts.sniff`: until the server name is known.
pub const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// `timeouts.connect`: to open the next hop (resolution included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `timeouts.idle`: without bytes in either direction.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// `timeouts.shutdownDrain`: for open connections to finish at shutdown.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);
/// `dns.ttl`: the TTL of rewritten answers, in seconds.
pub const DNS_TTL: u32 = 60;
/// `relay.zeroCopy`: bulk transfers through `splice(2)` on Linux instead of the copy with a
/// 128 KiB bulk buffer. Off by default: in the peer harness splice spends the least proxy CPU
/// per GiB but moves bulk data slower than nginx when the endpoints are CPU-bound (its pages
/// stay with the sender until the receiver reads them), where the copy keeps pace with nginx at
/// less CPU (`benches/README.md`).
pub const ZERO_COPY: bool = false;
/// The top Purdue level: a configuration without `level` and without a parent is this level.
pub const TOP_LEVEL: u8 = 4;
/// The port of `openTelemetryMetricsCollectorAddr` when it names none: the OTLP/gRPC port of
/// an OpenTelemetry collector.
pub const OTLP_GRPC_PORT: u16 = 4317;
/// `metricsExport.interval`: how often the metrics are pushed to
/// `openTelemetryMetricsCollectorAddr`.
pub const METRICS_EXPORT_INTERVAL: Duration = Duration::from_secs(10);
/// `metricsExport.timeout`: how long one push (and the last one, at shutdown) may take before
/// it is given up.
pub const METRICS_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
