//! TLS transparency: a corpus of ClientHello shapes, each sent once directly to a TLS server and
//! once through a level (a `Proxy` whose `Direct` hop dials that server, the SNI allowlisted).
//! The server's first answer must be the same both ways — it proceeds (ServerHello or
//! HelloRetryRequest) or refuses with the same alert — except for the refusals DESIGN section 3
//! lists, each named in [`EXCEPTIONS`] with its reason.
//!
//! The hellos are built from a real rustls ClientHello captured in-process (an X25519MLKEM768
//! key share, ALPN, the usual TLS 1.2/1.3 extensions), then mutated and re-framed by hand:
//! every `3.x` record version, odd `legacy_version`s, records down to one byte, extensions of
//! every size class up to the cap, a HelloRetryRequest, records behind the hello (a real 0-RTT
//! flight), and the first flights a server refuses.
//!
//! Servers: rustls (in-process) and `openssl s_server` (installed by
//! `scripts/install-test-deps.sh`; like the interop suite, this test fails rather than skips
//! when it is missing).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use lnm_policy::{Allowlist, AllowlistHandle};
use lnm_tests::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The allowlisted name every hello carries (unless a case says otherwise).
const NAME: &str = "transparency.example";
/// How long a server may take to give its first answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// The random of a HelloRetryRequest (RFC 8446 section 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

const EXT_SERVER_NAME: u16 = 0;
const EXT_PADDING: u16 = 21;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_KEY_SHARE: u16 = 51;
const EXT_PRE_SHARED_KEY: u16 = 41;

// ---------------------------------------------------------------------------------------------
// What a server answers.

/// The first thing a server says after a first flight.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reaction {
    /// A handshake record starting with a ServerHello: the handshake proceeds.
    ServerHello,
    /// A handshake record starting with a HelloRetryRequest: the handshake proceeds.
    HelloRetryRequest,
    /// A fatal alert with this description.
    Alert(u8),
    /// The connection closed (FIN or reset) without a byte.
    Closed,
    /// Nothing within [`ANSWER_WITHIN`].
    Silent,
    /// Anything else (first bytes).
    Other(Vec<u8>),
}

impl std::fmt::Display for Reaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Reaction::ServerHello => "ServerHello".to_owned(),
            Reaction::HelloRetryRequest => "HRR".to_owned(),
            Reaction::Alert(code) => format!("alert {code} ({})", alert_name(*code)),
            Reaction::Closed => "closed".to_owned(),
            Reaction::Silent => "silent".to_owned(),
            Reaction::Other(bytes) => format!("other {bytes:02x?}"),
        };
        f.pad(&text)
    }
}

fn alert_name(code: u8) -> &'static str {
    match code {
        10 => "unexpected_message",
        22 => "record_overflow",
        40 => "handshake_failure",
        47 => "illegal_parameter",
        50 => "decode_error",
        70 => "protocol_version",
        80 => "internal_error",
        112 => "unrecognized_name",
        _ => "?",
    }
}

/// Classifies the first bytes a server sent.
fn classify(bytes: &[u8]) -> Reaction {
    match bytes {
        [] => Reaction::Closed,
        // Any record version: OpenSSL answers in the client's, even `0.0`.
        [21, _, _, 0, 2, _, code, ..] => Reaction::Alert(*code),
        [22, 3, _, _, _, 2, _, _, _, _, _, random @ ..] if random.len() >= 32 => {
            if random[..32] == HRR_RANDOM {
                Reaction::HelloRetryRequest
            } else {
                Reaction::ServerHello
            }
        }
        other => Reaction::Other(other[..other.len().min(16)].to_vec()),
    }
}

/// Sends `flight` to `addr` (writing and reading at once, so that a server that answers early
/// is heard) and classifies the answer.
async fn react(addr: SocketAddr, flight: Arc<Vec<u8>>) -> Reaction {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let writing = tokio::spawn(async move {
        // A server that refuses early may reset the rest: not this test's business.
        let _ = wr.write_all(&flight).await;
        wr
    });
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let reading = async {
        // Enough for an alert, or for a ServerHello's random.
        while got.len() < 43 && !(got.len() >= 7 && got[0] == 21) {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let reaction = match tokio::time::timeout(ANSWER_WITHIN, reading).await {
        Ok(()) => classify(&got),
        Err(_) if got.is_empty() => Reaction::Silent,
        Err(_) => classify(&got),
    };
    writing.abort();
    reaction
}

// ---------------------------------------------------------------------------------------------
// Building hellos.

/// A ClientHello, field by field, to mutate and serialise again.
#[derive(Clone)]
struct Hello {
    legacy_version: [u8; 2],
    random: Vec<u8>,
    session_id: Vec<u8>,
    cipher_suites: Vec<u8>,
    compression: Vec<u8>,
    extensions: Vec<(u16, Vec<u8>)>,
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

impl Hello {
    /// Parses a ClientHello handshake message (header included); the test's own captures only.
    fn parse(msg: &[u8]) -> Hello {
        assert_eq!(msg[0], 1, "a ClientHello");
        let body = &msg[4..];
        let mut at = 2 + 32;
        let sid_len = usize::from(body[at]);
        let session_id = body[at + 1..at + 1 + sid_len].to_vec();
        at += 1 + sid_len;
        let cs_len = u16_at(body, at);
        let cipher_suites = body[at + 2..at + 2 + cs_len].to_vec();
        at += 2 + cs_len;
        let comp_len = usize::from(body[at]);
        let compression = body[at + 1..at + 1 + comp_len].to_vec();
        at += 1 + comp_len;
        let ext_end = at + 2 + u16_at(body, at);
        assert_eq!(ext_end, body.len());
        at += 2;
        let mut extensions = Vec::new();
        while at < ext_end {
            let ty = u16_at(body, at) as u16;
            let len = u16_at(body, at + 2);
            extensions.push((ty, body[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        Hello {
            legacy_version: [body[0], body[1]],
            random: body[2..34].to_vec(),
            session_id,
            cipher_suites,
            compression,
            extensions,
        }
    }

    /// The handshake message: 4-byte header and body.
    fn message(&self) -> Vec<u8> {
        let mut exts = Vec::new();
        for (ty, data) in &self.extensions {
            exts.extend_from_slice(&ty.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(data);
        }
        let mut body = self.legacy_version.to_vec();
        body.extend_from_slice(&self.random);
        body.push(self.session_id.len() as u8);
        body.extend_from_slice(&self.session_id);
        body.extend_from_slice(&(self.cipher_suites.len() as u16).to_be_bytes());
        body.extend_from_slice(&self.cipher_suites);
        body.push(self.compression.len() as u8);
        body.extend_from_slice(&self.compression);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let len = body.len();
        let mut msg = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        msg.extend_from_slice(&body);
        msg
    }

    fn legacy_version(mut self, version: [u8; 2]) -> Self {
        self.legacy_version = version;
        self
    }

    fn without(mut self, ty: u16) -> Self {
        self.extensions.retain(|(t, _)| *t != ty);
        self
    }

    /// Replaces extension `ty`, or adds it (before `pre_shared_key`, which must stay last).
    fn with(mut self, ty: u16, data: Vec<u8>) -> Self {
        if let Some(slot) = self.extensions.iter_mut().find(|(t, _)| *t == ty) {
            slot.1 = data;
            return self;
        }
        let at = self
            .extensions
            .iter()
            .position(|(t, _)| *t == EXT_PRE_SHARED_KEY)
            .unwrap_or(self.extensions.len());
        self.extensions.insert(at, (ty, data));
        self
    }

    /// Adds extension `ty` even if it is there already (a duplicate).
    fn plus(mut self, ty: u16, data: Vec<u8>) -> Self {
        self.extensions.insert(0, (ty, data));
        self
    }

    /// Pads the handshake message to exactly `len` bytes with a padding extension.
    fn padded_to(self, len: usize) -> Self {
        let without = self.clone().without(EXT_PADDING).message().len();
        let data_len = len - without - 4;
        self.without(EXT_PADDING)
            .with(EXT_PADDING, vec![0; data_len])
    }
}

fn sni(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for name in names {
        list.push(0);
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    data
}

/// `handshake` in records of type `content_type`, version `version`, at most `size` bytes each.
fn records(content_type: u8, version: [u8; 2], size: usize, handshake: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in handshake.chunks(size) {
        out.extend_from_slice(&[content_type, version[0], version[1]]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// `handshake` in handshake records of version 3.1 (what clients send), at most `size` bytes.
fn framed(size: usize, handshake: &[u8]) -> Vec<u8> {
    records(22, [3, 1], size, handshake)
}

/// One record of any length (even more than TLS allows).
fn one_record(content_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![content_type, 3, 1];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The handshake bytes of a first flight (the payloads of its leading handshake records).
fn handshake_of(flight: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = flight;
    while rest.len() >= 5 && rest[0] == 22 {
        let len = u16_at(rest, 3);
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    out
}

/// The first flight of a rustls client for `name`.
fn first_flight(config: Arc<rustls::ClientConfig>, name: &str) -> Vec<u8> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Moves bytes between a client and a server connection in memory until neither has any.
fn pump(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
    loop {
        let mut moved = false;
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().unwrap();
            }
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        if !moved {
            return;
        }
    }
}

/// A real 0-RTT first flight: a resumption ClientHello (`pre_shared_key`, `early_data`) with
/// the middlebox-compatibility CCS and early application data behind it. The ticket comes from
/// a full handshake in memory with `server` (the configuration the rustls server listens with).
fn zero_rtt_flight(client: &rustls::ClientConfig, server: &Arc<rustls::ServerConfig>) -> Vec<u8> {
    let mut config = client.clone();
    config.enable_early_data = true;
    let config = Arc::new(config);
    let name = ServerName::try_from(NAME.to_owned()).unwrap();
    let mut c = rustls::ClientConnection::new(config.clone(), name.clone()).unwrap();
    let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
    pump(&mut c, &mut s);
    assert!(!c.is_handshaking() && !s.is_handshaking());
    let mut c = rustls::ClientConnection::new(config, name).unwrap();
    let mut early = c.early_data().expect("a ticket allowing early data");
    std::io::Write::write_all(
        &mut early,
        b"GET /0rtt HTTP/1.1\r\nHost: transparency.example\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    let hello_len = 5 + u16_at(&out, 3);
    let behind: Vec<u8> = {
        let mut types = Vec::new();
        let mut rest = &out[hello_len..];
        while rest.len() >= 5 {
            types.push(rest[0]);
            rest = &rest[(5 + u16_at(rest, 3)).min(rest.len())..];
        }
        types
    };
    assert!(
        behind.contains(&23),
        "early data behind the hello: {behind:?}"
    );
    out
}

/// An SSL 2.0-format ClientHello offering TLS 1.2 (RFC 5246 appendix E.2): no extensions, so
/// no SNI.
fn sslv2_hello() -> Vec<u8> {
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256, as SSLv2 cipher specs.
    let specs = [0x00, 0xc0, 0x2b, 0x00, 0xc0, 0x2f];
    let mut msg = vec![1, 3, 3];
    msg.extend_from_slice(&(specs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0, 32]);
    msg.extend_from_slice(&specs);
    msg.extend_from_slice(&[0x5a; 32]);
    let mut out = vec![0x80 | (msg.len() >> 8) as u8, msg.len() as u8];
    out.extend_from_slice(&msg);
    out
}

// ---------------------------------------------------------------------------------------------
// The corpus.

struct Case {
    name: String,
    flight: Arc<Vec<u8>>,
}

fn case(name: impl Into<String>, flight: Vec<u8>) -> Case {
    Case {
        name: name.into(),
        flight: Arc::new(flight),
    }
}

fn corpus(client: &Arc<rustls::ClientConfig>, server: &Arc<rustls::ServerConfig>) -> Vec<Case> {
    let base_flight = first_flight(client.clone(), NAME);
    assert_eq!(5 + u16_at(&base_flight, 3), base_flight.len(), "one record");
    let base = Hello::parse(&handshake_of(&base_flight));
    assert!(
        base.extensions
            .iter()
            .any(|(t, _)| *t == EXT_SUPPORTED_VERSIONS)
    );
    let msg = base.message();
    assert_eq!(msg, handshake_of(&base_flight), "parse and serialise agree");
    let mut cases = vec![case("rustls-capture", base_flight.clone())];

    // Every 3.x record-layer version (RFC 5246 appendix E.1: a server accepts any {03,XX} on
    // the ClientHello; RFC 8446 section 5.1: the field is ignored), and two that are not TLS.
    for minor in 0..=255u8 {
        cases.push(case(
            format!("record-version-3.{minor}"),
            records(22, [3, minor], 1 << 14, &msg),
        ));
    }
    let mut mixed = records(22, [3, 0], 100, &msg[..300]);
    mixed.extend_from_slice(&records(22, [3, 254], 100, &msg[300..]));
    cases.push(case("record-versions-mixed-3.0-and-3.254", mixed));
    cases.push(case(
        "record-version-2.0",
        records(22, [2, 0], 1 << 14, &msg),
    ));

    // legacy_version is the server's business, with and without supported_versions.
    for v in [
        [3, 0],
        [3, 1],
        [3, 3],
        [3, 4],
        [254, 254],
        [0, 0],
        [255, 255],
    ] {
        let with_sv = base.clone().legacy_version(v).message();
        cases.push(case(
            format!("legacy-version-{}.{}", v[0], v[1]),
            framed(1 << 14, &with_sv),
        ));
        let without_sv = base
            .clone()
            .legacy_version(v)
            .without(EXT_SUPPORTED_VERSIONS)
            .message();
        cases.push(case(
            format!("legacy-version-{}.{}-no-supported-versions", v[0], v[1]),
            framed(1 << 14, &without_sv),
        ));
    }

    // The hello split into records, down to one byte each.
    for size in [4096, 1000, 512, 100, 16, 7, 2, 1] {
        cases.push(case(format!("records-of-{size}"), framed(size, &msg)));
    }
    let mut uneven = framed(1, &msg[..3]);
    uneven.extend_from_slice(&framed(1 << 14, &msg[3..]));
    cases.push(case("handshake-header-split-over-records", uneven));

    // Extensions of every size class: padding to small sizes, ~16 KiB (over one record) and
    // ~40 KiB; an unknown extension type of 16 KiB.
    for len in [0, 1, 100, 1000] {
        let padded = base.clone().with(EXT_PADDING, vec![0; len]).message();
        cases.push(case(format!("padding-of-{len}"), framed(1 << 14, &padded)));
    }
    for (label, len) in [
        ("16k", 16 * 1024),
        ("16k+1", 16 * 1024 + 1),
        ("40k", 40 * 1024),
    ] {
        let padded = base.clone().padded_to(len).message();
        cases.push(case(
            format!("padding-to-{label}"),
            framed(1 << 14, &padded),
        ));
    }
    let big = base.clone().padded_to(40 * 1024).message();
    cases.push(case("padding-to-40k-records-of-100", framed(100, &big)));
    cases.push(case("padding-to-40k-records-of-5", framed(5, &big)));
    let unknown = base.clone().with(0x7e57, vec![0x42; 16 * 1024]).message();
    cases.push(case("unknown-extension-16k", framed(1 << 14, &unknown)));

    // The cap: a handshake message of exactly 64 KiB passes, record headers not counted.
    let at_cap = base.clone().padded_to(64 * 1024).message();
    cases.push(case("hello-of-64k", framed(1 << 14, &at_cap)));
    cases.push(case("hello-of-64k-records-of-7", framed(7, &at_cap)));
    let over_cap = base.clone().padded_to(64 * 1024 + 1).message();
    cases.push(case("hello-of-64k+1", framed(1 << 14, &over_cap)));
    // A handshake header announcing 1 MiB.
    cases.push(case("announces-1MiB", vec![22, 3, 1, 0, 4, 1, 0x10, 0, 0]));

    // A HelloRetryRequest: groups offered, no key share.
    let hrr = base.clone().with(EXT_KEY_SHARE, vec![0, 0]).message();
    cases.push(case("key-share-empty-hrr", framed(1 << 14, &hrr)));
    cases.push(case("key-share-empty-hrr-records-of-7", framed(7, &hrr)));

    // Records behind the hello: the middlebox-compatibility CCS, 0-RTT data (a real resumption
    // flight, and made-up records behind a fresh hello).
    let mut ccs = base_flight.clone();
    ccs.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    cases.push(case("ccs-behind-the-hello", ccs.clone()));
    let mut early = ccs;
    early.extend_from_slice(&records(23, [3, 3], 100, &[0x17; 300]));
    cases.push(case("ccs-and-data-behind-the-hello", early));
    cases.push(case("zero-rtt-resumption", zero_rtt_flight(client, server)));

    // What servers refuse, and what the proxy refuses on their behalf.
    cases.push(case(
        "first-message-server-hello",
        framed(1 << 14, &[&[2u8][..], &msg[1..]].concat()),
    ));
    cases.push(case("ccs-first", vec![20, 3, 3, 0, 1, 1]));
    cases.push(case(
        "application-data-first",
        vec![23, 3, 3, 0, 5, 1, 2, 3, 4, 5],
    ));
    cases.push(case(
        "content-type-0-first",
        vec![0, 3, 3, 0, 5, 1, 2, 3, 4, 5],
    ));
    for (ty, what) in [(20u8, "ccs"), (23, "application-data")] {
        let mut interleaved = framed(1 << 14, &msg[..200]);
        interleaved.extend_from_slice(&[ty, 3, 3, 0, 1, 1]);
        interleaved.extend_from_slice(&framed(1 << 14, &msg[200..]));
        cases.push(case(format!("{what}-inside-the-hello"), interleaved));
    }
    let rec_16385 = base.clone().padded_to(16385).message();
    cases.push(case("record-of-16385", one_record(22, &rec_16385)));
    let rec_18432 = base.clone().padded_to(18432).message();
    cases.push(case("record-of-18432", one_record(22, &rec_18432)));
    cases.push(case(
        "handshake-bytes-after-the-hello-in-its-record",
        framed(1 << 14, &[&msg[..], &[1, 0, 0]].concat()),
    ));
    let mut sid33 = base.clone();
    sid33.session_id = vec![7; 33];
    cases.push(case("session-id-of-33", framed(1 << 14, &sid33.message())));
    let mut short_ext = msg.clone();
    let ext_len_at = msg.len()
        - base
            .extensions
            .iter()
            .map(|(_, d)| 4 + d.len())
            .sum::<usize>()
        - 2;
    let ext_len = u16_at(&msg, ext_len_at) - 1;
    short_ext[ext_len_at..ext_len_at + 2].copy_from_slice(&(ext_len as u16).to_be_bytes());
    cases.push(case(
        "extensions-length-one-short",
        framed(1 << 14, &short_ext),
    ));
    let dup_sni = base.clone().plus(EXT_SERVER_NAME, sni(&[NAME.as_bytes()]));
    cases.push(case("duplicate-sni", framed(1 << 14, &dup_sni.message())));
    let dup_unknown = base.clone().plus(0x7e57, vec![1]).plus(0x7e57, vec![2]);
    cases.push(case(
        "duplicate-unknown-extension",
        framed(1 << 14, &dup_unknown.message()),
    ));
    let two_names = base
        .clone()
        .with(EXT_SERVER_NAME, sni(&[NAME.as_bytes(), b"other.example"]));
    cases.push(case(
        "two-host-names",
        framed(1 << 14, &two_names.message()),
    ));
    cases.push(case(
        "empty-record-first",
        [&[22u8, 3, 1, 0, 0][..], &base_flight].concat(),
    ));
    cases.push(case("sslv2-hello", sslv2_hello()));
    cases.push(case(
        "plain-http",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ));
    cases.push(case(
        "no-sni",
        framed(1 << 14, &base.clone().without(EXT_SERVER_NAME).message()),
    ));
    cases.push(case(
        "sni-not-allowlisted",
        framed(
            1 << 14,
            &base
                .clone()
                .with(EXT_SERVER_NAME, sni(&[b"evil.example"]))
                .message(),
        ),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// The refusals DESIGN lists, and where the servers themselves disagree with lnm.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Rustls,
    Openssl,
}

/// Which servers an exception is about.
#[derive(Clone, Copy)]
enum For {
    Both,
    Only(Server),
}

/// A case whose answer through the level differs from the server's own: the server, what the
/// level answers instead, and why.
struct Exception {
    case: &'static str,
    server: For,
    /// The alert the level answers with.
    proxied: u8,
    reason: &'static str,
}

const fn ex(case: &'static str, server: For, proxied: u8, reason: &'static str) -> Exception {
    Exception {
        case,
        server,
        proxied,
        reason,
    }
}

const UNEXPECTED_MESSAGE: u8 = 10;
const RECORD_OVERFLOW: u8 = 22;
const ILLEGAL_PARAMETER: u8 = 47;
const DECODE_ERROR: u8 = 50;
const UNRECOGNIZED_NAME: u8 = 112;

const EXCEPTIONS: &[Exception] = &[
    // DESIGN section 3: refusals of the proxy, whatever the server would do.
    ex(
        "no-sni",
        For::Both,
        UNRECOGNIZED_NAME,
        "DESIGN: no SNI is denied",
    ),
    ex(
        "sni-not-allowlisted",
        For::Both,
        UNRECOGNIZED_NAME,
        "DESIGN: a name that is not allowlisted is denied",
    ),
    ex(
        "hello-of-64k+1",
        For::Both,
        ILLEGAL_PARAMETER,
        "DESIGN: the cap (limits.maxClientHello, 64 KiB of handshake message), with \
         OpenSSL's alert for an excessive message; OpenSSL's own cap is larger (131,396 \
         bytes of body), rustls closes (its 64 KiB buffer counts record headers)",
    ),
    ex(
        "sslv2-hello",
        For::Only(Server::Openssl),
        DECODE_ERROR,
        "DESIGN: SSLv2 hellos are denied (no SNI possible); OpenSSL reads them (and fails \
         later here: handshake_failure), rustls says decode_error",
    ),
    ex(
        "record-version-2.0",
        For::Only(Server::Openssl),
        DECODE_ERROR,
        "not TLS (record major version 2): OpenSSL closes without an alert; lnm says \
         decode_error, as rustls does",
    ),
    ex(
        "plain-http",
        For::Both,
        UNEXPECTED_MESSAGE,
        "not TLS: OpenSSL closes without an alert, rustls says decode_error (unknown content \
         type); lnm says unexpected_message, as RFC 8446 section 5 asks for an unexpected \
         record type",
    ),
    // Where one server is more lenient than the RFCs, or answers in other words.
    ex(
        "empty-record-first",
        For::Only(Server::Openssl),
        DECODE_ERROR,
        "zero-length handshake records must not be sent (RFC 5246 section 6.2.1, RFC 8446 \
         section 5.1); OpenSSL skips them, rustls refuses them (decode_error), lnm too",
    ),
    ex(
        "duplicate-unknown-extension",
        For::Only(Server::Openssl),
        ILLEGAL_PARAMETER,
        "an extension twice (RFC 8446 section 4.2): OpenSSL checks only the extensions it \
         knows; rustls refuses any (illegal_parameter), lnm too (two parsers, two readings)",
    ),
    ex(
        "record-of-16385",
        For::Only(Server::Rustls),
        RECORD_OVERFLOW,
        "a record over 2^14 bytes: record_overflow (RFC 8446 section 5.1, OpenSSL); rustls \
         accepts plaintext records up to 2^14 + 2048",
    ),
    ex(
        "record-of-18432",
        For::Only(Server::Rustls),
        RECORD_OVERFLOW,
        "a record over 2^14 bytes: record_overflow (RFC 8446 section 5.1, OpenSSL); rustls \
         says decode_error",
    ),
    ex(
        "announces-1MiB",
        For::Only(Server::Rustls),
        ILLEGAL_PARAMETER,
        "a handshake message over every cap: illegal_parameter as OpenSSL \
         (SSL_R_EXCESSIVE_MESSAGE_SIZE); rustls closes without an alert",
    ),
    ex(
        "content-type-0-first",
        For::Only(Server::Rustls),
        UNEXPECTED_MESSAGE,
        "an unknown record type: unexpected_message (RFC 8446 section 5, OpenSSL); rustls \
         says decode_error",
    ),
    ex(
        "first-message-server-hello",
        For::Only(Server::Rustls),
        UNEXPECTED_MESSAGE,
        "a first handshake message that is not a ClientHello: unexpected_message (OpenSSL); \
         rustls decodes it as the type it claims and says decode_error",
    ),
    ex(
        "ccs-inside-the-hello",
        For::Only(Server::Rustls),
        UNEXPECTED_MESSAGE,
        "a record interleaved with the hello's (RFC 8446 section 5.1): unexpected_message \
         (OpenSSL); rustls closes without an alert",
    ),
    ex(
        "application-data-inside-the-hello",
        For::Only(Server::Rustls),
        UNEXPECTED_MESSAGE,
        "a record interleaved with the hello's (RFC 8446 section 5.1): unexpected_message \
         (OpenSSL); rustls closes without an alert",
    ),
];

fn exception(case: &str, server: Server) -> Option<&'static Exception> {
    EXCEPTIONS.iter().find(|e| {
        e.case == case
            && match e.server {
                For::Both => true,
                For::Only(s) => s == server,
            }
    })
}

// ---------------------------------------------------------------------------------------------
// Running it.

fn allowlist() -> AllowlistHandle {
    Allowlist::builder().external(NAME).unwrap().build().into()
}

/// A level in front of the server at `server`: `Direct` to loopback, `NAME` allowlisted.
async fn level_in_front_of(server: SocketAddr) -> Level {
    level(
        allowlist(),
        loopback_direct(),
        no_internal(),
        tls_settings(server.port()),
    )
    .await
}

/// The configurations of the rustls server (0-RTT allowed) and of the capturing client.
fn rustls_setup() -> (Pki, Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
    let pki = pki(&[NAME]);
    let mut server = (*pki.server).clone();
    server.max_early_data_size = 16 * 1024;
    let server = Arc::new(server);
    let mut client = (*pki.client).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let pki = Pki {
        server: server.clone(),
        ..pki
    };
    (pki, Arc::new(client), server)
}

/// Compares each case's answers (direct, through the level) against [`EXCEPTIONS`]: the
/// table, the failures, and how often the server gave each direct answer.
fn judge(
    server: Server,
    results: Vec<(String, Reaction, Reaction)>,
) -> (String, Vec<String>, BTreeMap<String, usize>) {
    let mut table = String::new();
    let mut failures = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (name, direct, proxied) in &results {
        *tally.entry(direct.to_string()).or_default() += 1;
        let verdict = match exception(name, server) {
            None if direct == proxied => "same".to_owned(),
            None => {
                failures.push(format!(
                    "{name}: {server:?} answers {direct} directly but {proxied} through the level"
                ));
                "DIFFERENT".to_owned()
            }
            Some(e) if *proxied != Reaction::Alert(e.proxied) => {
                failures.push(format!(
                    "{name}: through the level {proxied}, expected {} ({})",
                    Reaction::Alert(e.proxied),
                    e.reason
                ));
                "WRONG REFUSAL".to_owned()
            }
            Some(e) if direct == proxied => {
                failures.push(format!(
                    "{name}: listed as an exception ({}) but {server:?} answers {direct} both ways",
                    e.reason
                ));
                "STALE EXCEPTION".to_owned()
            }
            Some(e) => format!("exception: {}", e.reason),
        };
        table.push_str(&format!(
            "{name:50} direct {direct:32} proxied {proxied:32} {verdict}\n"
        ));
    }
    (table, failures, tally)
}

fn report(server: Server, results: Vec<(String, Reaction, Reaction)>, cases: usize) {
    assert_eq!(results.len(), cases, "every case ran");
    let (table, failures, tally) = judge(server, results);
    eprintln!("{server:?}:\n{table}direct answers: {tally:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpus is mostly hellos a server accepts: the comparison is not between refusals.
    let proceeded = tally.get("ServerHello").copied().unwrap_or(0);
    assert!(proceeded > 256, "{proceeded} handshakes proceeded");
    assert!(tally.get("HRR").copied().unwrap_or(0) >= 2, "{tally:?}");
    for e in EXCEPTIONS {
        assert!(
            table.contains(&format!("{:50}", e.case)),
            "exception {} names no case",
            e.case
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustls_server_sees_the_same_hellos_through_a_level() {
    init_logging();
    let (pki, client, server_config) = rustls_setup();
    let server = tls_origin(&pki, "rustls").await;
    let proxy = level_in_front_of(server).await;
    let cases = corpus(&client, &server_config);
    let n = cases.len();
    // All at once: the rustls server serves connections concurrently.
    let mut running = tokio::task::JoinSet::new();
    for (i, c) in cases.into_iter().enumerate() {
        let (direct_addr, proxy_addr) = (server, proxy.addr);
        running.spawn(async move {
            let direct = react(direct_addr, c.flight.clone());
            let proxied = react(proxy_addr, c.flight.clone());
            let (direct, proxied) = tokio::join!(direct, proxied);
            (i, c.name, direct, proxied)
        });
    }
    let mut results = running.join_all().await;
    results.sort_by_key(|r| r.0);
    let results = results
        .into_iter()
        .map(|(_, name, d, p)| (name, d, p))
        .collect();
    report(Server::Rustls, results, n);
}

/// `openssl s_server` on an ephemeral loopback port, with a self-signed certificate for
/// `NAME`. It serves one connection at a time.
struct OpensslServer {
    addr: SocketAddr,
    _child: Child,
    dir: std::path::PathBuf,
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn openssl_server() -> OpensslServer {
    let dir = std::env::temp_dir().join(format!("lnm-transparency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec![NAME.to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let mut child = match Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-cert"])
        .arg(dir.join("cert.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"))
        // s_server copies stdin to the client: keep it open and empty.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run `openssl s_server` ({e}): the `openssl` command-line tool is not on \
             PATH; install it with scripts/install-test-deps.sh (Debian package `openssl`)"
        ),
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("ACCEPT ") {
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("openssl s_server exited before listening");
    })
    .await
    .expect("openssl s_server listens within 10 s");
    // Keep draining what it prints about each connection.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    OpensslServer {
        addr,
        _child: child,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_sees_the_same_hellos_through_a_level() {
    init_logging();
    let (_, client, server_config) = rustls_setup();
    let server = openssl_server().await;
    let proxy = level_in_front_of(server.addr).await;
    let cases = corpus(&client, &server_config);
    let n = cases.len();
    // One at a time: s_server serves one connection after the other.
    let mut results = Vec::with_capacity(n);
    for c in cases {
        let direct = react(server.addr, c.flight.clone()).await;
        let proxied = react(proxy.addr, c.flight.clone()).await;
        results.push((c.name, direct, proxied));
    }
    report(Server::Openssl, results, n);
}

/// Behind the first flight: a full handshake with a HelloRetryRequest goes through a level
/// (the second ClientHello is relayed, not sniffed), the same as directly.
#[tokio::test]
async fn a_handshake_with_hello_retry_request_completes_through_a_level() {
    init_logging();
    let (pki, _, _) = rustls_setup();
    let server = tls_origin(&pki, "rustls").await;
    let proxy = level_in_front_of(server).await;
    // A key share for ML-KEM-768 alone, which the server does not support: it asks for X25519.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        rustls::crypto::aws_lc_rs::kx_group::MLKEM768,
        rustls::crypto::aws_lc_rs::kx_group::X25519,
    ];
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // A resumed session would offer the group of the first one at once.
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    for addr in [server, proxy.addr] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let mut tls = connector
            .connect(ServerName::try_from(NAME).unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(
            tls.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::FullWithHelloRetryRequest),
            "via {addr}"
        );
        tls.write_all(b"GET /hrr HTTP/1.1\r\nHost: transparency.example\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.ends_with("rustls sni=transparency.example path=/hrr"),
            "via {addr}: {response}"
        );
    }
}
