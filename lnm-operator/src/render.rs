//! The pure rendering: a [`Level`] plus [`RenderOptions`] → typed Kubernetes objects. No I/O,
//! no clock, no cluster: the same input always gives the same objects (the operator applies
//! them, `lnm-operator render` prints them, the Helm chart is tested against them).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lnm_dns::RewriteConfig;
use lnm_dns::export::{self, ExportConfig};
use lnm_policy::config::{AdminConfig, Config, ListenerConfig};
use sha2::{Digest, Sha256};

use crate::options::{RenderOptions, ServiceType, defaults};
use crate::{Error, Level};

/// The longest name of an object or label value (a DNS-1123 label).
pub const MAX_NAME: usize = 63;
/// The pod-template annotation that changes with the configuration, so that a change that
/// needs a restart (listeners) rolls the pods.
pub const CHECKSUM_ANNOTATION: &str = "checksum/config";
/// The ConfigMap key of the child level's CoreDNS snippet for K3s's `coredns-custom` (imported
/// into the default server block).
pub const CLIENT_OVERRIDE_KEY: &str = "lnm.override";
/// The ConfigMap key of the child level's standalone Corefile (`export-dns --format coredns`).
pub const CLIENT_COREFILE_KEY: &str = "Corefile";

/// The names of one level's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Names {
    /// Deployment, Service and PodDisruptionBudget: `aio-lnm-<name>` (LNM's), also the `app`
    /// label.
    pub app: String,
    /// The ConfigMap with the level's configuration: `aio-lnm-<name>-config`.
    pub config: String,
    /// The child level's CoreDNS client-config: `aio-lnm-<name>-client-config` (LNM's).
    pub client_config: String,
}

impl Names {
    /// The names for a level called `name` (lower-cased, dots and other characters turned
    /// into `-`; a name too long for 63 characters is cut and given a hash suffix).
    pub fn new(name: &str) -> Names {
        Names {
            app: object_name(name, ""),
            config: object_name(name, "-config"),
            client_config: object_name(name, "-client-config"),
        }
    }
}

fn object_name(name: &str, suffix: &str) -> String {
    const PREFIX: &str = "aio-lnm-";
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    let full = format!("{PREFIX}{clean}{suffix}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = hex(&Sha256::digest(name.as_bytes()))[..8].to_owned();
    let room = MAX_NAME - PREFIX.len() - suffix.len() - hash.len() - 1;
    let cut = clean[..room].trim_end_matches('-');
    format!("{PREFIX}{cut}-{hash}{suffix}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One port of the pod, and of the Service when `service_port` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodPort {
    name: String,
    container_port: u16,
    service_port: Option<u16>,
    protocol: &'static str,
}

/// Everything one level renders to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Rendered {
    /// The level's configuration (`config.yaml`), with the pod's ports.
    pub config_map: ConfigMap,
    /// The gateways.
    pub deployment: Deployment,
    /// What the level below connects to: 443, 80, internal ports, 53 when the level runs DNS;
    /// never the admin port.
    pub service: Service,
    /// At most one gateway down at a time during voluntary disruptions (when replicas ≥ 2).
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// The child level's CoreDNS configuration, answering allowlisted names with this level's
    /// Service address (absent while that address is unknown).
    pub client_config: Option<ConfigMap>,
    /// What deserves a look (the level's warnings).
    pub warnings: Vec<String>,
    /// What needs no action (ignored Azure fields, a client-config still waiting for the
    /// Service address).
    pub notes: Vec<String>,
}

impl Rendered {
    /// Makes every object owned by `owner` (the `Lnm`), so that deleting the CR deletes them.
    pub fn set_owner(&mut self, owner: &OwnerReference) {
        let metas = [
            Some(&mut self.config_map.metadata),
            Some(&mut self.deployment.metadata),
            Some(&mut self.service.metadata),
            self.pod_disruption_budget.as_mut().map(|p| &mut p.metadata),
            self.client_config.as_mut().map(|c| &mut c.metadata),
        ];
        for meta in metas.into_iter().flatten() {
            meta.owner_references = Some(vec![owner.clone()]);
        }
    }

    /// The objects as one YAML stream (`---` between documents), in apply order.
    pub fn to_yaml(&self) -> Result<String, Error> {
        fn doc<T: serde::Serialize>(out: &mut String, what: &str, object: &T) -> Result<(), Error> {
            let text = lnm_policy::serde_saphyr::to_string(object).map_err(|e| Error::Yaml {
                what: what.to_owned(),
                message: e.to_string(),
            })?;
            out.push_str("---\n");
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
            Ok(())
        }
        let mut out = String::new();
        doc(&mut out, "ConfigMap", &self.config_map)?;
        if let Some(client) = &self.client_config {
            doc(&mut out, "ConfigMap", client)?;
        }
        doc(&mut out, "Service", &self.service)?;
        doc(&mut out, "Deployment", &self.deployment)?;
        if let Some(pdb) = &self.pod_disruption_budget {
            doc(&mut out, "PodDisruptionBudget", pdb)?;
        }
        Ok(out)
    }
}

/// The container port for a Service port: 443 and 80 map to the options' TLS and HTTP ports,
/// other privileged ports move up by [`defaults::PRIVILEGED_PORT_OFFSET`], the rest stay.
fn container_port(service_port: u16, options: &RenderOptions) -> u16 {
    match service_port {
        443 => options.tls_port,
        80 => options.http_port,
        p if p < 1024 => p + defaults::PRIVILEGED_PORT_OFFSET,
        p => p,
    }
}

fn port_name(service_port: u16) -> String {
    match service_port {
        443 => "https".into(),
        80 => "http".into(),
        p => format!("tcp-{p}"),
    }
}

/// The configuration the pod runs (the CR's, with the pod's listeners, DNS and admin ports) and
/// the ports it opens.
fn pod_config(level: &Level, options: &RenderOptions) -> Result<(Config, Vec<PodPort>), Error> {
    let mut config = level.config.clone();
    let any = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));
    let mut ports: Vec<PodPort> = Vec::new();
    let mut push = |port: PodPort, key: &str| -> Result<(), Error> {
        if let Some(other) = ports
            .iter()
            .find(|p| p.protocol == port.protocol && p.container_port == port.container_port)
        {
            return Err(Error::PortClash {
                source_name: level.source.clone(),
                key: key.to_owned(),
                port: port.container_port,
                message: format!("`{}` and `{}`", other.name, port.name),
            });
        }
        ports.push(port);
        Ok(())
    };
    push(
        PodPort {
            name: "admin".into(),
            container_port: options.admin_port,
            service_port: None,
            protocol: "TCP",
        },
        "admin",
    )?;
    let mut listeners = Vec::new();
    let key = if config.listeners.is_some() {
        "listeners"
    } else {
        "allowList.domains"
    };
    for listener in config.effective_listeners() {
        let service_port = listener.bind.port();
        let inside = container_port(service_port, options);
        listeners.push(
            ListenerConfig::new(any(inside), listener.protocol)
                .with_destination_port(listener.destination_port()),
        );
        push(
            PodPort {
                name: port_name(service_port),
                container_port: inside,
                service_port: Some(service_port),
                protocol: "TCP",
            },
            key,
        )?;
    }
    config.listeners = Some(listeners);
    if let Some(dns) = config.dns.as_mut() {
        dns.bind = any(options.dns_port);
        match options.service_address {
            Some(IpAddr::V4(v4)) => dns.answer_ipv4 = vec![v4],
            Some(IpAddr::V6(v6)) => dns.answer_ipv6 = vec![v6],
            None => {}
        }
        for protocol in ["UDP", "TCP"] {
            push(
                PodPort {
                    name: format!("dns-{}", protocol.to_ascii_lowercase()),
                    container_port: options.dns_port,
                    service_port: Some(53),
                    protocol,
                },
                "dns.bind",
            )?;
        }
    }
    config.admin = Some(AdminConfig::new(any(options.admin_port)));
    Ok((config, ports))
}

fn string_map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Renders one level. Pure: the same level and options always give the same objects.
pub fn render(level: &Level, options: &RenderOptions) -> Result<Rendered, Error> {
    let name = options
        .name
        .clone()
        .or_else(|| level.name.clone())
        .ok_or_else(|| Error::Field {
            source_name: level.source.clone(),
            key: "metadata.name".into(),
            message: "a bare spec has no name: give one (--name)".into(),
        })?;
    let namespace = options
        .namespace
        .clone()
        .or_else(|| level.namespace.clone())
        .unwrap_or_else(|| defaults::NAMESPACE.to_owned());
    let names = Names::new(&name);
    let warnings = level.warnings.clone();
    let mut notes = level.notes.clone();

    let (config, ports) = pod_config(level, options)?;
    let config_text = lnm_policy::serde_saphyr::to_string(&config).map_err(|e| Error::Yaml {
        what: "the level's configuration".into(),
        message: e.to_string(),
    })?;
    let checksum = hex(&Sha256::digest(config_text.as_bytes()));

    let labels = string_map([
        ("app", &names.app),
        ("app.kubernetes.io/name", "lnm-gateway"),
        ("app.kubernetes.io/instance", &names.app),
        ("app.kubernetes.io/part-of", "lnm"),
    ]);
    let selector = string_map([("app", &names.app)]);
    let meta = |object_name: &str| ObjectMeta {
        name: Some(object_name.to_owned()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };

    let config_map = ConfigMap {
        metadata: meta(&names.config),
        data: Some(BTreeMap::from([(
            defaults::CONFIG_KEY.to_owned(),
            config_text,
        )])),
        ..ConfigMap::default()
    };

    let service = Service {
        metadata: meta(&names.app),
        spec: Some(ServiceSpec {
            type_: Some(options.service_type.as_str().to_owned()),
            external_traffic_policy: (options.service_type != ServiceType::ClusterIP)
                .then(|| options.external_traffic_policy.as_str().to_owned()),
            selector: Some(selector.clone()),
            ports: Some(
                ports
                    .iter()
                    .filter_map(|p| {
                        Some(ServicePort {
                            name: Some(p.name.clone()),
                            port: i32::from(p.service_port?),
                            target_port: Some(IntOrString::Int(i32::from(p.container_port))),
                            protocol: Some(p.protocol.to_owned()),
                            ..ServicePort::default()
                        })
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let admin_port = IntOrString::Int(i32::from(options.admin_port));
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: admin_port.clone(),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    let drain = i64::try_from(config.timeouts.shutdown_drain.as_secs()).unwrap_or(i64::MAX / 2);
    // After the drain, the gateway pushes its last metrics to the collector, if it has one.
    let last_push = if config.open_telemetry_metrics_collector_addr.is_some() {
        i64::try_from(config.metrics_export.timeout.as_secs()).unwrap_or(i64::MAX / 4) + 1
    } else {
        0
    };
    let admin_port_text = options.admin_port.to_string();
    let pod_annotations = string_map([
        (CHECKSUM_ANNOTATION, &checksum),
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", &admin_port_text),
        ("prometheus.io/path", "/metrics"),
    ]);
    let container = Container {
        name: "lnm-gateway".into(),
        image: Some(options.image.clone()),
        image_pull_policy: Some(options.image_pull_policy.clone()),
        args: Some(vec![
            "--config".into(),
            format!("{}/{}", defaults::CONFIG_DIR, defaults::CONFIG_KEY),
        ]),
        ports: Some(
            ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: i32::from(p.container_port),
                    protocol: Some(p.protocol.to_owned()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("100m".into())),
                ("memory".to_owned(), Quantity("64Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("512Mi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(defaults::RUN_AS),
            run_as_group: Some(defaults::RUN_AS),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: defaults::CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta(&names.app),
        spec: Some(DeploymentSpec {
            replicas: Some(level.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(
                        drain.saturating_add(last_push) + defaults::GRACE_MARGIN_SECONDS,
                    ),
                    tolerations: (!level.tolerations.is_empty()).then(|| level.tolerations.clone()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(defaults::RUN_AS),
                        run_as_group: Some(defaults::RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: names.config.clone(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };

    let pod_disruption_budget = (level.replicas >= 2).then(|| PodDisruptionBudget {
        metadata: meta(&names.app),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    });

    let client_config = match client_answers(level, options) {
        Some(answers) => {
            let allowlist = level.config.allowlist();
            let corefile = export::corefile(
                &allowlist,
                &ExportConfig::new(answers.clone(), options.child_upstream.clone()),
            );
            let snippet = coredns_override(&allowlist, answers);
            Some(ConfigMap {
                metadata: meta(&names.client_config),
                data: Some(BTreeMap::from([
                    (CLIENT_COREFILE_KEY.to_owned(), corefile),
                    (CLIENT_OVERRIDE_KEY.to_owned(), snippet),
                ])),
                ..ConfigMap::default()
            })
        }
        None => {
            notes.push(format!(
                "no client-config for the level below: this level's Service address is not known yet \
                 (give --service-address, or set dns.answerIpv4); the operator fills it in from {}'s \
                 load-balancer address",
                names.app
            ));
            None
        }
    };

    Ok(Rendered {
        config_map,
        deployment,
        service,
        pod_disruption_budget,
        client_config,
        warnings,
        notes,
    })
}

/// The answers of the child level's CoreDNS: the Service address, else the CR's DNS answers.
fn client_answers(level: &Level, options: &RenderOptions) -> Option<RewriteConfig> {
    let ttl = level
        .config
        .dns
        .as_ref()
        .map_or(lnm_policy::config::defaults::DNS_TTL, |d| d.ttl);
    let (v4, v6) = match options.service_address {
        Some(IpAddr::V4(v4)) => (vec![v4], Vec::new()),
        Some(IpAddr::V6(v6)) => (Vec::new(), vec![v6]),
        None => {
            let dns = level.config.dns.as_ref()?;
            (dns.answer_ipv4.clone(), dns.answer_ipv6.clone())
        }
    };
    (!v4.is_empty() || !v6.is_empty()).then(|| RewriteConfig::new(v4, v6).ttl(ttl))
}

/// The child level's snippet for K3s's `coredns-custom` (`*.override`, imported into the
/// default `.:53` block): the `template`s of [`export::corefile`] without the server block,
/// `forward`, `cache` and `errors` the default block already has.
fn coredns_override(allowlist: &lnm_policy::Allowlist, answers: RewriteConfig) -> String {
    // Any upstream makes the export end with `forward` (rather than a REFUSED template); the
    // snippet stops before it. 192.0.2.1 (TEST-NET-1) never appears in the output.
    let placeholder = SocketAddr::from(([192, 0, 2, 1], 53));
    let corefile = export::corefile(allowlist, &ExportConfig::new(answers, vec![placeholder]));
    let mut out = String::from(
        "# Generated by lnm: names allowlisted at the parent level resolve to its gateway.\n",
    );
    for line in corefile.lines().skip_while(|l| !l.ends_with('{')).skip(1) {
        if line.starts_with("    forward ") {
            break;
        }
        out.push_str(line.strip_prefix("    ").unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_of_at_most_63_characters() {
        assert_eq!(Names::new("level4").app, "aio-lnm-level4");
        assert_eq!(
            Names::new("Level.3_a").client_config,
            "aio-lnm-level-3-a-client-config"
        );
        let long = "x".repeat(100);
        let names = Names::new(&long);
        for name in [&names.app, &names.config, &names.client_config] {
            assert!(name.len() <= MAX_NAME, "{name}");
            assert!(!name.contains("--"), "{name}");
        }
        assert!(names.client_config.ends_with("-client-config"));
        // Two long names that share their first 63 characters stay apart.
        let other = format!("{}y", "x".repeat(99));
        assert_ne!(Names::new(&other).app, names.app);
    }

    #[test]
    fn container_ports_are_unprivileged() {
        let options = RenderOptions::default();
        assert_eq!(container_port(443, &options), defaults::TLS_PORT);
        assert_eq!(container_port(80, &options), defaults::HTTP_PORT);
        assert_eq!(container_port(22, &options), 8022);
        assert_eq!(container_port(8883, &options), 8883);
        assert!((1..1024).all(|p| container_port(p, &options) >= 1024));
    }
}
