//! Real ClientHellos, fed in every prefix and many splits, and mutated ones.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const OPENSSL: &[u8] = include_bytes!("../../../testdata/openssl-s_client.bin");
const CURL: &[u8] = include_bytes!("../../../testdata/curl.bin");
/// Chromium 156 (headless shell) opening `https://management.azure.com/`: GREASE cipher suites,
/// extensions and groups, an X25519MLKEM768 key share, GREASE ECH, extension order permuted.
const CHROMIUM: &[u8] = include_bytes!("../../../testdata/chromium-156.bin");

/// The first flight of a rustls client (aws-lc-rs: X25519MLKEM768 post-quantum key share).
fn rustls_hello(name: &str, max_fragment: Option<usize>) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.max_fragment_size = max_fragment;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn sniff_whole(bytes: &[u8]) -> Sniff<ClientHello> {
    TlsSniffer::new(DEFAULT_MAX_CLIENT_HELLO).feed(bytes)
}

/// The handshake bytes of a first flight: the payloads of its records, headers dropped.
fn handshake_of(flight: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = flight;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    out
}

/// `handshake` in handshake records of at most `size` bytes, with record version `version`.
fn frame(handshake: &[u8], version: [u8; 2], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in handshake.chunks(size) {
        out.extend_from_slice(&[22, version[0], version[1]]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// The same hello with another `legacy_version` (bytes 4 and 5 of the handshake message).
fn with_legacy_version(flight: &[u8], version: [u8; 2]) -> Vec<u8> {
    let mut msg = handshake_of(flight);
    msg[4..6].copy_from_slice(&version);
    frame(&msg, [3, 1], 1 << 14)
}

fn captures() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "rustls-pq",
            rustls_hello("pq.example.com", None),
            "pq.example.com",
        ),
        (
            "rustls-fragmented",
            rustls_hello("frag.example.com", Some(64)),
            "frag.example.com",
        ),
        ("openssl", OPENSSL.to_vec(), "openssl.example.com"),
        ("curl", CURL.to_vec(), "curl.example.com"),
        ("chromium", CHROMIUM.to_vec(), "management.azure.com"),
        // What a server accepts and the proxy must pass too: any 3.x record version, any
        // legacy_version (TLS 1.3 ignores it), any fragmentation.
        (
            "record-version-3.254",
            frame(&handshake_of(CURL), [3, 254], 1 << 14),
            "curl.example.com",
        ),
        (
            "record-version-3.0-tiny-records",
            frame(&handshake_of(OPENSSL), [3, 0], 3),
            "openssl.example.com",
        ),
        (
            "legacy-version-254.254",
            with_legacy_version(CURL, [254, 254]),
            "curl.example.com",
        ),
    ]
}

#[test]
fn captures_give_their_sni() {
    for (what, bytes, sni) in captures() {
        match sniff_whole(&bytes) {
            Sniff::Done(hello) => {
                assert_eq!(hello.server_name.as_deref(), Some(sni.as_bytes()), "{what}");
                assert_eq!(
                    hello.len,
                    bytes.len(),
                    "{what}: the whole first flight is the hello"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn post_quantum_hello_spans_more_than_a_segment_and_fragmented_one_many_records() {
    let pq = rustls_hello("pq.example.com", None);
    assert!(
        pq.len() > 1200,
        "ML-KEM key share expected, hello is {} bytes",
        pq.len()
    );
    let Sniff::Done(hello) = sniff_whole(&pq) else {
        panic!()
    };
    assert_eq!(hello.alpn, ["h2", "http/1.1"]);
    let frag = rustls_hello("frag.example.com", Some(64));
    let Sniff::Done(hello) = sniff_whole(&frag) else {
        panic!()
    };
    assert!(hello.records > 10, "{} records", hello.records);
}

#[test]
fn browser_hello_with_grease_pq_share_and_grease_ech_passes() {
    // What makes this capture browser-class, checked on the bytes so the test fails if the file
    // is ever replaced by a plainer hello.
    let grease = |i: usize| CHROMIUM[i] & 0x0f == 0x0a && CHROMIUM[i] == CHROMIUM[i + 1];
    assert!(
        (0..CHROMIUM.len() - 1).filter(|&i| grease(i)).count() >= 3,
        "GREASE values expected"
    );
    assert!(
        CHROMIUM.windows(2).any(|w| w == [0x11, 0xec]),
        "X25519MLKEM768 (0x11ec) expected"
    );
    assert!(CHROMIUM.len() > 1500, "post-quantum share makes it large");
    let Sniff::Done(hello) = sniff_whole(CHROMIUM) else {
        panic!("Chromium's hello must be accepted")
    };
    assert!(hello.ech, "Chromium sends GREASE ECH");
    assert_eq!(hello.alpn, ["h2", "http/1.1"]);
    assert_eq!(hello.records, 1);
}

#[test]
fn every_prefix_needs_more_then_every_split_agrees() {
    for (what, bytes, _) in captures() {
        let full = sniff_whole(&bytes);
        for end in 0..bytes.len() {
            assert_eq!(
                sniff_whole(&bytes[..end]),
                Sniff::NeedMore,
                "{what}: prefix {end}"
            );
        }
        for split in 0..=bytes.len() {
            let mut sniffer = TlsSniffer::new(DEFAULT_MAX_CLIENT_HELLO);
            let first = sniffer.feed(&bytes[..split]);
            let outcome = if first == Sniff::NeedMore {
                sniffer.feed(&bytes)
            } else {
                first
            };
            assert_eq!(outcome, full, "{what}: split at {split}");
        }
        // One byte at a time: the incremental path.
        let mut sniffer = TlsSniffer::new(DEFAULT_MAX_CLIENT_HELLO);
        let mut last = Sniff::NeedMore;
        for end in 1..=bytes.len() {
            last = sniffer.feed(&bytes[..end]);
        }
        assert_eq!(last, full, "{what}: byte by byte");
    }
}

proptest! {
    #[test]
    fn random_splits_agree(cuts in prop::collection::vec(0usize..2000, 0..12), which in 0usize..8) {
        let (what, bytes, sni) = captures().swap_remove(which);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(bytes.len());
        let mut sniffer = TlsSniffer::new(DEFAULT_MAX_CLIENT_HELLO);
        let mut outcome = Sniff::NeedMore;
        for cut in cuts {
            outcome = sniffer.feed(&bytes[..cut]);
            if outcome != Sniff::NeedMore { break; }
        }
        match outcome {
            Sniff::Done(h) => prop_assert_eq!(h.server_name.as_deref(), Some(sni.as_bytes()), "{}", what),
            other => prop_assert!(false, "{}: {:?}", what, other),
        }
    }

    #[test]
    fn mutations_never_panic(flips in prop::collection::vec((0usize..2000, any::<u8>()), 1..8), cut in 0usize..2000, which in 0usize..8) {
        let (_, mut bytes, _) = captures().swap_remove(which);
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut.max(1));
        let _ = sniff_whole(&bytes);
        let mut sniffer = TlsSniffer::new(512);
        for end in (0..=bytes.len()).step_by(7) {
            if sniffer.feed(&bytes[..end]) != Sniff::NeedMore { break; }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = sniff_whole(&bytes);
        let mut with_header = vec![22, 3, 1, (bytes.len() >> 8) as u8, bytes.len() as u8];
        with_header.extend_from_slice(&bytes);
        let _ = sniff_whole(&with_header);
    }
}

/// Builds a single-record hello around a ClientHello body.
fn record(body: &[u8]) -> Vec<u8> {
    let mut msg = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    msg.extend_from_slice(body);
    let mut rec = vec![22, 3, 1, (msg.len() >> 8) as u8, msg.len() as u8];
    rec.extend_from_slice(&msg);
    rec
}

/// A minimal ClientHello body with the given extensions block.
fn body(extensions: &[u8]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]); // random
    b.push(0); // session id
    b.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
    b.extend_from_slice(&[1, 0]); // null compression
    b.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    b.extend_from_slice(extensions);
    b
}

fn sni_ext(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(0);
        list.extend_from_slice(&(n.len() as u16).to_be_bytes());
        list.extend_from_slice(n);
    }
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
    ext.extend_from_slice(&data);
    ext
}

#[test]
fn hand_built_hellos() {
    let ok = record(&body(&sni_ext(&[b"a.example"])));
    assert!(
        matches!(sniff_whole(&ok), Sniff::Done(h) if h.server_name.as_deref() == Some(&b"a.example"[..]))
    );

    let no_sni = record(&body(&[]));
    assert!(matches!(sniff_whole(&no_sni), Sniff::Done(h) if h.server_name.is_none()));

    let mut ech_only = vec![0xfe, 0x0d, 0, 4, 0, 0, 1, 0];
    let ech = record(&body(&ech_only));
    assert!(matches!(sniff_whole(&ech), Sniff::Done(h) if h.ech && h.server_name.is_none()));

    let two = record(&body(&sni_ext(&[b"a.example", b"b.example"])));
    assert_eq!(
        sniff_whole(&two),
        Sniff::Invalid(SniffError::MultipleServerNames)
    );

    let mut dup = sni_ext(&[b"a.example"]);
    dup.extend_from_slice(&sni_ext(&[b"evil.example"]));
    assert_eq!(
        sniff_whole(&record(&body(&dup))),
        Sniff::Invalid(SniffError::DuplicateExtension { ext_type: 0 })
    );

    // Junk inside the SNI list: the entries do not fill it.
    let mut junk = sni_ext(&[b"a.example"]);
    junk[3] += 1; // extension length
    junk[5] += 1; // list length
    junk.push(0xff);
    assert_eq!(
        sniff_whole(&record(&body(&junk))),
        Sniff::Invalid(SniffError::TrailingData("inside the SNI extension"))
    );

    // Junk after the extension list, inside the extensions block.
    ech_only.extend_from_slice(&[1, 2]);
    assert_eq!(
        sniff_whole(&record(&body(&ech_only))),
        Sniff::Invalid(SniffError::TrailingData("inside the extension list"))
    );

    // Junk after the ClientHello inside the handshake message.
    let mut trailing = body(&sni_ext(&[b"a.example"]));
    trailing.push(0);
    assert_eq!(
        sniff_whole(&record(&trailing)),
        Sniff::Invalid(SniffError::TrailingData("after the extensions"))
    );
}

#[test]
fn record_layer_rejections_are_immediate() {
    let cases: [(&[u8], SniffError); 8] = [
        (
            b"GET / HTTP/1.1\r\n",
            SniffError::NotHandshake { content_type: b'G' },
        ),
        (&[0x80, 0x2e, 0x01], SniffError::SslV2),
        (
            &[23, 3, 3, 0, 5],
            SniffError::NotHandshake { content_type: 23 },
        ),
        (&[22, 2, 0], SniffError::BadRecordVersion { major: 2 }),
        (
            &[22, 0xfe, 0xfd],
            SniffError::BadRecordVersion { major: 0xfe },
        ),
        (
            &[22, 3, 1, 0x48, 0x01],
            SniffError::RecordTooLong { len: 0x4801 },
        ),
        (&[22, 3, 1, 0, 0], SniffError::EmptyRecord),
        (
            &[22, 3, 1, 0, 4, 2, 0, 0, 0],
            SniffError::NotClientHello { msg_type: 2 },
        ),
    ];
    for (bytes, err) in cases {
        assert_eq!(sniff_whole(bytes), Sniff::Invalid(err), "{bytes:?}");
    }
    // A change_cipher_spec between the records of one hello.
    let frag = rustls_hello("frag.example.com", Some(64));
    let first_len = 5 + usize::from(u16::from_be_bytes([frag[3], frag[4]]));
    let mut bad = frag[..first_len].to_vec();
    bad.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    assert_eq!(
        sniff_whole(&bad),
        Sniff::Invalid(SniffError::InterleavedRecord {
            index: 1,
            content_type: 20
        })
    );
}

/// Found by the `tls_sniff` fuzz target: a bad record version was reported with a different
/// minor byte depending on whether that byte had arrived yet.
#[test]
fn fuzz_regression_bad_version_is_split_invariant() {
    let input = [0x16, 0x00, 0x07, 0x01, 0x40];
    let whole = sniff_whole(&input);
    let mut sniffer = TlsSniffer::new(DEFAULT_MAX_CLIENT_HELLO);
    assert_eq!(sniffer.feed(&input[..2]), whole);
    assert_eq!(
        whole,
        Sniff::Invalid(SniffError::BadRecordVersion { major: 0 })
    );
}

/// Every `3.x` record version is accepted, on every record of the hello (RFC 5246 appendix
/// E.1, RFC 8446 section 5.1), and so is every `legacy_version` inside it: OpenSSL completes
/// handshakes with `3.254` records and a `254.254` legacy version next to `supported_versions`.
#[test]
fn any_3x_record_version_and_any_legacy_version_pass() {
    let msg = handshake_of(CURL);
    for minor in 0..=255u8 {
        for size in [1 << 14, 200] {
            let flight = frame(&msg, [3, minor], size);
            assert!(
                matches!(sniff_whole(&flight), Sniff::Done(h) if h.server_name.as_deref() == Some(&b"curl.example.com"[..])),
                "record version 3.{minor}, records of {size}"
            );
        }
    }
    // Records of one hello with different versions.
    let mut mixed = frame(&msg[..100], [3, 1], 1 << 14);
    mixed.extend_from_slice(&frame(&msg[100..], [3, 0xff], 1 << 14));
    assert!(matches!(sniff_whole(&mixed), Sniff::Done(_)));
    for legacy in [
        [3, 0],
        [3, 1],
        [3, 3],
        [3, 4],
        [254, 254],
        [0, 0],
        [0xff, 0xff],
    ] {
        assert!(
            matches!(
                sniff_whole(&with_legacy_version(CURL, legacy)),
                Sniff::Done(_)
            ),
            "legacy_version {legacy:?}"
        );
    }
}

/// A first flight that goes on after the hello (HRR retry, middlebox-compatibility CCS, 0-RTT
/// data) is not the sniffer's business: the hello ends where its handshake message ends.
#[test]
fn records_after_the_hello_are_not_read() {
    let mut flight = CURL.to_vec();
    flight.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    flight.extend_from_slice(&[23, 3, 3, 0, 3, 0xaa, 0xbb, 0xcc]);
    flight.extend_from_slice(&[0x80, 0, 0]);
    match sniff_whole(&flight) {
        Sniff::Done(hello) => assert_eq!(hello.len, CURL.len()),
        other => panic!("{other:?}"),
    }
}

/// More handshake bytes in the record that ends the hello: refused (RFC 8446 section 5.1: a
/// message must not span the key change after the hello), whatever the split.
#[test]
fn bytes_after_the_hello_in_its_record_are_refused() {
    let hello = handshake_of(CURL);
    let mut msg = hello.clone();
    msg.extend_from_slice(&[1, 0, 0]);
    for size in [1 << 14, 100] {
        assert_eq!(
            sniff_whole(&frame(&msg, [3, 1], size)),
            Sniff::Invalid(SniffError::NotOnRecordBoundary { len: 3 }),
            "records of {size}"
        );
    }
    // The same bytes in a record of their own come after the hello: not read.
    let mut aligned = frame(&hello, [3, 1], 100);
    aligned.extend_from_slice(&frame(&[1, 0, 0], [3, 1], 100));
    assert!(matches!(sniff_whole(&aligned), Sniff::Done(_)));
}

#[test]
fn cap_is_enforced_before_buffering() {
    // A handshake header announcing a 1 MiB ClientHello is rejected at once.
    let bytes = [22, 3, 1, 0, 4, 1, 0x10, 0, 0];
    assert_eq!(
        sniff_whole(&bytes),
        Sniff::Invalid(SniffError::TooLarge {
            len: 4 + 0x10_0000,
            cap: DEFAULT_MAX_CLIENT_HELLO
        })
    );
    // A real hello over a small cap.
    let pq = rustls_hello("pq.example.com", None);
    assert!(matches!(
        TlsSniffer::new(1024).feed(&pq),
        Sniff::Invalid(SniffError::TooLarge { cap: 1024, .. })
    ));
}

/// A ClientHello handshake message of exactly `len` bytes (header + body), with SNI
/// `a.example` and a padding extension filling it up.
fn hello_message_of(len: usize) -> Vec<u8> {
    let sni = sni_ext(&[b"a.example"]);
    let fixed = 4 + body(&sni).len() + 4;
    let mut exts = sni;
    exts.extend_from_slice(&[0, 21]);
    let padding = len - fixed;
    exts.extend_from_slice(&(padding as u16).to_be_bytes());
    exts.resize(exts.len() + padding, 0);
    let b = body(&exts);
    let mut msg = vec![
        1,
        (b.len() >> 16) as u8,
        (b.len() >> 8) as u8,
        b.len() as u8,
    ];
    msg.extend_from_slice(&b);
    assert_eq!(msg.len(), len);
    msg
}

/// The cap measures the handshake message, header and body, never the record headers: a hello
/// of exactly the cap passes however it is fragmented (in one record stream or in hundreds of
/// records), one byte more is refused, and as soon as the handshake header is in.
#[test]
fn cap_is_exact_on_the_handshake_message() {
    let cap = DEFAULT_MAX_CLIENT_HELLO;
    let at_cap = hello_message_of(cap);
    let over = hello_message_of(cap + 1);
    for size in [1 << 14, 1000, 97] {
        let flight = frame(&at_cap, [3, 1], size);
        assert!(flight.len() > cap, "record headers come on top");
        match sniff_whole(&flight) {
            Sniff::Done(hello) => {
                assert_eq!(hello.server_name.as_deref(), Some(&b"a.example"[..]));
                assert_eq!(hello.len, flight.len());
            }
            other => panic!("records of {size}: {other:?}"),
        }
        let refused = Sniff::Invalid(SniffError::TooLarge { len: cap + 1, cap });
        let flight = frame(&over, [3, 1], size);
        assert_eq!(sniff_whole(&flight), refused, "records of {size}");
        // Decided on the first record, before the rest is buffered.
        assert_eq!(
            sniff_whole(&flight[..5 + size]),
            refused,
            "records of {size}"
        );
    }
    // The handshake header itself split over records: still decided when it is complete.
    let flight = frame(&over, [3, 1], 1);
    assert_eq!(sniff_whole(&flight[..4 * 6 - 1]), Sniff::NeedMore);
    assert_eq!(
        sniff_whole(&flight[..4 * 6]),
        Sniff::Invalid(SniffError::TooLarge { len: cap + 1, cap })
    );
    // And at a small cap, every split agrees.
    let small = frame(&hello_message_of(600), [3, 3], 64);
    for cap in [599, 600] {
        let whole = TlsSniffer::new(cap).feed(&small);
        assert_eq!(matches!(whole, Sniff::Done(_)), cap == 600, "{whole:?}");
        for split in 0..=small.len() {
            let mut sniffer = TlsSniffer::new(cap);
            let outcome = match sniffer.feed(&small[..split]) {
                Sniff::NeedMore => sniffer.feed(&small),
                first => first,
            };
            assert_eq!(outcome, whole, "cap {cap}, split at {split}");
        }
    }
}
