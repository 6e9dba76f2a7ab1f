use crate::rules::{Finding, ObjectContext};
use crate::schema::removed::version_priority;

rule! {
    /// Deprecated API version
    ///
    /// Kubernetes removes deprecated API versions a few releases after deprecating them (beta APIs three releases
    /// after their replacement is GA). Manifests that still use them break on upgrade, usually discovered when the
    /// cluster is already upgraded.
    ///
    /// Fix: Move the object to the replacement apiVersion, checking the migration guide for renamed or moved fields.
    "api/deprecated", Warning, Object(check)
}

/// `(apiVersion, kind, deprecated in 1.N, removed in 1.N (if scheduled), replacement)`,
/// from the Kubernetes deprecated API migration guide.
static DEPRECATIONS: &[(&str, &str, u32, Option<u32>, &str)] = &[
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler", 23, Some(26), "autoscaling/v2"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema", 23, Some(26), "flowcontrol.apiserver.k8s.io/v1"),
    (
        "flowcontrol.apiserver.k8s.io/v1beta1",
        "PriorityLevelConfiguration",
        23,
        Some(26),
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema", 26, Some(29), "flowcontrol.apiserver.k8s.io/v1"),
    (
        "flowcontrol.apiserver.k8s.io/v1beta2",
        "PriorityLevelConfiguration",
        26,
        Some(29),
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema", 29, Some(32), "flowcontrol.apiserver.k8s.io/v1"),
    (
        "flowcontrol.apiserver.k8s.io/v1beta3",
        "PriorityLevelConfiguration",
        29,
        Some(32),
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity", 24, Some(27), "storage.k8s.io/v1"),
    ("v1", "Endpoints", 33, None, "discovery.k8s.io/v1 EndpointSlice"),
    ("v1", "ComponentStatus", 19, None, "the /livez and /readyz endpoints"),
];

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let gvk = &context.info.gvk;
    let api_version = gvk.api_version();
    let target = context.catalog.version();
    let span = context.info.api_version_span;
    if let Some(&(_, _, deprecated_in, removed_in, replacement)) = DEPRECATIONS
        .iter()
        .find(|(v, k, deprecated_in, _, _)| *v == api_version && *k == gvk.kind && *deprecated_in <= target.minor)
    {
        let removal = removed_in.map_or_else(String::new, |r| format!(" and removed in 1.{r}"));
        out.push(
            Finding::new(
                &RULE,
                span,
                format!("{api_version} {} is deprecated since Kubernetes 1.{deprecated_in}{removal}", gvk.kind),
            )
            .label("deprecated API")
            .help(format!("use {replacement}"))
            .path("apiVersion"),
        );
        return;
    }
    // A pre-release version served beside a stable one: the pre-release is on notice.
    let mine = version_priority(&gvk.version);
    if mine.0 < 3 {
        let stable = context
            .catalog
            .api_versions_for(&gvk.kind)
            .into_iter()
            .filter(|v| v.starts_with(&format!("{}/", gvk.group)) || (gvk.group.is_empty() && !v.contains('/')))
            .find(|v| version_priority(v.rsplit('/').next().unwrap_or(v)).0 == 3);
        if let Some(stable) = stable {
            out.push(
                Finding::new(
                    &RULE,
                    span,
                    format!("{api_version} {} is a pre-release API; Kubernetes {target} serves {stable}", gvk.kind),
                )
                .label("pre-release API with a stable successor")
                .help(format!("use apiVersion: {stable}; pre-release versions are removed a few releases after their stable successor ships"))
                .path("apiVersion"),
            );
        }
    }
}
