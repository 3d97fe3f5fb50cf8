//! The metrics of a gateway process, exported: the Prometheus text of the admin endpoint's
//! `/metrics` and, with the feature `otlp`, the same metrics pushed over OTLP/gRPC to an
//! OpenTelemetry collector (`openTelemetryMetricsCollectorAddr`, as Azure IoT Operations runs
//! one). Feature `prometheus` (the Prometheus part) or `otlp` (both).
//!
//! lnm's crates record through the [`metrics`] facade (`lnm_connections_total`,
//! `lnm_connections_active`, `lnm_decision_seconds`, ...); this module builds the recorder
//! behind it. Both exporters see every measurement (`metrics_util`'s fanout layer over the
//! Prometheus recorder and [`OtelRecorder`]), so they show the same names, labels (OTLP
//! attributes) and values: a counter is a cumulative monotonic sum, a gauge a gauge, a
//! histogram a histogram with the bucket bounds of the Prometheus text
//! ([`LATENCY_BUCKETS`]). Nothing is scraped or parsed again.
//!
//! The push runs every `metricsExport.interval` (default
//! [`METRICS_EXPORT_INTERVAL`](lnm_policy::config::defaults::METRICS_EXPORT_INTERVAL), 10 s),
//! one attempt each, given up after `metricsExport.timeout` (default 5 s). A collector that is
//! down or refuses is logged once when pushing starts to fail and once when it works again,
//! and never stops the gateway. [`Telemetry::shutdown`] pushes the last values, bounded by the
//! same timeout. The OpenTelemetry SDK sends nothing while nothing has been recorded: a gateway
//! that has served no connection and no query yet neither pushes nor notices a collector that is
//! down (the first push, and the first failure, follow the first measurement). When the last
//! push fails, the SDK reports it without the transport's reason (`Failed to shutdown`); the
//! periodic failures before it carry the reason.
//!
//! ```no_run
//! # async fn run(config: lnm_policy::Config) -> Result<(), lnm_proxy::Error> {
//! use lnm_proxy::{Gateway, telemetry::TelemetryBuilder};
//!
//! // Prometheus text when `admin` is set, the OTLP push when the collector is.
//! let telemetry = TelemetryBuilder::from_config(&config).install()?;
//! let gateway = Gateway::start(&config, telemetry.render()).await?;
//! // ... until asked to stop:
//! gateway.shutdown().await;
//! telemetry.shutdown().await; // the last push, after the drain
//! # Ok(())
//! # }
//! ```
//!
//! [`OtelRecorder`] alone bridges the facade into an OpenTelemetry meter provider of your
//! own; `opentelemetry` and `opentelemetry_sdk` are re-exported for its signatures.
//!
//! # Layout
//! - `builder.rs`: [`TelemetryBuilder`], [`TelemetryRecorder`], [`Telemetry`]
//! - `otel.rs`: [`OtelRecorder`], the facade → OpenTelemetry instruments bridge
//! - `push.rs`: the OTLP/gRPC exporter, its periodic reader, the once-per-streak logging

mod builder;
#[cfg(feature = "otlp")]
mod otel;
#[cfg(feature = "otlp")]
mod push;

pub use builder::{LATENCY_BUCKETS, Telemetry, TelemetryBuilder, TelemetryRecorder};
/// The facade lnm records through, at the version the recorders implement.
pub use metrics;
/// The OpenTelemetry API ([`OtelRecorder::new`] takes its `Meter`).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use opentelemetry;
/// The OpenTelemetry SDK (meter providers, readers) at the version the push uses.
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use opentelemetry_sdk;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use otel::OtelRecorder;
