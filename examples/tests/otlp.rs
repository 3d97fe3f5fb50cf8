//! `openTelemetryMetricsCollectorAddr`: a running `lnm-gateway` pushes the metrics of its
//! `/metrics` over OTLP/gRPC to a collector — here a receiver in the test (opentelemetry-proto's
//! `MetricsService`) — with the same names, labels, kinds, values and histogram bounds; it
//! pushes once more when it stops; and a collector that does not answer changes nothing for the
//! traffic, is logged once, and does not hold the stop up.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric};

mod common;
use common::{Running, free_port, spawn_logged};

/// What the receiver got: every export request, in order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Received {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn get(&self, i: usize) -> Option<ExportMetricsServiceRequest> {
        self.0.lock().unwrap().get(i).cloned()
    }
}

/// A collector on a free loopback port, served by its own runtime for the life of the test.
fn collector() -> (SocketAddr, Received, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let received = Received::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let service = MetricsServiceServer::new(received.clone());
    runtime.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, received, runtime)
}

/// An origin on loopback: every connection gets an empty 200 and is closed.
fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    addr
}

/// One plain-HTTP request for `host` through the gateway; the status line.
fn get(proxy: SocketAddr, host: &str) -> String {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_owned()
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A series: a metric name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// The samples of the Prometheus text, by series (a histogram's `_bucket`, `_sum` and `_count`
/// as the text writes them, `le` among the labels).
fn prometheus(text: &str) -> BTreeMap<Series, f64> {
    let body = text.split("\r\n\r\n").nth(1).unwrap_or(text);
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut labels: Vec<(String, String)> = rest
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap();
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                labels.sort();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), vec![]),
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        };
        out.insert((name, labels), value);
    }
    out
}

fn labels(attributes: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("{}: not a string attribute: {other:?}", kv.key),
            };
            (kv.key.clone(), value)
        })
        .collect();
    out.sort();
    out
}

/// Prints a bucket bound as the Prometheus text does.
fn le(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".into()
    } else {
        format!("{bound}")
    }
}

/// One export as the Prometheus text would show it, checking the kinds on the way: counters
/// (`_total`) are cumulative monotonic sums, gauges gauges, histograms cumulative histograms
/// whose buckets become `_bucket{le=..}` counts.
fn otlp(request: &ExportMetricsServiceRequest) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for resource in &request.resource_metrics {
        for scope in &resource.scope_metrics {
            for m in &scope.metrics {
                match m.data.as_ref().unwrap() {
                    metric::Data::Sum(sum) => {
                        assert!(sum.is_monotonic, "{} is monotonic", m.name);
                        assert_eq!(
                            sum.aggregation_temporality,
                            AggregationTemporality::Cumulative as i32,
                            "{}",
                            m.name
                        );
                        for p in &sum.data_points {
                            let value = match p.value.unwrap() {
                                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v) => v as f64,
                                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v) => v,
                            };
                            out.insert((m.name.clone(), labels(&p.attributes)), value);
                        }
                    }
                    metric::Data::Gauge(gauge) => {
                        for p in &gauge.data_points {
                            let value = match p.value.unwrap() {
                                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v) => v as f64,
                                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v) => v,
                            };
                            out.insert((m.name.clone(), labels(&p.attributes)), value);
                        }
                    }
                    metric::Data::Histogram(h) => {
                        assert_eq!(
                            h.aggregation_temporality,
                            AggregationTemporality::Cumulative as i32,
                            "{}",
                            m.name
                        );
                        for p in &h.data_points {
                            let base = labels(&p.attributes);
                            assert_eq!(
                                p.explicit_bounds,
                                lnm_proxy::telemetry::LATENCY_BUCKETS,
                                "{}: the bounds of the Prometheus text",
                                m.name
                            );
                            let mut cumulative = 0u64;
                            let bounds = p.explicit_bounds.iter().copied().chain([f64::INFINITY]);
                            for (bound, count) in bounds.zip(&p.bucket_counts) {
                                cumulative += count;
                                let mut l = base.clone();
                                l.push(("le".into(), le(bound)));
                                l.sort();
                                out.insert((format!("{}_bucket", m.name), l), cumulative as f64);
                            }
                            out.insert((format!("{}_count", m.name), base.clone()), p.count as f64);
                            out.insert((format!("{}_sum", m.name), base), p.sum.unwrap_or(0.0));
                        }
                    }
                    other => panic!("{}: unexpected kind {other:?}", m.name),
                }
            }
        }
    }
    out
}

fn kinds(request: &ExportMetricsServiceRequest) -> BTreeMap<String, &'static str> {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| {
            let kind = match m.data.as_ref().unwrap() {
                metric::Data::Sum(_) => "sum",
                metric::Data::Gauge(_) => "gauge",
                metric::Data::Histogram(_) => "histogram",
                _ => "other",
            };
            (m.name.clone(), kind)
        })
        .collect()
}

struct Level {
    child: Running,
    proxy: SocketAddr,
    admin: SocketAddr,
    log: std::thread::JoinHandle<Vec<String>>,
    config: PathBuf,
}

/// Starts `lnm-gateway` at level 4 with an HTTP listener in front of `origin`, `allowed.test`
/// allowlisted, the admin endpoint, and `extra` (the collector) in its configuration.
fn start_level(name: &str, origin: SocketAddr, extra: &str) -> Level {
    let (proxy, admin) = (free_port(), free_port());
    let yaml = format!(
        "level: 4\nlogLevel: info\nallowList:\n  domains:\n    - {{destinationUrl: allowed.test, destinationType: external}}\n\
         listeners: [{{bind: \"127.0.0.1:{proxy}\", protocol: http, destinationPort: {}}}]\n\
         resolver: {{hosts: {{allowed.test: 127.0.0.1}}, refusedRanges: []}}\n\
         admin: {{bind: \"127.0.0.1:{admin}\"}}\ntimeouts: {{shutdownDrain: 2s}}\n{extra}",
        origin.port()
    );
    let config = std::env::temp_dir().join(format!("lnm-otlp-{}-{name}.yaml", std::process::id()));
    std::fs::write(&config, yaml).unwrap();
    let (child, log) = spawn_logged(&["--config", config.to_str().unwrap()]);
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let started = Instant::now();
    while !http_get(admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    Level {
        child,
        proxy: format!("127.0.0.1:{proxy}").parse().unwrap(),
        admin,
        log,
        config,
    }
}

impl Level {
    /// Three allowed and two denied requests, answered as they should be.
    fn traffic(&self) {
        for _ in 0..3 {
            assert_eq!(get(self.proxy, "allowed.test"), "HTTP/1.1 200 OK");
        }
        for _ in 0..2 {
            assert_eq!(get(self.proxy, "denied.test"), "HTTP/1.1 403 Forbidden");
        }
    }

    /// `/metrics` once every connection has been counted and closed.
    fn settled_metrics(&self) -> BTreeMap<Series, f64> {
        let started = Instant::now();
        loop {
            let samples = prometheus(&http_get(self.admin, "/metrics").unwrap());
            let total: f64 = samples
                .iter()
                .filter(|((name, _), _)| name == "lnm_connections_total")
                .map(|(_, v)| v)
                .sum();
            let active = samples.get(&("lnm_connections_active".into(), vec![]));
            if total == 5.0 && active == Some(&0.0) {
                return samples;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{samples:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops with SIGTERM; the exit status, how long it took, and the log.
    fn stop(mut self) -> (std::process::ExitStatus, Duration, String) {
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.0.wait().unwrap();
        let took = started.elapsed();
        let _ = std::fs::remove_file(&self.config);
        (status, took, self.log.join().unwrap().join("\n"))
    }
}

/// The expected counts, whatever the labels of a forwarded connection's outcome.
fn assert_connection_counts(samples: &BTreeMap<Series, f64>, what: &str) {
    let of = |decision: &str| -> f64 {
        samples
            .iter()
            .filter(|((name, labels), _)| {
                name == "lnm_connections_total"
                    && labels.contains(&("decision".into(), decision.into()))
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(of("allow"), 3.0, "{what}: {samples:?}");
    assert_eq!(of("deny"), 2.0, "{what}: {samples:?}");
    let denied: Series = (
        "lnm_connections_total".into(),
        vec![
            ("decision".into(), "deny".into()),
            ("reason".into(), "not_allowlisted".into()),
        ],
    );
    assert_eq!(samples.get(&denied), Some(&2.0), "{what}: {samples:?}");
}

#[test]
fn the_collector_receives_what_metrics_shows() {
    let (collector, received, _runtime) = collector();
    let origin = origin();
    let level = start_level(
        "same",
        origin,
        &format!(
            "openTelemetryMetricsCollectorAddr: \"http://{collector}\"\nmetricsExport: {{interval: 200ms, timeout: 2s}}\n"
        ),
    );
    level.traffic();
    let prometheus_text = level.settled_metrics();
    assert_connection_counts(&prometheus_text, "/metrics");

    // The next pushes, after /metrics settled: one of them (the first whose collection
    // followed the last recording) shows exactly what /metrics shows, while /metrics still does.
    let started = Instant::now();
    let mut next = received.count();
    let pushed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no push matched /metrics: {prometheus_text:?}\nlast push: {:?}",
            next.checked_sub(1)
                .and_then(|i| received.get(i))
                .map(|r| otlp(&r))
        );
        let Some(request) = received.get(next) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        next += 1;
        if otlp(&request) == prometheus_text {
            break request;
        }
    };
    assert_eq!(
        prometheus(&http_get(level.admin, "/metrics").unwrap()),
        prometheus_text,
        "/metrics did not move meanwhile"
    );
    let samples = otlp(&pushed);
    assert_connection_counts(&samples, "OTLP");
    let kinds = kinds(&pushed);
    assert_eq!(kinds.get("lnm_connections_total"), Some(&"sum"));
    assert_eq!(kinds.get("lnm_bytes_total"), Some(&"sum"));
    assert_eq!(kinds.get("lnm_connections_active"), Some(&"gauge"));
    assert_eq!(kinds.get("lnm_decision_seconds"), Some(&"histogram"));
    assert_eq!(
        samples.get(&("lnm_decision_seconds_count".into(), vec![])),
        Some(&5.0),
        "one decision per connection"
    );
    // The resource names the service and the level.
    let resource = pushed.resource_metrics[0].resource.as_ref().unwrap();
    let attributes = format!("{:?}", resource.attributes);
    assert!(
        attributes.contains("lnm-gateway") && attributes.contains("lnm.level"),
        "{attributes}"
    );

    let (status, _, log) = level.stop();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        !log.contains("metrics push to the OpenTelemetry collector failed"),
        "{log}"
    );
}

#[test]
fn the_last_values_are_pushed_at_stop() {
    let (collector, received, _runtime) = collector();
    let origin = origin();
    // No periodic push within the test: what arrives is the push of the stop.
    let level = start_level(
        "stop",
        origin,
        &format!(
            "openTelemetryMetricsCollectorAddr: \"{collector}\"\nmetricsExport: {{interval: 1h}}\n"
        ),
    );
    level.traffic();
    let prometheus_text = level.settled_metrics();
    assert_eq!(received.count(), 0, "nothing pushed before the interval");
    let (status, _, log) = level.stop();
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(received.count(), 1, "one push at stop\n{log}");
    let samples = otlp(&received.get(0).unwrap());
    assert_connection_counts(&samples, "the push at stop");
    assert_eq!(samples, prometheus_text);
    assert!(log.contains("last metrics pushed"), "{log}");
}

#[test]
fn a_collector_that_does_not_answer_changes_nothing_for_the_traffic() {
    // Accepts connections and never says a word: each push times out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().map_while(Result::ok) {
            holder.lock().unwrap().push(stream);
        }
    });
    let origin = origin();
    let level = start_level(
        "silent",
        origin,
        &format!(
            "openTelemetryMetricsCollectorAddr: \"http://{silent_addr}\"\nmetricsExport: {{interval: 100ms, timeout: 500ms}}\n"
        ),
    );
    level.traffic();
    assert_connection_counts(&level.settled_metrics(), "/metrics");
    // Several failed pushes later, the gateway still serves.
    std::thread::sleep(Duration::from_secs(2));
    level.traffic();
    assert_eq!(
        http_get(level.admin, "/healthz").unwrap().lines().next(),
        Some("HTTP/1.1 200 OK")
    );
    let (status, took, log) = level.stop();
    assert!(status.success(), "{status}\n{log}");
    // The drain has nothing to wait for; the last push gives up after its timeout.
    assert!(
        took < Duration::from_secs(3),
        "the stop took {took:?}\n{log}"
    );
    let warnings = log
        .matches("metrics push to the OpenTelemetry collector failed")
        .count();
    assert_eq!(
        warnings, 1,
        "logged once for the whole failure streak\n{log}"
    );
    assert!(log.contains("the last metrics push"), "{log}");

    // And a collector address where nothing listens at all: the same.
    let nothing = free_port();
    let level = start_level(
        "refused",
        origin,
        &format!(
            "openTelemetryMetricsCollectorAddr: \"127.0.0.1:{nothing}\"\nmetricsExport: {{interval: 100ms}}\n"
        ),
    );
    level.traffic();
    std::thread::sleep(Duration::from_millis(500));
    level.traffic();
    let (status, took, log) = level.stop();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        took < Duration::from_secs(3),
        "the stop took {took:?}\n{log}"
    );
    assert_eq!(
        log.matches("metrics push to the OpenTelemetry collector failed")
            .count(),
        1,
        "{log}"
    );
}
