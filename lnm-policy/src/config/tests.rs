//! Configuration tests on real LNM custom resources, the DESIGN §4 example, and broken files.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::{Decision, Reason, Request, Route};

const AZURE_L4: &str = include_str!("../../testdata/azure-level4.yaml");
const AZURE_L3: &str = include_str!("../../testdata/azure-level3-spec.yaml");
const DESIGN: &str = include_str!("../../testdata/design-example.yaml");
const JSON_L4: &str = include_str!("../../testdata/level4.json");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn err(text: &str) -> String {
    Config::parse(text, "test.yaml").unwrap_err().to_string()
}

#[test]
fn azure_level4_custom_resource_runs_unchanged() {
    let loaded = Config::parse(AZURE_L4, "level4.yaml").unwrap();
    let c = &loaded.config;
    assert_eq!(c.level, Some(4));
    assert!(c.is_top_level());
    assert_eq!(c.log_level, Some(LogLevel::Debug));
    assert!(c.allow_list.enable_arc_domains);
    assert_eq!(c.allow_list.domains.len(), 19);
    for key in ["image", "replicas"] {
        assert!(
            loaded.warnings.iter().any(|w| w.contains(key)),
            "{key}: {:?}",
            loaded.warnings
        );
    }
    // The collector is where metrics are pushed now: no warning, a typed address.
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|w| w.contains("openTelemetryMetricsCollectorAddr")),
        "{:?}",
        loaded.warnings
    );
    let collector = c.open_telemetry_metrics_collector_addr.as_ref().unwrap();
    assert_eq!(
        collector.host(),
        "aio-otel-collector.azure-iot-operations.svc.cluster.local"
    );
    assert_eq!(collector.port(), 4317);
    assert_eq!(c.metrics_export, MetricsExportConfig::default());
    let list = c.allowlist();
    let any = ip("203.0.113.9");
    assert!(
        list.check(&Request::for_name("x.ods.opinsights.azure.com", any, 443))
            .is_allowed()
    );
    assert!(
        list.check(&Request::for_name("management.azure.com", any, 443))
            .is_allowed(),
        "arc set"
    );
    assert!(
        list.check(&Request::for_name("quay.io", any, 443))
            .is_allowed()
    );
    assert_eq!(
        list.check(&Request::for_name("ods.opinsights.azure.com", any, 443)),
        Decision::Deny(Reason::NotAllowlisted)
    );
    // Defaults when lnm sections are absent.
    assert_eq!(c.timeouts.sniff, Duration::from_secs(10));
    assert_eq!(c.limits.max_hops, 8);
    let listeners = c.effective_listeners();
    assert_eq!(listeners.len(), 2);
    assert_eq!(listeners[0].bind, "0.0.0.0:443".parse().unwrap());
}

#[test]
fn azure_level3_spec_runs_unchanged() {
    let loaded = Config::parse(AZURE_L3, "level3.yaml").unwrap();
    let c = &loaded.config;
    assert_eq!(c.parent_addrs(), [ip("10.104.0.10")]);
    assert_eq!(c.parent_port, Some(443));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("nodeTolerations"))
    );
    let list = c.allowlist();
    assert!(
        list.check(&Request::for_name(
            "kv1.vault.azure.net",
            ip("10.102.3.4"),
            443
        ))
        .is_allowed()
    );
    assert_eq!(
        list.check(&Request::for_name(
            "kv1.vault.azure.net",
            ip("10.103.3.4"),
            443
        )),
        Decision::Deny(Reason::SourceNotAllowed)
    );
}

#[test]
fn design_example_parses_every_section() {
    let loaded = Config::parse(DESIGN, "design.yaml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    let dns = c.dns.as_ref().unwrap();
    assert_eq!(dns.bind, "10.3.0.1:53".parse().unwrap());
    assert_eq!(
        dns.answer_ipv4,
        ["10.3.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(dns.ttl, 60);
    assert_eq!(c.resolver.upstream, ResolverUpstream::System);
    assert_eq!(c.resolver.hosts["broker.l3.contoso.local"], ip("10.3.0.20"));
    assert_eq!(c.timeouts.idle, Duration::from_secs(3600));
    assert_eq!(c.timeouts.shutdown_drain, Duration::from_secs(30));
    let listeners = c.effective_listeners();
    assert_eq!(listeners[0].protocol, ListenerProtocol::Tls);
    assert_eq!(listeners[1].destination_port(), 80);
    let list = c.allowlist();
    let d = list.check(&Request::for_name(
        "broker.l3.contoso.local",
        ip("10.2.0.1"),
        8883,
    ));
    assert!(matches!(d, Decision::Allow(a) if a.route == Route::Internal));
    assert_eq!(c.admin.unwrap().bind, "127.0.0.1:9100".parse().unwrap());
}

#[test]
fn json_documents_use_the_same_parser() {
    let c = Config::parse(JSON_L4, "level4.json").unwrap().config;
    assert_eq!(c.level, Some(4));
    assert_eq!(
        c.resolver.upstream,
        ResolverUpstream::Servers(vec!["127.0.1.53:5300".parse().unwrap()])
    );
    assert_eq!(c.allowlist().rules().len(), 2);
}

#[test]
fn default_listeners_include_internal_ports() {
    let c = Config::parse(
        "allowList:\n  domains:\n    - {destinationUrl: broker.local:8883, destinationType: internal}\n",
        "t",
    )
    .unwrap();
    let ports: Vec<u16> = c
        .config
        .effective_listeners()
        .iter()
        .map(|l| l.bind.port())
        .collect();
    assert_eq!(ports, [443, 80, 8883]);
    assert!(
        c.warnings.iter().any(|w| w.contains("resolver.hosts")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn unknown_keys_name_the_key_and_line() {
    let e = err("level: 3\nallowList:\n  domains: []\n  sourceIpRanges: []\n");
    assert!(
        e.contains("test.yaml") && e.contains("sourceIpRanges") && e.contains("line 4"),
        "{e}"
    );
    let e = err("level: 3\nlistners: []\n");
    assert!(e.contains("listners") && e.contains("line 2"), "{e}");
    let e = err("apiVersion: v1\nkind: Lnm\nspec:\n  level: 4\n  bogus: 1\n");
    assert!(e.contains("bogus") && e.contains("line 5"), "{e}");
}

#[test]
fn bad_values_name_the_line_and_say_why() {
    let cases = [
        (
            "allowList:\n  domains:\n    - {destinationUrl: \"*\", destinationType: external}\n",
            "open proxy",
            "line 3",
        ),
        (
            "allowList:\n  domains:\n    - {destinationUrl: 10.0.0.1, destinationType: external}\n",
            "IP address",
            "line 3",
        ),
        (
            "allowList:\n  domains:\n    - {destinationUrl: broker.local, destinationType: internal}\n",
            "needs its port",
            "line 3",
        ),
        (
            "allowList:\n  domains:\n    - {destinationUrl: a.com, destinationType: sideways}\n",
            "sideways",
            "line 3",
        ),
        (
            "allowList:\n  sourceIpRange:\n    - {addressPrefix: 10.0.0.0, prefixLen: 33}\n",
            "prefixLen 33",
            "line 3",
        ),
        ("level: 300\n", "level", "line 1"),
        ("parentIpAddr: not-an-ip\n", "not-an-ip", "line 1"),
        (
            "timeouts:\n  sniff: ten seconds\n",
            "invalid duration",
            "line 2",
        ),
        ("resolver:\n  upstream: google\n", "system", "line 2"),
        (
            "resolver:\n  hosts: {\"bad name\": 10.0.0.1}\n",
            "invalid name",
            "line 2",
        ),
        ("logLevel: chatty\n", "chatty", "line 1"),
    ];
    for (text, what, line) in cases {
        let e = err(text);
        assert!(e.contains(what) && e.contains(line), "{text:?} -> {e}");
    }
}

#[test]
fn contradictions_name_the_key() {
    let cases = [
        (
            "parentIpAddr: 10.4.0.1\nparentIpAddrs: [10.4.0.2]\n",
            "parentIpAddrs",
        ),
        ("parentIpAddrs: []\n", "parentIpAddrs"),
        ("dns: {bind: \"127.0.0.1:53\"}\n", "dns.answerIpv4"),
        (
            "listeners:\n  - {bind: \"127.0.0.1:443\"}\n  - {bind: \"127.0.0.1:443\"}\n",
            "listeners[1].bind",
        ),
        ("parentIpAddr: 127.0.0.1\n", "static loop"),
        (
            "parentIpAddr: 10.3.0.1\nlisteners: [{bind: \"10.3.0.1:8443\", destinationPort: 443}]\nparentPort: 8443\n",
            "static loop",
        ),
        ("kind: Service\nspec: {}\n", "kind"),
        ("timeouts: {sniff: 0s}\n", "timeouts"),
    ];
    for (text, key) in cases {
        let e = err(text);
        assert!(e.contains(key), "{text:?} -> {e}");
    }
    // A parent on another port of the same host is not a loop.
    assert!(
        Config::parse(
            "parentIpAddr: 10.3.0.1\nlisteners: [{bind: \"10.3.0.1:8443\"}]\nparentPort: 443\n",
            "t"
        )
        .is_ok()
    );
}

#[test]
fn durations_read_as_text_or_seconds() {
    let c = Config::parse(
        "timeouts: {sniff: 2s, connect: 1m 30s, idle: 90, shutdownDrain: 500ms}\n",
        "t",
    )
    .unwrap()
    .config;
    assert_eq!(c.timeouts.sniff, Duration::from_secs(2));
    assert_eq!(c.timeouts.connect, Duration::from_secs(90));
    assert_eq!(c.timeouts.idle, Duration::from_secs(90));
    assert_eq!(c.timeouts.shutdown_drain, Duration::from_millis(500));
}

#[test]
fn relay_zero_copy_is_off_unless_turned_on() {
    let default = Config::parse("level: 4\n", "t").unwrap().config;
    assert!(!default.relay.zero_copy);
    let on = Config::parse("relay: {zeroCopy: true}\n", "t")
        .unwrap()
        .config;
    assert!(on.relay.zero_copy);
    let e = err("relay: {zeroCopy: false, splice: true}\n");
    assert!(e.contains("splice"), "{e}");
}

#[test]
fn effective_config_round_trips_through_yaml() {
    let c = Config::parse(DESIGN, "design.yaml").unwrap().config;
    let text = serde_saphyr::to_string(&c).unwrap();
    let again = Config::parse(&text, "printed").unwrap().config;
    assert_eq!(again.allow_list.domains, c.allow_list.domains);
    assert_eq!(again.timeouts, c.timeouts);
    assert_eq!(again.effective_listeners(), c.effective_listeners());
    assert_eq!(again.dns, c.dns);
}

#[test]
fn empty_source_list_warns_and_admits_nobody() {
    let loaded = Config::parse("allowList:\n  sourceIpRange: []\n", "t").unwrap();
    assert!(loaded.warnings.iter().any(|w| w.contains("no client")));
    assert!(!loaded.config.allowlist().source_allowed(ip("10.0.0.1")));
}

#[test]
fn garbage_files_are_errors_not_panics() {
    for text in [
        "",
        "[1, 2",
        "- a\n- b\n",
        "{{{{",
        "level: [",
        "\u{0}",
        "&a [*a, *a]",
        "kind: Lnm\n",
    ] {
        let _ = Config::parse(text, "garbage.yaml");
    }
    assert!(Config::parse("- a\n", "t").is_err());
    let empty = Config::parse("", "empty.yaml").unwrap();
    assert!(
        empty
            .warnings
            .iter()
            .any(|w| w.contains("every connection")),
        "{:?}",
        empty.warnings
    );
}

#[test]
fn a_lower_level_without_parent_warns_that_it_goes_straight_out() {
    let loaded = Config::parse("level: 3\nallowList: {domains: [{destinationUrl: a.example, destinationType: external}]}\n", "t").unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("level 3 has no `parentIpAddr`")),
        "{:?}",
        loaded.warnings
    );
    for quiet in [
        "level: 4\nallowList: {domains: [{destinationUrl: a.example, destinationType: external}]}\n",
        "level: 3\nparentIpAddr: 10.4.0.1\nallowList: {domains: [{destinationUrl: a.example, destinationType: external}]}\n",
    ] {
        let loaded = Config::parse(quiet, "t").unwrap();
        assert!(
            !loaded.warnings.iter().any(|w| w.contains("parentIpAddr")),
            "{quiet}: {:?}",
            loaded.warnings
        );
    }
}

#[test]
fn a_level_built_in_code_equals_the_same_level_in_yaml() {
    use super::defaults;
    let yaml = Config::parse(
        "level: 3\nparentIpAddr: 10.4.0.1\nallowList:\n  domains:\n    - {destinationUrl: \"*.example.com\", destinationType: external}\n    - {destinationUrl: \"broker.l3.local:8883\", destinationType: internal}\n  sourceIpRange: [{addressPrefix: 10.2.0.0, prefixLen: 16}]\ndns: {bind: \"10.3.0.1:53\", answerIpv4: [10.3.0.1]}\n",
        "t",
    )
    .unwrap()
    .config;
    let code = Config::level(3)
        .with_parent("10.4.0.1".parse().unwrap())
        .allow(DomainEntry::external("*.example.com").unwrap())
        .allow(DomainEntry::internal("broker.l3.local", 8883).unwrap())
        .with_source_range("10.2.0.0/16".parse().unwrap())
        .with_dns(DnsConfig::new(
            "10.3.0.1:53".parse().unwrap(),
            vec!["10.3.0.1".parse().unwrap()],
        ));
    // Serialized, the two are the same document (defaults included).
    let text = |c: &Config| serde_saphyr::to_string(c).unwrap();
    assert_eq!(text(&code), text(&yaml));
    assert_eq!(code.dns.as_ref().unwrap().ttl, defaults::DNS_TTL);
    assert_eq!(code.limits.max_client_hello, defaults::MAX_CLIENT_HELLO);
    assert!(DomainEntry::internal("broker.l3.local", 0).is_err());
    assert!(DomainEntry::external("*").is_err());
    let invalid = Config::level(4).with_limits(Limits {
        max_hops: 0,
        ..Limits::default()
    });
    let err = invalid.validate().unwrap_err().to_string();
    assert!(err.contains("limits.maxHops"), "{err}");
}

#[test]
fn metrics_collector_and_export_section() {
    let loaded = Config::parse(
        "openTelemetryMetricsCollectorAddr: otel:4318\nmetricsExport: {interval: 500ms, timeout: 2s}\n",
        "test.yaml",
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.open_telemetry_metrics_collector_addr
            .as_ref()
            .map(|e| e.uri()),
        Some("http://otel:4318".to_owned())
    );
    assert_eq!(c.metrics_export.interval, Duration::from_millis(500));
    assert_eq!(c.metrics_export.timeout, Duration::from_secs(2));
    // Printed with its defaults filled in, and read back the same.
    let text = crate::serde_saphyr::to_string(c).unwrap();
    assert!(
        text.contains("openTelemetryMetricsCollectorAddr: http://otel:4318"),
        "{text}"
    );
    let again = Config::parse(&text, "again.yaml").unwrap().config;
    assert_eq!(
        again.open_telemetry_metrics_collector_addr,
        c.open_telemetry_metrics_collector_addr
    );
    assert_eq!(again.metrics_export, c.metrics_export);
    // Defaults when absent.
    let plain = Config::parse("level: 4\n", "test.yaml").unwrap().config;
    assert_eq!(plain.open_telemetry_metrics_collector_addr, None);
    assert_eq!(
        plain.metrics_export.interval,
        defaults::METRICS_EXPORT_INTERVAL
    );
    assert_eq!(
        plain.metrics_export.timeout,
        defaults::METRICS_EXPORT_TIMEOUT
    );
}

#[test]
fn bad_metrics_collector_is_an_error_naming_the_key() {
    let e = err("openTelemetryMetricsCollectorAddr: \"https://otel:4317\"\n");
    assert!(
        e.contains("test.yaml")
            && e.contains("openTelemetryMetricsCollectorAddr")
            && e.contains("TLS"),
        "{e}"
    );
    let e = err("openTelemetryMetricsCollectorAddr: \"otel:99999\"\n");
    assert!(
        e.contains("openTelemetryMetricsCollectorAddr") && e.contains("port"),
        "{e}"
    );
    let e = err("metricsExport: {interval: 0s}\n");
    assert!(e.contains("metricsExport.interval"), "{e}");
    let e = err("metricsExport: {intervall: 5s}\n");
    assert!(e.contains("intervall"), "{e}");
}

#[test]
fn a_listener_on_port_0_without_destination_port_is_warned_about() {
    let warned = |yaml: &str| {
        Config::parse(yaml, "t")
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.contains("without `destinationPort`"))
    };
    assert!(warned(
        "listeners: [{bind: \"127.0.0.1:0\", protocol: tls}]\n"
    ));
    assert!(!warned(
        "listeners: [{bind: \"127.0.0.1:0\", protocol: tls, destinationPort: 443}]\n"
    ));
    assert!(!warned(
        "listeners: [{bind: \"127.0.0.1:8443\", protocol: tls}]\n"
    ));
}
