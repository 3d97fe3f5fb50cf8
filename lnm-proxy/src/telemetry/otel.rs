//! [`OtelRecorder`]: the `metrics` facade recorded into OpenTelemetry instruments.
//!
//! Counters and gauges keep their value in an atomic per series, exactly as the Prometheus
//! recorder does, and are read by observable instruments (a cumulative monotonic sum, a
//! gauge) when the reader collects: a `metrics` gauge's increments and decrements, which an
//! OpenTelemetry gauge has no operation for, end as the same value on both sides. Histograms
//! are OpenTelemetry histograms with explicit bucket bounds. Each series is created once (the
//! `metrics_util` registry caches the handle per name and labels), so recording costs what it
//! costs in the Prometheus recorder.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_util::registry::{Registry, Storage};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// A [`metrics::Recorder`] that records into the instruments of one OpenTelemetry [`Meter`]:
/// a counter becomes a cumulative monotonic sum, a gauge a gauge, a histogram a histogram with
/// the bucket bounds given here; names and labels (as attributes) are kept as they are.
///
/// [`TelemetryBuilder`](super::TelemetryBuilder) combines it with the Prometheus recorder;
/// use it directly to bridge lnm's metrics into a meter provider of your own.
pub struct OtelRecorder {
    registry: Registry<Key, Instruments>,
}

impl std::fmt::Debug for OtelRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelRecorder").finish_non_exhaustive()
    }
}

impl OtelRecorder {
    /// Records into `meter`'s instruments; every histogram has the explicit bucket bounds
    /// `buckets` (ascending, as [`LATENCY_BUCKETS`](super::LATENCY_BUCKETS)).
    pub fn new(meter: Meter, buckets: &[f64]) -> Self {
        OtelRecorder {
            registry: Registry::new(Instruments {
                meter,
                buckets: buckets.to_vec(),
                counters: Mutex::default(),
                gauges: Mutex::default(),
                histograms: Mutex::default(),
                observable: Mutex::default(),
            }),
        }
    }
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |cell| Counter::from_arc(cell.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |cell| Gauge::from_arc(cell.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |cell| Histogram::from_arc(cell.clone()))
    }
}

/// The series of one counter or gauge name: their attributes and values.
type Series = Mutex<Vec<(Vec<KeyValue>, Arc<AtomicU64>)>>;

/// The registry's storage: creates a series' cell and, for a name seen the first time, its
/// OpenTelemetry instrument.
struct Instruments {
    meter: Meter,
    buckets: Vec<f64>,
    counters: Mutex<HashMap<String, Arc<Series>>>,
    gauges: Mutex<HashMap<String, Arc<Series>>>,
    histograms: Mutex<HashMap<String, opentelemetry::metrics::Histogram<f64>>>,
    /// The observable instruments, kept for the life of the recorder.
    observable: Mutex<Vec<Box<dyn Any + Send + Sync>>>,
}

#[derive(Clone, Copy)]
enum Observed {
    Counter,
    Gauge,
}

/// A lock whose holder panicked still guards consistent data here (pushes and inserts only).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|label| KeyValue::new(label.key().to_owned(), label.value().to_owned()))
        .collect()
}

impl Instruments {
    /// A new cell of `key`'s series; the first of a name registers its observable instrument.
    fn cell(&self, key: &Key, kind: Observed) -> Arc<AtomicU64> {
        let cell = Arc::new(AtomicU64::new(0));
        let series = {
            let mut names = lock(match kind {
                Observed::Counter => &self.counters,
                Observed::Gauge => &self.gauges,
            });
            match names.get(key.name()) {
                Some(series) => series.clone(),
                None => {
                    let series = Arc::new(Series::default());
                    self.observe(key.name().to_owned(), kind, series.clone());
                    names.insert(key.name().to_owned(), series.clone());
                    series
                }
            }
        };
        lock(&series).push((attributes(key), cell.clone()));
        cell
    }

    fn observe(&self, name: String, kind: Observed, series: Arc<Series>) {
        let instrument: Box<dyn Any + Send + Sync> = match kind {
            Observed::Counter => Box::new(
                self.meter
                    .u64_observable_counter(name)
                    .with_callback(move |observer| {
                        for (attributes, cell) in lock(&series).iter() {
                            observer.observe(cell.load(Ordering::Relaxed), attributes);
                        }
                    })
                    .build(),
            ),
            Observed::Gauge => Box::new(
                self.meter
                    .f64_observable_gauge(name)
                    .with_callback(move |observer| {
                        for (attributes, cell) in lock(&series).iter() {
                            observer
                                .observe(f64::from_bits(cell.load(Ordering::Relaxed)), attributes);
                        }
                    })
                    .build(),
            ),
        };
        lock(&self.observable).push(instrument);
    }
}

/// One histogram series: the name's instrument and the series' attributes.
struct HistogramCell {
    instrument: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.instrument.record(value, &self.attributes);
    }
}

impl Storage<Key> for Instruments {
    // `metrics` implements `CounterFn` (add, `absolute` as a maximum) and `GaugeFn` (an `f64`
    // in the bits) for `AtomicU64`, as the Prometheus recorder's storage uses them.
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<HistogramCell>;

    fn counter(&self, key: &Key) -> Self::Counter {
        self.cell(key, Observed::Counter)
    }

    fn gauge(&self, key: &Key) -> Self::Gauge {
        self.cell(key, Observed::Gauge)
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        let instrument = lock(&self.histograms)
            .entry(key.name().to_owned())
            .or_insert_with(|| {
                self.meter
                    .f64_histogram(key.name().to_owned())
                    .with_boundaries(self.buckets.clone())
                    .build()
            })
            .clone();
        Arc::new(HistogramCell {
            instrument,
            attributes: attributes(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
    use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

    use super::*;

    /// What each export saw: `name{k=v,..}` → kind and value.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

    fn series<'a>(name: &str, attributes: impl Iterator<Item = &'a KeyValue>) -> String {
        let labels: Vec<String> = attributes
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        format!("{name}{{{}}}", labels.join(","))
    }

    impl PushMetricExporter for Capture {
        async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
            let mut seen = BTreeMap::new();
            for m in metrics.scope_metrics().flat_map(|s| s.metrics()) {
                match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        assert!(sum.is_monotonic(), "{}", m.name());
                        assert_eq!(sum.temporality(), Temporality::Cumulative);
                        for p in sum.data_points() {
                            seen.insert(
                                series(m.name(), p.attributes()),
                                format!("sum {}", p.value()),
                            );
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            seen.insert(
                                series(m.name(), p.attributes()),
                                format!("gauge {}", p.value()),
                            );
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        assert_eq!(h.temporality(), Temporality::Cumulative);
                        for p in h.data_points() {
                            seen.insert(
                                series(m.name(), p.attributes()),
                                format!(
                                    "histogram count {} sum {} bounds {:?} buckets {:?}",
                                    p.count(),
                                    p.sum(),
                                    p.bounds().collect::<Vec<_>>(),
                                    p.bucket_counts().collect::<Vec<_>>()
                                ),
                            );
                        }
                    }
                    _ => panic!("{}: an unexpected kind", m.name()),
                }
            }
            self.0.lock().unwrap().push(seen);
            Ok(())
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }

        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    #[test]
    fn counters_gauges_and_histograms_keep_their_kind_labels_and_values() {
        let capture = Capture::default();
        let reader = PeriodicReader::builder(capture.clone())
            .with_interval(Duration::from_secs(3600))
            .build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        let recorder = OtelRecorder::new(provider.meter("test"), &[0.1, 1.0]);
        let record = || {
            metrics::counter!("c_total", "k" => "a").increment(2);
            metrics::counter!("c_total", "k" => "a").increment(3);
            metrics::counter!("c_total", "k" => "b").absolute(7);
            metrics::counter!("c_total", "k" => "b").absolute(4); // never backwards
            metrics::gauge!("active").increment(5.0);
            metrics::gauge!("active").decrement(2.0);
            metrics::gauge!("ratio", "of" => "x").set(1.5);
            metrics::histogram!("seconds").record(0.05);
            metrics::histogram!("seconds").record(0.5);
            metrics::histogram!("seconds").record(2.0);
        };
        metrics::with_local_recorder(&recorder, record);
        provider.force_flush().unwrap();
        let seen = capture.0.lock().unwrap().last().cloned().unwrap();
        let expected: BTreeMap<String, String> = [
            ("c_total{k=a}", "sum 5"),
            ("c_total{k=b}", "sum 7"),
            ("active{}", "gauge 3"),
            ("ratio{of=x}", "gauge 1.5"),
            (
                "seconds{}",
                "histogram count 3 sum 2.55 bounds [0.1, 1.0] buckets [1, 1, 1]",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(seen, expected);

        // Cumulative: the next collection adds to the same series.
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("c_total", "k" => "a").increment(1);
            metrics::gauge!("active").decrement(3.0);
        });
        provider.force_flush().unwrap();
        let seen = capture.0.lock().unwrap().last().cloned().unwrap();
        assert_eq!(seen["c_total{k=a}"], "sum 6");
        assert_eq!(seen["active{}"], "gauge 0");
        assert_eq!(seen.len(), 5);
    }
}
