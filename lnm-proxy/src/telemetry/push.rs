//! The OTLP/gRPC push: a meter provider whose periodic reader exports to the collector, and
//! the exporter wrapper that logs a failing collector once per failure streak.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lnm_policy::config::{CollectorEndpoint, MetricsExportConfig};
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::OtelRecorder;
use crate::Error;

/// A running push: the meter provider (its reader thread exports every interval).
pub(super) struct OtlpPush {
    pub(super) provider: SdkMeterProvider,
    pub(super) collector: CollectorEndpoint,
    pub(super) timeout: Duration,
}

/// Starts the push to `collector` and returns the recorder that feeds it. Needs a tokio
/// runtime: the gRPC channel's connection task runs on it (the channel connects lazily, so a
/// collector that is down is not an error here).
pub(super) fn start(
    collector: &CollectorEndpoint,
    export: &MetricsExportConfig,
    resource: Vec<KeyValue>,
    service_name: String,
    buckets: &[f64],
) -> Result<(OtelRecorder, OtlpPush), Error> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(collector.uri())
        .with_timeout(export.timeout)
        // One attempt per interval: the next interval is the retry, with fresher values.
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
        .with_temporality(Temporality::Cumulative)
        .build()
        .map_err(|e| Error::MetricsExporter {
            collector: collector.uri(),
            source: Box::new(e),
        })?;
    let reader = PeriodicReader::builder(StreakLogged::new(exporter, collector.uri()))
        .with_interval(export.interval)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name)
                .with_attributes(resource)
                .build(),
        )
        .build();
    let recorder = OtelRecorder::new(provider.meter("lnm"), buckets);
    tracing::info!(collector = %collector, interval = ?export.interval, "pushing metrics over OTLP/gRPC");
    Ok((
        recorder,
        OtlpPush {
            provider,
            collector: collector.clone(),
            timeout: export.timeout,
        },
    ))
}

/// An exporter that logs a failed push once per failure streak (a warning when the collector
/// stops answering, an info line when it answers again), never every interval.
struct StreakLogged<E> {
    inner: E,
    collector: String,
    failing: AtomicBool,
}

impl<E> StreakLogged<E> {
    fn new(inner: E, collector: String) -> Self {
        StreakLogged {
            inner,
            collector,
            failing: AtomicBool::new(false),
        }
    }

    fn note(&self, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(collector = %self.collector, "metrics push to the OpenTelemetry collector works again");
                } else {
                    tracing::trace!(collector = %self.collector, "metrics pushed");
                }
            }
            Err(e) => {
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(collector = %self.collector, error = %e, "metrics push failed again");
                } else {
                    tracing::warn!(
                        collector = %self.collector, error = %e,
                        "metrics push to the OpenTelemetry collector failed; trying again every interval (logged again once it recovers)"
                    );
                }
            }
        }
    }
}

impl<E: PushMetricExporter> PushMetricExporter for StreakLogged<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.note(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
