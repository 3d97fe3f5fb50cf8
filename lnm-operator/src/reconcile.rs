//! The operator: one reconcile step per `Lnm` (judge the spec, server-side-apply what
//! [`render`](crate::render()) made, report the status), and the controller that runs it for
//! every `Lnm` in the cluster.
//!
//! A bad spec applies nothing: the status says `warn` with the message naming the key, and the
//! running objects stay as they were. A level's objects are owned by its `Lnm` (a controller
//! owner reference), so deleting the CR lets Kubernetes' garbage collector delete them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::options::defaults;
use crate::{API_VERSION, Error, KIND, Level, Lnm, LnmStatus, Names, RenderOptions, render};

/// `status.configStatusLevel` of a valid level.
pub const STATUS_OK: &str = "ok";
/// `status.configStatusLevel` of a level whose spec is rejected, or deserves a look.
pub const STATUS_WARN: &str = "warn";
/// How often a level is reconciled even when nothing changed.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon a failed reconcile is retried.
pub const RETRY: Duration = Duration::from_secs(15);

/// What every reconcile step shares.
#[derive(Clone)]
#[non_exhaustive]
pub struct Context {
    /// The API server.
    pub client: Client,
    /// The deployment options of every level (the image, ports, Service); the name and
    /// namespace come from each `Lnm`.
    pub options: RenderOptions,
}

impl Context {
    /// A context for `client` with `options`.
    pub fn new(client: Client, options: RenderOptions) -> Self {
        Context { client, options }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(defaults::FIELD_MANAGER).force()
}

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(&name, &apply_params(), &Patch::Apply(object))
        .await
        .map_err(|e| Error::Kube {
            action: format!("apply {} {namespace}/{name}", K::kind(&())),
            source: Box::new(e),
        })
}

/// The first load-balancer address of a Service, once Kubernetes assigned one.
pub fn load_balancer_address(service: &Service) -> Option<IpAddr> {
    let ingress = service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?;
    ingress.iter().find_map(|i| i.ip.as_deref()?.parse().ok())
}

/// The status of a level: `warn` with `description`, or `ok`.
fn status(
    level: &str,
    description: String,
    lnm: &Lnm,
    replicas: Option<i32>,
    selector: Option<String>,
) -> LnmStatus {
    LnmStatus {
        config_status_level: Some(level.to_owned()),
        config_status_description: Some(description),
        observed_generation: lnm.metadata.generation,
        replicas,
        selector,
    }
}

async fn patch_status(client: &Client, lnm: &Lnm, status: LnmStatus) -> Result<(), Error> {
    let namespace = lnm
        .namespace()
        .unwrap_or_else(|| defaults::NAMESPACE.to_owned());
    let name = lnm.name_any();
    let api: Api<Lnm> = Api::namespaced(client.clone(), &namespace);
    let body = serde_json::json!({ "apiVersion": API_VERSION, "kind": KIND, "status": status });
    api.patch_status(&name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(|e| Error::Kube {
            action: format!("patch the status of Lnm {namespace}/{name}"),
            source: Box::new(e),
        })?;
    Ok(())
}

/// One reconcile step for `lnm`: applies its level's Service, ConfigMaps, Deployment and
/// PodDisruptionBudget (deleting the budget below 2 replicas), then reports the status. A bad
/// spec applies nothing and reports `warn`.
pub async fn reconcile(lnm: Arc<Lnm>, ctx: Arc<Context>) -> Result<Action, Error> {
    if lnm.metadata.deletion_timestamp.is_some() {
        // The objects carry owner references: the garbage collector deletes them.
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let namespace = lnm
        .namespace()
        .unwrap_or_else(|| defaults::NAMESPACE.to_owned());
    let name = lnm.name_any();
    let mut options = ctx.options.clone();
    options.name = Some(name.clone());
    options.namespace = Some(namespace.clone());

    // Judge first: nothing is applied for a spec lnm-gateway would reject.
    let first = Level::from_resource(&lnm).and_then(|level| Ok((render(&level, &options)?, level)));
    let (rendered, level) = match first {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!(lnm = %format!("{namespace}/{name}"), "spec rejected, nothing applied: {e}");
            patch_status(
                client,
                &lnm,
                status(STATUS_WARN, e.to_string(), &lnm, None, None),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let Some(owner) = lnm.controller_owner_ref(&()).map(|o| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            block_owner_deletion: Some(true),
            ..o
        }
    }) else {
        return Err(Error::Field {
            source_name: format!("Lnm {namespace}/{name}"),
            key: "metadata.uid".into(),
            message: "the object has no uid (not read from the API server?)".into(),
        });
    };

    // The Service first: its load-balancer address is the answer of the child's client-config
    // (and of this level's own DNS server).
    let mut service = rendered.service.clone();
    service.metadata.owner_references = Some(vec![owner.clone()]);
    let applied = apply(client, &namespace, &service).await?;
    let mut rendered = rendered;
    if options.service_address.is_none()
        && let Some(address) = load_balancer_address(&applied)
    {
        options.service_address = Some(address);
        rendered = render(&level, &options)?;
    }
    rendered.set_owner(&owner);
    apply(client, &namespace, &rendered.config_map).await?;
    if let Some(client_config) = &rendered.client_config {
        apply(client, &namespace, client_config).await?;
    }
    let deployment = apply(client, &namespace, &rendered.deployment).await?;
    let names = Names::new(&name);
    match &rendered.pod_disruption_budget {
        Some(pdb) => {
            apply(client, &namespace, pdb).await?;
        }
        None => {
            let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
            match api.delete(&names.app, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(Error::Kube {
                        action: format!("delete PodDisruptionBudget {namespace}/{}", names.app),
                        source: Box::new(e),
                    });
                }
            }
        }
    }

    // `ok` unless the configuration raised something (the notes every stock LNM resource
    // produces, such as its ignored Envoy image, are reported but do not warn).
    let replicas = level.replicas;
    let mut description = format!("applied: {replicas} replica(s) of {}", options.image);
    match options.service_address {
        Some(address) => description.push_str(&format!(
            "; the level below resolves allowlisted names to {address}"
        )),
        None => description.push_str("; waiting for the Service's load-balancer address"),
    }
    let level_word = if rendered.warnings.is_empty() {
        STATUS_OK
    } else {
        STATUS_WARN
    };
    for warning in &rendered.warnings {
        description.push_str("; warning: ");
        description.push_str(warning);
    }
    for note in rendered
        .notes
        .iter()
        .filter(|n| !n.contains("client-config"))
    {
        description.push_str("; note: ");
        description.push_str(note);
    }
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let selector = format!("app={}", names.app);
    patch_status(
        client,
        &lnm,
        status(level_word, description, &lnm, Some(ready), Some(selector)),
    )
    .await?;
    Ok(Action::requeue(RESYNC))
}

/// What happens after a failed reconcile: logged, retried after [`RETRY`].
pub fn error_policy(lnm: Arc<Lnm>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(lnm = %lnm.name_any(), "reconcile failed, retrying: {error}");
    Action::requeue(RETRY)
}

/// Server-side-applies the `Lnm` CustomResourceDefinition.
pub async fn install_crd(client: &Client) -> Result<(), Error> {
    let crd = crate::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(&name, &apply_params(), &Patch::Apply(&crd))
        .await
        .map_err(|e| Error::Kube {
            action: format!("apply CustomResourceDefinition {name}"),
            source: Box::new(e),
        })?;
    Ok(())
}

/// Runs the controller until SIGTERM/SIGINT: every `Lnm` (in `namespace`, or in all of them)
/// is reconciled when it, its Deployment or its Service changes, and every [`RESYNC`].
pub async fn run(client: Client, options: RenderOptions, namespace: Option<&str>) {
    let lnms: Api<Lnm> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (deployments, services, config_maps): (Api<Deployment>, Api<Service>, Api<ConfigMap>) =
        match namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    let children = watcher::Config::default().labels("app.kubernetes.io/part-of=lnm");
    let context = Arc::new(Context::new(client, options));
    Controller::new(lnms, watcher::Config::default())
        .owns(deployments, children.clone())
        .owns(services, children.clone())
        .owns(config_maps, children)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::info!(lnm = %object, "reconciled"),
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        })
        .await;
}
