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
