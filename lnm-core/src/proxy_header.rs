//! PROXY protocol v2 between lnm gateways: the original client's address and a hop counter.
//!
//! A child gateway that sends the header lets its parent enforce `sourceIpRange` and log on the
//! *original* client, and the hop counter (a custom TLV) lets every gateway refuse a connection
//! that went round a misconfigured cycle of gateways. Encoding and decoding use the `ppp`
//! crate; this module only adds lnm's TLV and an incremental decoder.

use std::io;
use std::net::SocketAddr;

use ppp::v2::{Addresses, Builder, Command, Header, ParseError, Protocol, Version};

/// The TLV type carrying the hop count (in the range PROXY v2 reserves for applications).
pub const HOPS_TLV: u8 = 0xE0;
/// The largest header accepted (16-byte fixed part + addresses + TLVs).
pub const MAX_HEADER: usize = 512;

/// What one gateway tells the next about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client.
    pub client: SocketAddr,
    /// The address the original client connected to.
    pub destination: SocketAddr,
    /// How many lnm gateways the connection passed before the receiver.
    pub hops: u8,
}

/// The outcome of decoding the start of a connection.
///
/// Any PROXY v2 `PROXY` header with TCP addresses is accepted; lnm's hop count TLV is read when
/// present (a header from HAProxy or nginx has none: 0 lnm gateways before this one). A
/// `LOCAL` command (health checks) has no client and is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not enough bytes yet.
    NeedMore,
    /// A header of `len` bytes.
    Done {
        /// The header.
        header: ProxyHeader,
        /// Its length on the wire (the bytes after it are the client's).
        len: usize,
    },
    /// Not a valid lnm PROXY v2 header.
    Invalid(&'static str),
}

impl ProxyHeader {
    /// The header on the wire.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let (client, destination) = match (self.client, self.destination) {
            (c @ SocketAddr::V4(_), d @ SocketAddr::V4(_))
            | (c @ SocketAddr::V6(_), d @ SocketAddr::V6(_)) => (c, d),
            // Mixed families: map both to IPv6 so the header stays valid.
            (c, d) => (to_v6(c), to_v6(d)),
        };
        Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (client, destination),
        )
        .write_tlv(HOPS_TLV, &[self.hops])?
        .build()
    }

    /// Decodes a header at the start of `buf`.
    pub fn decode(buf: &[u8]) -> Decoded {
        const FIXED: usize = 16;
        if buf.len() < FIXED {
            return match Header::try_from(buf) {
                Err(ParseError::Prefix) => Decoded::Invalid("no PROXY v2 signature"),
                _ => Decoded::NeedMore,
            };
        }
        let len = FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > MAX_HEADER {
            return Decoded::Invalid("PROXY header too long");
        }
        if buf.len() < len {
            return Decoded::NeedMore;
        }
        let Ok(header) = Header::try_from(&buf[..len]) else {
            return Decoded::Invalid("malformed PROXY v2 header");
        };
        if header.command != Command::Proxy {
            return Decoded::Invalid("PROXY v2 LOCAL command (no client address)");
        }
        let (client, destination) = match header.addresses {
            Addresses::IPv4(a) => (
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            ),
            Addresses::IPv6(a) => (
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            ),
            _ => return Decoded::Invalid("PROXY v2 header without IP addresses"),
        };
        let mut hops = None;
        for tlv in header.tlvs() {
            let Ok(tlv) = tlv else {
                return Decoded::Invalid("malformed PROXY v2 TLV");
            };
            if tlv.kind == HOPS_TLV {
                match tlv.value.as_ref() {
                    [n] => hops = Some(*n),
                    _ => return Decoded::Invalid("malformed hop count"),
                }
            }
        }
        // A header from a neighbour that is not lnm (HAProxy `send-proxy-v2`, nginx
        // `proxy_protocol on`) has no hop count: the count of lnm gateways starts here.
        let hops = hops.unwrap_or(0);
        Decoded::Done {
            header: ProxyHeader {
                client,
                destination,
                hops,
            },
            len,
        }
    }
}

fn to_v6(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_every_prefix() {
        let h = ProxyHeader {
            client: "10.2.0.7:40000".parse().unwrap(),
            destination: "10.3.0.1:443".parse().unwrap(),
            hops: 2,
        };
        let mut bytes = h.encode().unwrap();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let len = bytes.len() - 3;
        assert_eq!(
            ProxyHeader::decode(&bytes),
            Decoded::Done { header: h, len }
        );
        for end in 0..len {
            assert_eq!(
                ProxyHeader::decode(&bytes[..end]),
                Decoded::NeedMore,
                "prefix {end}"
            );
        }
        let v6 = ProxyHeader {
            client: "[fd00::7]:1".parse().unwrap(),
            destination: "10.3.0.1:443".parse().unwrap(),
            hops: 0,
        };
        let Decoded::Done { header, .. } = ProxyHeader::decode(&v6.encode().unwrap()) else {
            panic!()
        };
        assert_eq!(header.client, "[fd00::7]:1".parse().unwrap());
    }

    #[test]
    fn not_a_header() {
        assert_eq!(
            ProxyHeader::decode(b"\x16\x03\x01\x02\x00"),
            Decoded::Invalid("no PROXY v2 signature")
        );
        assert!(matches!(
            ProxyHeader::decode(b"GET / HTTP/1.1\r\n\r\n"),
            Decoded::Invalid(_)
        ));
        // A valid header without the hop count (HAProxy's, nginx's) is accepted: no lnm
        // gateway before this one.
        let plain = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (
                "10.0.0.1:1".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:2".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let Decoded::Done { header, len } = ProxyHeader::decode(&plain) else {
            panic!("a header without lnm's TLV is a header")
        };
        assert_eq!((header.hops, len), (0, plain.len()));
        assert_eq!(header.client, "10.0.0.1:1".parse().unwrap());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = ProxyHeader::decode(&bytes);
            let mut signed = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            signed.extend_from_slice(&bytes);
            let _ = ProxyHeader::decode(&signed);
        }
    }
}
