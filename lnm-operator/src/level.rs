//! A level as the renderer needs it: the `Lnm` CR judged by lnm's own parser
//! ([`lnm_policy::Config`]) plus the Kubernetes-only fields it leaves aside (`replicas`,
//! `nodeTolerations`, the name and namespace).

use k8s_openapi::api::core::v1::Toleration;
use kube::ResourceExt;
use lnm_policy::Config;

use crate::{Error, Lnm};

/// One level, parsed: what [`crate::render`] turns into Kubernetes objects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Level {
    /// Where it came from (a file name, or `Lnm <namespace>/<name>`): error messages name it.
    pub source: String,
    /// `metadata.name` of the CR (absent for a bare spec).
    pub name: Option<String>,
    /// `metadata.namespace` of the CR.
    pub namespace: Option<String>,
    /// The level's configuration, as `lnm-gateway` reads it.
    pub config: Config,
    /// `spec.replicas` (default 1).
    pub replicas: i32,
    /// `spec.nodeTolerations`.
    pub tolerations: Vec<Toleration>,
    /// What deserves a look (risky values found by the configuration's checks).
    pub warnings: Vec<String>,
    /// What every stock LNM resource produces and needs no action: Azure fields lnm ignores
    /// (the Envoy `image`). `openTelemetryMetricsCollectorAddr` is not one of them: it is
    /// passed to the pod's configuration, and the gateway pushes its metrics there.
    pub notes: Vec<String>,
}

/// The most replicas a level may ask for (a typo guard, not a limit of lnm).
pub const MAX_REPLICAS: i64 = 1000;

impl Level {
    /// Parses a level file: a whole `kind: Lnm` document or its `spec` (YAML or JSON), exactly
    /// as `lnm-gateway --config` reads it. `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Level, Error> {
        let loaded = Config::parse(text, source)?;
        // The same text parsed again, untyped, for the fields lnm-policy leaves aside. It
        // parsed above, so this cannot fail on syntax.
        let raw: serde_json::Value =
            lnm_policy::serde_saphyr::from_str(text).map_err(|e| Error::Field {
                source_name: source.to_owned(),
                key: "(document)".into(),
                message: e.to_string(),
            })?;
        let whole = raw.get("kind").is_some();
        let spec = if whole {
            raw.get("spec").cloned().unwrap_or_default()
        } else {
            raw.clone()
        };
        let string_at = |path: &[&str]| {
            let mut value = &raw;
            for key in path {
                value = value.get(key)?;
            }
            value.as_str().map(str::to_owned)
        };
        Level::assemble(
            source,
            string_at(&["metadata", "name"]).filter(|_| whole),
            string_at(&["metadata", "namespace"]).filter(|_| whole),
            loaded,
            &spec,
        )
    }

    /// Judges an `Lnm` object from the API server. Errors name `Lnm <namespace>/<name>` and
    /// the key.
    pub fn from_resource(lnm: &Lnm) -> Result<Level, Error> {
        let namespace = lnm.namespace();
        let source = format!(
            "Lnm {}/{}",
            namespace
                .as_deref()
                .unwrap_or(crate::options::defaults::NAMESPACE),
            lnm.name_any()
        );
        let spec = if lnm.spec.is_null() {
            serde_json::json!({})
        } else {
            lnm.spec.clone()
        };
        // Pretty-printed so that a parse error's line points at one key.
        let text = serde_json::to_string_pretty(&spec).unwrap_or_default();
        let loaded = Config::parse(&text, &source)?;
        Level::assemble(&source, Some(lnm.name_any()), namespace, loaded, &spec)
    }

    fn assemble(
        source: &str,
        name: Option<String>,
        namespace: Option<String>,
        loaded: lnm_policy::LoadedConfig,
        spec: &serde_json::Value,
    ) -> Result<Level, Error> {
        let field = |key: &str, message: String| Error::Field {
            source_name: source.to_owned(),
            key: key.to_owned(),
            message,
        };
        let replicas = match spec.get("replicas") {
            None | Some(serde_json::Value::Null) => 1,
            Some(value) => match value.as_i64() {
                Some(n) if (0..=MAX_REPLICAS).contains(&n) => n as i32,
                _ => {
                    return Err(field(
                        "replicas",
                        format!("expected a whole number from 0 to {MAX_REPLICAS}, found {value}"),
                    ));
                }
            },
        };
        let tolerations = match spec.get("nodeTolerations") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(value) => {
                serde_json::from_value::<Vec<Toleration>>(value.clone()).map_err(|e| {
                    field(
                        "nodeTolerations",
                        format!("not a list of Kubernetes tolerations: {e}"),
                    )
                })?
            }
        };
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        for warning in loaded.warnings {
            // `replicas` and `nodeTolerations` mean something here; the Envoy image does not.
            if warning.starts_with("`replicas`") || warning.starts_with("`nodeTolerations`") {
                continue;
            }
            if warning.starts_with("`image`") {
                notes.push(
                    "`image` is the CR's Envoy image and is ignored: lnm deploys its own gateway image (--image)"
                        .to_owned(),
                );
                continue;
            }
            warnings.push(warning);
        }
        Ok(Level {
            source: source.to_owned(),
            name,
            namespace,
            config: loaded.config,
            replicas,
            tolerations,
            warnings,
            notes,
        })
    }
}
