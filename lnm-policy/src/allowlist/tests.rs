//! Every rule of DESIGN §3, and the invariants of the matcher.

use std::net::IpAddr;

use lnm_core::NameError;
use proptest::prelude::*;

use super::*;

const L2: &str = "10.2.0.7";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sample() -> Allowlist {
    Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .external("*.blob.core.windows.net")
        .unwrap()
        .external("example.com")
        .unwrap()
        .external("*.example.com")
        .unwrap()
        .external("bücher.example")
        .unwrap()
        .internal("broker.l3.contoso.local", 8883)
        .unwrap()
        .build()
}

fn check(list: &Allowlist, name: &str, port: u16) -> Decision {
    list.check(&Request::for_name(name, ip(L2), port))
}

fn allowed_by(list: &Allowlist, name: &str, port: u16) -> Option<String> {
    match check(list, name, port) {
        Decision::Allow(a) => Some(a.rule.pattern.to_string()),
        Decision::Deny(_) => None,
    }
}

#[test]
fn exact_matches_only_itself() {
    let list = sample();
    assert_eq!(
        allowed_by(&list, "management.azure.com", 443).as_deref(),
        Some("management.azure.com")
    );
    assert_eq!(
        check(&list, "x.management.azure.com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
    assert_eq!(
        check(&list, "xmanagement.azure.com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
    assert_eq!(
        check(&list, "management.azure.com.evil.com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
    assert_eq!(
        check(&list, "azure.com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
}

#[test]
fn wildcard_never_matches_its_apex_or_a_mere_suffix() {
    let list = sample();
    assert!(check(&list, "acct.blob.core.windows.net", 443).is_allowed());
    assert_eq!(
        check(&list, "blob.core.windows.net", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
    assert_eq!(
        check(&list, "evilblob.core.windows.net", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
    assert_eq!(
        check(&list, "badexample.com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
}

#[test]
fn deep_wildcards_match_any_number_of_labels() {
    let list = sample();
    assert!(check(&list, "a.b.c.d.blob.core.windows.net", 443).is_allowed());
    assert_eq!(
        allowed_by(&list, "x.y.example.com", 443).as_deref(),
        Some("*.example.com")
    );
}

#[test]
fn exact_wins_over_wildcard_and_apex_can_be_listed_separately() {
    let list = sample();
    assert_eq!(
        allowed_by(&list, "example.com", 443).as_deref(),
        Some("example.com")
    );
    assert_eq!(
        allowed_by(&list, "www.example.com", 443).as_deref(),
        Some("*.example.com")
    );
}

#[test]
fn longest_wildcard_wins() {
    let list = Allowlist::builder()
        .external("*.com")
        .unwrap()
        .external("*.example.com")
        .unwrap()
        .build();
    assert_eq!(
        allowed_by(&list, "a.example.com", 443).as_deref(),
        Some("*.example.com")
    );
    assert_eq!(
        allowed_by(&list, "example.com", 443).as_deref(),
        Some("*.com")
    );
    assert_eq!(
        check(&list, "com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
}

#[test]
fn case_and_trailing_dot_are_ignored() {
    let list = sample();
    assert!(check(&list, "MANAGEMENT.Azure.Com", 443).is_allowed());
    assert!(check(&list, "management.azure.com.", 443).is_allowed());
    assert!(check(&list, "Acct.BLOB.core.windows.net.", 443).is_allowed());
    assert_eq!(
        check(&list, "management.azure.com..", 443),
        Decision::Deny(Reason::InvalidName(NameError::EmptyLabel { position: 21 }))
    );
}

#[test]
fn idna_config_names_match_their_a_labels() {
    let list = sample();
    assert!(check(&list, "xn--bcher-kva.example", 443).is_allowed());
    // Raw UTF-8 on the wire is not a valid server name.
    assert!(matches!(
        check(&list, "bücher.example", 443),
        Decision::Deny(Reason::InvalidName(NameError::InvalidByte { .. }))
    ));
}

#[test]
fn invalid_and_missing_names_are_denied_with_their_reason() {
    let list = sample();
    let src = ip(L2);
    assert_eq!(
        list.check(&Request::new(None, src, 443)),
        Decision::Deny(Reason::NoServerName)
    );
    for (name, err) in [
        (&b"10.0.0.1"[..], NameError::IpLiteral),
        (b"::1", NameError::IpLiteral),
        (b"", NameError::Empty),
        (
            b"management.azure.com\0.evil",
            NameError::NulByte { position: 20 },
        ),
        (
            b"manage ment.azure.com",
            NameError::InvalidByte {
                byte: b' ',
                position: 6,
            },
        ),
    ] {
        assert_eq!(
            list.check(&Request::new(Some(name), src, 443)),
            Decision::Deny(Reason::InvalidName(err)),
            "{name:?}"
        );
    }
}

#[test]
fn source_ranges_v4_v6_and_mapped() {
    let list = Allowlist::builder()
        .external("management.azure.com")
        .unwrap()
        .source_range("10.2.0.0/16".parse().unwrap())
        .source_range("fd00:2::/32".parse().unwrap())
        .build();
    let at = |src: &str| list.check(&Request::for_name("management.azure.com", ip(src), 443));
    assert!(at("10.2.255.1").is_allowed());
    assert!(
        at("::ffff:10.2.0.9").is_allowed(),
        "IPv4-mapped matched as IPv4"
    );
    assert!(at("fd00:2::5").is_allowed());
    assert_eq!(at("10.3.0.1"), Decision::Deny(Reason::SourceNotAllowed));
    assert_eq!(
        at("::ffff:10.3.0.1"),
        Decision::Deny(Reason::SourceNotAllowed)
    );
    assert_eq!(at("fd00:3::5"), Decision::Deny(Reason::SourceNotAllowed));
    // The source is checked first: a bad name from a bad source is a source denial.
    assert_eq!(
        list.check(&Request::new(Some(b"10.0.0.1"), ip("10.9.0.1"), 443)),
        Decision::Deny(Reason::SourceNotAllowed)
    );
    let nobody = Allowlist::builder()
        .external("a.example")
        .unwrap()
        .source_ranges([])
        .build();
    assert!(!nobody.source_allowed(ip("10.2.0.1")));
    assert!(
        sample().source_allowed(ip("203.0.113.1")),
        "absent: every source"
    );
}

#[test]
fn internal_entries_only_on_their_port() {
    let list = sample();
    let d = check(&list, "broker.l3.contoso.local", 8883);
    assert!(
        matches!(
            d,
            Decision::Allow(Allowed {
                route: Route::Internal,
                ..
            })
        ),
        "{d:?}"
    );
    assert_eq!(
        check(&list, "broker.l3.contoso.local", 443),
        Decision::Deny(Reason::PortNotAllowed { port: 443 })
    );
    // External entries are allowed on every listener's port.
    assert!(matches!(
        check(&list, "management.azure.com", 8883),
        Decision::Allow(Allowed {
            route: Route::External,
            ..
        })
    ));
    // DNS: an internal name resolves to the gateway whatever the port.
    assert!(
        list.check_query(b"broker.l3.contoso.local", ip(L2))
            .is_allowed()
    );
}

#[test]
fn internal_on_its_port_beats_external_and_falls_back_elsewhere() {
    let list = Allowlist::builder()
        .external("*.contoso.local")
        .unwrap()
        .internal("broker.contoso.local", 8883)
        .unwrap()
        .external("broker.contoso.local")
        .unwrap()
        .build();
    assert!(matches!(
        check(&list, "broker.contoso.local", 8883),
        Decision::Allow(Allowed {
            route: Route::Internal,
            ..
        })
    ));
    assert!(matches!(
        check(&list, "broker.contoso.local", 443),
        Decision::Allow(Allowed {
            route: Route::External,
            ..
        })
    ));
    // A more specific internal-only rule on another port lets the broader external rule apply.
    let list = Allowlist::builder()
        .external("*.contoso.local")
        .unwrap()
        .internal("mqtt.contoso.local", 8883)
        .unwrap()
        .build();
    assert_eq!(
        allowed_by(&list, "mqtt.contoso.local", 443).as_deref(),
        Some("*.contoso.local")
    );
}

#[test]
fn arc_domains_cover_the_documented_set() {
    let list = Allowlist::builder().arc_domains().build();
    for name in [
        "management.azure.com",
        "login.microsoftonline.com",
        "eastus.login.microsoft.com",
        "westeurope.data.mcr.microsoft.com",
        "gbl.his.arc.azure.com",
        "eastus.his.arc.azure.com",
        "x.servicebus.windows.net",
        "linuxgeneva-microsoft.azurecr.io",
    ] {
        let d = check(&list, name, 443);
        assert!(d.is_allowed(), "{name}: {d:?}");
        if let Decision::Allow(a) = d {
            assert_eq!(a.rule.origin, RuleOrigin::ArcDomains);
        }
    }
    assert_eq!(
        check(&list, "his.arc.azure.com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
}

#[test]
fn empty_allowlist_denies_everything() {
    let list = Allowlist::default();
    assert_eq!(
        check(&list, "example.com", 443),
        Decision::Deny(Reason::NotAllowlisted)
    );
}

#[test]
fn rule_display_says_where_it_came_from() {
    let list = sample();
    let Decision::Allow(a) = check(&list, "broker.l3.contoso.local", 8883) else {
        panic!()
    };
    assert_eq!(
        a.rule.to_string(),
        "broker.l3.contoso.local:8883 (internal)"
    );
}

// ---- property tests ----------------------------------------------------------------------

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}"
}

fn name() -> impl Strategy<Value = String> {
    // At least two labels with a non-numeric last label, so every generated name is valid.
    (prop::collection::vec(label(), 1..4), "[a-z]{1,4}").prop_map(|(mut v, tld)| {
        v.push(tld);
        v.join(".")
    })
}

fn patterns() -> impl Strategy<Value = Vec<(bool, String)>> {
    prop::collection::vec((any::<bool>(), name()), 0..12)
}

fn build(rules: &[(bool, String)]) -> Allowlist {
    let mut b = Allowlist::builder();
    for (wild, n) in rules {
        let text = if *wild { format!("*.{n}") } else { n.clone() };
        b = b.external(&text).unwrap();
    }
    b.build()
}

proptest! {
    /// The trie agrees with the reference semantics of `Pattern::matches` on every rule set.
    #[test]
    fn trie_agrees_with_reference_matcher(rules in patterns(), probe in name(), prefix in label()) {
        let list = build(&rules);
        for candidate in [probe.clone(), format!("{prefix}.{probe}")] {
            let parsed = candidate.parse().unwrap();
            let expected = list.rules().any(|r| r.pattern.matches(&parsed));
            prop_assert_eq!(check(&list, &candidate, 443).is_allowed(), expected, "{}", candidate);
        }
    }

    /// A wildcard never matches its apex, nor a name that merely ends with the same characters.
    #[test]
    fn wildcard_never_matches_apex_or_glued_prefix(suffix in name(), glue in "[a-z0-9]{1,5}") {
        let list = build(&[(true, suffix.clone())]);
        prop_assert!(!check(&list, &suffix, 443).is_allowed());
        let glued = format!("{glue}{suffix}");
        prop_assert!(!check(&list, &glued, 443).is_allowed());
        let below = format!("{glue}.{suffix}");
        prop_assert!(check(&list, &below, 443).is_allowed());
    }

    /// Rule order never changes a decision (route and matched pattern).
    #[test]
    fn rule_order_never_changes_a_decision(
        rules in patterns(),
        internal in prop::collection::vec((name(), 1u16..3), 0..4),
        probes in prop::collection::vec(name(), 1..8),
        seed in any::<u64>(),
    ) {
        let mut all: Vec<(Pattern, Route, Option<u16>)> = rules
            .iter()
            .map(|(w, n)| (Pattern::parse(&if *w { format!("*.{n}") } else { n.clone() }).unwrap(), Route::External, None))
            .chain(internal.iter().map(|(n, p)| (Pattern::parse(n).unwrap(), Route::Internal, Some(*p))))
            .collect();
        let compile = |rules: &[(Pattern, Route, Option<u16>)]| {
            rules.iter().fold(Allowlist::builder(), |b, (p, r, port)| b.rule(p.clone(), *r, *port, RuleOrigin::Builder)).build()
        };
        let forward = compile(&all);
        // A deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..all.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            all.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let shuffled = compile(&all);
        let view = |_: &Allowlist, d: Decision| match d {
            Decision::Allow(a) => Ok((a.route, a.rule.pattern.clone(), a.rule.port)),
            Decision::Deny(r) => Err(r),
        };
        for probe in &probes {
            for port in [1u16, 2, 443] {
                for candidate in [probe.clone(), format!("x.{probe}")] {
                    let a = view(&forward, check(&forward, &candidate, port));
                    let b = view(&shuffled, check(&shuffled, &candidate, port));
                    prop_assert_eq!(a, b, "{}:{}", candidate, port);
                }
            }
        }
    }

    /// Arbitrary bytes as a server name never panic and never allow.
    #[test]
    fn garbage_names_are_denied(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let list = sample();
        let d = list.check(&Request::new(Some(&bytes), ip(L2), 443));
        if d.is_allowed() {
            let name = lnm_core::Name::from_ascii(&bytes).unwrap();
            prop_assert!(list.rules().any(|r| r.pattern.matches(&name)));
        }
    }
}
