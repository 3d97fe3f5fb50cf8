//! A bounded answer cache that honours TTLs, including negative answers (RFC 2308).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Message, Rtype};

/// What identifies a cached answer: the lower-cased name, type, class, and whether the client
/// spoke EDNS (answers with and without OPT are not interchangeable).
pub(crate) type Key = (String, u16, u16, bool);

/// The longest time an answer is kept, whatever its TTL.
const MAX_TTL: u32 = 86_400;

#[derive(Debug)]
pub(crate) struct Cache {
    entries: HashMap<Key, (Bytes, Instant)>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// A fresh answer for `key`, if any; expired entries are removed.
    pub(crate) fn get(&mut self, key: &Key, now: Instant) -> Option<Bytes> {
        match self.entries.get(key) {
            Some((bytes, expires)) if *expires > now => Some(bytes.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `answer` for as long as its TTLs allow (nothing for TTL 0 or SERVFAIL).
    pub(crate) fn insert(&mut self, key: Key, answer: Bytes, now: Instant) {
        let Some(ttl) = cache_ttl(&answer) else {
            return;
        };
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        if self
            .entries
            .insert(
                key.clone(),
                (answer, now + Duration::from_secs(u64::from(ttl))),
            )
            .is_none()
        {
            self.order.push_back(key);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How long an upstream answer may be cached: the smallest answer TTL; for NXDOMAIN or an
/// empty answer, the SOA's TTL capped by its MINIMUM (RFC 2308). `None`: do not cache.
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
    min.map(|ttl| ttl.min(MAX_TTL))
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

    fn answer(rcode: Rcode, a_ttl: Option<u32>, soa: Option<(u32, u32)>) -> Bytes {
        let mut q = MessageBuilder::new_vec().question();
        let name = Name::<Vec<u8>>::from_str("x.example").unwrap();
        q.push((&name, Rtype::A)).unwrap();
        let mut ans = q.answer();
        ans.header_mut().set_qr(true);
        ans.header_mut().set_rcode(rcode);
        if let Some(ttl) = a_ttl {
            ans.push((
                &name,
                Class::IN,
                ttl,
                domain::rdata::A::new([192, 0, 2, 1].into()),
            ))
            .unwrap();
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
            Some(MAX_TTL)
        );
        assert_eq!(cache_ttl(b"\x00\x01garbage"), None);
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let mut cache = Cache::new(2);
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
}
