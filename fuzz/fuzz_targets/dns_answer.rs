//! Fuzzes what lnm reads from an upstream DNS answer: the upstream client's check that an
//! answer is for its query's question, and `Response::answers` (the addresses a user reads).
//! Neither may panic; every address comes from an A or AAAA record of the answer section, so
//! there are never more than the header's answer count; a query always answers its own
//! question.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lnm_dns::fuzzing::answers_question;
use lnm_dns::{Query, Response, Rtype};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let (query, answer) = rest.split_at(usize::from(split).min(rest.len()));
    let _ = answers_question(answer, query);
    let addrs = Response::new(answer.to_vec()).answers();
    let ancount = answer.get(6..8).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    assert!(addrs.len() <= usize::from(ancount));
    // A name made of the input's bytes: a valid query answers its own question.
    if let Ok(name) = std::str::from_utf8(query) {
        if let Ok(built) = Query::build(name, Rtype::A) {
            assert!(answers_question(built.as_bytes(), built.as_bytes()));
        }
    }
});
