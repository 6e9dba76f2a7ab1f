//! The values of the Kubernetes API's enum fields: the string types `k8s.io/api` marks
//! `+enum` (`PullPolicy`, `ServiceType`, `DeploymentStrategyType`...), by the definition
//! and field that use them.
//!
//! A live API server's OpenAPI v3 documents list these values (`kubectl explain` prints
//! them as `enum: Always, IfNotPresent, Never`), but the documents upstream publishes
//! leave them out on purpose (kubernetes/kubernetes#113830: generated clients broke on
//! them), and so do the JSON Schemas built from those (`schemas/`). So they are written
//! here, from the `+enum` types of `k8s.io/api`, sorted as the server sorts them. Only
//! types of fields users write are listed (no status), with the values of the newest
//! version (`FailIndex` came in 1.28, say: completion offers it for older ones too).
//! Fields a version lacks are never reached: callers walk the version's own schema first.
//!
//! Read by hover and completion (`explain`) and by the API server's OpenAPI documents
//! (`descriptions::describe`). How the API server refuses a value outside them is a fact
//! of its own, per field (`VALIDATED`, read by the rule `object/unsupported-value`): it
//! checks most of them, not all, and some against other lists (a StorageClass takes no
//! `Recycle`), printed in the order its code lists them.

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["FallbackToLogsOnError", "File"];
const PROFILE_TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const SCOPES: &[&str] =
    &["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass", "Terminating"];
const SCOPE_OPERATORS: &[&str] = &["DoesNotExist", "Exists", "In", "NotIn"];
const UPDATE_STRATEGIES: &[&str] = &["OnDelete", "RollingUpdate"];
const RETENTION: &[&str] = &["Delete", "Retain"];
const HONOR: &[&str] = &["Honor", "Ignore"];

/// (definition, field, values): for a list field, the values of its items.
const ENUMS: &[(&str, &str, &[&str])] = &[
    ("io.k8s.api.apps.v1.DaemonSetUpdateStrategy", "type", UPDATE_STRATEGIES),
    ("io.k8s.api.apps.v1.DeploymentStrategy", "type", &["Recreate", "RollingUpdate"]),
    ("io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy", "whenDeleted", RETENTION),
    ("io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy", "whenScaled", RETENTION),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "podManagementPolicy", &["OrderedReady", "Parallel"]),
    ("io.k8s.api.apps.v1.StatefulSetUpdateStrategy", "type", UPDATE_STRATEGIES),
    ("io.k8s.api.batch.v1.CronJobSpec", "concurrencyPolicy", &["Allow", "Forbid", "Replace"]),
    ("io.k8s.api.batch.v1.JobSpec", "completionMode", &["Indexed", "NonIndexed"]),
    ("io.k8s.api.batch.v1.JobSpec", "podReplacementPolicy", &["Failed", "TerminatingOrFailed"]),
    ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "operator", &["In", "NotIn"]),
    ("io.k8s.api.batch.v1.PodFailurePolicyRule", "action", &["Count", "FailIndex", "FailJob", "Ignore"]),
    ("io.k8s.api.core.v1.AppArmorProfile", "type", PROFILE_TYPES),
    ("io.k8s.api.core.v1.Container", "imagePullPolicy", PULL_POLICIES),
    ("io.k8s.api.core.v1.Container", "terminationMessagePolicy", TERMINATION_MESSAGE_POLICIES),
    ("io.k8s.api.core.v1.ContainerPort", "protocol", PROTOCOLS),
    ("io.k8s.api.core.v1.ContainerResizePolicy", "restartPolicy", &["NotRequired", "RestartContainer"]),
    ("io.k8s.api.core.v1.EndpointPort", "protocol", PROTOCOLS),
    ("io.k8s.api.core.v1.EphemeralContainer", "imagePullPolicy", PULL_POLICIES),
    ("io.k8s.api.core.v1.EphemeralContainer", "terminationMessagePolicy", TERMINATION_MESSAGE_POLICIES),
    ("io.k8s.api.core.v1.HTTPGetAction", "scheme", &["HTTP", "HTTPS"]),
    (
        "io.k8s.api.core.v1.HostPathVolumeSource",
        "type",
        &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"],
    ),
    ("io.k8s.api.core.v1.ImageVolumeSource", "pullPolicy", PULL_POLICIES),
    ("io.k8s.api.core.v1.LimitRangeItem", "type", &["Container", "PersistentVolumeClaim", "Pod"]),
    ("io.k8s.api.core.v1.NodeSelectorRequirement", "operator", &["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"]),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", ACCESS_MODES),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeMode", VOLUME_MODES),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", ACCESS_MODES),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "persistentVolumeReclaimPolicy", RECLAIM_POLICIES),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "volumeMode", VOLUME_MODES),
    ("io.k8s.api.core.v1.PodSecurityContext", "fsGroupChangePolicy", &["Always", "OnRootMismatch"]),
    ("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroupsPolicy", &["Merge", "Strict"]),
    ("io.k8s.api.core.v1.PodSpec", "dnsPolicy", &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]),
    ("io.k8s.api.core.v1.PodSpec", "preemptionPolicy", &["Never", "PreemptLowerPriority"]),
    ("io.k8s.api.core.v1.PodSpec", "restartPolicy", &["Always", "Never", "OnFailure"]),
    ("io.k8s.api.core.v1.ResourceQuotaSpec", "scopes", SCOPES),
    ("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "operator", SCOPE_OPERATORS),
    ("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "scopeName", SCOPES),
    ("io.k8s.api.core.v1.SeccompProfile", "type", PROFILE_TYPES),
    ("io.k8s.api.core.v1.SecurityContext", "procMount", &["Default", "Unmasked"]),
    ("io.k8s.api.core.v1.ServicePort", "protocol", PROTOCOLS),
    ("io.k8s.api.core.v1.ServiceSpec", "externalTrafficPolicy", TRAFFIC_POLICIES),
    ("io.k8s.api.core.v1.ServiceSpec", "internalTrafficPolicy", TRAFFIC_POLICIES),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", &["IPv4", "IPv6"]),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilyPolicy", &["PreferDualStack", "RequireDualStack", "SingleStack"]),
    ("io.k8s.api.core.v1.ServiceSpec", "sessionAffinity", &["ClientIP", "None"]),
    ("io.k8s.api.core.v1.ServiceSpec", "type", &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]),
    ("io.k8s.api.core.v1.Taint", "effect", TAINT_EFFECTS),
    ("io.k8s.api.core.v1.Toleration", "effect", TAINT_EFFECTS),
    ("io.k8s.api.core.v1.Toleration", "operator", &["Equal", "Exists"]),
    ("io.k8s.api.core.v1.TopologySpreadConstraint", "nodeAffinityPolicy", HONOR),
    ("io.k8s.api.core.v1.TopologySpreadConstraint", "nodeTaintsPolicy", HONOR),
    ("io.k8s.api.core.v1.TopologySpreadConstraint", "whenUnsatisfiable", &["DoNotSchedule", "ScheduleAnyway"]),
    ("io.k8s.api.core.v1.VolumeMount", "mountPropagation", &["Bidirectional", "HostToContainer", "None"]),
    ("io.k8s.api.core.v1.VolumeMount", "recursiveReadOnly", &["Disabled", "Enabled", "IfPossible"]),
    ("io.k8s.api.discovery.v1.EndpointPort", "protocol", PROTOCOLS),
    ("io.k8s.api.networking.v1.HTTPIngressPath", "pathType", &["Exact", "ImplementationSpecific", "Prefix"]),
    ("io.k8s.api.networking.v1.NetworkPolicyPort", "protocol", PROTOCOLS),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", &["Egress", "Ingress"]),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "unhealthyPodEvictionPolicy", &["AlwaysAllow", "IfHealthyBudget"]),
    ("io.k8s.api.storage.v1.StorageClass", "reclaimPolicy", RECLAIM_POLICIES),
    ("io.k8s.api.storage.v1.StorageClass", "volumeBindingMode", &["Immediate", "WaitForFirstConsumer"]),
];

/// A field whose value the API server refuses, on create and update, with
/// `Unsupported value: "X": supported values: ...` when it is not one of `supported`.
/// The empty string is left alone: defaulting replaces it first, or the field accepts it.
#[derive(Debug)]
pub struct Validated {
    pub definition: &'static str,
    pub field: &'static str,
    /// The values accepted, in the order the message prints them (Go's sorted sets, or
    /// the literal list its validation writes).
    pub supported: &'static [&'static str],
    /// The error names the list the object is in (`volumeMounts.mountPropagation`), or
    /// the list field itself (`spec.accessModes`), without an index: Kubernetes' paths.
    pub path_without_index: bool,
    /// The first minor version that checks it so, its feature gate on by default: before
    /// it, the API server drops the field (or takes other values) and accepts the object.
    pub since: u32,
}

const fn validated(definition: &'static str, field: &'static str, supported: &'static [&'static str]) -> Validated {
    Validated { definition, field, supported, path_without_index: false, since: 25 }
}

/// A field behind a feature gate that is on by default from `since` (`StatefulSetAutoDeletePVC`
/// in 1.27, `JobPodFailurePolicy` in 1.26...).
const fn gated(
    definition: &'static str,
    field: &'static str,
    supported: &'static [&'static str],
    since: u32,
) -> Validated {
    Validated { definition, field, supported, path_without_index: false, since }
}

/// The fields `pkg/apis/*/validation` checks with `field.NotSupported` and nothing more
/// (Kubernetes 1.33's). Checks with conditions or other words (a Deployment's strategy,
/// a StatefulSet's policies, a Job's restart policy) are the rule's own.
pub const VALIDATED: &[Validated] = &[
    validated(
        "io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy",
        "whenDeleted",
        &["Retain", "Delete"],
    ),
    validated(
        "io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy",
        "whenScaled",
        &["Retain", "Delete"],
    ),
    validated("io.k8s.api.batch.v1.CronJobSpec", "concurrencyPolicy", &["Allow", "Forbid", "Replace"]),
    validated("io.k8s.api.batch.v1.JobSpec", "completionMode", &["NonIndexed", "Indexed"]),
    gated("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "operator", &["In", "NotIn"], 26),
    // FailIndex (JobBackoffLimitPerIndex) is on by default from 1.29; before, other words.
    gated("io.k8s.api.batch.v1.PodFailurePolicyRule", "action", &["Count", "FailIndex", "FailJob", "Ignore"], 29),
    validated("io.k8s.api.core.v1.Container", "imagePullPolicy", PULL_POLICIES),
    validated("io.k8s.api.core.v1.Container", "terminationMessagePolicy", &["File", "FallbackToLogsOnError"]),
    validated("io.k8s.api.core.v1.ContainerPort", "protocol", PROTOCOLS),
    validated("io.k8s.api.core.v1.EphemeralContainer", "imagePullPolicy", PULL_POLICIES),
    validated("io.k8s.api.core.v1.EphemeralContainer", "terminationMessagePolicy", &["File", "FallbackToLogsOnError"]),
    validated(
        "io.k8s.api.core.v1.HostPathVolumeSource",
        "type",
        &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"],
    ),
    Validated {
        definition: "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        field: "accessModes",
        supported: ACCESS_MODES,
        path_without_index: true,
        since: 25,
    },
    validated("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeMode", VOLUME_MODES),
    validated("io.k8s.api.core.v1.PodSecurityContext", "fsGroupChangePolicy", &["Always", "OnRootMismatch"]),
    validated(
        "io.k8s.api.core.v1.PodSpec",
        "dnsPolicy",
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    ),
    validated("io.k8s.api.core.v1.PodSpec", "restartPolicy", &["Always", "OnFailure", "Never"]),
    validated("io.k8s.api.core.v1.SeccompProfile", "type", PROFILE_TYPES),
    // Not `procMount`: while its gate (ProcMountType) is off the server resets the field to
    // Default and accepts the object, and it is off by default in versions shipped here.
    validated("io.k8s.api.core.v1.ServicePort", "protocol", PROTOCOLS),
    validated("io.k8s.api.core.v1.ServiceSpec", "internalTrafficPolicy", TRAFFIC_POLICIES),
    validated("io.k8s.api.core.v1.ServiceSpec", "sessionAffinity", &["ClientIP", "None"]),
    validated("io.k8s.api.core.v1.ServiceSpec", "type", &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]),
    validated("io.k8s.api.core.v1.Toleration", "effect", &["NoSchedule", "PreferNoSchedule", "NoExecute"]),
    validated("io.k8s.api.core.v1.Toleration", "operator", &["Equal", "Exists"]),
    validated("io.k8s.api.core.v1.TopologySpreadConstraint", "whenUnsatisfiable", &["DoNotSchedule", "ScheduleAnyway"]),
    Validated {
        definition: "io.k8s.api.core.v1.VolumeMount",
        field: "mountPropagation",
        supported: &["Bidirectional", "HostToContainer", "None"],
        path_without_index: true,
        since: 25,
    },
    validated("io.k8s.api.networking.v1.HTTPIngressPath", "pathType", &["Exact", "ImplementationSpecific", "Prefix"]),
    validated("io.k8s.api.networking.v1.NetworkPolicyPort", "protocol", &["TCP", "UDP", "SCTP"]),
    validated("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", &["Ingress", "Egress"]),
    validated(
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
        "unhealthyPodEvictionPolicy",
        &["AlwaysAllow", "IfHealthyBudget"],
    ),
    validated("io.k8s.api.storage.v1.StorageClass", "reclaimPolicy", &["Delete", "Retain"]),
    validated("io.k8s.api.storage.v1.StorageClass", "volumeBindingMode", &["Immediate", "WaitForFirstConsumer"]),
];

/// How the API server checks a field's value, where it checks it against a list alone.
/// Asked for every field of every object admitted: a map, not a scan of the list.
pub fn validated_field(definition: &str, field: &str) -> Option<&'static Validated> {
    type Index = rustc_hash::FxHashMap<&'static str, Vec<&'static Validated>>;
    static INDEX: std::sync::OnceLock<Index> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index = Index::default();
        for validated in VALIDATED {
            index.entry(validated.field).or_default().push(validated);
        }
        index
    });
    index.get(field)?.iter().copied().find(|v| v.definition == definition)
}

/// The values a field of a definition takes (its items', for a list); empty for a field
/// that is no enum.
pub fn values(definition: &str, field: &str) -> &'static [&'static str] {
    ENUMS.iter().find(|(d, f, _)| *d == definition && *f == field).map_or(&[], |(_, _, values)| values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Catalog, CatalogOptions, KubernetesVersion};

    #[test]
    fn every_listed_field_is_a_string_or_list_of_strings_of_the_newest_version() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        assert_eq!(catalog.version(), KubernetesVersion::latest());
        let pod = crate::object::GroupVersionKind::new("", "v1", "Pod");
        let (_, definitions) = catalog.builtin_definition(&pod).unwrap();
        for (definition, field, values) in ENUMS {
            let schema = definitions
                .get(*definition)
                .and_then(|d| d.pointer(&format!("/properties/{field}")))
                .unwrap_or_else(|| panic!("{definition}.{field} is not in the newest schemas"));
            let schema = schema.get("items").unwrap_or(schema);
            let types = schema.get("type").map(ToString::to_string).unwrap_or_default();
            assert!(types.contains("\"string\""), "{definition}.{field} is {types}");
            let mut sorted = values.to_vec();
            sorted.sort_unstable();
            assert_eq!(&sorted, values, "{definition}.{field}: sorted as the API server sorts them");
        }
        assert_eq!(values("io.k8s.api.core.v1.Container", "imagePullPolicy"), ["Always", "IfNotPresent", "Never"]);
        // What the API server checks is a subset of the enum (a StorageClass takes no
        // Recycle), in its own order.
        for v in VALIDATED {
            let all = values(v.definition, v.field);
            assert!(!all.is_empty(), "{}.{} is no enum", v.definition, v.field);
            assert!(v.supported.iter().all(|s| all.contains(s)), "{}.{}", v.definition, v.field);
        }
        assert!(values("io.k8s.api.core.v1.Container", "image").is_empty());
    }
}
