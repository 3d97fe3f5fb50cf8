//! lnm-dns's own query and response types. The wire format is read and written with the
//! `domain` crate (NLnet Labs); the few `domain` types these signatures expose ([`Rtype`],
//! [`Class`], [`Rcode`]) are re-exported by the crate, and so is `domain` itself.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use bytes::Bytes;
use domain::base::iana::{Class, Opcode, Rcode};
use domain::base::{Message, MessageBuilder, Rtype};

use crate::Error;

/// The EDNS UDP payload size lnm advertises (the DNS flag day 2020 recommendation).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// The largest answer over UDP without EDNS.
pub const PLAIN_UDP_SIZE: usize = 512;

/// A parsed DNS query: one question, with what lnm needs from it.
#[derive(Clone)]
pub struct Query {
    msg: Message<Bytes>,
    qname: String,
    qtype: Rtype,
    qclass: Class,
    edns: Option<u16>,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("id", &self.id())
            .field("qname", &self.qname)
            .field("qtype", &self.qtype)
            .field("qclass", &self.qclass)
            .field("edns", &self.edns)
            .finish()
    }
}

/// Why a packet is not a query lnm can answer normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not worth an answer: shorter than a header, or a response (never answer a response:
    /// that is how reflection loops start).
    Drop,
    /// Answer with this error (the bytes of the answer are ready).
    Reply(Response),
}

/// A DNS answer on the wire.
///
/// What a DNS service answers; also a way to read an answer that came from elsewhere (a
/// socket, a file): `Response::new(bytes)`, then [`rcode`](Self::rcode) and
/// [`answers`](Self::answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response(pub Bytes);

impl From<Bytes> for Response {
    fn from(bytes: Bytes) -> Self {
        Response(bytes)
    }
}

impl From<Vec<u8>> for Response {
    fn from(bytes: Vec<u8>) -> Self {
        Response(Bytes::from(bytes))
    }
}

impl Response {
    /// The answer held in `bytes` (a `Vec<u8>`, a [`Bytes`], a `&'static [u8]`). Nothing is
    /// checked here: the readers below answer `None` or nothing for bytes that are not a DNS
    /// message.
    pub fn new(bytes: impl Into<Bytes>) -> Response {
        Response(bytes.into())
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The message ID, if the bytes hold a header.
    pub fn id(&self) -> Option<u16> {
        Message::from_octets(self.0.as_ref())
            .ok()
            .map(|m| m.header().id())
    }

    /// The addresses of the answer section: its A and AAAA records of class IN, in the order
    /// they appear (other records, such as the CNAMEs on the way, are skipped). Empty for an
    /// answer without addresses (NXDOMAIN, REFUSED, an empty NOERROR) and for bytes that are
    /// not a DNS message; reading stops at the first record that does not parse.
    ///
    /// ```
    /// use lnm_dns::{Query, Rcode, Rtype};
    ///
    /// let query = Query::build("management.azure.com", Rtype::A)?;
    /// let response = query.answer(Rcode::NOERROR, 60, &["10.3.0.1".parse().unwrap()]);
    /// assert_eq!(response.rcode(), Some(Rcode::NOERROR));
    /// assert_eq!(response.answers(), ["10.3.0.1".parse::<std::net::IpAddr>().unwrap()]);
    /// assert!(query.empty(Rcode::REFUSED).answers().is_empty());
    /// # Ok::<(), lnm_dns::Error>(())
    /// ```
    pub fn answers(&self) -> Vec<IpAddr> {
        let mut addrs = Vec::new();
        let Ok(msg) = Message::from_octets(self.0.as_ref()) else {
            return addrs;
        };
        let Ok(section) = msg.answer() else {
            return addrs;
        };
        for record in section {
            let Ok(record) = record else { break };
            if record.class() != Class::IN {
                continue;
            }
            match record.rtype() {
                Rtype::A => match record.to_record::<domain::rdata::A>() {
                    Ok(Some(a)) => addrs.push(IpAddr::V4(a.data().addr())),
                    _ => break,
                },
                Rtype::AAAA => match record.to_record::<domain::rdata::Aaaa>() {
                    Ok(Some(aaaa)) => addrs.push(IpAddr::V6(aaaa.data().addr())),
                    _ => break,
                },
                _ => {}
            }
        }
        addrs
    }

    /// The response code, if the bytes hold a header.
    pub fn rcode(&self) -> Option<Rcode> {
        Message::from_octets(self.0.as_ref())
            .ok()
            .map(|m| m.header().rcode())
    }

    /// Whether the TC bit is set.
    pub fn is_truncated(&self) -> bool {
        Message::from_octets(self.0.as_ref()).is_ok_and(|m| m.header().tc())
    }
}

impl Query {
    /// A query for the `qtype` records of `name`, as a stub resolver sends it: one question of
    /// class IN, recursion desired, a random ID, no EDNS. `name` is in presentation format
    /// (`www.example.com`; a trailing dot is optional, `\.` and `\DDD` escapes are read).
    ///
    /// Ask a DNS service with it (as [`DnsRequest::query`](crate::DnsRequest)), or send
    /// [`as_bytes`](Self::as_bytes) to a DNS server.
    ///
    /// # Errors
    /// [`Error::InvalidName`] when `name` is not a DNS name (an empty label, a label over 63
    /// bytes, a name over 255 bytes, a bad escape, a non-ASCII character).
    ///
    /// ```
    /// use lnm_dns::{Class, Query, Rtype};
    ///
    /// let query = Query::build("Management.Azure.com.", Rtype::AAAA)?;
    /// assert_eq!(query.qname(), "Management.Azure.com");
    /// assert_eq!((query.qtype(), query.qclass()), (Rtype::AAAA, Class::IN));
    /// assert_eq!(query.edns_udp_size(), None);
    ///
    /// let err = Query::build("two..dots.example", Rtype::A).unwrap_err();
    /// assert!(err.to_string().contains("two..dots.example"), "{err}");
    /// # Ok::<(), lnm_dns::Error>(())
    /// ```
    pub fn build(name: &str, qtype: Rtype) -> Result<Query, Error> {
        let invalid =
            |source: Box<dyn std::error::Error + Send + Sync + 'static>| Error::InvalidName {
                name: name.to_owned(),
                source,
            };
        let qname =
            domain::base::Name::<Vec<u8>>::from_str(name).map_err(|e| invalid(Box::new(e)))?;
        let mut msg = MessageBuilder::new_vec();
        msg.header_mut().set_id(lnm_core::random_u64() as u16);
        msg.header_mut().set_rd(true);
        let mut question = msg.question();
        question
            .push((qname, qtype))
            .map_err(|e| invalid(Box::new(e)))?;
        Query::parse(question.finish()).map_err(|_| invalid("it does not make a query".into()))
    }

    /// Parses a query (from a `Vec<u8>`, a [`Bytes`], a `&'static [u8]`); anything that is not
    /// exactly one question of a standard QUERY is rejected with FORMERR/NOTIMP (or dropped
    /// when it has no header or is a response).
    pub fn parse(bytes: impl Into<Bytes>) -> Result<Query, Rejected> {
        let msg = Message::from_octets(bytes.into()).map_err(|_| Rejected::Drop)?;
        let header = msg.header();
        if header.qr() {
            return Err(Rejected::Drop);
        }
        if header.opcode() != Opcode::QUERY {
            return Err(Rejected::Reply(error(&msg, Rcode::NOTIMP)));
        }
        if msg.header_counts().qdcount() != 1 {
            return Err(Rejected::Reply(error(&msg, Rcode::FORMERR)));
        }
        let question = msg
            .sole_question()
            .map_err(|_| Rejected::Reply(error(&msg, Rcode::FORMERR)))?;
        let edns = match msg.opt() {
            Some(opt) if opt.version() > 0 => {
                // RFC 6891: answer an unknown EDNS version with BADVERS (extended rcode).
                return Err(Rejected::Reply(badvers(&msg)));
            }
            Some(opt) => Some(opt.udp_payload_size().max(PLAIN_UDP_SIZE as u16)),
            None => None,
        };
        let qname = qname_text(&question.qname());
        Ok(Query {
            qname,
            qtype: question.qtype(),
            qclass: question.qclass(),
            edns,
            msg,
        })
    }

    /// A datagram longer than the server keeps, of which only `head` was read: answered with
    /// FORMERR under its ID (no query needs that much), or dropped when it has no header or is
    /// a response.
    pub(crate) fn oversized(head: &[u8]) -> Result<Query, Rejected> {
        if head.len() < 12 || head[2] & 0x80 != 0 {
            return Err(Rejected::Drop);
        }
        let mut answer = MessageBuilder::new_vec();
        let header = answer.header_mut();
        header.set_id(u16::from_be_bytes([head[0], head[1]]));
        header.set_qr(true);
        header.set_rd(head[2] & 1 != 0);
        header.set_ra(true);
        header.set_rcode(Rcode::FORMERR);
        Err(Rejected::Reply(Response(Bytes::from(answer.finish()))))
    }

    /// The query ID.
    pub fn id(&self) -> u16 {
        self.msg.header().id()
    }

    /// The question name as text (presentation format, no trailing dot).
    pub fn qname(&self) -> &str {
        &self.qname
    }

    /// The question type.
    pub fn qtype(&self) -> Rtype {
        self.qtype
    }

    /// The question class.
    pub fn qclass(&self) -> Class {
        self.qclass
    }

    /// The EDNS UDP payload size the client advertised, if it sent EDNS.
    pub fn edns_udp_size(&self) -> Option<u16> {
        self.edns
    }

    /// The largest answer this client can take over UDP.
    pub fn udp_limit(&self) -> usize {
        self.edns
            .map_or(PLAIN_UDP_SIZE, |size| usize::from(size.min(4096)))
    }

    /// The query as it arrived.
    pub fn as_bytes(&self) -> &[u8] {
        self.msg.as_slice()
    }

    /// An answer with `rcode` and the given address records (A for IPv4, AAAA for IPv6).
    pub fn answer(&self, rcode: Rcode, ttl: u32, addrs: &[std::net::IpAddr]) -> Response {
        let build = || -> Result<Vec<u8>, domain::base::message_builder::PushError> {
            // Room for the question, the records and an OPT record: one allocation.
            let room = self.msg.as_slice().len() + 32 * addrs.len() + 16;
            let mut answer = MessageBuilder::from_target(Vec::with_capacity(room))
                .map_err(|_| domain::base::message_builder::PushError::ShortBuf)?
                .start_answer(&self.msg, rcode)?;
            answer.header_mut().set_aa(true);
            answer.header_mut().set_ra(true);
            let qname = self
                .msg
                .sole_question()
                .map_err(|_| domain::base::message_builder::PushError::ShortBuf)?
                .into_qname();
            for addr in addrs {
                match addr {
                    std::net::IpAddr::V4(v4) => {
                        answer.push((&qname, Class::IN, ttl, domain::rdata::A::new(*v4)))?
                    }
                    std::net::IpAddr::V6(v6) => {
                        answer.push((&qname, Class::IN, ttl, domain::rdata::Aaaa::new(*v6)))?
                    }
                }
            }
            let mut additional = answer.additional();
            if self.edns.is_some() {
                additional.opt(|opt| {
                    opt.set_udp_payload_size(EDNS_UDP_SIZE);
                    Ok(())
                })?;
            }
            Ok(additional.finish())
        };
        match build() {
            Ok(bytes) => Response(Bytes::from(bytes)),
            Err(_) => error(&self.msg, Rcode::SERVFAIL),
        }
    }

    /// An empty answer with `rcode` (REFUSED, SERVFAIL, or NOERROR without records).
    pub fn empty(&self, rcode: Rcode) -> Response {
        self.answer(rcode, 0, &[])
    }

    /// `response` made to fit this client's UDP limit: unchanged when it fits, else the
    /// header and question only, with TC set, so the client retries over TCP.
    pub fn fit_udp(&self, response: Response) -> Response {
        if response.0.len() <= self.udp_limit() {
            return response;
        }
        let rcode = response.rcode().unwrap_or(Rcode::SERVFAIL);
        let mut truncated = self.empty(rcode).0.to_vec();
        // Byte 2 bit 1 is TC.
        if let Some(flags) = truncated.get_mut(2) {
            *flags |= 0x02;
        }
        Response(Bytes::from(truncated))
    }

    /// `upstream_answer` with this query's ID (the forwarder asks upstream with its own IDs)
    /// and this query's spelling of the name in its question: an answer from the cache, or
    /// shared by a lookup under way, echoes the case of whoever asked first, and resolvers
    /// that randomise the case of their queries check it.
    pub fn with_own_id(&self, upstream_answer: &[u8]) -> Response {
        let mut bytes = upstream_answer.to_vec();
        if bytes.len() >= 2 {
            bytes[..2].copy_from_slice(&self.id().to_be_bytes());
        }
        let ours = self.as_bytes();
        if let Some(end) = qname_end(ours)
            && bytes.get(4..6) == Some(&[0, 1][..])
            && let Some(theirs) = bytes.get_mut(12..end)
            && theirs.eq_ignore_ascii_case(&ours[12..end])
        {
            theirs.copy_from_slice(&ours[12..end]);
        }
        Response(Bytes::from(bytes))
    }
}

/// Where the name of a message's first question ends (the offset after its root label), for
/// a message with a question; `None` when the name runs past the message or is compressed
/// (no first name can be, but bytes from the network may say anything).
pub(crate) fn qname_end(msg: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            return Some(at + 1);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
}

/// The question name in presentation format without the trailing dot (`.` for the root).
/// Names of plain host-name bytes — nearly all — are joined directly; anything else (dots or
/// unprintable bytes inside a label) goes through the crate's escaping `Display`.
fn qname_text<N>(name: &N) -> String
where
    N: domain::base::ToName + std::fmt::Display,
{
    let plain = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    let mut text = String::with_capacity(64);
    for label in name.iter_labels() {
        let bytes = label.as_slice();
        if bytes.is_empty() {
            break;
        }
        if !bytes.iter().all(plain) {
            let mut escaped = name.to_string();
            if escaped.ends_with('.') && escaped.len() > 1 {
                escaped.pop();
            }
            return escaped;
        }
        if !text.is_empty() {
            text.push('.');
        }
        text.extend(bytes.iter().map(|&b| char::from(b)));
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// An error answer built from whatever of the request could be parsed.
fn error(msg: &Message<Bytes>, rcode: Rcode) -> Response {
    let mut answer = MessageBuilder::new_vec().start_error(msg, rcode);
    answer.header_mut().set_ra(true);
    Response(Bytes::from(answer.finish()))
}

fn badvers(msg: &Message<Bytes>) -> Response {
    let answer = MessageBuilder::new_vec().start_error(msg, Rcode::NOERROR);
    let mut additional = answer.additional();
    let pushed = additional.opt(|opt| {
        opt.set_udp_payload_size(EDNS_UDP_SIZE);
        opt.set_rcode(domain::base::iana::OptRcode::BADVERS);
        Ok(())
    });
    match pushed {
        Ok(()) => Response(Bytes::from(additional.finish())),
        Err(_) => error(msg, Rcode::FORMERR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::base::Name;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn query_bytes(name: &str, qtype: Rtype, edns: Option<u16>) -> Vec<u8> {
        let mut msg = MessageBuilder::new_vec();
        msg.header_mut().set_id(0xbeef);
        let mut q = msg.question();
        q.push((Name::<Vec<u8>>::from_str(name).unwrap(), qtype))
            .unwrap();
        let mut add = q.additional();
        if let Some(size) = edns {
            add.opt(|o| {
                o.set_udp_payload_size(size);
                Ok(())
            })
            .unwrap();
        }
        add.finish()
    }

    #[test]
    fn parses_and_answers() {
        let q = Query::parse(Bytes::from(query_bytes(
            "Management.Azure.com.",
            Rtype::A,
            Some(4096),
        )))
        .unwrap();
        assert_eq!(q.qname(), "Management.Azure.com");
        assert_eq!(q.udp_limit(), 4096);
        let r = q.answer(Rcode::NOERROR, 60, &["10.3.0.1".parse().unwrap()]);
        let msg = Message::from_octets(r.as_bytes()).unwrap();
        assert_eq!(msg.header().id(), 0xbeef);
        assert!(msg.header().qr() && msg.header().aa());
        assert_eq!(msg.header_counts().ancount(), 1);
        assert!(msg.opt().is_some(), "EDNS echoed");
        let plain = Query::parse(Bytes::from(query_bytes("a.example", Rtype::A, None))).unwrap();
        assert!(
            Message::from_octets(plain.empty(Rcode::REFUSED).as_bytes())
                .unwrap()
                .opt()
                .is_none()
        );
        assert_eq!(plain.udp_limit(), 512);
    }

    #[test]
    fn malformed_queries_get_errors_or_are_dropped() {
        assert_eq!(
            Query::parse(Bytes::from_static(b"\x12\x34")).unwrap_err(),
            Rejected::Drop
        );
        // A response is never answered.
        let mut response = query_bytes("a.example", Rtype::A, None);
        response[2] |= 0x80;
        assert_eq!(
            Query::parse(Bytes::from(response)).unwrap_err(),
            Rejected::Drop
        );
        // Header claims a question that is not there: FORMERR with the ID.
        let truncated =
            Bytes::from_static(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc");
        let Rejected::Reply(r) = Query::parse(truncated).unwrap_err() else {
            panic!()
        };
        assert_eq!(r.rcode(), Some(Rcode::FORMERR));
        assert_eq!(&r.as_bytes()[..2], b"\xab\xcd");
        // Two questions: FORMERR. A NOTIFY: NOTIMP.
        let mut two = query_bytes("a.example", Rtype::A, None);
        two[5] = 2;
        assert!(
            matches!(Query::parse(Bytes::from(two)), Err(Rejected::Reply(r)) if r.rcode() == Some(Rcode::FORMERR))
        );
        let mut notify = query_bytes("a.example", Rtype::A, None);
        notify[2] = 4 << 3;
        assert!(
            matches!(Query::parse(Bytes::from(notify)), Err(Rejected::Reply(r)) if r.rcode() == Some(Rcode::NOTIMP))
        );
    }

    #[test]
    fn unknown_edns_version_is_badvers() {
        let mut bytes = query_bytes("a.example", Rtype::A, Some(1232));
        // OPT TTL field: extended rcode(1) version(1) flags(2); the version is 6 bytes from the end... find it.
        let len = bytes.len();
        bytes[len - 5] = 1;
        let Rejected::Reply(r) = Query::parse(Bytes::from(bytes)).unwrap_err() else {
            panic!()
        };
        let msg = Message::from_octets(r.as_bytes()).unwrap();
        assert_eq!(msg.opt_rcode(), domain::base::iana::OptRcode::BADVERS);
    }

    #[test]
    fn oversized_udp_answers_are_truncated_with_tc() {
        let q = Query::parse(Bytes::from(query_bytes("a.example", Rtype::A, None))).unwrap();
        let many: Vec<std::net::IpAddr> = (0..100u8)
            .map(|i| std::net::IpAddr::from([10, 0, 0, i]))
            .collect();
        let big = q.answer(Rcode::NOERROR, 60, &many);
        assert!(big.as_bytes().len() > 512);
        let fitted = q.fit_udp(big);
        assert!(fitted.as_bytes().len() <= 512);
        assert!(fitted.is_truncated());
        let small = q.answer(Rcode::NOERROR, 60, &many[..2]);
        assert!(!q.fit_udp(small).is_truncated());
    }

    #[test]
    fn qname_text_keeps_case_and_escapes_odd_labels() {
        let text = |name: &str| qname_text(&Name::<Vec<u8>>::from_str(name).unwrap());
        assert_eq!(text("Management.Azure.com."), "Management.Azure.com");
        assert_eq!(text("."), ".");
        assert_eq!(text("a\\.b.example."), "a\\.b.example");
        assert_eq!(text("x\\000y.example."), "x\\000y.example");
    }

    #[test]
    fn built_queries_ask_for_one_name_with_recursion() {
        let q = Query::build("Cloud.Example.", Rtype::A).unwrap();
        assert_eq!(
            (q.qname(), q.qtype(), q.qclass()),
            ("Cloud.Example", Rtype::A, Class::IN)
        );
        let msg = Message::from_octets(q.as_bytes()).unwrap();
        assert!(msg.header().rd() && !msg.header().qr());
        assert_eq!(msg.header().id(), q.id());
        assert!(msg.opt().is_none());
        // IDs are random: sixteen queries do not all share one.
        let ids: std::collections::HashSet<u16> = (0..16)
            .map(|_| Query::build("x.example", Rtype::A).unwrap().id())
            .collect();
        assert!(ids.len() > 1);
        assert_eq!(Query::build(".", Rtype::NS).unwrap().qname(), ".");
        assert_eq!(
            Query::build("_dmarc.example.com", Rtype::TXT)
                .unwrap()
                .qname(),
            "_dmarc.example.com"
        );
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in ["", "a..b", &long_label, &long_name, "bücher.example", "x\\"] {
            let err = Query::build(bad, Rtype::A).unwrap_err();
            let Error::InvalidName { name, .. } = &err;
            assert_eq!(name, bad);
            assert!(std::error::Error::source(&err).is_some(), "{err}");
        }
    }

    #[test]
    fn answers_are_the_addresses_of_the_answer_section() {
        let q = Query::build("www.example", Rtype::A).unwrap();
        let mut answer = MessageBuilder::new_vec()
            .start_answer(&Message::from_octets(q.as_bytes()).unwrap(), Rcode::NOERROR)
            .unwrap();
        let www = Name::<Vec<u8>>::from_str("www.example").unwrap();
        let cdn = Name::<Vec<u8>>::from_str("cdn.example").unwrap();
        answer
            .push((&www, Class::IN, 60, domain::rdata::Cname::new(cdn.clone())))
            .unwrap();
        answer
            .push((
                &cdn,
                Class::IN,
                60,
                domain::rdata::A::new([192, 0, 2, 1].into()),
            ))
            .unwrap();
        answer
            .push((
                &cdn,
                Class::CH,
                60,
                domain::rdata::A::new([192, 0, 2, 9].into()),
            ))
            .unwrap();
        let v6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        answer
            .push((&cdn, Class::IN, 60, domain::rdata::Aaaa::new(v6)))
            .unwrap();
        // An address in the additional section is not an answer.
        let mut additional = answer.additional();
        additional
            .push((
                &cdn,
                Class::IN,
                60,
                domain::rdata::A::new([192, 0, 2, 2].into()),
            ))
            .unwrap();
        let response = Response::new(additional.finish());
        assert_eq!(response.id(), Some(q.id()));
        assert_eq!(
            response.answers(),
            [IpAddr::from([192, 0, 2, 1]), IpAddr::V6(v6)]
        );
        // Cut anywhere: never a panic, never an address that is not there.
        let bytes = response.as_bytes();
        for cut in 0..bytes.len() {
            let cut = Response::from(bytes[..cut].to_vec());
            assert!(cut.answers().len() <= 2);
        }
        assert_eq!(Response::new(&b"\x00\x01"[..]).id(), None);
        assert!(Response::new(&b"junk"[..]).answers().is_empty());
    }

    #[test]
    fn forwarded_answers_get_the_asker_id_and_spelling() {
        let first = Query::parse(query_bytes("BLOB.core.windows.net", Rtype::A, None)).unwrap();
        let upstream = first.answer(Rcode::NOERROR, 60, &["192.0.2.1".parse().unwrap()]);
        let mut later = query_bytes("blob.CORE.windows.net", Rtype::A, None);
        later[..2].copy_from_slice(&[0x12, 0x34]);
        let later = Query::parse(later).unwrap();
        let answer = later.with_own_id(upstream.as_bytes());
        assert_eq!(answer.id(), Some(0x1234));
        let msg = Message::from_octets(answer.as_bytes()).unwrap();
        let question = msg.sole_question().unwrap();
        assert_eq!(question.qname().to_string(), "blob.CORE.windows.net");
        assert_eq!(answer.answers(), upstream.answers());
        // Another name (no real upstream answers so): left as it is.
        let other = Query::parse(query_bytes("other.example", Rtype::A, None)).unwrap();
        let kept = other.with_own_id(upstream.as_bytes());
        assert_eq!(&kept.as_bytes()[2..], &upstream.as_bytes()[2..]);
    }

    proptest! {
        #[test]
        fn qname_text_is_the_presentation_format(
            labels in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..12), 0..5),
            plain in any::<bool>(),
        ) {
            let labels: Vec<Vec<u8>> = if plain {
                labels.into_iter().map(|l| l.into_iter().map(|b| b"abcXYZ019-_"[usize::from(b) % 11]).collect()).collect()
            } else {
                labels
            };
            let mut builder = domain::base::name::NameBuilder::new_vec();
            for label in &labels {
                builder.append_label(label).unwrap();
            }
            let name = builder.into_name().unwrap();
            let mut expected = name.to_string();
            if expected.ends_with('.') && expected.len() > 1 {
                expected.pop();
            }
            prop_assert_eq!(qname_text(&name), expected);
        }

        #[test]
        fn reading_garbage_answers_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let response = Response::new(bytes.clone());
            let _ = (response.id(), response.rcode(), response.is_truncated());
            prop_assert!(response.answers().len() <= bytes.len() / 11);
            let query = Query::build("x.example", Rtype::A).unwrap();
            let _ = query.with_own_id(&bytes);
            if let Some(end) = qname_end(&bytes) {
                prop_assert!(end <= bytes.len());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(q) = Query::parse(Bytes::from(bytes)) {
                let _ = q.answer(Rcode::NOERROR, 60, &["10.0.0.1".parse().unwrap()]);
                let _ = q.fit_udp(q.empty(Rcode::REFUSED));
            }
        }
    }
}
