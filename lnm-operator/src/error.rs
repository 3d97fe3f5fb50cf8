//! The crate's error type.

/// What can go wrong while rendering or reconciling a level.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The level's configuration (the CR's `spec`) is not valid for lnm. The message names the
    /// key (and, for a file, the line).
    #[error(transparent)]
    Config(#[from] lnm_policy::Error),
    /// A Kubernetes-only field of the CR (`replicas`, `nodeTolerations`, `metadata`) has a bad
    /// value.
    #[error("{source_name}: {key}: {message}")]
    Field {
        /// Where the CR came from (a file, or `Lnm <namespace>/<name>`).
        source_name: String,
        /// The key at fault (`replicas`, `nodeTolerations[1].effect`, `metadata.name`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Two listeners (or a listener and the DNS or admin port) need the same port in the pod.
    #[error("{source_name}: {key}: port {port} is used twice in the pod ({message})")]
    PortClash {
        /// Where the CR came from.
        source_name: String,
        /// The key that asked for the port (`listeners`, `allowList.domains`).
        key: String,
        /// The port.
        port: u16,
        /// Which uses collide.
        message: String,
    },
    /// A rendered object could not be written as YAML.
    #[error("cannot write {what} as YAML: {message}")]
    Yaml {
        /// The object.
        what: String,
        /// The serializer's message.
        message: String,
    },
    /// A request to the Kubernetes API server failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing (`apply Deployment default/aio-lnm-level4`).
        action: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
}
