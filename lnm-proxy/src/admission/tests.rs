//! The admission decisions, without sockets or a runtime: every outcome's answer, the hop
//! limit and source check at their boundaries, every kind of decision.

use super::*;
use crate::sniff::SniffError;
use lnm_core::{Denied, NameError};
use lnm_policy::{Allowlist, Request, RuleOrigin};

fn settings() -> ProxySettings {
    ProxySettings::new(ListenerProtocol::Tls, 443)
        .level(3)
        .max_hops(4)
}

fn allowlist() -> Allowlist {
    Allowlist::builder()
        .external("*.example.com")
        .unwrap()
        .internal("broker.l3.local", 8883)
        .unwrap()
        .source_range("10.2.0.0/16".parse().unwrap())
        .build()
}

fn arrival(client: &str, hops: u8) -> Arrival {
    Arrival::new(
        format!("{client}:40000").parse().unwrap(),
        "10.3.0.1:443".parse().unwrap(),
        hops,
    )
}

fn tls(name: &str) -> Sniffed {
    Sniffed::new(Protocol::Tls, Some(name.as_bytes().to_vec()))
}

fn decide(list: &Allowlist, arrival: &Arrival, sniffed: &Sniffed, port: u16) -> Decision {
    list.check(&Request::new(
        sniffed.server_name.as_deref(),
        arrival.client.ip(),
        port,
    ))
}

#[test]
fn the_hop_limit_refuses_at_max_hops_and_not_before() {
    let list = allowlist();
    assert!(admit_arrival(&arrival("10.2.0.5", 3), &list, &settings()).is_ok());
    let refusal = admit_arrival(&arrival("10.2.0.5", 4), &list, &settings()).unwrap_err();
    assert_eq!(refusal.outcome, Outcome::TooManyHops { hops: 4 });
    let answer = refusal.answer.unwrap();
    assert_eq!((answer.alert, answer.status), (Alert::AccessDenied, 508));
    // The hop limit comes first: a looping connection from a foreign source is a loop.
    let refusal = admit_arrival(&arrival("192.0.2.1", 200), &list, &settings()).unwrap_err();
    assert_eq!(refusal.outcome, Outcome::TooManyHops { hops: 200 });
}

#[test]
fn a_foreign_source_is_refused_before_the_hello() {
    let list = allowlist();
    let refusal = admit_arrival(&arrival("10.9.0.1", 0), &list, &settings()).unwrap_err();
    assert_eq!(refusal.outcome, Outcome::Denied(Reason::SourceNotAllowed));
    let answer = refusal.answer.unwrap();
    assert_eq!(answer.protocol, Protocol::Tls);
    assert_eq!(answer.bytes(), Alert::AccessDenied.record().to_vec());
    // On an HTTP listener the same refusal is a 403.
    let http = ProxySettings::new(ListenerProtocol::Http, 80);
    let refusal = admit_arrival(&arrival("10.9.0.1", 0), &list, &http).unwrap_err();
    let text = String::from_utf8(refusal.answer.unwrap().bytes()).unwrap();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(
        text.ends_with("lnm: source address not allowed\n"),
        "{text}"
    );
    // IPv4-mapped IPv6 clients are matched as IPv4.
    assert!(admit_arrival(&arrival("[::ffff:10.2.0.5]", 0), &list, &settings()).is_ok());
}

#[test]
fn an_allowed_hello_connects_with_its_rule_route_and_metadata() {
    let list = allowlist();
    let arrival = arrival("10.2.0.5", 2);
    let sniffed = tls("A.Example.COM.");
    let decision = decide(&list, &arrival, &sniffed, 443);
    let connect = admit(&arrival, &sniffed, Ok(decision), &settings()).unwrap();
    assert_eq!(connect.target.to_string(), "a.example.com:443");
    assert_eq!(connect.route, Route::External);
    assert_eq!(connect.rule.to_string(), "*.example.com (external)");
    assert_eq!(connect.rule.origin, RuleOrigin::Builder);
    assert_eq!(
        (connect.info.level, connect.info.hops, connect.info.protocol),
        (3, 2, Protocol::Tls)
    );
    assert_eq!(connect.info.client, arrival.client);
    // An internal entry on its own port takes the internal route.
    let settings = ProxySettings::new(ListenerProtocol::Auto, 8883);
    let sniffed = tls("broker.l3.local");
    let decision = decide(&list, &arrival, &sniffed, 8883);
    let connect = admit(&arrival, &sniffed, Ok(decision), &settings).unwrap();
    assert_eq!(connect.route, Route::Internal);
    assert_eq!(connect.target.port, 8883);
}

#[test]
fn every_denial_reason_has_its_alert_and_line() {
    let arrival = arrival("10.2.0.5", 0);
    let cases = [
        (
            Reason::NotAllowlisted,
            Alert::UnrecognizedName,
            "lnm: x.test:443 denied: not allowlisted",
        ),
        (
            Reason::NoServerName,
            Alert::UnrecognizedName,
            "lnm: denied: no server name",
        ),
        (
            Reason::InvalidName(NameError::IpLiteral),
            Alert::UnrecognizedName,
            "lnm: denied: invalid server name",
        ),
        (
            Reason::SourceNotAllowed,
            Alert::AccessDenied,
            "lnm: source address not allowed",
        ),
        (
            Reason::PortNotAllowed { port: 443 },
            Alert::AccessDenied,
            "lnm: x.test:443 denied: port 443 not allowed for this name",
        ),
        (
            Reason::Policy("maintenance"),
            Alert::AccessDenied,
            "lnm: denied: denied by policy maintenance",
        ),
    ];
    for (reason, alert, line) in cases {
        for protocol in [Protocol::Tls, Protocol::Http] {
            let sniffed = Sniffed::new(protocol, Some(b"x.test".to_vec()));
            let refusal =
                admit(&arrival, &sniffed, Ok(Decision::Deny(reason)), &settings()).unwrap_err();
            assert_eq!(refusal.outcome, Outcome::Denied(reason));
            let answer = refusal.answer.unwrap();
            assert_eq!((answer.alert, answer.status), (alert, 403), "{reason:?}");
            assert!(answer.line.starts_with(line), "{reason:?}: {}", answer.line);
            let bytes = answer.bytes();
            match protocol {
                Protocol::Tls => assert_eq!(bytes, alert.record().to_vec()),
                _ => assert!(bytes.starts_with(b"HTTP/1.1 403 Forbidden\r\n")),
            }
        }
    }
}

#[test]
fn a_policy_that_allows_an_unusable_name_is_answered_as_the_allowlist_would() {
    let list = allowlist();
    let arrival = arrival("10.2.0.5", 0);
    let allowed = decide(&list, &arrival, &tls("a.example.com"), 443);
    let no_name = Sniffed::new(Protocol::Tls, None);
    let refusal = admit(&arrival, &no_name, Ok(allowed.clone()), &settings()).unwrap_err();
    assert_eq!(refusal.outcome, Outcome::Denied(Reason::NoServerName));
    let literal = tls("10.0.0.1");
    let refusal = admit(&arrival, &literal, Ok(allowed), &settings()).unwrap_err();
    assert!(matches!(
        refusal.outcome,
        Outcome::Denied(Reason::InvalidName(_))
    ));
}

#[test]
fn a_failing_policy_refuses_with_internal_error_and_500() {
    let arrival = arrival("10.2.0.5", 0);
    let err: BoxError = "rate limiter unavailable".into();
    let sniffed = Sniffed::new(Protocol::Http, Some(b"a.example.com".to_vec()));
    let refusal = admit(&arrival, &sniffed, Err(err), &settings()).unwrap_err();
    assert_eq!(
        refusal.outcome,
        Outcome::PolicyFailed(Arc::from(BoxError::from("rate limiter unavailable")))
    );
    let answer = refusal.answer.unwrap();
    assert_eq!((answer.alert, answer.status), (Alert::InternalError, 500));
    // A filter layer that fails with `Denied` denied.
    let err: BoxError = Box::new(Denied::new(Reason::Policy("maintenance")));
    let refusal = admit(&arrival, &sniffed, Err(err), &settings()).unwrap_err();
    assert_eq!(
        refusal.outcome,
        Outcome::Denied(Reason::Policy("maintenance"))
    );
    assert_eq!(refusal.answer.unwrap().status, 403);
}

#[test]
fn a_denial_inside_the_hop_is_a_denial_and_a_failure_is_a_502() {
    let list = allowlist();
    let arrival = arrival("10.2.0.5", 0);
    let sniffed = tls("a.example.com");
    let decision = decide(&list, &arrival, &sniffed, 443);
    let connect = admit(&arrival, &sniffed, Ok(decision), &settings()).unwrap();

    let denied = lnm_core::Error::Denied(Denied::new(Reason::Policy("audit_hop")));
    let refusal = refuse_connect(&connect, denied);
    assert_eq!(
        refusal.outcome,
        Outcome::Denied(Reason::Policy("audit_hop"))
    );
    assert_eq!(refusal.answer.unwrap().alert, Alert::AccessDenied);

    let unreachable = lnm_core::Error::NoDestination { hop: "parent" };
    let refusal = refuse_connect(&connect, unreachable);
    assert!(matches!(refusal.outcome, Outcome::ConnectFailed(_)));
    let answer = refusal.answer.unwrap();
    assert_eq!((answer.alert, answer.status), (Alert::InternalError, 502));
    assert_eq!(answer.line, "lnm: a.example.com:443 unreachable");

    let refusal = refuse_connect_timeout(&connect, Duration::from_secs(5));
    assert_eq!(
        refusal.outcome,
        Outcome::ConnectTimeout {
            after: Duration::from_secs(5)
        }
    );
    assert_eq!(refusal.answer.unwrap().status, 504);
}

#[test]
fn unsniffable_first_flights_are_answered_in_the_protocol_they_look_like() {
    let bad = Outcome::BadHello(SniffError::NotHttp("no request line"));
    // An auto listener answers what looks like HTTP with a 400...
    let refusal = refuse_unsniffed(bad.clone(), ListenerProtocol::Auto, b"GET", 8883);
    let answer = refusal.answer.unwrap();
    assert_eq!((answer.protocol, answer.status), (Protocol::Http, 400));
    // ...and a TLS record with an alert.
    let bad_tls = Outcome::BadHello(SniffError::EmptyRecord);
    let refusal = refuse_unsniffed(bad_tls, ListenerProtocol::Auto, &[22, 3, 1], 8883);
    let answer = refusal.answer.unwrap();
    assert_eq!(answer.protocol, Protocol::Tls);
    assert_eq!(answer.bytes(), answer.alert.record().to_vec());
    // Silent ends: nothing to say to a client that is gone or said nothing.
    for silent in [
        Outcome::SniffTimeout,
        Outcome::ReadError(Arc::new(std::io::ErrorKind::ConnectionReset.into())),
        Outcome::BadProxyHeader("bad signature"),
    ] {
        let refusal = refuse_unsniffed(silent.clone(), ListenerProtocol::Tls, b"", 443);
        assert_eq!(refusal.answer, None, "{silent:?}");
        assert_eq!(refusal.outcome, silent);
    }
}

#[test]
fn every_outcome_is_in_the_table() {
    // The table is total: each outcome maps to an answer or to silence, never panics.
    let outcomes = [
        Outcome::Closed,
        Outcome::IdleTimeout,
        Outcome::RelayError(Arc::new(std::io::Error::other("x"))),
        Outcome::Denied(Reason::NotAllowlisted),
        Outcome::BadHello(SniffError::SslV2),
        Outcome::SniffTimeout,
        Outcome::ReadError(Arc::new(std::io::Error::other("x"))),
        Outcome::ConnectFailed(Arc::new(lnm_core::Error::NoDestination { hop: "x" })),
        Outcome::ConnectTimeout {
            after: Duration::from_secs(1),
        },
        Outcome::PolicyFailed(Arc::from(BoxError::from("x"))),
        Outcome::BadProxyHeader("x"),
        Outcome::TooManyHops { hops: 9 },
    ];
    let answered: Vec<bool> = outcomes
        .iter()
        .map(|o| {
            Refusal::new(o.clone(), Protocol::Tls, Some("a.test"), 443)
                .answer
                .is_some()
        })
        .collect();
    assert_eq!(
        answered,
        [
            false, false, false, true, true, false, false, true, true, true, false, true
        ]
    );
}
