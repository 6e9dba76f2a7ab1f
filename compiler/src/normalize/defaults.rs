//! The API server's defaults, from the `SetDefaults_*` functions of Kubernetes'
//! `pkg/apis/*/v1/defaults.go`. Each default is a row of `DEFAULTS`: where it applies,
//! which field, what value, and where Kubernetes sets it. `docs/normalize.md` is
//! generated from the same rows, and `apply` walks an object scope by scope.
//!
//! Only defaulting is mirrored. What admission plugins add (service account token
//! volumes, default tolerations, priority) and what the registry allocates (cluster IPs,
//! node ports, UIDs, timestamps) is not: it is random or cluster-specific.

use crate::image::ImageReference;
use serde_json::{Map, Value, json};

/// Where a default applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// An object of one group and kind (`""` is the core group).
    Object(&'static str, &'static str),
    /// Every pod spec: a Pod's `spec` and every workload's template.
    PodSpec,
    /// Every container, init container and ephemeral container.
    Container,
    /// Every container port.
    ContainerPort,
    /// Every liveness, readiness and startup probe.
    Probe,
    /// Every Service port.
    ServicePort,
}

/// The value a default sets.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// A fixed value, written as JSON.
    Fixed(&'static str),
    /// Computed by code; the text says how.
    Computed(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Default {
    pub scope: Scope,
    /// A dotted path inside the scope.
    pub field: &'static str,
    pub fill: Fill,
    /// The Kubernetes function that sets it.
    pub source: &'static str,
    /// When it applies, if not always.
    pub when: Option<&'static str>,
}

const fn fixed(scope: Scope, field: &'static str, value: &'static str, source: &'static str) -> Default {
    Default { scope, field, fill: Fill::Fixed(value), source, when: None }
}

const fn when(mut default: Default, condition: &'static str) -> Default {
    default.when = Some(condition);
    default
}

pub static DEFAULTS: &[Default] = &[
    Default {
        scope: Scope::Object("*", "*"),
        field: "metadata.namespace",
        fill: Fill::Computed("\"default\""),
        source: "the request's namespace (kubectl's context namespace, `default` unless set)",
        when: Some("the kind is namespaced"),
    },
    fixed(Scope::PodSpec, "restartPolicy", "\"Always\"", "SetDefaults_PodSpec, core/v1"),
    fixed(Scope::PodSpec, "dnsPolicy", "\"ClusterFirst\"", "SetDefaults_PodSpec, core/v1"),
    fixed(Scope::PodSpec, "terminationGracePeriodSeconds", "30", "SetDefaults_PodSpec, core/v1"),
    fixed(Scope::PodSpec, "schedulerName", "\"default-scheduler\"", "SetDefaults_PodSpec, core/v1"),
    fixed(Scope::PodSpec, "securityContext", "{}", "SetDefaults_PodSpec, core/v1"),
    fixed(Scope::Object("", "Pod"), "spec.enableServiceLinks", "true", "SetDefaults_Pod, core/v1"),
    Default {
        scope: Scope::Object("", "Pod"),
        field: "spec.containers[*].resources.requests",
        fill: Fill::Computed("each limit without a request"),
        source: "SetDefaults_Pod, core/v1",
        when: Some("a bare Pod (templates keep theirs until their pods are made)"),
    },
    Default {
        scope: Scope::Container,
        field: "imagePullPolicy",
        fill: Fill::Computed("\"Always\" for :latest or no tag, else \"IfNotPresent\""),
        source: "SetDefaults_Container, core/v1",
        when: None,
    },
    fixed(Scope::Container, "terminationMessagePath", "\"/dev/termination-log\"", "SetDefaults_Container, core/v1"),
    fixed(Scope::Container, "terminationMessagePolicy", "\"File\"", "SetDefaults_Container, core/v1"),
    fixed(Scope::Container, "resources", "{}", "the field is a struct, always present, core/v1"),
    fixed(Scope::ContainerPort, "protocol", "\"TCP\"", "SetDefaults_ContainerPort, core/v1"),
    fixed(Scope::Probe, "timeoutSeconds", "1", "SetDefaults_Probe, core/v1"),
    fixed(Scope::Probe, "periodSeconds", "10", "SetDefaults_Probe, core/v1"),
    fixed(Scope::Probe, "successThreshold", "1", "SetDefaults_Probe, core/v1"),
    fixed(Scope::Probe, "failureThreshold", "3", "SetDefaults_Probe, core/v1"),
    when(fixed(Scope::Probe, "httpGet.path", "\"/\"", "SetDefaults_HTTPGetAction, core/v1"), "the probe uses httpGet"),
    when(
        fixed(Scope::Probe, "httpGet.scheme", "\"HTTP\"", "SetDefaults_HTTPGetAction, core/v1"),
        "the probe uses httpGet",
    ),
    when(
        fixed(Scope::PodSpec, "volumes[*].configMap.defaultMode", "420", "SetDefaults_ConfigMapVolumeSource, core/v1"),
        "a configMap volume",
    ),
    when(
        fixed(Scope::PodSpec, "volumes[*].secret.defaultMode", "420", "SetDefaults_SecretVolumeSource, core/v1"),
        "a secret volume",
    ),
    when(
        fixed(Scope::PodSpec, "volumes[*].projected.defaultMode", "420", "SetDefaults_ProjectedVolumeSource, core/v1"),
        "a projected volume",
    ),
    when(
        fixed(
            Scope::PodSpec,
            "volumes[*].downwardAPI.defaultMode",
            "420",
            "SetDefaults_DownwardAPIVolumeSource, core/v1",
        ),
        "a downwardAPI volume",
    ),
    when(fixed(Scope::PodSpec, "volumes[*].emptyDir", "{}", "SetDefaults_Volume, core/v1"), "a volume with no source"),
    fixed(Scope::Object("apps", "Deployment"), "spec.replicas", "1", "SetDefaults_Deployment, apps/v1"),
    fixed(
        Scope::Object("apps", "Deployment"),
        "spec.strategy.type",
        "\"RollingUpdate\"",
        "SetDefaults_Deployment, apps/v1",
    ),
    when(
        fixed(
            Scope::Object("apps", "Deployment"),
            "spec.strategy.rollingUpdate.maxUnavailable",
            "\"25%\"",
            "SetDefaults_Deployment, apps/v1",
        ),
        "strategy RollingUpdate",
    ),
    when(
        fixed(
            Scope::Object("apps", "Deployment"),
            "spec.strategy.rollingUpdate.maxSurge",
            "\"25%\"",
            "SetDefaults_Deployment, apps/v1",
        ),
        "strategy RollingUpdate",
    ),
    fixed(Scope::Object("apps", "Deployment"), "spec.revisionHistoryLimit", "10", "SetDefaults_Deployment, apps/v1"),
    fixed(
        Scope::Object("apps", "Deployment"),
        "spec.progressDeadlineSeconds",
        "600",
        "SetDefaults_Deployment, apps/v1",
    ),
    fixed(Scope::Object("apps", "ReplicaSet"), "spec.replicas", "1", "SetDefaults_ReplicaSet, apps/v1"),
    fixed(Scope::Object("apps", "StatefulSet"), "spec.replicas", "1", "SetDefaults_StatefulSet, apps/v1"),
    fixed(
        Scope::Object("apps", "StatefulSet"),
        "spec.podManagementPolicy",
        "\"OrderedReady\"",
        "SetDefaults_StatefulSet, apps/v1",
    ),
    fixed(
        Scope::Object("apps", "StatefulSet"),
        "spec.updateStrategy.type",
        "\"RollingUpdate\"",
        "SetDefaults_StatefulSet, apps/v1",
    ),
    Default {
        scope: Scope::Object("apps", "StatefulSet"),
        field: "spec.updateStrategy.rollingUpdate.partition",
        fill: Fill::Computed("0"),
        source: "SetDefaults_StatefulSet, apps/v1",
        when: Some("the strategy type was unset, or rollingUpdate is given"),
    },
    fixed(Scope::Object("apps", "StatefulSet"), "spec.revisionHistoryLimit", "10", "SetDefaults_StatefulSet, apps/v1"),
    fixed(
        Scope::Object("apps", "StatefulSet"),
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
        "\"Retain\"",
        "SetDefaults_StatefulSet, apps/v1 (StatefulSetAutoDeletePVC, on since 1.27)",
    ),
    fixed(
        Scope::Object("apps", "StatefulSet"),
        "spec.persistentVolumeClaimRetentionPolicy.whenScaled",
        "\"Retain\"",
        "SetDefaults_StatefulSet, apps/v1 (StatefulSetAutoDeletePVC, on since 1.27)",
    ),
    fixed(
        Scope::Object("apps", "DaemonSet"),
        "spec.updateStrategy.type",
        "\"RollingUpdate\"",
        "SetDefaults_DaemonSet, apps/v1",
    ),
    when(
        fixed(
            Scope::Object("apps", "DaemonSet"),
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "1",
            "SetDefaults_DaemonSet, apps/v1",
        ),
        "strategy RollingUpdate",
    ),
    when(
        fixed(
            Scope::Object("apps", "DaemonSet"),
            "spec.updateStrategy.rollingUpdate.maxSurge",
            "0",
            "SetDefaults_DaemonSet, apps/v1",
        ),
        "strategy RollingUpdate",
    ),
    fixed(Scope::Object("apps", "DaemonSet"), "spec.revisionHistoryLimit", "10", "SetDefaults_DaemonSet, apps/v1"),
    Default {
        scope: Scope::Object("batch", "Job"),
        field: "spec.completions, spec.parallelism",
        fill: Fill::Computed("1 each when both are unset; parallelism 1 when only it is unset"),
        source: "SetDefaults_Job, batch/v1",
        when: None,
    },
    Default {
        scope: Scope::Object("batch", "Job"),
        field: "spec.backoffLimit",
        fill: Fill::Computed("6, or 2147483647 with backoffLimitPerIndex"),
        source: "SetDefaults_Job, batch/v1",
        when: None,
    },
    Default {
        scope: Scope::Object("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        field: "webhooks[]",
        fill: Fill::Computed(
            "failurePolicy \"Fail\", matchPolicy \"Equivalent\", namespaceSelector {}, objectSelector {}, \
             timeoutSeconds 10, and each rule's scope \"*\"",
        ),
        source: "SetDefaults_ValidatingWebhook, SetDefaults_Rule, admissionregistration/v1",
        when: None,
    },
    Default {
        scope: Scope::Object("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        field: "webhooks[]",
        fill: Fill::Computed("as a validating webhook's, and reinvocationPolicy \"Never\""),
        source: "SetDefaults_MutatingWebhook, SetDefaults_Rule, admissionregistration/v1",
        when: None,
    },
    fixed(Scope::Object("batch", "Job"), "spec.completionMode", "\"NonIndexed\"", "SetDefaults_Job, batch/v1"),
    fixed(Scope::Object("batch", "Job"), "spec.suspend", "false", "SetDefaults_Job, batch/v1"),
    Default {
        scope: Scope::Object("batch", "Job"),
        field: "spec.podReplacementPolicy",
        fill: Fill::Computed("\"Failed\" with a podFailurePolicy, else \"TerminatingOrFailed\""),
        source: "SetDefaults_Job, batch/v1 (JobPodReplacementPolicy, on since 1.29)",
        when: None,
    },
    Default {
        scope: Scope::Object("batch", "Job"),
        field: "metadata.labels",
        fill: Fill::Computed("the template's labels"),
        source: "SetDefaults_Job, batch/v1",
        when: Some("the Job has no labels"),
    },
    fixed(Scope::Object("batch", "CronJob"), "spec.concurrencyPolicy", "\"Allow\"", "SetDefaults_CronJob, batch/v1"),
    fixed(Scope::Object("batch", "CronJob"), "spec.suspend", "false", "SetDefaults_CronJob, batch/v1"),
    fixed(Scope::Object("batch", "CronJob"), "spec.successfulJobsHistoryLimit", "3", "SetDefaults_CronJob, batch/v1"),
    fixed(Scope::Object("batch", "CronJob"), "spec.failedJobsHistoryLimit", "1", "SetDefaults_CronJob, batch/v1"),
    fixed(
        Scope::Object("", "ReplicationController"),
        "spec.replicas",
        "1",
        "SetDefaults_ReplicationController, core/v1",
    ),
    Default {
        scope: Scope::Object("", "ReplicationController"),
        field: "spec.selector, metadata.labels",
        fill: Fill::Computed("the template's labels"),
        source: "SetDefaults_ReplicationController, core/v1",
        when: Some("unset"),
    },
    fixed(Scope::Object("", "Service"), "spec.type", "\"ClusterIP\"", "SetDefaults_Service, core/v1"),
    fixed(Scope::Object("", "Service"), "spec.sessionAffinity", "\"None\"", "SetDefaults_Service, core/v1"),
    when(
        fixed(
            Scope::Object("", "Service"),
            "spec.internalTrafficPolicy",
            "\"Cluster\"",
            "SetDefaults_Service, core/v1",
        ),
        "type is not ExternalName",
    ),
    when(
        fixed(
            Scope::Object("", "Service"),
            "spec.externalTrafficPolicy",
            "\"Cluster\"",
            "SetDefaults_Service, core/v1",
        ),
        "type NodePort or LoadBalancer, or externalIPs given",
    ),
    when(
        fixed(
            Scope::Object("", "Service"),
            "spec.allocateLoadBalancerNodePorts",
            "true",
            "SetDefaults_Service, core/v1",
        ),
        "type LoadBalancer",
    ),
    fixed(Scope::ServicePort, "protocol", "\"TCP\"", "SetDefaults_Service, core/v1"),
    Default {
        scope: Scope::ServicePort,
        field: "targetPort",
        fill: Fill::Computed("the port's `port`"),
        source: "SetDefaults_Service, core/v1",
        when: None,
    },
    fixed(Scope::Object("", "Secret"), "type", "\"Opaque\"", "SetDefaults_Secret, core/v1"),
    fixed(
        Scope::Object("", "PersistentVolumeClaim"),
        "spec.volumeMode",
        "\"Filesystem\"",
        "SetDefaults_PersistentVolumeClaimSpec, core/v1",
    ),
    fixed(
        Scope::Object("", "PersistentVolume"),
        "spec.persistentVolumeReclaimPolicy",
        "\"Retain\"",
        "SetDefaults_PersistentVolume, core/v1",
    ),
    fixed(
        Scope::Object("", "PersistentVolume"),
        "spec.volumeMode",
        "\"Filesystem\"",
        "SetDefaults_PersistentVolume, core/v1",
    ),
    fixed(
        Scope::Object("autoscaling", "HorizontalPodAutoscaler"),
        "spec.minReplicas",
        "1",
        "SetDefaults_HorizontalPodAutoscaler, autoscaling/v2",
    ),
    Default {
        scope: Scope::Object("networking.k8s.io", "NetworkPolicy"),
        field: "spec.policyTypes",
        fill: Fill::Computed("[\"Ingress\"], plus \"Egress\" when egress rules are given"),
        source: "SetDefaults_NetworkPolicy, networking/v1",
        when: Some("unset"),
    },
    Default {
        scope: Scope::Object("networking.k8s.io", "NetworkPolicy"),
        field: "spec.ingress[*].ports[*].protocol, spec.egress[*].ports[*].protocol",
        fill: Fill::Fixed("\"TCP\""),
        source: "SetDefaults_NetworkPolicyPort, networking/v1",
        when: None,
    },
    Default {
        scope: Scope::Object("autoscaling", "HorizontalPodAutoscaler"),
        field: "spec.metrics",
        fill: Fill::Computed("CPU at 80% average utilization"),
        source: "SetDefaults_HorizontalPodAutoscaler, autoscaling/v2",
        when: Some("unset"),
    },
    Default {
        scope: Scope::Object("", "Secret"),
        field: "data",
        fill: Fill::Computed(
            "each `stringData` value, base64-encoded (over a `data` key of the same name); `stringData` is dropped",
        ),
        source: "Convert_v1_Secret_To_core_Secret, core/v1",
        when: Some("stringData is set"),
    },
    Default {
        scope: Scope::Object("", "Namespace"),
        field: "metadata.labels[kubernetes.io/metadata.name]",
        fill: Fill::Computed("the namespace's name"),
        source: "SetDefaults_Namespace, core/v1",
        when: None,
    },
    Default {
        scope: Scope::Container,
        field: "env[*].valueFrom.fieldRef.apiVersion",
        fill: Fill::Fixed("\"v1\""),
        source: "SetDefaults_ObjectFieldSelector, core/v1",
        when: Some("a fieldRef (also in downwardAPI volume items)"),
    },
];

/// Sets `path` (dotted) under `node` to `value` if it is not set, creating parents.
fn set_default(node: &mut Value, path: &str, value: Value) {
    let mut current = node;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Value::Object(map) = current else { return };
        if parts.peek().is_none() {
            if map.get(part).is_none_or(Value::is_null) {
                map.insert(part.to_string(), value);
            }
            return;
        }
        let entry = map.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
        current = entry;
    }
}

fn get<'a>(node: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(node, |node, part| node.get(part))
}

/// A condition a fixed default checks on the object before it applies.
#[derive(Clone, Copy)]
enum Guard {
    Always,
    /// The strategy at this path (`spec.strategy`) has type RollingUpdate.
    RollingUpdate(&'static str),
    NotExternalName,
    /// NodePort or LoadBalancer, or a Service with externalIPs.
    NodePortOrLoadBalancer,
    LoadBalancer,
}

/// One scope's fixed defaults, parsed once per process.
type ScopeDefaults = (Scope, Vec<(&'static str, Value, Guard)>);

fn parsed() -> &'static [ScopeDefaults] {
    static PARSED: std::sync::OnceLock<Vec<ScopeDefaults>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        let mut scopes: Vec<ScopeDefaults> = Vec::new();
        for default in DEFAULTS.iter().filter(|d| !d.field.contains('[')) {
            let Fill::Fixed(json) = default.fill else { continue };
            let value = serde_json::from_str(json).expect("default values are JSON");
            let guard = match default.field {
                "spec.internalTrafficPolicy" => Guard::NotExternalName,
                "spec.externalTrafficPolicy" => Guard::NodePortOrLoadBalancer,
                "spec.allocateLoadBalancerNodePorts" => Guard::LoadBalancer,
                field => match field.split_once(".rollingUpdate") {
                    Some((strategy, _)) => Guard::RollingUpdate(strategy),
                    None => Guard::Always,
                },
            };
            match scopes.iter_mut().find(|(scope, _)| *scope == default.scope) {
                Some((_, list)) => list.push((default.field, value, guard)),
                None => scopes.push((default.scope, vec![(default.field, value, guard)])),
            }
        }
        scopes
    })
}

/// The fixed defaults of one scope.
/// The fixed default of a port's field (`protocol`: `"TCP"`), for server-side apply's keys
/// of port lists an item leaves out.
pub fn port_default(field: &str) -> Option<Value> {
    [Scope::ContainerPort, Scope::ServicePort]
        .into_iter()
        .flat_map(fixed_defaults)
        .find(|(name, _, _)| *name == field)
        .map(|(_, value, _)| value.clone())
}

fn fixed_defaults(scope: Scope) -> impl Iterator<Item = &'static (&'static str, Value, Guard)> {
    parsed().iter().filter(move |(s, _)| *s == scope).flat_map(|(_, list)| list.iter())
}

/// Applies every default of an object of `group`/`kind`.
pub fn apply(group: &str, kind: &str, object: &mut Value) {
    if (group, kind) == ("apps", "StatefulSet") && get(object, "spec.updateStrategy.type").is_none() {
        // The API server fills rollingUpdate (and so its partition) only when it also fills the type.
        set_default(object, "spec.updateStrategy.rollingUpdate", json!({}));
    }
    let object_defaults = parsed().iter().find(|(s, _)| matches!(s, Scope::Object(g, k) if *g == group && *k == kind));
    for (field, value, guard) in object_defaults.map(|(_, list)| list.as_slice()).unwrap_or_default() {
        let service_type = || get(object, "spec.type").and_then(Value::as_str);
        let applies = match guard {
            Guard::Always => true,
            Guard::RollingUpdate(strategy) => {
                get(object, strategy).and_then(|s| s.get("type")).and_then(Value::as_str) == Some("RollingUpdate")
            }
            Guard::NotExternalName => service_type() != Some("ExternalName"),
            Guard::NodePortOrLoadBalancer => {
                matches!(service_type(), Some("NodePort" | "LoadBalancer"))
                    || get(object, "spec.externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty())
            }
            Guard::LoadBalancer => service_type() == Some("LoadBalancer"),
        };
        if applies {
            set_default(object, field, value.clone());
        }
    }
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crate::crd::set_defaults(object),
        ("batch", "Job") => {
            job(object.get_mut("spec"));
            let labels = object.pointer("/spec/template/metadata/labels").cloned();
            if let Some(labels) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
                && object.pointer("/metadata/labels").and_then(Value::as_object).is_none_or(Map::is_empty)
            {
                set_default(object, "metadata.labels", labels);
            }
        }
        // A CronJob's jobTemplate gets no Job defaults: they are set on each Job it makes.
        ("apps", "StatefulSet") => stateful_set(object),
        // The API server stores `stringData` as base64 in `data` (stringData winning) and
        // never keeps it (`pkg/apis/core/v1/conversion.go`).
        ("", "Secret") => {
            if let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
                set_default(object, "data", json!({}));
                if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
                    for (key, text) in strings {
                        if let Value::String(text) = text {
                            data.insert(key, Value::String(crate::template::base64(text.as_bytes())));
                        }
                    }
                }
            }
        }
        ("", "Namespace") => {
            if let Some(name) = object.pointer("/metadata/name").cloned() {
                set_default(object, "metadata.labels", json!({}));
                if let Some(labels) = object.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                    labels.entry("kubernetes.io/metadata.name").or_insert(name);
                }
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler")
            if object.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v2") =>
        {
            let unset = object.pointer("/spec/metrics").and_then(Value::as_array).is_none_or(Vec::is_empty);
            if unset && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert(
                    "metrics".into(),
                    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                );
            }
        }
        ("", "ReplicationController") => replication_controller(object),
        ("", "Service") => {
            service_ports(object);
            if let Some(spec) = object.get_mut("spec") {
                drop_false(spec, &["publishNotReadyAddresses"]);
            }
        }
        ("apps", "Deployment") | ("", "Node") => {
            if let Some(spec) = object.get_mut("spec") {
                drop_false(spec, &["paused", "unschedulable"]);
            }
        }
        ("networking.k8s.io", "NetworkPolicy") => network_policy(object),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => webhooks(object, false),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => webhooks(object, true),
        _ => {}
    }
    for pointer in pod_spec_pointers(group, kind) {
        if let Some(spec) = object.pointer_mut(pointer) {
            pod_spec(spec, kind == "Pod" && group.is_empty());
        }
    }
}

/// Where the pod specs of a kind are.
/// An admission webhook configuration's webhooks, as `SetDefaults_*Webhook` fill them.
fn webhooks(object: &mut Value, mutating: bool) {
    for webhook in object.get_mut("webhooks").and_then(Value::as_array_mut).into_iter().flatten() {
        set_default(webhook, "failurePolicy", json!("Fail"));
        set_default(webhook, "matchPolicy", json!("Equivalent"));
        set_default(webhook, "namespaceSelector", json!({}));
        set_default(webhook, "objectSelector", json!({}));
        set_default(webhook, "timeoutSeconds", json!(10));
        if mutating {
            set_default(webhook, "reinvocationPolicy", json!("Never"));
        }
        for rule in webhook.get_mut("rules").and_then(Value::as_array_mut).into_iter().flatten() {
            set_default(rule, "scope", json!("*"));
        }
        if let Some(Value::Object(config)) = webhook.get_mut("clientConfig")
            && let Some(Value::Object(service)) = config.get_mut("service")
        {
            service.entry("port").or_insert(json!(443));
        }
    }
}

fn pod_spec_pointers(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Pod") => &["/spec"],
        ("", "ReplicationController" | "PodTemplate") | ("apps", _) | ("batch", "Job") => {
            &["/spec/template/spec", "/template/spec"]
        }
        ("batch", "CronJob") => &["/spec/jobTemplate/spec/template/spec"],
        _ => &[],
    }
}

fn job(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    let has = |spec: &Value, key: &str| spec.get(key).is_some_and(|v| !v.is_null());
    let policy = if has(spec, "podFailurePolicy") { "Failed" } else { "TerminatingOrFailed" };
    set_default(spec, "podReplacementPolicy", json!(policy));
    let backoff = if has(spec, "backoffLimitPerIndex") { i32::MAX } else { 6 };
    set_default(spec, "backoffLimit", json!(backoff));
    if !has(spec, "completions") && !has(spec, "parallelism") {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
}

fn replication_controller(object: &mut Value) {
    let labels = object.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
        // An empty selector or label map counts as unset.
        for pointer in ["/spec/selector", "/metadata/labels"] {
            if let Some(existing) = object.pointer_mut(pointer)
                && existing.as_object().is_some_and(Map::is_empty)
            {
                *existing = Value::Null;
            }
        }
        set_default(object, "spec.selector", labels.clone());
        set_default(object, "metadata.labels", labels);
    }
}

fn stateful_set(object: &mut Value) {
    let Some(strategy) = object.pointer_mut("/spec/updateStrategy") else { return };
    let rolling = strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate");
    if rolling && strategy.get("rollingUpdate").is_some_and(Value::is_object) {
        set_default(strategy, "rollingUpdate.partition", json!(0));
    }
}

fn service_ports(object: &mut Value) {
    let Some(Value::Array(ports)) = object.pointer_mut("/spec/ports") else { return };
    for port in ports {
        for (field, value, _) in fixed_defaults(Scope::ServicePort) {
            set_default(port, field, value.clone());
        }
        if let Some(number) = port.get("port").cloned() {
            set_default(port, "targetPort", number);
        }
    }
}

fn network_policy(object: &mut Value) {
    let Some(spec) = object.get_mut("spec") else { return };
    for direction in ["ingress", "egress"] {
        for rule in spec.get_mut(direction).and_then(Value::as_array_mut).into_iter().flatten() {
            for port in rule.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
    // An empty list counts as unset, as an empty egress list does.
    if spec.get("policyTypes").and_then(Value::as_array).is_some_and(|p| !p.is_empty()) {
        return;
    }
    let mut types = vec![json!("Ingress")];
    if spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
        types.push(json!("Egress"));
    }
    if let Value::Object(map) = spec {
        map.insert("policyTypes".into(), Value::Array(types));
    }
}

fn pod_spec(spec: &mut Value, bare_pod: bool) {
    drop_false(spec, false_is_unset(Scope::PodSpec));
    for (field, value, _) in fixed_defaults(Scope::PodSpec) {
        set_default(spec, field, value.clone());
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        for volume in volumes {
            volume_defaults(volume);
        }
    }
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(Value::Array(containers)) = spec.get_mut(field) else { continue };
        for container in containers {
            container_defaults(container, bare_pod);
        }
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn volume_defaults(volume: &mut Value) {
    let Value::Object(map) = volume else { return };
    if !VOLUME_SOURCES.iter().any(|source| map.get(*source).is_some_and(|v| !v.is_null())) {
        map.insert("emptyDir".into(), json!({}));
    }
    for source in ["configMap", "secret", "projected", "downwardAPI"] {
        if let Some(source) = map.get_mut(source).filter(|s| s.is_object()) {
            set_default(source, "defaultMode", json!(420));
        }
    }
    let items = map.get_mut("downwardAPI").and_then(|d| d.get_mut("items")).and_then(Value::as_array_mut);
    for item in items.into_iter().flatten() {
        if let Some(field_ref) = item.get_mut("fieldRef").filter(|f| f.is_object()) {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
}

/// Go `bool` fields (not `*bool`) written with `omitempty`, by where they are: Kubernetes
/// stores their `false` as unset (protobuf and its Go structs cannot tell them apart, and
/// JSON leaves them out), so `stdin: false` from a protobuf client (`kubectl create`) or a
/// manifest is stored as nothing, and a template brought back by `kubectl rollout undo`
/// hashes as the one it came from. `*bool` fields (`privileged`, `optional`,
/// `automountServiceAccountToken`) keep their `false`: there it says something.
pub const FALSE_IS_UNSET: &[(Scope, &[&str])] =
    &[(Scope::Container, &["stdin", "stdinOnce", "tty"]), (Scope::PodSpec, &["hostNetwork", "hostPID", "hostIPC"])];

/// Drops the `false` of plain bools in `object` ([`FALSE_IS_UNSET`]).
fn drop_false(object: &mut Value, fields: &[&str]) {
    if let Some(map) = object.as_object_mut() {
        map.retain(|key, value| !(fields.contains(&key.as_str()) && *value == Value::Bool(false)));
    }
}

fn false_is_unset(scope: Scope) -> &'static [&'static str] {
    FALSE_IS_UNSET.iter().find(|(s, _)| *s == scope).map_or(&[], |(_, fields)| fields)
}

fn container_defaults(container: &mut Value, bare_pod: bool) {
    drop_false(container, false_is_unset(Scope::Container));
    for mount in container.get_mut("volumeMounts").and_then(Value::as_array_mut).into_iter().flatten() {
        drop_false(mount, &["readOnly"]);
    }
    for (field, value, _) in fixed_defaults(Scope::Container) {
        set_default(container, field, value.clone());
    }
    let policy = container
        .get("image")
        .and_then(Value::as_str)
        .and_then(|image| image.parse::<ImageReference>().ok())
        .map_or("IfNotPresent", |reference| reference.default_pull_policy());
    set_default(container, "imagePullPolicy", json!(policy));
    for env in container.get_mut("env").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(field_ref) = env.pointer_mut("/valueFrom/fieldRef").filter(|f| f.is_object()) {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
    if let Some(Value::Array(ports)) = container.get_mut("ports") {
        for port in ports {
            for (field, value, _) in fixed_defaults(Scope::ContainerPort) {
                set_default(port, field, value.clone());
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = container.get_mut(probe).filter(|p| p.is_object()) else { continue };
        for (field, value, _) in fixed_defaults(Scope::Probe) {
            if field.starts_with("httpGet.") && probe.get("httpGet").is_none_or(Value::is_null) {
                continue;
            }
            set_default(probe, field, value.clone());
        }
    }
    if bare_pod {
        let limits = container.pointer("/resources/limits").and_then(Value::as_object).cloned().unwrap_or_default();
        for (resource, limit) in limits {
            set_default(container, &format!("resources.requests.{resource}"), limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_false_of_plain_bools_is_stored_as_nothing_and_pointers_keep_it() {
        // What `kubectl create deployment` sends through protobuf: every plain bool.
        let mut deployment = json!({
            "spec": {"paused": false, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"hostPID": false, "hostNetwork": false, "automountServiceAccountToken": false,
                                           "containers": [{"name": "web", "image": "nginx", "stdin": false, "tty": true,
                                                           "securityContext": {"privileged": false},
                                                           "volumeMounts": [{"name": "d", "mountPath": "/d", "readOnly": false}]}]}}},
        });
        apply("apps", "Deployment", &mut deployment);
        assert!(deployment["spec"].get("paused").is_none());
        let spec = &deployment["spec"]["template"]["spec"];
        assert!(spec.get("hostPID").is_none() && spec.get("hostNetwork").is_none());
        assert_eq!(spec["automountServiceAccountToken"], false, "a *bool's false says something");
        let container = &spec["containers"][0];
        assert!(container.get("stdin").is_none());
        assert_eq!((&container["tty"], &container["securityContext"]["privileged"]), (&json!(true), &json!(false)));
        assert!(container["volumeMounts"][0].get("readOnly").is_none());
    }

    #[test]
    fn every_fixed_default_is_json() {
        for default in DEFAULTS {
            if let Fill::Fixed(text) = default.fill {
                assert!(serde_json::from_str::<Value>(text).is_ok(), "{}: {text}", default.field);
            }
        }
    }

    #[test]
    fn defaults_a_deployment_like_the_api_server() {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                    "readinessProbe": {"httpGet": {"port": 80}}}],
                "volumes": [{"name": "cache"}, {"name": "settings", "configMap": {"name": "s"}}]
            }}}
        });
        apply("apps", "Deployment", &mut deployment);
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        let container = &pod["containers"][0];
        assert_eq!(container["imagePullPolicy"], "Always");
        assert_eq!(container["ports"][0]["protocol"], "TCP");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/");
        assert_eq!(container["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(pod["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(pod["volumes"][1]["configMap"]["defaultMode"], 420);
    }

    #[test]
    fn recreate_strategy_gets_no_rolling_update() {
        let mut deployment =
            json!({"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {"containers": []}}}});
        apply("apps", "Deployment", &mut deployment);
        assert!(deployment["spec"]["strategy"].get("rollingUpdate").is_none());
    }
}
