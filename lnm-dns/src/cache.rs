//! The DNS client's answer cache: bounded, honouring TTLs, including negative answers (RFC
//! 2308). Answers served from the cache carry TTLs lowered by the time they spent in it (RFC
//! 1035 §7.4).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Message, Rtype};

/// What identifies a cached answer: the lower-cased name, type, class, and whether the client
/// spoke EDNS (answers with and without OPT are not interchangeable).
pub(crate) type Key = (String, u16, u16, bool);

/// How often, at most, a full cache looks for expired entries to drop before dropping the
/// oldest live one (the scan visits every entry).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    answer: Bytes,
    stored: Instant,
    expires: Instant,
    /// Which insertion this is: the eviction order names entries by key and insertion, so a
    /// key stored again is not evicted for its earlier insertion.
    seq: u64,
}

#[derive(Debug)]
pub(crate) struct Cache {
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order (oldest first), with their insertion; entries that expired or
    /// were stored again leave stale items, compacted away when the queue grows.
    order: VecDeque<(Key, u64)>,
    capacity: usize,
    /// The longest time an answer is kept, whatever its TTL.
    max_ttl: u32,
    seq: u64,
    next_sweep: Option<Instant>,
}

impl Cache {
    /// A cache of up to `capacity` answers (0: none), each kept at most `max_ttl` seconds.
    pub(crate) fn new(capacity: usize, max_ttl: u32) -> Self {
        Cache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            max_ttl,
            seq: 0,
            next_sweep: None,
        }
    }

    /// A fresh answer for `key`, if any, its TTLs lowered by its age; expired entries are
    /// removed.
    pub(crate) fn get(&mut self, key: &Key, now: Instant) -> Option<Bytes> {
        match self.entries.get(key) {
            Some(entry) if entry.expires > now => {
                let age =
                    u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
                if age == 0 {
                    Some(entry.answer.clone())
                } else {
                    aged(&entry.answer, age).map(Bytes::from)
                }
            }
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `answer` for as long as its TTLs allow (nothing for TTL 0, SERVFAIL or a
    /// truncated answer; see [`cache_ttl`]).
    pub(crate) fn insert(&mut self, key: Key, answer: Bytes, now: Instant) {
        if let Some(ttl) = cache_ttl(&answer) {
            self.insert_for(key, answer, ttl, now);
        }
    }

    /// Stores `answer` for `ttl` seconds (at most the cache's longest; nothing for 0). A full
    /// cache first drops its expired answers, then its oldest.
    pub(crate) fn insert_for(&mut self, key: Key, answer: Bytes, ttl: u32, now: Instant) {
        let ttl = ttl.min(self.max_ttl);
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            if self.next_sweep.is_none_or(|at| at <= now) {
                self.entries.retain(|_, entry| entry.expires > now);
                self.next_sweep = Some(now + SWEEP_EVERY);
            }
            while self.entries.len() >= self.capacity {
                let Some((old, seq)) = self.order.pop_front() else {
                    break;
                };
                if self.entries.get(&old).is_some_and(|entry| entry.seq == seq) {
                    self.entries.remove(&old);
                }
            }
        }
        self.trim_expired(now);
        self.seq += 1;
        let entry = Entry {
            answer,
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
            seq: self.seq,
        };
        self.entries.insert(key.clone(), entry);
        self.order.push_back((key, self.seq));
        if self.order.len() > 2 * self.capacity + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(key, seq)| entries.get(key).is_some_and(|entry| entry.seq == *seq));
        }
    }

    /// Drops up to two expired answers (or stale queue items) from the old end of the queue:
    /// called on every insertion, it makes the cache follow the names still alive instead of
    /// filling up to its capacity with expired answers that nobody asks for again.
    fn trim_expired(&mut self, now: Instant) {
        for _ in 0..2 {
            let Some((old, seq)) = self.order.front() else {
                return;
            };
            match self.entries.get(old) {
                // The oldest live answer: everything behind it is younger.
                Some(entry) if entry.seq == *seq && entry.expires > now => return,
                Some(entry) if entry.seq == *seq => {
                    self.entries.remove(old);
                }
                // Stored again since, or already gone.
                _ => {}
            }
            self.order.pop_front();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How long an upstream answer may be cached: the smallest answer TTL; for NXDOMAIN or an
/// empty answer, the SOA's TTL capped by its MINIMUM (RFC 2308). `None`: do not cache
/// (SERVFAIL and other errors, a truncated answer, a negative answer without SOA, bytes that
/// do not parse). The cache caps what it keeps at its own longest time.
pub(crate) fn cache_ttl(answer: &[u8]) -> Option<u32> {
    let msg = Message::from_octets(answer).ok()?;
    let rcode = msg.header().rcode();
    if rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
        return None;
    }
    if msg.header().tc() {
        return None;
    }
    let mut min: Option<u32> = None;
    for record in msg.answer().ok()? {
        let record = record.ok()?;
        let ttl = record.ttl().as_secs();
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
    }
    if min.is_none() {
        let authority = msg.answer().ok()?.next_section().ok()??;
        for record in authority.limit_to::<domain::rdata::Soa<_>>() {
            let record = record.ok()?;
            let ttl = record
                .ttl()
                .as_secs()
                .min(record.data().minimum().as_secs());
            min = Some(min.map_or(ttl, |m| m.min(ttl)));
        }
    }
    min
}

/// `answer` with the TTL of every record lowered by `age` seconds (not below 0); the OPT
/// pseudo-record, whose TTL field holds EDNS flags, is left alone. `None` if the message does
/// not parse (it was parsed when it was stored, so this does not happen).
///
/// The records are walked with `domain`'s parser; each TTL is patched in place, four bytes
/// before the record's data length and data, so names and record data are not re-encoded. A
/// message whose compressed names point into a TTL field (no real server writes one; fuzzing
/// does) could stop parsing once patched: the result is parsed again and `None` returned then,
/// so the answer is asked for afresh instead of served broken.
pub(crate) fn aged(answer: &[u8], age: u32) -> Option<Vec<u8>> {
    let mut out = answer.to_vec();
    let mut patched = 0usize;
    let msg = Message::from_octets(answer).ok()?;
    let mut section = Some(msg.answer().ok()?);
    while let Some(mut records) = section {
        while let Some(record) = records.next() {
            let record = record.ok()?;
            patched += 1;
            if record.rtype() == Rtype::OPT {
                continue;
            }
            // The parser now stands after the record: TTL (4), RDLENGTH (2), RDATA.
            let at = records.pos().checked_sub(usize::from(record.rdlen()) + 6)?;
            let ttl = record.ttl().as_secs().saturating_sub(age);
            out.get_mut(at..at + 4)?.copy_from_slice(&ttl.to_be_bytes());
        }
        section = records.next_section().ok()?;
    }
    (record_count(&out)? == patched).then_some(out)
}

/// How many records `msg` holds, if every one of them parses.
fn record_count(msg: &[u8]) -> Option<usize> {
    let msg = Message::from_octets(msg).ok()?;
    let mut count = 0;
    let mut section = Some(msg.answer().ok()?);
    while let Some(records) = section {
        for record in records {
            record.ok()?;
            count += 1;
        }
        section = records.next_section().ok()?;
    }
    Some(count)
}

/// The cache key of a query.
pub(crate) fn key(qname: &str, qtype: Rtype, qclass: domain::base::iana::Class, edns: bool) -> Key {
    (
        qname.to_ascii_lowercase(),
        qtype.to_int(),
        qclass.to_int(),
        edns,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::base::iana::Class;
    use domain::base::{MessageBuilder, Name, Ttl};
    use std::str::FromStr;

    fn push_a(
        section: &mut domain::base::message_builder::AnswerBuilder<Vec<u8>>,
        name: &Name<Vec<u8>>,
        ttl: u32,
    ) {
        let a = domain::rdata::A::new([192, 0, 2, 1].into());
        section.push((name, Class::IN, ttl, a)).unwrap();
    }

    fn answer(rcode: Rcode, a_ttl: Option<u32>, soa: Option<(u32, u32)>) -> Bytes {
        let mut q = MessageBuilder::new_vec().question();
        let name = Name::<Vec<u8>>::from_str("x.example").unwrap();
        q.push((&name, Rtype::A)).unwrap();
        let mut ans = q.answer();
        ans.header_mut().set_qr(true);
        ans.header_mut().set_rcode(rcode);
        if let Some(ttl) = a_ttl {
            push_a(&mut ans, &name, ttl);
        }
        let mut auth = ans.authority();
        if let Some((ttl, minimum)) = soa {
            let zone = Name::<Vec<u8>>::from_str("example").unwrap();
            let soa = domain::rdata::Soa::new(
                zone.clone(),
                zone.clone(),
                1.into(),
                Ttl::from_secs(3600),
                Ttl::from_secs(600),
                Ttl::from_secs(86400),
                Ttl::from_secs(minimum),
            );
            auth.push((&zone, Class::IN, ttl, soa)).unwrap();
        }
        Bytes::from(auth.finish())
    }

    const DAY: u32 = 86_400;

    #[test]
    fn ttls_positive_negative_and_uncacheable() {
        assert_eq!(
            cache_ttl(&answer(Rcode::NOERROR, Some(300), None)),
            Some(300)
        );
        assert_eq!(
            cache_ttl(&answer(Rcode::NXDOMAIN, None, Some((900, 120)))),
            Some(120)
        );
        assert_eq!(
            cache_ttl(&answer(Rcode::NOERROR, None, Some((30, 120)))),
            Some(30)
        );
        assert_eq!(cache_ttl(&answer(Rcode::SERVFAIL, Some(300), None)), None);
        assert_eq!(cache_ttl(&answer(Rcode::NOERROR, None, None)), None);
        assert_eq!(
            cache_ttl(&answer(Rcode::NOERROR, Some(999_999), None)),
            Some(999_999),
            "the cache caps it, not the reading"
        );
        assert_eq!(cache_ttl(b"\x00\x01garbage"), None);
    }

    /// The TTL of every record of `msg`, section by section, OPT included.
    fn ttls(msg: &[u8]) -> Vec<(u16, u32)> {
        let msg = Message::from_octets(msg).unwrap();
        let mut out = Vec::new();
        let mut section = Some(msg.answer().unwrap());
        while let Some(records) = section {
            for record in records {
                let record = record.unwrap();
                out.push((record.rtype().to_int(), record.ttl().as_secs()));
            }
            section = records.next_section().unwrap();
        }
        out
    }

    #[test]
    fn answers_from_the_cache_carry_their_remaining_ttl() {
        let mut cache = Cache::new(4, DAY);
        let now = Instant::now();
        let k = key("x.example", Rtype::A, Class::IN, false);
        cache.insert(k.clone(), answer(Rcode::NOERROR, Some(300), None), now);
        assert_eq!(ttls(&cache.get(&k, now).unwrap()), [(1, 300)]);
        let later = cache.get(&k, now + Duration::from_secs(100)).unwrap();
        assert_eq!(ttls(&later), [(1, 200)]);
        // Negative answers: the SOA's TTL counts down too.
        let nk = key("nx.example", Rtype::A, Class::IN, false);
        cache.insert(
            nk.clone(),
            answer(Rcode::NXDOMAIN, None, Some((900, 120))),
            now,
        );
        let later = cache.get(&nk, now + Duration::from_secs(20)).unwrap();
        assert_eq!(ttls(&later), [(6, 880)]);
    }

    #[test]
    fn aging_spares_opt_and_stops_at_zero() {
        let mut q = MessageBuilder::new_vec().question();
        let name = Name::<Vec<u8>>::from_str("x.example").unwrap();
        q.push((&name, Rtype::A)).unwrap();
        let mut ans = q.answer();
        for ttl in [30, 3000] {
            push_a(&mut ans, &name, ttl);
        }
        let mut add = ans.additional();
        add.opt(|opt| {
            opt.set_dnssec_ok(true);
            Ok(())
        })
        .unwrap();
        let msg = add.finish();
        let opt_before = ttls(&msg)[2];
        let older = aged(&msg, 100).unwrap();
        assert_eq!(ttls(&older)[..2], [(1, 0), (1, 2900)]);
        assert_eq!(ttls(&older)[2], opt_before, "OPT flags untouched");
        assert_eq!(older.len(), msg.len());
        assert_eq!(
            aged(b"\x00\x01\x81\x80\x00\x01", 5),
            None,
            "truncated header"
        );
    }

    /// Found by the `dns_answer_age` fuzz target: a compressed name pointing into a TTL field,
    /// which the patch would turn into an unparsable message.
    #[test]
    fn fuzz_regression_a_name_pointing_into_a_ttl_is_not_served_broken() {
        let answer = b"\x00\x00\x00\x00\x00\x0a\x00\x01\x00\x00\x00\x00\x00\x46\x00\x00\x00\x00\x00\x00\x02\x02\x02\x02\x05\x02\x02\x00\xc0\x17\x02\x60\x02\x02\x00\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x02\x00\xc0\x17\x02\x02\x02\x00\xc0\x17\xfd\x02\x02\x5c\x02\x02\x02\x02\x02\x02\x02\x02\x5c\x02\x02\x02\x02\x02\x02\x02\x02\x00\xc0\x17\x02\x60\x02\x02\x02\x02\x02\x02\x02\x2d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xc0\x00\x00";
        assert!(record_count(answer).is_some(), "the stored answer parses");
        if let Some(older) = aged(answer, 46512) {
            assert!(record_count(&older).is_some(), "whatever is served parses");
        }
    }

    #[test]
    fn aging_a_cut_answer_gives_nothing() {
        let full = answer(Rcode::NXDOMAIN, Some(300), Some((900, 120)));
        assert!(aged(&full, 10).is_some());
        for cut in 0..full.len() {
            assert_eq!(aged(&full[..cut], 10), None, "prefix of {cut} bytes");
        }
    }

    proptest::proptest! {
        #[test]
        fn aging_garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), age in 0u32..100_000) {
            let _ = aged(&bytes, age);
        }
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let mut cache = Cache::new(2, DAY);
        let now = Instant::now();
        let k = |n: &str| key(n, Rtype::A, Class::IN, false);
        cache.insert(k("a"), answer(Rcode::NOERROR, Some(10), None), now);
        assert!(
            cache.get(&k("A"), now).is_some(),
            "keys are case-insensitive"
        );
        assert!(
            cache.get(&k("a"), now + Duration::from_secs(11)).is_none(),
            "expired"
        );
        cache.insert(k("a"), answer(Rcode::NOERROR, Some(10), None), now);
        cache.insert(k("b"), answer(Rcode::NOERROR, Some(10), None), now);
        cache.insert(k("c"), answer(Rcode::NOERROR, Some(10), None), now);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&k("c"), now).is_some());
        cache.insert(k("zero"), answer(Rcode::NOERROR, Some(0), None), now);
        assert!(cache.get(&k("zero"), now).is_none(), "TTL 0 is not cached");
    }

    #[test]
    fn a_full_cache_drops_expired_then_oldest_entries_and_caps_ttls() {
        let mut cache = Cache::new(2, 3600);
        let now = Instant::now();
        let k = |n: &str| key(n, Rtype::A, Class::IN, false);
        let a = |ttl| answer(Rcode::NOERROR, Some(ttl), None);
        cache.insert(k("a.example"), a(10), now);
        cache.insert(k("b.example"), a(100), now);
        cache.insert(k("c.example"), a(100), now);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&k("a.example"), now).is_none(), "the oldest went");
        assert!(cache.get(&k("b.example"), now).is_some());
        // Both live entries expired: a new answer takes the room of expired ones.
        let later = now + Duration::from_secs(200);
        cache.insert(k("d.example"), a(100_000), later);
        assert!(cache.get(&k("d.example"), later).is_some());
        assert_eq!(cache.len(), 1, "expired entries were swept");
        let capped = cache.entries[&k("d.example")].expires;
        assert_eq!(capped, later + Duration::from_secs(3600), "TTLs are capped");
        // An explicit TTL (the resolver keeps an empty answer as long as its sibling).
        cache.insert_for(k("e.example"), answer(Rcode::NOERROR, None, None), 5, later);
        assert!(cache.get(&k("e.example"), later).is_some());
        assert!(
            cache
                .get(&k("e.example"), later + Duration::from_secs(5))
                .is_none()
        );
    }

    #[test]
    fn expired_answers_leave_as_new_ones_come_without_a_full_cache() {
        let mut cache = Cache::new(1000, 3600);
        let t0 = Instant::now();
        for i in 0..100 {
            cache.insert_for(
                key(&format!("old{i}.example"), Rtype::A, Class::IN, false),
                Bytes::from_static(b"x"),
                1,
                t0,
            );
        }
        let later = t0 + Duration::from_secs(2);
        for i in 0..100 {
            cache.insert_for(
                key(&format!("new{i}.example"), Rtype::A, Class::IN, false),
                Bytes::from_static(b"x"),
                60,
                later,
            );
        }
        // Far below the capacity, the expired answers are gone all the same: the cache holds
        // the live ones only.
        assert_eq!(cache.len(), 100);
        assert!(cache.order.len() <= 100, "{}", cache.order.len());
    }

    #[test]
    fn a_key_stored_again_is_not_evicted_for_its_first_insertion_and_order_stays_bounded() {
        let mut cache = Cache::new(2, DAY);
        let now = Instant::now();
        let k = |n: &str| key(n, Rtype::A, Class::IN, false);
        let a = |ttl| answer(Rcode::NOERROR, Some(ttl), None);
        cache.insert(k("a"), a(1), now);
        cache.insert(k("b"), a(100), now);
        // `a` expires and is stored again: it is now newer than `b`.
        let later = now + Duration::from_secs(2);
        assert!(cache.get(&k("a"), later).is_none());
        cache.insert(k("a"), a(100), later);
        cache.insert(k("c"), a(100), later);
        assert!(cache.get(&k("a"), later).is_some(), "the fresh `a` stays");
        assert!(cache.get(&k("b"), later).is_none(), "`b` is the oldest");
        // Churn on a few keys never grows the eviction queue without bound.
        for i in 0..10_000u64 {
            let at = later + Duration::from_secs(2 * i);
            cache.insert(k(if i % 2 == 0 { "x" } else { "y" }), a(1), at);
        }
        assert!(cache.order.len() <= 2 * 2 + 16, "{}", cache.order.len());
    }
}
