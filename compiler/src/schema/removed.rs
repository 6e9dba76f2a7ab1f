//! APIs that Kubernetes removed, from the Kubernetes deprecated API migration guide
//! (kubernetes.io/docs/reference/using-api/deprecation-guide). Removals inside the
//! versions we ship are also visible in the schemas themselves; this table covers the
//! older ones and names the replacement that the guide names.

/// `(apiVersion, kinds, removed in 1.N, replacement group or None)`.
/// The replacement is a group; the served version of it is read from the target schemas.
static REMOVED: &[(&str, &[&str], u32, Option<&str>)] = &[
    ("extensions/v1beta1", &["Deployment", "DaemonSet", "ReplicaSet"], 16, Some("apps")),
    ("extensions/v1beta1", &["NetworkPolicy"], 16, Some("networking.k8s.io")),
    ("extensions/v1beta1", &["PodSecurityPolicy"], 16, None),
    ("apps/v1beta1", &["Deployment", "StatefulSet", "ReplicaSet", "ControllerRevision"], 16, Some("apps")),
    ("apps/v1beta2", &["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ControllerRevision"], 16, Some("apps")),
    ("admissionregistration.k8s.io/v1alpha1", &["InitializerConfiguration"], 14, None),
    ("batch/v2alpha1", &["CronJob"], 21, Some("batch")),
    (
        "admissionregistration.k8s.io/v1beta1",
        &["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"],
        22,
        Some("admissionregistration.k8s.io"),
    ),
    ("apiextensions.k8s.io/v1beta1", &["CustomResourceDefinition"], 22, Some("apiextensions.k8s.io")),
    ("apiregistration.k8s.io/v1beta1", &["APIService"], 22, Some("apiregistration.k8s.io")),
    ("authentication.k8s.io/v1beta1", &["TokenReview"], 22, Some("authentication.k8s.io")),
    (
        "authorization.k8s.io/v1beta1",
        &["SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview"],
        22,
        Some("authorization.k8s.io"),
    ),
    ("certificates.k8s.io/v1beta1", &["CertificateSigningRequest"], 22, Some("certificates.k8s.io")),
    ("coordination.k8s.io/v1beta1", &["Lease"], 22, Some("coordination.k8s.io")),
    ("extensions/v1beta1", &["Ingress"], 22, Some("networking.k8s.io")),
    ("networking.k8s.io/v1beta1", &["Ingress", "IngressClass"], 22, Some("networking.k8s.io")),
    (
        "rbac.authorization.k8s.io/v1beta1",
        &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
        22,
        Some("rbac.authorization.k8s.io"),
    ),
    (
        "rbac.authorization.k8s.io/v1alpha1",
        &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
        22,
        Some("rbac.authorization.k8s.io"),
    ),
    ("scheduling.k8s.io/v1beta1", &["PriorityClass"], 22, Some("scheduling.k8s.io")),
    ("scheduling.k8s.io/v1alpha1", &["PriorityClass"], 22, Some("scheduling.k8s.io")),
    (
        "storage.k8s.io/v1beta1",
        &["CSIDriver", "CSINode", "StorageClass", "VolumeAttachment"],
        22,
        Some("storage.k8s.io"),
    ),
    ("batch/v1beta1", &["CronJob"], 25, Some("batch")),
    ("discovery.k8s.io/v1beta1", &["EndpointSlice"], 25, Some("discovery.k8s.io")),
    ("events.k8s.io/v1beta1", &["Event"], 25, Some("events.k8s.io")),
    ("autoscaling/v2beta1", &["HorizontalPodAutoscaler"], 25, Some("autoscaling")),
    ("policy/v1beta1", &["PodDisruptionBudget"], 25, Some("policy")),
    ("policy/v1beta1", &["PodSecurityPolicy"], 25, None),
    ("node.k8s.io/v1beta1", &["RuntimeClass"], 25, Some("node.k8s.io")),
    (
        "flowcontrol.apiserver.k8s.io/v1beta1",
        &["FlowSchema", "PriorityLevelConfiguration"],
        26,
        Some("flowcontrol.apiserver.k8s.io"),
    ),
    ("autoscaling/v2beta2", &["HorizontalPodAutoscaler"], 26, Some("autoscaling")),
    ("storage.k8s.io/v1beta1", &["CSIStorageCapacity"], 27, Some("storage.k8s.io")),
    (
        "flowcontrol.apiserver.k8s.io/v1beta2",
        &["FlowSchema", "PriorityLevelConfiguration"],
        29,
        Some("flowcontrol.apiserver.k8s.io"),
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta3",
        &["FlowSchema", "PriorityLevelConfiguration"],
        32,
        Some("flowcontrol.apiserver.k8s.io"),
    ),
];

/// A removal the guide records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub removed_in: u32,
    pub replacement_group: Option<&'static str>,
}

/// The recorded removal of `kind` from `api_version`, if it happened by `minor`.
pub fn removal(api_version: &str, kind: &str, minor: u32) -> Option<Removal> {
    REMOVED
        .iter()
        .find(|(v, kinds, removed_in, _)| *v == api_version && kinds.contains(&kind) && *removed_in <= minor)
        .map(|&(_, _, removed_in, replacement_group)| Removal { removed_in, replacement_group })
}

/// Kubernetes' version priority: GA before beta before alpha, higher numbers first
/// (`v1` > `v1beta2` > `v1beta1` > `v1alpha1`).
pub fn version_priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits..];
    let level = |prefix: &str| tail.strip_prefix(prefix).and_then(|n| n.parse::<u32>().ok());
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = level("beta") {
        (2, major, n)
    } else if let Some(n) = level("alpha") {
        (1, major, n)
    } else {
        (0, major, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_classic_removals() {
        let r = removal("extensions/v1beta1", "Deployment", 37).unwrap();
        assert_eq!(r.removed_in, 16);
        assert_eq!(r.replacement_group, Some("apps"));
        assert!(removal("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema", 31).is_none());
        assert!(removal("apps/v1", "Deployment", 37).is_none());
    }

    #[test]
    fn orders_versions_as_kubernetes_does() {
        let mut versions = vec!["v1alpha1", "v1", "v1beta1", "v2", "v1beta2"];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(versions, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    }
}
