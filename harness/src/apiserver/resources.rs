//! The kinds the API server serves, and the discovery documents that describe them.

use serde_json::{Value, json};

#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Has a `status` subresource: the main resource's writes leave status alone.
    pub status: bool,
    /// Has a `scale` subresource (`spec.replicas`).
    pub scale: bool,
    /// `metadata.generation` counts changes to everything but status and metadata.
    pub generation: bool,
    pub categories: &'static [&'static str],
}

const fn r(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        // Every served group is at v1 but autoscaling, set where it is listed.
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        status: false,
        scale: false,
        generation: false,
        categories: &[],
    }
}

const fn with_status(mut resource: Resource) -> Resource {
    resource.status = true;
    resource
}

/// A workload: status and scale subresources, a generation, in kubectl's `all`.
const fn workload(mut resource: Resource, scale: bool) -> Resource {
    resource.status = true;
    resource.scale = scale;
    resource.generation = true;
    resource.categories = &["all"];
    resource
}

pub static RESOURCES: &[Resource] = &[
    with_status(r("", "Namespace", "namespaces", "namespace", false, &["ns"])),
    with_status(r("", "Node", "nodes", "node", false, &["no"])),
    Resource { categories: &["all"], ..with_status(r("", "Pod", "pods", "pod", true, &["po"])) },
    Resource { categories: &["all"], ..with_status(r("", "Service", "services", "service", true, &["svc"])) },
    r("", "Endpoints", "endpoints", "endpoints", true, &["ep"]),
    r("", "ConfigMap", "configmaps", "configmap", true, &["cm"]),
    r("", "Secret", "secrets", "secret", true, &[]),
    r("", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"]),
    workload(r("", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, &["rc"]), true),
    r("", "Event", "events", "event", true, &["ev"]),
    with_status(r("", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"])),
    workload(r("apps", "Deployment", "deployments", "deployment", true, &["deploy"]), true),
    workload(r("apps", "ReplicaSet", "replicasets", "replicaset", true, &["rs"]), true),
    workload(r("apps", "DaemonSet", "daemonsets", "daemonset", true, &["ds"]), false),
    workload(r("apps", "StatefulSet", "statefulsets", "statefulset", true, &["sts"]), true),
    workload(r("batch", "Job", "jobs", "job", true, &[]), false),
    r("coordination.k8s.io", "Lease", "leases", "lease", true, &[]),
    r("discovery.k8s.io", "EndpointSlice", "endpointslices", "endpointslice", true, &[]),
    // Beyond what the control plane acts on: stored and served so that real
    // applications (RBAC, storage, ingress, autoscaling) apply whole.
    with_status(r("", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, &["pvc"])),
    with_status(r("", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"])),
    r("", "LimitRange", "limitranges", "limitrange", true, &["limits"]),
    Resource { categories: &["all"], ..workload(r("batch", "CronJob", "cronjobs", "cronjob", true, &["cj"]), false) },
    Resource {
        version: "v2",
        ..workload(
            r(
                "autoscaling",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                "horizontalpodautoscaler",
                true,
                &["hpa"],
            ),
            false,
        )
    },
    with_status(r("policy", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"])),
    with_status(r("networking.k8s.io", "Ingress", "ingresses", "ingress", true, &["ing"])),
    r("networking.k8s.io", "IngressClass", "ingressclasses", "ingressclass", false, &[]),
    r("networking.k8s.io", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"]),
    r("rbac.authorization.k8s.io", "Role", "roles", "role", true, &[]),
    r("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", "clusterrole", false, &[]),
    r("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", "rolebinding", true, &[]),
    r("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, &[]),
    r("storage.k8s.io", "StorageClass", "storageclasses", "storageclass", false, &["sc"]),
    r("scheduling.k8s.io", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"]),
];

/// The named groups, in discovery order, each with its one served version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for resource in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !groups.iter().any(|(g, _)| *g == resource.group) {
            groups.push((resource.group, resource.version));
        }
    }
    groups
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `deployments.apps`, as errors name a resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// Where this resource's objects live in the store; with a namespace, the objects
    /// of that namespace.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() { "core" } else { self.group };
        match namespace {
            Some(namespace) if self.namespaced => format!("/registry/{group}/{}/{namespace}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        let mut key = self.prefix(namespace);
        key.push_str(name);
        key
    }

    pub fn subresources(&self) -> Vec<&'static str> {
        let mut subresources = Vec::new();
        if self.status {
            subresources.push("status");
        }
        if self.scale {
            subresources.push("scale");
        }
        if self.kind == "Pod" {
            subresources.push("binding");
            subresources.push("log");
            subresources.push("exec");
            subresources.push("attach");
            subresources.push("portforward");
            subresources.push("proxy");
        }
        if self.kind == "Service" {
            subresources.push("proxy");
        }
        if self.kind == "Namespace" {
            subresources.push("finalize");
        }
        if self.kind == "ServiceAccount" {
            subresources.push("token");
        }
        subresources
    }
}

/// What `pods/proxy` and `services/proxy` serve, as Kubernetes lists them.
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let mut resources = Vec::new();
    for resource in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        resources.push(json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": VERBS,
            "shortNames": resource.short_names,
            "categories": resource.categories,
        }));
        for sub in resource.subresources() {
            let (kind, group, version, verbs): (&str, &str, &str, &[&str]) = match sub {
                "scale" => ("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
                "binding" => ("Binding", "", "v1", &["create"]),
                "finalize" => ("Namespace", "", "v1", &["update"]),
                "log" => ("Pod", "", "v1", &["get"]),
                "exec" => ("PodExecOptions", "", "v1", &["create", "get"]),
                "attach" => ("PodAttachOptions", "", "v1", &["create", "get"]),
                "portforward" => ("PodPortForwardOptions", "", "v1", &["create", "get"]),
                "proxy" if resource.kind == "Pod" => ("PodProxyOptions", "", "v1", PROXY_VERBS),
                "proxy" => ("ServiceProxyOptions", "", "v1", PROXY_VERBS),
                "token" => ("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
                _ => (resource.kind, resource.group, resource.version, &["get", "patch", "update"]),
            };
            resources.push(json!({
                "name": format!("{}/{sub}", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "group": group,
                "version": version,
                "kind": kind,
                "verbs": verbs,
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    if group.is_empty() {
        resources.push(json!({
            "name": "bindings", "singularName": "binding", "namespaced": true, "kind": "Binding", "verbs": ["create"]
        }));
    }
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

fn group_document(group: &str, version: &str) -> Value {
    let version = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [version.clone()], "preferredVersion": version})
}

/// `GET /apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(|(g, v)| group_document(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub fn group(group: &str) -> Option<Value> {
    groups().into_iter().find(|(g, _)| *g == group).map(|(group, version)| {
        let mut document = group_document(group, version);
        document["kind"] = json!("APIGroup");
        document["apiVersion"] = json!("v1");
        document
    })
}

/// `GET /api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]
    })
}

/// The served resources as a Markdown table's rows (`docs/apiserver.md`).
pub fn markdown_rows() -> String {
    let mut rows = String::new();
    for resource in RESOURCES {
        let list = |items: &[&str]| if items.is_empty() { String::new() } else { format!("`{}`", items.join("`, `")) };
        rows.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} | {} |\n",
            resource.api_version(),
            resource.kind,
            resource.plural,
            if resource.namespaced { "namespaced" } else { "cluster" },
            list(resource.short_names),
            list(&resource.subresources()),
        ));
    }
    rows
}
