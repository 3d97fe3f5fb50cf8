//! `openTelemetryMetricsCollectorAddr`: where a gateway pushes its metrics over OTLP/gRPC.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use lnm_core::Name;
use serde::{Deserialize, Serialize};

use super::defaults;

/// The key this type is read from, named by its errors.
const KEY: &str = "openTelemetryMetricsCollectorAddr";

/// The address of an OpenTelemetry collector's OTLP/gRPC receiver
/// (`openTelemetryMetricsCollectorAddr`), validated.
///
/// Accepted forms, as Azure IoT Operations writes them and shorter:
/// `http://host:port`, `http://host` (port [`defaults::OTLP_GRPC_PORT`], 4317), `host:port`
/// and `host`, where `host` is a DNS name (a Kubernetes service name such as
/// `aio-otel-collector.azure-iot-operations.svc.cluster.local`) or an IP address (IPv6 in
/// brackets: `[fd00::1]:4317`). One trailing `/` is ignored. Refused: `https://` (lnm sends
/// plain gRPC; an in-cluster collector listens without TLS), other schemes, paths, port 0.
///
/// ```
/// use lnm_policy::config::CollectorEndpoint;
///
/// let e: CollectorEndpoint = "http://otel-collector.azure-iot-operations:4317".parse().unwrap();
/// assert_eq!(e.port(), 4317);
/// assert_eq!(e.uri(), "http://otel-collector.azure-iot-operations:4317");
/// assert_eq!("10.0.0.7".parse::<CollectorEndpoint>().unwrap().uri(), "http://10.0.0.7:4317");
/// assert!("https://collector:4317".parse::<CollectorEndpoint>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct CollectorEndpoint {
    host: String,
    port: u16,
}

impl CollectorEndpoint {
    /// The collector at `host` (a DNS name or an IP address) and `port`.
    pub fn new(host: &str, port: u16) -> Result<Self, String> {
        if port == 0 {
            return Err(format!("{KEY}: port 0 is not a port to connect to"));
        }
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            ip.to_string()
        } else {
            Name::new(host)
                .map_err(|e| {
                    format!("{KEY}: {host:?} is neither an IP address nor a DNS name: {e}")
                })?
                .as_str()
                .to_owned()
        };
        Ok(CollectorEndpoint { host, port })
    }

    /// The host: a normalised DNS name, or an IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URI an OTLP/gRPC client dials: `http://host:port` (IPv6 in brackets).
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CollectorEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for CollectorEndpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = "expected `http://host:port`, `host:port` or `host` (default port 4317)";
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(format!(
                    "{KEY}: {text:?}: TLS to the collector is not supported; use `http://` \
                     (OTLP/gRPC in plain text, as an in-cluster collector listens)"
                ));
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "{KEY}: {text:?}: unknown scheme `{scheme}`; {expected}"
                ));
            }
            None => text,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(format!(
                "{KEY}: {text:?}: an OTLP/gRPC address has no path; {expected}"
            ));
        }
        if authority.is_empty() {
            return Err(format!("{KEY}: {text:?}: no host; {expected}"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (v6, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{KEY}: {text:?}: unclosed `[`; {expected}"))?;
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!(
                    "{KEY}: {text:?}: `[{v6}]` is not an IPv6 address; {expected}"
                ));
            }
            match after {
                "" => (v6, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (v6, Some(port)),
                    None => return Err(format!("{KEY}: {text:?}: {expected}")),
                },
            }
        } else {
            match authority.matches(':').count() {
                0 => (authority, None),
                1 => {
                    let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
                    (host, Some(port))
                }
                _ => {
                    return Err(format!(
                        "{KEY}: {text:?}: write an IPv6 address in brackets (`[fd00::1]:4317`)"
                    ));
                }
            }
        };
        let port = match port {
            None => defaults::OTLP_GRPC_PORT,
            Some(port) => port.parse::<u16>().map_err(|_| {
                format!("{KEY}: {text:?}: the port {port:?} is not a number from 1 to 65535")
            })?,
        };
        CollectorEndpoint::new(host, port)
    }
}

impl TryFrom<String> for CollectorEndpoint {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<CollectorEndpoint> for String {
    fn from(endpoint: CollectorEndpoint) -> String {
        endpoint.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        for (text, uri) in [
            (
                "http://aio-otel-collector.azure-iot-operations.svc.cluster.local:4317",
                "http://aio-otel-collector.azure-iot-operations.svc.cluster.local:4317",
            ),
            ("HTTP://Collector:4318/", "http://collector:4318"),
            ("http://collector", "http://collector:4317"),
            ("collector:9000", "http://collector:9000"),
            ("collector", "http://collector:4317"),
            ("127.0.0.1:4317", "http://127.0.0.1:4317"),
            ("[::1]:4317", "http://[::1]:4317"),
            ("http://[fd00::1]", "http://[fd00::1]:4317"),
            ("  localhost:1  ", "http://localhost:1"),
        ] {
            let endpoint: CollectorEndpoint =
                text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(endpoint.uri(), uri, "{text}");
            // What is printed reads back the same.
            assert_eq!(
                endpoint.uri().parse::<CollectorEndpoint>().unwrap(),
                endpoint
            );
        }
    }

    #[test]
    fn refused_forms_name_the_key() {
        for (text, why) in [
            ("https://collector:4317", "TLS"),
            ("grpc://collector:4317", "scheme"),
            ("http://collector:4317/v1/metrics", "path"),
            ("http://", "no host"),
            ("", "no host"),
            ("collector:0", "port 0"),
            ("collector:65536", "port"),
            ("collector:", "port"),
            ("fd00::1", "brackets"),
            ("[fd00::1", "unclosed"),
            ("[collector]:4317", "IPv6"),
            ("bad_name!:4317", "DNS name"),
        ] {
            let e = text.parse::<CollectorEndpoint>().unwrap_err();
            assert!(e.starts_with(KEY) && e.contains(why), "{text}: {e}");
        }
    }
}
