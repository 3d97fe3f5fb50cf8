//! The `Lnm` CustomResourceDefinition (`deploy/kubernetes/crd.yaml`, compiled in).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The definition as YAML: LNM's group, version, kind and plural, a structural schema, and the
/// `scale` and `status` subresources.
pub const CRD_YAML: &str = include_str!("../../deploy/kubernetes/crd.yaml");

/// The definition, typed.
pub fn crd() -> CustomResourceDefinition {
    // The file is part of the crate and a unit test parses it: this cannot fail at run time.
    #[allow(clippy::expect_used)]
    lnm_policy::serde_saphyr::from_str(CRD_YAML)
        .expect("deploy/kubernetes/crd.yaml is a CustomResourceDefinition")
}
