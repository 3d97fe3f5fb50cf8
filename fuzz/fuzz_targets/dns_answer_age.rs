//! Fuzzes the DNS cache's TTL ageing of upstream answers: it must never panic, keep the length,
//! change only TTLs (never upwards), and leave an OPT record's flags alone.
#![no_main]

use domain::base::{Message, Rtype};
use libfuzzer_sys::fuzz_target;
use lnm_dns::fuzzing::aged;

/// (type, TTL) of every record, or `None` if the message does not parse.
fn ttls(msg: &[u8]) -> Option<Vec<(Rtype, u32)>> {
    let msg = Message::from_octets(msg).ok()?;
    let mut out = Vec::new();
    let mut section = Some(msg.answer().ok()?);
    while let Some(records) = section {
        for record in records {
            let record = record.ok()?;
            out.push((record.rtype(), record.ttl().as_secs()));
        }
        section = records.next_section().ok()?;
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((age, answer)) = data.split_first_chunk::<2>() else { return };
    let age = u32::from(u16::from_be_bytes(*age));
    let Some(older) = aged(answer, age) else { return };
    assert_eq!(older.len(), answer.len());
    let (before, after) = (ttls(answer).unwrap(), ttls(&older).expect("aged answer parses"));
    assert_eq!(before.len(), after.len());
    for ((rtype, was), (rtype_after, now)) in before.into_iter().zip(after) {
        assert_eq!(rtype, rtype_after);
        if rtype == Rtype::OPT {
            assert_eq!(was, now, "OPT flags untouched");
        } else {
            assert_eq!(now, was.saturating_sub(age));
        }
    }
});
