//! TLS ClientHello sniffing: records are reassembled here, the hello is parsed by `tls-parser`.
//!
//! `tls-parser` parses one handshake message but does not reassemble records, and a
//! post-quantum ClientHello (an ML-KEM key share is over 1 KB) spans several TCP segments and
//! may be split over several records. [`TlsSniffer`] checks each record header as soon as it
//! arrives (so plain text or a bogus length is rejected at once instead of being waited for),
//! concatenates the handshake fragments, and parses the ClientHello once it is complete.
//!
//! What a TLS server would accept passes: any `3.x` record-layer version (RFC 5246 appendix
//! E.1, RFC 8446 section 5.1) and any `legacy_version` in the hello are the server's business.
//! What is refused is what can carry no readable SNI or what a server refuses too; see
//! [`Alert::for_sniff_error`](crate::Alert::for_sniff_error) for the alert each refusal gets.

use tls_parser::{TlsExtension, parse_tls_extension_alpn_content, parse_tls_extension_sni_content};

use super::{Sniff, SniffError};

/// The default cap on a ClientHello: 64 KiB of handshake message, its 4-byte handshake header
/// and body (record headers not counted), however many records carry it.
///
/// A hello of exactly the cap passes, one byte more is refused
/// ([`SniffError::TooLarge`]) as soon as its handshake header announces it. The wire bytes
/// buffered for a hello are bounded too: every record carries at least one byte of it (empty
/// records are refused), so at most 6 times the cap (one byte per record) plus one record.
pub const DEFAULT_MAX_CLIENT_HELLO: usize = lnm_policy::config::defaults::MAX_CLIENT_HELLO;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const MAX_RECORD: usize = 1 << 14;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_ECH: u16 = 0xfe0d;

/// What lnm needs from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClientHello {
    /// The `host_name` of the SNI extension, raw (validated later by the policy).
    pub server_name: Option<Vec<u8>>,
    /// The ALPN protocols offered, for logs.
    pub alpn: Vec<String>,
    /// Whether an `encrypted_client_hello` extension is present (real or GREASE).
    pub ech: bool,
    /// How many records carried the hello.
    pub records: u32,
    /// Bytes of the hello on the wire, record headers included (what is replayed upstream;
    /// the cap measures the handshake message, without record headers).
    pub len: usize,
}

/// Incremental ClientHello sniffer (see the [module docs](super)).
///
/// ```
/// use lnm_proxy::sniff::{Sniff, TlsSniffer};
/// use lnm_proxy::sniff::SniffError;
///
/// // A record header is checked as soon as its bytes arrive.
/// let mut sniffer = TlsSniffer::new(64 * 1024);
/// assert_eq!(sniffer.feed(&[22, 3, 1]), Sniff::NeedMore);
/// let mut sniffer = TlsSniffer::new(64 * 1024);
/// assert_eq!(
///     sniffer.feed(b"GET / HTTP/1.1\r\n"),
///     Sniff::Invalid(SniffError::NotHandshake { content_type: b'G' })
/// );
/// ```
#[derive(Debug, Clone)]
pub struct TlsSniffer {
    cap: usize,
    /// Raw bytes consumed as complete records.
    parsed: usize,
    /// The handshake fragments so far.
    handshake: Vec<u8>,
    records: u32,
}

impl TlsSniffer {
    /// A sniffer that gives up when the ClientHello handshake message (header + body, record
    /// headers not counted) exceeds `cap` bytes (see [`DEFAULT_MAX_CLIENT_HELLO`]).
    pub fn new(cap: usize) -> Self {
        TlsSniffer {
            cap,
            parsed: 0,
            handshake: Vec::new(),
            records: 0,
        }
    }

    /// Feeds everything received so far (`buf` must extend the previous call's `buf`).
    pub fn feed(&mut self, buf: &[u8]) -> Sniff<ClientHello> {
        loop {
            let rest = &buf[self.parsed.min(buf.len())..];
            if rest.is_empty() {
                return Sniff::NeedMore;
            }
            if let Err(e) = self.check_header_prefix(rest) {
                return Sniff::Invalid(e);
            }
            if rest.len() < 5 {
                return Sniff::NeedMore;
            }
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            if len > MAX_RECORD {
                return Sniff::Invalid(SniffError::RecordTooLong { len });
            }
            if len == 0 {
                return Sniff::Invalid(SniffError::EmptyRecord);
            }
            if rest.len() < 5 + len {
                return Sniff::NeedMore;
            }
            self.handshake.extend_from_slice(&rest[5..5 + len]);
            self.parsed += 5 + len;
            self.records += 1;
            if self.handshake.len() < 4 {
                continue;
            }
            if self.handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return Sniff::Invalid(SniffError::NotClientHello {
                    msg_type: self.handshake[0],
                });
            }
            let body_len = usize::from(self.handshake[1]) << 16
                | usize::from(self.handshake[2]) << 8
                | usize::from(self.handshake[3]);
            // The cap is on the handshake message alone, known from its header: record headers
            // (how the client chose to fragment it) do not count.
            let message_len = 4 + body_len;
            if message_len > self.cap {
                return Sniff::Invalid(SniffError::TooLarge {
                    len: message_len,
                    cap: self.cap,
                });
            }
            match self.handshake.len().cmp(&message_len) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => {
                    return Sniff::Invalid(SniffError::NotOnRecordBoundary {
                        len: self.handshake.len() - message_len,
                    });
                }
                std::cmp::Ordering::Equal => {}
            }
            return match parse_client_hello(&self.handshake[4..]) {
                Ok(mut hello) => {
                    hello.records = self.records;
                    hello.len = self.parsed;
                    // The reassembly buffer is no longer needed: give its memory back now.
                    self.handshake = Vec::new();
                    Sniff::Done(hello)
                }
                Err(e) => Sniff::Invalid(e),
            };
        }
    }

    /// Rejects a bad record header from its first bytes, before waiting for the rest.
    fn check_header_prefix(&self, rest: &[u8]) -> Result<(), SniffError> {
        let content_type = rest[0];
        if content_type != CONTENT_HANDSHAKE {
            if self.parsed == 0 {
                // An SSLv2-style header has the high bit of its first byte set; no TLS content
                // type does. Decided on that byte alone, so splitting cannot change the verdict.
                let sslv2 = content_type & 0x80 != 0;
                return Err(if sslv2 {
                    SniffError::SslV2
                } else {
                    SniffError::NotHandshake { content_type }
                });
            }
            return Err(SniffError::InterleavedRecord {
                index: self.records,
                content_type,
            });
        }
        // Only the major byte is checked: a server accepts any `3.x` record version on the
        // hello (RFC 5246 appendix E.1; RFC 8446 section 5.1: the field is ignored). Decided on
        // that byte alone, so the verdict does not depend on how the bytes were split.
        match rest.get(1) {
            Some(&major) if major != 3 => Err(SniffError::BadRecordVersion { major }),
            _ => Ok(()),
        }
    }
}

/// Parses a complete ClientHello body (after the 4-byte handshake header).
fn parse_client_hello(body: &[u8]) -> Result<ClientHello, SniffError> {
    let (rest, contents) = tls_parser::parse_tls_handshake_client_hello(body)
        .map_err(|_| SniffError::Malformed("ClientHello fields do not parse"))?;
    if !rest.is_empty() {
        return Err(SniffError::TrailingData("after the extensions"));
    }
    let mut hello = ClientHello::default();
    let Some(mut exts) = contents.ext else {
        return Ok(hello);
    };
    let mut seen: Vec<u16> = Vec::with_capacity(24);
    while !exts.is_empty() {
        if exts.len() < 4 {
            return Err(SniffError::TrailingData("inside the extension list"));
        }
        let ext_type = u16::from_be_bytes([exts[0], exts[1]]);
        let len = usize::from(u16::from_be_bytes([exts[2], exts[3]]));
        let Some(data) = exts.get(4..4 + len) else {
            return Err(SniffError::Malformed(
                "extension runs past the end of the ClientHello",
            ));
        };
        exts = &exts[4 + len..];
        if seen.contains(&ext_type) {
            return Err(SniffError::DuplicateExtension { ext_type });
        }
        seen.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => hello.server_name = Some(parse_sni(data)?),
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            EXT_ECH => hello.ech = true,
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_sni(data: &[u8]) -> Result<Vec<u8>, SniffError> {
    let Ok((rest, TlsExtension::SNI(names))) = parse_tls_extension_sni_content(data) else {
        return Err(SniffError::Malformed("SNI extension does not parse"));
    };
    // tls-parser stops quietly at junk inside the list: require the entries to fill it exactly.
    let listed: usize = names.iter().map(|(_, name)| 3 + name.len()).sum();
    if !rest.is_empty() || data.len() < 2 || listed != data.len() - 2 {
        return Err(SniffError::TrailingData("inside the SNI extension"));
    }
    let mut host_names = names.iter().filter(|(kind, _)| kind.0 == 0);
    let first = host_names
        .next()
        .ok_or(SniffError::Malformed("SNI extension without a host_name"))?;
    if host_names.next().is_some() {
        return Err(SniffError::MultipleServerNames);
    }
    Ok(first.1.to_vec())
}

fn parse_alpn(data: &[u8]) -> Result<Vec<String>, SniffError> {
    let Ok((rest, TlsExtension::ALPN(protocols))) = parse_tls_extension_alpn_content(data) else {
        return Err(SniffError::Malformed("ALPN extension does not parse"));
    };
    let listed: usize = protocols.iter().map(|p| 1 + p.len()).sum();
    if !rest.is_empty() || data.len() < 2 || listed != data.len() - 2 {
        return Err(SniffError::TrailingData("inside the ALPN extension"));
    }
    Ok(protocols
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

#[cfg(test)]
mod tests;
