//! The `Lnm` custom resource, as Azure IoT Layered Network Management defined it
//! (`layerednetworkmgmt.iotoperations.azure.com/v1beta1`, plural `lnmz`).

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The API group of the `Lnm` resource.
pub const GROUP: &str = "layerednetworkmgmt.iotoperations.azure.com";
/// The API version of the `Lnm` resource.
pub const VERSION: &str = "v1beta1";
/// The kind.
pub const KIND: &str = "Lnm";
/// The plural (LNM's: `lnmz`).
pub const PLURAL: &str = "lnmz";
/// `apiVersion` of the resource.
pub const API_VERSION: &str = "layerednetworkmgmt.iotoperations.azure.com/v1beta1";

/// One `Lnm` object. The `spec` stays untyped JSON here: it is exactly what users wrote, and
/// [`lnm_policy::Config`] (through [`crate::Level`]) is the one parser that judges it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lnm {
    /// Name, namespace, uid, generation.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The level's configuration (LNM's spec plus lnm's optional sections).
    #[serde(default)]
    pub spec: serde_json::Value,
    /// What the operator reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LnmStatus>,
}

/// `status` of an `Lnm`, as `az iot ops check` read it, plus what the `scale` subresource needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LnmStatus {
    /// `ok` or `warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_status_level: Option<String>,
    /// Why (the validation message naming the key, or the warnings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_status_description: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the level's Deployment (`scale` subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The pods' label selector (`scale` subresource, for the horizontal pod autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

impl kube::Resource for Lnm {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(GROUP)
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(VERSION)
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(API_VERSION)
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
