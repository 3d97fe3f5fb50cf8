//! How a level is deployed: what the CR does not say (image, namespace, ports, Service).
//! Every default is a named constant in [`defaults`].

use std::net::{IpAddr, SocketAddr};

/// Every default of [`RenderOptions`], in one place.
pub mod defaults {
    /// lnm's gateway image (`deploy/Containerfile`, `scripts/build-image.sh`).
    pub const IMAGE: &str = concat!("ghcr.io/lnm-rs/lnm-gateway:", env!("CARGO_PKG_VERSION"));
    /// `imagePullPolicy`: an image imported offline (`k3s ctr images import`) is used as is.
    pub const IMAGE_PULL_POLICY: &str = "IfNotPresent";
    /// The namespace when neither the CR nor the options name one.
    pub const NAMESPACE: &str = "default";
    /// The container port of the TLS listener (the Service's 443).
    pub const TLS_PORT: u16 = 8443;
    /// The container port of the HTTP listener (the Service's 80).
    pub const HTTP_PORT: u16 = 8080;
    /// The container port of the DNS server (the Service's 53, UDP and TCP).
    pub const DNS_PORT: u16 = 1053;
    /// The container port of the admin endpoint (`/metrics`, `/healthz`, `/readyz`); never on
    /// the Service.
    pub const ADMIN_PORT: u16 = 9100;
    /// Added to another privileged Service port (below 1024) to make its container port.
    pub const PRIVILEGED_PORT_OFFSET: u16 = 8000;
    /// Where the ConfigMap is mounted in the pod (a directory: a ConfigMap volume is updated
    /// in place by a symlink swap, which the gateway follows; a `subPath` mount would not be).
    pub const CONFIG_DIR: &str = "/etc/lnm";
    /// The ConfigMap key (and file name) of the level's configuration.
    pub const CONFIG_KEY: &str = "config.yaml";
    /// Seconds added to `timeouts.shutdownDrain` for `terminationGracePeriodSeconds`.
    pub const GRACE_MARGIN_SECONDS: i64 = 10;
    /// The UID and GID the gateway runs as (the image's non-root user).
    pub const RUN_AS: i64 = 65532;
    /// Who applies the objects (server-side-apply field manager; also the `managed-by` label).
    pub const FIELD_MANAGER: &str = "lnm-operator";
}

/// The Service's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ServiceType {
    /// A LoadBalancer (LNM's choice; K3s's ServiceLB gives it the node's address).
    #[default]
    LoadBalancer,
    /// A NodePort.
    NodePort,
    /// A ClusterIP (the level below reaches it some other way).
    ClusterIP,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
            ServiceType::ClusterIP => "ClusterIP",
        }
    }
}

/// The Service's `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TrafficPolicy {
    /// Keep the client's source address (so `sourceIpRange` and PROXY protocol see real
    /// clients); only nodes running a replica receive traffic.
    #[default]
    Local,
    /// Spread over every node; the source address becomes a node's.
    Cluster,
}

impl TrafficPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Local => "Local",
            TrafficPolicy::Cluster => "Cluster",
        }
    }
}

/// What the CR does not say about a deployment. `RenderOptions::default()` is lnm's choice for
/// each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderOptions {
    /// The gateway image (never the CR's Envoy `image`).
    pub image: String,
    /// `imagePullPolicy`.
    pub image_pull_policy: String,
    /// The namespace; `None`: the CR's, else [`defaults::NAMESPACE`].
    pub namespace: Option<String>,
    /// The level's name; `None`: the CR's `metadata.name` (required for a bare spec).
    pub name: Option<String>,
    /// Container port of the TLS listener.
    pub tls_port: u16,
    /// Container port of the HTTP listener.
    pub http_port: u16,
    /// Container port of the DNS server (used when the config has a `dns` section).
    pub dns_port: u16,
    /// Container port of the admin endpoint.
    pub admin_port: u16,
    /// The Service's type.
    pub service_type: ServiceType,
    /// The Service's `externalTrafficPolicy` (LoadBalancer and NodePort only).
    pub external_traffic_policy: TrafficPolicy,
    /// This level's Service address, as the level below reaches it: the answer of the child
    /// level's CoreDNS client-config (and of this level's own DNS server). `None`: the CR's
    /// `dns.answerIpv4`; without either, no client-config is rendered.
    pub service_address: Option<IpAddr>,
    /// Where the child level's standalone Corefile forwards other names (empty: REFUSED).
    pub child_upstream: Vec<SocketAddr>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            image: defaults::IMAGE.to_owned(),
            image_pull_policy: defaults::IMAGE_PULL_POLICY.to_owned(),
            namespace: None,
            name: None,
            tls_port: defaults::TLS_PORT,
            http_port: defaults::HTTP_PORT,
            dns_port: defaults::DNS_PORT,
            admin_port: defaults::ADMIN_PORT,
            service_type: ServiceType::default(),
            external_traffic_policy: TrafficPolicy::default(),
            service_address: None,
            child_upstream: Vec::new(),
        }
    }
}

impl RenderOptions {
    /// Deploys `image`.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }
    /// Deploys into `namespace`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
    /// Names the level `name` (objects `aio-lnm-<name>`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// The level's Service address (fills the child's client-config).
    pub fn with_service_address(mut self, address: IpAddr) -> Self {
        self.service_address = Some(address);
        self
    }
    /// The Service's type.
    pub fn with_service_type(mut self, service_type: ServiceType) -> Self {
        self.service_type = service_type;
        self
    }
    /// The Service's `externalTrafficPolicy`.
    pub fn with_external_traffic_policy(mut self, policy: TrafficPolicy) -> Self {
        self.external_traffic_policy = policy;
        self
    }
    /// The child's standalone Corefile forwards other names to `upstream`.
    pub fn with_child_upstream(mut self, upstream: Vec<SocketAddr>) -> Self {
        self.child_upstream = upstream;
        self
    }
}
