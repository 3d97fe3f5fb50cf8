//! The rewrite decision (DESIGN §3 "DNS rewrite"): a pure function of the allowlist, the query
//! and the client's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use domain::base::Rtype;
use domain::base::iana::Class;
use lnm_policy::{Allowlist, Decision, Reason};

use crate::message::Query;

/// What this level's DNS answers for allowlisted names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RewriteConfig {
    /// A records: this level's gateway.
    pub answer_ipv4: Vec<Ipv4Addr>,
    /// AAAA records; empty: an empty NOERROR answer (never NXDOMAIN, which would hide the A).
    pub answer_ipv6: Vec<Ipv6Addr>,
    /// TTL of rewritten answers, in seconds.
    pub ttl: u32,
}

impl RewriteConfig {
    /// Answers `answer_ipv4` for A, `answer_ipv6` for AAAA, with a 60 s TTL.
    pub fn new(answer_ipv4: Vec<Ipv4Addr>, answer_ipv6: Vec<Ipv6Addr>) -> Self {
        RewriteConfig {
            answer_ipv4,
            answer_ipv6,
            ttl: lnm_policy::config::defaults::DNS_TTL,
        }
    }

    /// Sets the TTL.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer NOERROR with these addresses (possibly none: an empty answer).
    Answer(Vec<IpAddr>),
    /// Not ours: ask the fallback (forwarder or refuser).
    Forward,
    /// Refuse (the client is outside `sourceIpRange`, or the class is not IN).
    Refuse(Reason),
}

/// Decides on `query` from `source`:
///
/// | query | action |
/// |---|---|
/// | source outside `sourceIpRange` | REFUSED |
/// | allowlisted name, A | `answerIpv4` |
/// | allowlisted name, AAAA | `answerIpv6`, or empty NOERROR |
/// | allowlisted name, HTTPS/SVCB or any other type | empty NOERROR (no ECH or alternative endpoints around the proxy) |
/// | not allowlisted (or an invalid name) | forward to the fallback |
///
/// The name is matched by the same [`Allowlist`] as the proxy, port ignored (an internal
/// entry's name resolves to the gateway like any other).
pub fn decide(
    allowlist: &Allowlist,
    config: &RewriteConfig,
    query: &Query,
    source: IpAddr,
) -> Action {
    if !allowlist.source_allowed(source) {
        return Action::Refuse(Reason::SourceNotAllowed);
    }
    match allowlist.check_query(query.qname().as_bytes(), source) {
        Decision::Allow(_) if query.qclass() != Class::IN => Action::Refuse(Reason::NotAllowlisted),
        Decision::Allow(_) => Action::Answer(match query.qtype() {
            Rtype::A => config.answer_ipv4.iter().copied().map(IpAddr::V4).collect(),
            Rtype::AAAA => config.answer_ipv6.iter().copied().map(IpAddr::V6).collect(),
            _ => Vec::new(),
        }),
        Decision::Deny(Reason::SourceNotAllowed) => Action::Refuse(Reason::SourceNotAllowed),
        Decision::Deny(_) => Action::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use domain::base::MessageBuilder;
    use domain::base::Name as DName;
    use std::str::FromStr;

    pub(crate) fn query(name: &str, qtype: Rtype) -> Query {
        let mut msg = MessageBuilder::new_vec();
        msg.header_mut().set_id(0x1234);
        msg.header_mut().set_rd(true);
        let mut q = msg.question();
        q.push((DName::<Vec<u8>>::from_str(name).unwrap(), qtype))
            .unwrap();
        Query::parse(Bytes::from(q.finish())).unwrap()
    }

    fn allowlist() -> Allowlist {
        Allowlist::builder()
            .external("management.azure.com")
            .unwrap()
            .external("*.blob.core.windows.net")
            .unwrap()
            .internal("broker.l3.local", 8883)
            .unwrap()
            .source_range("10.2.0.0/16".parse().unwrap())
            .build()
    }

    fn config(v6: bool) -> RewriteConfig {
        let v6 = if v6 {
            vec!["fd00::3:1".parse().unwrap()]
        } else {
            vec![]
        };
        RewriteConfig::new(vec!["10.3.0.1".parse().unwrap()], v6)
    }

    fn act(name: &str, qtype: Rtype, v6: bool, source: &str) -> Action {
        decide(
            &allowlist(),
            &config(v6),
            &query(name, qtype),
            source.parse().unwrap(),
        )
    }

    const L2: &str = "10.2.0.9";

    #[test]
    fn decision_table() {
        let gw4: IpAddr = "10.3.0.1".parse().unwrap();
        let gw6: IpAddr = "fd00::3:1".parse().unwrap();
        assert_eq!(
            act("management.azure.com", Rtype::A, false, L2),
            Action::Answer(vec![gw4])
        );
        assert_eq!(
            act("MANAGEMENT.Azure.com.", Rtype::A, false, L2),
            Action::Answer(vec![gw4])
        );
        assert_eq!(
            act("acct.blob.core.windows.net", Rtype::A, false, L2),
            Action::Answer(vec![gw4])
        );
        assert_eq!(
            act("management.azure.com", Rtype::AAAA, false, L2),
            Action::Answer(vec![])
        );
        assert_eq!(
            act("management.azure.com", Rtype::AAAA, true, L2),
            Action::Answer(vec![gw6])
        );
        for t in [
            Rtype::HTTPS,
            Rtype::SVCB,
            Rtype::MX,
            Rtype::TXT,
            Rtype::CNAME,
            Rtype::ANY,
        ] {
            assert_eq!(
                act("management.azure.com", t, true, L2),
                Action::Answer(vec![]),
                "{t}"
            );
        }
        // Internal names resolve to the gateway, whatever port they are used on.
        assert_eq!(
            act("broker.l3.local", Rtype::A, false, L2),
            Action::Answer(vec![gw4])
        );
        // The apex of a wildcard, unlisted names and suffix tricks are forwarded.
        for name in [
            "blob.core.windows.net",
            "evil.example.com",
            "management.azure.com.evil.com",
            "xmanagement.azure.com",
        ] {
            assert_eq!(act(name, Rtype::A, false, L2), Action::Forward, "{name}");
        }
        // Outside sourceIpRange: refused, allowlisted or not.
        assert_eq!(
            act("management.azure.com", Rtype::A, false, "10.9.0.1"),
            Action::Refuse(Reason::SourceNotAllowed)
        );
        assert_eq!(
            act("evil.example.com", Rtype::A, false, "10.9.0.1"),
            Action::Refuse(Reason::SourceNotAllowed)
        );
        assert_eq!(
            act("management.azure.com", Rtype::A, false, "::ffff:10.2.0.1"),
            Action::Answer(vec![gw4])
        );
    }

    #[test]
    fn odd_names_are_forwarded_not_answered() {
        // A label with an escaped dot or a binary byte is not a valid name: never rewritten.
        let q = query("management\\.azure.com", Rtype::A);
        assert_eq!(
            decide(&allowlist(), &config(false), &q, L2.parse().unwrap()),
            Action::Forward
        );
        let q = query("10.0.0.1", Rtype::A);
        assert_eq!(
            decide(&allowlist(), &config(false), &q, L2.parse().unwrap()),
            Action::Forward
        );
    }
}
