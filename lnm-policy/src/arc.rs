//! The built-in Azure Arc domain set, added by `allowList.enableArcDomains: true`.

use crate::Pattern;

/// The domains Azure Arc-enabled Kubernetes and its agents need (Azure Resource Manager, Entra ID
/// sign-in, Microsoft Container Registry, the Arc data planes, notification and relay services,
/// Helm chart distribution). Every entry is an external destination.
///
/// Exact names and wildcards follow lnm's semantics: `*.his.arc.azure.com` does not include
/// `his.arc.azure.com`, so where both are needed both are listed.
pub const ARC_DOMAINS: &[&str] = &[
    "management.azure.com",
    "login.microsoftonline.com",
    "login.microsoft.com",
    "*.login.microsoft.com",
    "login.windows.net",
    "sts.windows.net",
    "graph.microsoft.com",
    "graph.windows.net",
    "mcr.microsoft.com",
    "*.data.mcr.microsoft.com",
    "gbl.his.arc.azure.com",
    "*.his.arc.azure.com",
    "dp.kubernetesconfiguration.azure.com",
    "*.dp.kubernetesconfiguration.azure.com",
    "guestnotificationservice.azure.com",
    "*.guestnotificationservice.azure.com",
    "servicebus.windows.net",
    "*.servicebus.windows.net",
    "k8connecthelm.azureedge.net",
    "k8sconnectcsp.azureedge.net",
    "*.arc.azure.net",
    "obo.arc.azure.com",
    "*.obo.arc.azure.com",
    "*.gw.arc.azure.com",
    "linuxgeneva-microsoft.azurecr.io",
];

/// The compiled patterns of [`ARC_DOMAINS`].
pub(crate) fn patterns() -> impl Iterator<Item = Pattern> {
    // Every entry is a constant checked by the unit test below, so none is skipped in practice.
    ARC_DOMAINS
        .iter()
        .filter_map(|text| Pattern::parse(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arc_domain_is_a_valid_pattern() {
        for text in ARC_DOMAINS {
            let pattern = Pattern::parse(text).unwrap();
            assert_eq!(pattern.to_string(), *text, "already canonical");
        }
        assert_eq!(patterns().count(), ARC_DOMAINS.len());
    }
}
