//! Sniffers: learn the server name of a connection from its first bytes, without consuming them.
//!
//! Both sniffers are pure, incremental state machines. The caller keeps every byte it received
//! in one buffer (it must replay them to the next hop) and calls `feed` with the whole buffer
//! each time it grows; the sniffer only looks at what is new, so the total work is linear in
//! the size of the hello whatever the segmentation. Each call answers [`Sniff::NeedMore`],
//! [`Sniff::Done`] or [`Sniff::Invalid`] with a specific [`SniffError`].
//!
//! # Layout
//! - `tls.rs`: [`TlsSniffer`] — ClientHello reassembly across TCP segments and TLS records,
//!   parsed with `tls-parser`;
//! - `http.rs`: [`HttpSniffer`] — HTTP/1.x request head, parsed with `httparse`.

mod http;
mod tls;

pub use http::{HttpHead, HttpSniffer, MAX_HTTP_HEAD};
pub use lnm_policy::config::ListenerProtocol;
pub use tls::{ClientHello, DEFAULT_MAX_CLIENT_HELLO, TlsSniffer};

/// The outcome of feeding bytes to a sniffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff<T> {
    /// Not enough bytes yet.
    NeedMore,
    /// The hello is complete.
    Done(T),
    /// The bytes can never become a valid hello.
    Invalid(SniffError),
}

/// Why the first bytes of a connection are not an acceptable hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SniffError {
    /// The first record is not a TLS handshake record.
    #[error("not a TLS handshake (record content type {content_type})")]
    NotHandshake {
        /// The content type found.
        content_type: u8,
    },
    /// A later record of the hello is not a handshake record.
    #[error("record {index} of the ClientHello has content type {content_type}, not handshake")]
    InterleavedRecord {
        /// The record's index.
        index: u32,
        /// Its content type.
        content_type: u8,
    },
    /// An SSL 2.0 style record header (high bit of the first byte set): no SNI possible.
    #[error("SSLv2-style record (no SNI possible)")]
    SslV2,
    /// The record header's major version is not 3: not SSL 3.0 or TLS. Any `3.x` is accepted,
    /// whatever `x` (RFC 5246 appendix E.1, RFC 8446 section 5.1: the field is the server's
    /// business, not the proxy's).
    #[error("record version major {major} is not 3 (not TLS)")]
    BadRecordVersion {
        /// Major version byte.
        major: u8,
    },
    /// A record longer than TLS allows (2^14 bytes of plaintext).
    #[error("record of {len} bytes exceeds the TLS limit of 16384")]
    RecordTooLong {
        /// The announced length.
        len: usize,
    },
    /// A zero-length handshake record (forbidden by RFC 8446).
    #[error("empty handshake record")]
    EmptyRecord,
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message is type {msg_type}, not ClientHello")]
    NotClientHello {
        /// The message type.
        msg_type: u8,
    },
    /// The ClientHello handshake message (4-byte header + body, record headers not counted) is
    /// larger than the configured cap.
    #[error(
        "ClientHello handshake message of {len} bytes (header + body) exceeds the cap of {cap} bytes"
    )]
    TooLarge {
        /// The message's size as its handshake header announces it: 4 + body length.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// The ClientHello does not parse.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// Bytes after the end of the ClientHello's extensions or inside one extension.
    #[error("trailing bytes {0}")]
    TrailingData(&'static str),
    /// More handshake bytes after the ClientHello in the record that ends it: the next message
    /// would span the key change that follows the hello (RFC 8446 section 5.1).
    #[error("{len} handshake bytes after the ClientHello in its last record")]
    NotOnRecordBoundary {
        /// How many bytes follow the ClientHello in that record.
        len: usize,
    },
    /// An extension appears twice (a classic way to make two parsers read different names).
    #[error("extension {ext_type:#06x} appears twice")]
    DuplicateExtension {
        /// The extension type.
        ext_type: u16,
    },
    /// More than one host name in the SNI extension (RFC 6066 forbids it).
    #[error("more than one host name in the SNI extension")]
    MultipleServerNames,
    /// The connection closed before the hello was complete.
    #[error("connection closed after {len} bytes, before the hello was complete")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The request head is not HTTP/1.x.
    #[error("not an HTTP/1.x request: {0}")]
    NotHttp(&'static str),
    /// The HTTP request head is larger than the cap.
    #[error("HTTP request head exceeds {cap} bytes")]
    HeadTooLarge {
        /// The cap.
        cap: usize,
    },
    /// More than one `Host` header.
    #[error("repeated Host header")]
    RepeatedHost,
    /// The `Host` header and the absolute-form request target disagree.
    #[error("Host header and request target name different hosts")]
    ConflictingHost,
    /// `CONNECT` requests are not proxied (they would tunnel past the allowlist).
    #[error("CONNECT is not allowed")]
    Connect,
}

impl SniffError {
    /// A stable snake_case label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            SniffError::NotHandshake { .. } => "not_handshake",
            SniffError::InterleavedRecord { .. } => "interleaved_record",
            SniffError::SslV2 => "sslv2",
            SniffError::BadRecordVersion { .. } => "bad_record_version",
            SniffError::RecordTooLong { .. } => "record_too_long",
            SniffError::EmptyRecord => "empty_record",
            SniffError::NotClientHello { .. } => "not_client_hello",
            SniffError::TooLarge { .. } => "too_large",
            SniffError::Malformed(_) => "malformed",
            SniffError::TrailingData(_) => "trailing_data",
            SniffError::NotOnRecordBoundary { .. } => "not_on_record_boundary",
            SniffError::DuplicateExtension { .. } => "duplicate_extension",
            SniffError::MultipleServerNames => "multiple_server_names",
            SniffError::Truncated { .. } => "truncated",
            SniffError::NotHttp(_) => "not_http",
            SniffError::HeadTooLarge { .. } => "head_too_large",
            SniffError::RepeatedHost => "repeated_host",
            SniffError::ConflictingHost => "conflicting_host",
            SniffError::Connect => "connect",
        }
    }
}
