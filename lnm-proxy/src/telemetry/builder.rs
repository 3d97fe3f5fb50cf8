//! [`TelemetryBuilder`] → [`TelemetryRecorder`] + [`Telemetry`]: the recorder of a gateway
//! process and the exporters behind it.

use std::sync::Arc;
use std::time::Duration;

use lnm_policy::Config;
#[cfg(feature = "otlp")]
use lnm_policy::config::{CollectorEndpoint, MetricsExportConfig};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

#[cfg(feature = "otlp")]
use super::push::{self, OtlpPush};
use crate::Error;
use crate::admin::RenderMetrics;

/// The bucket bounds of lnm's latency histograms, in seconds: decisions take microseconds,
/// connects milliseconds. The Prometheus text and the OTLP histograms use the same bounds.
pub const LATENCY_BUCKETS: &[f64] = &[
    1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// How often the Prometheus recorder's histograms are folded in (between renders).
const PROMETHEUS_UPKEEP: Duration = Duration::from_secs(5);

/// What to export: the Prometheus text for the admin endpoint, an OTLP push, or both.
#[derive(Debug, Clone)]
#[must_use]
pub struct TelemetryBuilder {
    prometheus: bool,
    #[cfg(feature = "otlp")]
    otlp: Option<(CollectorEndpoint, MetricsExportConfig)>,
    /// A collector the configuration names, without the feature to push to it.
    #[cfg(not(feature = "otlp"))]
    unsupported: Option<String>,
    buckets: Vec<f64>,
    service_name: String,
    level: Option<u8>,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        TelemetryBuilder {
            prometheus: false,
            #[cfg(feature = "otlp")]
            otlp: None,
            #[cfg(not(feature = "otlp"))]
            unsupported: None,
            buckets: LATENCY_BUCKETS.to_vec(),
            service_name: "lnm".to_owned(),
            level: None,
        }
    }
}

impl TelemetryBuilder {
    /// Exports nothing yet: add [`prometheus`](Self::prometheus) and/or
    /// [`otlp`](Self::otlp).
    pub fn new() -> Self {
        TelemetryBuilder::default()
    }

    /// What a level's configuration asks for: the Prometheus text when `admin` is set, the
    /// OTLP push when `openTelemetryMetricsCollectorAddr` is (every `metricsExport.interval`),
    /// the level as the resource attribute `lnm.level`.
    ///
    /// Without the feature `otlp`, a configured collector is not pushed to:
    /// [`build`](Self::build) fails with [`Error::MetricsExporter`] rather than ignore it.
    pub fn from_config(config: &Config) -> Self {
        let mut builder = TelemetryBuilder::new().prometheus(config.admin.is_some());
        builder.level = config.level;
        if let Some(collector) = &config.open_telemetry_metrics_collector_addr {
            builder = builder.collector(collector, &config.metrics_export);
        }
        builder
    }

    #[cfg(feature = "otlp")]
    fn collector(self, collector: &CollectorEndpoint, export: &MetricsExportConfig) -> Self {
        self.otlp(collector.clone(), export.clone())
    }

    #[cfg(not(feature = "otlp"))]
    fn collector(
        mut self,
        collector: &lnm_policy::config::CollectorEndpoint,
        _: &lnm_policy::config::MetricsExportConfig,
    ) -> Self {
        self.unsupported = Some(collector.uri());
        self
    }

    /// Keeps the metrics for [`Telemetry::render`] (Prometheus text, what the admin endpoint's
    /// `/metrics` serves).
    pub fn prometheus(mut self, on: bool) -> Self {
        self.prometheus = on;
        self
    }

    /// Pushes the metrics to `collector` over OTLP/gRPC every `export.interval`, each push
    /// given up after `export.timeout`.
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    pub fn otlp(mut self, collector: CollectorEndpoint, export: MetricsExportConfig) -> Self {
        self.otlp = Some((collector, export));
        self
    }

    /// The histogram bucket bounds (default [`LATENCY_BUCKETS`]).
    pub fn buckets(mut self, buckets: &[f64]) -> Self {
        self.buckets = buckets.to_vec();
        self
    }

    /// The OTLP resource's `service.name` (default `lnm`; other resource attributes may come
    /// from `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Builds the recorder without installing it (to combine it with recorders of your own),
    /// and the [`Telemetry`] that renders and pushes what it records. With an OTLP push it
    /// must be called inside a tokio runtime, which must keep running while metrics are pushed.
    pub fn build(self) -> Result<(TelemetryRecorder, Telemetry), Error> {
        #[cfg(not(feature = "otlp"))]
        if let Some(collector) = self.unsupported {
            return Err(Error::MetricsExporter {
                collector,
                source: "lnm-proxy was built without its feature `otlp`".into(),
            });
        }
        let mut recorders: Vec<Box<dyn Recorder + Sync>> = Vec::new();
        let mut telemetry = Telemetry {
            prometheus: None,
            upkeep: None,
            #[cfg(feature = "otlp")]
            otlp: None,
        };
        if self.prometheus {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&self.buckets)
                .map_err(|e| Error::MetricsRecorder {
                    source: Box::new(e),
                })?
                .build_recorder();
            let handle = recorder.handle();
            let upkeep = handle.clone();
            telemetry.upkeep = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROMETHEUS_UPKEEP).await;
                    upkeep.run_upkeep();
                }
            }));
            telemetry.prometheus = Some(handle);
            recorders.push(Box::new(recorder));
        }
        #[cfg(feature = "otlp")]
        if let Some((collector, export)) = &self.otlp {
            let resource = self
                .level
                .map(|level| opentelemetry::KeyValue::new("lnm.level", i64::from(level)))
                .into_iter()
                .collect();
            let (recorder, push) = push::start(
                collector,
                export,
                resource,
                self.service_name.clone(),
                &self.buckets,
            )?;
            telemetry.otlp = Some(push);
            recorders.push(Box::new(recorder));
        }
        let recorder = match recorders.len() {
            0 => TelemetryRecorder::Nothing,
            1 => TelemetryRecorder::One(recorders.remove(0)),
            _ => {
                let fanout = recorders
                    .into_iter()
                    .fold(metrics_util::layers::FanoutBuilder::default(), |b, r| {
                        b.add_recorder(r)
                    })
                    .build();
                TelemetryRecorder::One(Box::new(fanout))
            }
        };
        Ok((recorder, telemetry))
    }

    /// [`build`](Self::build)s and installs the recorder as the process's `metrics` recorder
    /// (once per process; nothing is installed when nothing is exported).
    pub fn install(self) -> Result<Telemetry, Error> {
        let (recorder, telemetry) = self.build()?;
        if !matches!(recorder, TelemetryRecorder::Nothing) {
            metrics::set_global_recorder(recorder).map_err(|e| Error::MetricsRecorder {
                source: e.to_string().into(),
            })?;
        }
        Ok(telemetry)
    }
}

/// The recorder of [`TelemetryBuilder::build`]: every exporter's recorder at once (the
/// Prometheus recorder and the OpenTelemetry bridge through `metrics_util`'s fanout).
#[non_exhaustive]
pub enum TelemetryRecorder {
    /// Nothing is exported: records nothing.
    Nothing,
    /// The recorder of the one exporter, or the fanout over several.
    One(Box<dyn Recorder + Sync>),
}

impl std::fmt::Debug for TelemetryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TelemetryRecorder::Nothing => "TelemetryRecorder::Nothing",
            TelemetryRecorder::One(_) => "TelemetryRecorder::One(..)",
        })
    }
}

impl Recorder for TelemetryRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let TelemetryRecorder::One(r) = self {
            r.describe_counter(key, unit, description);
        }
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let TelemetryRecorder::One(r) = self {
            r.describe_gauge(key, unit, description);
        }
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let TelemetryRecorder::One(r) = self {
            r.describe_histogram(key, unit, description);
        }
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        match self {
            TelemetryRecorder::One(r) => r.register_counter(key, metadata),
            TelemetryRecorder::Nothing => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        match self {
            TelemetryRecorder::One(r) => r.register_gauge(key, metadata),
            TelemetryRecorder::Nothing => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match self {
            TelemetryRecorder::One(r) => r.register_histogram(key, metadata),
            TelemetryRecorder::Nothing => Histogram::noop(),
        }
    }
}

/// The exporters of a gateway process: renders the Prometheus text, pushes over OTLP. Call
/// [`shutdown`](Self::shutdown) when the gateway has stopped, so that the last values are
/// pushed too.
pub struct Telemetry {
    prometheus: Option<PrometheusHandle>,
    upkeep: Option<tokio::task::JoinHandle<()>>,
    #[cfg(feature = "otlp")]
    otlp: Option<OtlpPush>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Telemetry");
        d.field("prometheus", &self.prometheus.is_some());
        #[cfg(feature = "otlp")]
        d.field("otlp", &self.otlp.as_ref().map(|p| p.collector.uri()));
        d.finish()
    }
}

impl Telemetry {
    /// The Prometheus text renderer for the admin endpoint
    /// ([`Gateway::start`](crate::Gateway::start), [`GatewayBuilder::metrics`](crate::GatewayBuilder::metrics)),
    /// when the Prometheus exporter is on.
    pub fn render(&self) -> Option<RenderMetrics> {
        let handle = self.prometheus.clone()?;
        Some(Arc::new(move || handle.render()))
    }

    /// The collector the metrics are pushed to, if any.
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    pub fn collector(&self) -> Option<&CollectorEndpoint> {
        self.otlp.as_ref().map(|p| &p.collector)
    }

    /// Stops the exporters: pushes the metrics one last time and waits at most
    /// `metricsExport.timeout` for it (a collector that is down does not hold the shutdown up);
    /// whether the last push arrived is logged. Returns whether it did; `true` also when there
    /// was nothing to push (no collector configured, or nothing recorded yet — the SDK then
    /// sends nothing).
    pub async fn shutdown(mut self) -> bool {
        if let Some(upkeep) = self.upkeep.take() {
            upkeep.abort();
        }
        #[cfg(feature = "otlp")]
        if let Some(push) = self.otlp.take() {
            return push.shutdown().await;
        }
        true
    }
}

impl Drop for Telemetry {
    /// Without [`shutdown`](Telemetry::shutdown): the exporters stop without waiting (the
    /// meter provider's blocking shutdown runs on a thread of its own, not on the dropping one).
    fn drop(&mut self) {
        if let Some(upkeep) = self.upkeep.take() {
            upkeep.abort();
        }
        #[cfg(feature = "otlp")]
        if let Some(push) = self.otlp.take() {
            let provider = push.provider;
            let _ = std::thread::Builder::new()
                .name("lnm-otlp-drop".into())
                .spawn(move || {
                    let _ = provider.shutdown();
                });
        }
    }
}

#[cfg(feature = "otlp")]
impl OtlpPush {
    /// The meter provider's shutdown exports once more and blocks its caller: it runs on a
    /// thread of its own while this task awaits it, so the runtime keeps driving the gRPC
    /// connection (even a current-thread runtime), and is abandoned after the timeout (a
    /// detached thread does not delay the process's exit, a `spawn_blocking` task would
    /// delay the runtime's drop).
    async fn shutdown(self) -> bool {
        let OtlpPush {
            provider,
            collector,
            timeout,
        } = self;
        let (done, result) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("lnm-otlp-shutdown".into())
            .spawn(move || {
                let _ = done.send(provider.shutdown_with_timeout(timeout));
            });
        if let Err(e) = spawned {
            tracing::warn!(collector = %collector, error = %e, "the last metrics push was not started");
            return false;
        }
        // The reader's own bound on a shutdown is 5 s, the export's is `timeout`.
        match tokio::time::timeout(timeout + Duration::from_millis(500), result).await {
            Ok(Ok(Ok(()))) => {
                tracing::info!(collector = %collector, "last metrics pushed");
                true
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(collector = %collector, error = %e, "the last metrics push failed");
                false
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(collector = %collector, ?timeout, "the last metrics push did not finish in time; given up");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lnm_policy::config::AdminConfig;

    use super::*;

    #[tokio::test]
    async fn from_config_exports_what_the_configuration_asks_for() {
        let (recorder, telemetry) = TelemetryBuilder::from_config(&Config::level(4))
            .build()
            .unwrap();
        assert!(matches!(recorder, TelemetryRecorder::Nothing));
        assert!(telemetry.render().is_none());

        let admin = Config::level(4).with_admin(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
        let (_, telemetry) = TelemetryBuilder::from_config(&admin).build().unwrap();
        assert!(telemetry.render().is_some());

        let both = admin.with_metrics_collector("127.0.0.1:1".parse().unwrap());
        let built = TelemetryBuilder::from_config(&both).build();
        #[cfg(feature = "otlp")]
        {
            let (_, telemetry) = built.unwrap();
            assert!(telemetry.render().is_some());
            assert_eq!(
                telemetry.collector().map(|c| c.uri()),
                Some("http://127.0.0.1:1".to_owned())
            );
        }
        #[cfg(not(feature = "otlp"))]
        assert!(matches!(built, Err(Error::MetricsExporter { .. })));
    }
}
