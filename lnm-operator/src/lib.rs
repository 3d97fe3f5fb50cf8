//! Runs lnm where Azure IoT Layered Network Management's users ran it: on Kubernetes, one
//! cluster per Purdue level, from the same `Lnm` custom resource.
//!
//! - [`render`] is pure and typed: a [`Level`] (an unchanged `Lnm` CR, judged by lnm's own
//!   configuration parser) plus [`RenderOptions`] (image, namespace, ports, Service type,
//!   `externalTrafficPolicy`) become `k8s-openapi` objects: the level's ConfigMap, a hardened
//!   Deployment, a LoadBalancer Service (443, 80, internal ports, 53 when the level runs DNS —
//!   never the admin port), a PodDisruptionBudget (2 replicas or more) and the child level's
//!   CoreDNS client-config. `lnm-operator render --config CR.yaml` prints them.
//! - [`crd`] is the `Lnm` CustomResourceDefinition (LNM's group, version, kind, plural; a
//!   structural schema; `scale` and `status` subresources).
//! - [`reconcile`] is the operator: it server-side-applies a level's objects (owned by the CR,
//!   so deleting the CR deletes them), follows `replicas`, fills the client-config with the
//!   Service's load-balancer address and reports `status.configStatusLevel` (`ok` / `warn`)
//!   and `status.configStatusDescription`.
//!
//! No other lnm crate depends on Kubernetes: this one reads the same configuration types.
//!
//! ```
//! use lnm_operator::{Level, RenderOptions, render};
//!
//! let level = Level::parse("level: 4\nallowList: {domains: [{destinationUrl: example.com, destinationType: external}]}\n", "level4.yaml")?;
//! let objects = render(&level, &RenderOptions::default().with_name("level4"))?;
//! let service = objects.service.spec.unwrap();
//! assert!(service.ports.unwrap().iter().all(|p| p.port != 9100), "the admin port is never exposed");
//! # Ok::<(), lnm_operator::Error>(())
//! ```
//!
//! # Layout
//! - `resource.rs`: the `Lnm` type and its status
//! - `level.rs`: a CR (file or API object) → [`Level`]
//! - `options.rs`: [`RenderOptions`] and their defaults
//! - `render.rs`: [`render`] → [`Rendered`]
//! - `crd.rs`: the CustomResourceDefinition
//! - `reconcile.rs`: the operator's reconcile step and controller

mod crd;
mod error;
mod level;
pub mod options;
pub mod reconcile;
mod render;
mod resource;

pub use crd::{CRD_YAML, crd};
pub use error::Error;
pub use k8s_openapi;
pub use kube;
pub use level::{Level, MAX_REPLICAS};
pub use options::{RenderOptions, ServiceType, TrafficPolicy};
pub use render::{
    CHECKSUM_ANNOTATION, CLIENT_COREFILE_KEY, CLIENT_OVERRIDE_KEY, MAX_NAME, Names, Rendered,
    render,
};
pub use resource::{API_VERSION, GROUP, KIND, Lnm, LnmStatus, PLURAL, VERSION};
