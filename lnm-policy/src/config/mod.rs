//! The configuration file of one gateway level (DESIGN §4), parsed in one place, once.
//!
//! The file is either the `spec` of an Azure IoT Layered Network Management custom resource —
//! unchanged, so existing LNM YAML runs as is — or a whole `kind: Lnm` document, in YAML or JSON
//! (JSON is read by the same YAML 1.2 parser). lnm's own sections (`listeners`, `dns`,
//! `resolver`, `admin`, `proxyProtocol`, `limits`, `timeouts`) are optional extensions of the
//! same document.
//!
//! Unknown keys and bad values are errors naming the key, the line and the column. Azure fields
//! that have no meaning for the gateway itself (`image`, `replicas`, `nodeTolerations`) are
//! accepted with a warning. `openTelemetryMetricsCollectorAddr` ([`CollectorEndpoint`]) is where
//! the gateway pushes its metrics over OTLP/gRPC, every `metricsExport.interval`.
//!
//! The YAML parser is `serde-saphyr`: pure Rust on top of the maintained `saphyr` parser (no
//! `unsafe-libyaml` C translation as in the deprecated `serde_yaml` and its `serde_norway`
//! fork), panic-free by design, with resource budgets against alias bombs, and error messages
//! that point at the line and column with a snippet.

mod collector;
pub mod defaults;
mod serde_util;
mod types;

use std::path::Path;

pub use collector::CollectorEndpoint;
pub use types::*;

use crate::Error;

/// A parsed configuration and the warnings it produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// Things that are accepted but deserve a look (ignored Azure fields, risky values).
    pub warnings: Vec<String>,
}

/// Just enough of a document to tell a whole `kind: Lnm` resource from a bare `spec`.
#[derive(serde::Deserialize)]
struct Probe {
    kind: Option<serde::de::IgnoredAny>,
    spec: Option<serde::de::IgnoredAny>,
}

/// A whole custom resource (`apiVersion`, `kind: Lnm`, `metadata`, `spec`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document {
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    kind: String,
    #[serde(rename = "metadata")]
    _metadata: Option<serde::de::IgnoredAny>,
    spec: Config,
    #[serde(rename = "status")]
    _status: Option<serde::de::IgnoredAny>,
}

impl Config {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<LoadedConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<LoadedConfig, Error> {
        let parse_err = |source: serde_saphyr::Error| Error::Parse {
            file: file.to_owned(),
            source: Box::new(source),
        };
        let probe: Probe = serde_saphyr::from_str(text).map_err(parse_err)?;
        let config = if probe.kind.is_some() || probe.spec.is_some() {
            let doc: Document = serde_saphyr::from_str(text).map_err(parse_err)?;
            if doc.kind != "Lnm" {
                return Err(Error::Invalid {
                    file: file.to_owned(),
                    key: "kind".into(),
                    message: format!("expected `Lnm`, found {:?}", doc.kind),
                });
            }
            doc.spec
        } else {
            serde_saphyr::from_str(text).map_err(parse_err)?
        };
        let warnings = config.check().map_err(|(key, message)| Error::Invalid {
            file: file.to_owned(),
            key,
            message,
        })?;
        Ok(LoadedConfig { config, warnings })
    }
}

#[cfg(test)]
mod tests;
