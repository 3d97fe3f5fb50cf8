//! Fuzzes the PROXY protocol v2 decoder: never panics, and a decoded header re-encodes to a
//! header that decodes to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lnm_core::proxy_header::{Decoded, ProxyHeader};

fuzz_target!(|data: &[u8]| {
    if let Decoded::Done { header, len } = ProxyHeader::decode(data) {
        assert!(len <= data.len());
        let again = header.encode().expect("a decoded header encodes");
        match ProxyHeader::decode(&again) {
            Decoded::Done { header: back, .. } => assert_eq!(back.hops, header.hops),
            other => panic!("re-encoded header does not decode: {other:?}"),
        }
    }
});
