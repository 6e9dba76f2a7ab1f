//! The kinds the API server serves, and the discovery documents that describe them:
//! the built-in ones (`RESOURCES`) and those CustomResourceDefinitions add while it runs
//! (`Registry`), each request reading one snapshot of both (`Served`).

use kubeyard_compiler::admission_policy::Kind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

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
    /// Where a custom kind's `scale` subresource reads and writes; `None` for the
    /// built-in workloads (`spec.replicas`, `status.replicas`, `spec.selector`).
    pub scale_paths: Option<&'static ScalePaths>,
    /// `metadata.generation` counts changes to everything but status and metadata.
    pub generation: bool,
    pub categories: &'static [&'static str],
    /// The CustomResourceDefinition that defines the kind; `None` for built-in kinds.
    pub crd: Option<&'static str>,
    /// A custom kind's `additionalPrinterColumns`.
    pub columns: &'static [PrinterColumn],
}

/// A CRD version's `subresources.scale`: JSON paths (`.spec.replicas`) into its objects.
#[derive(Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// Where the serialized label selector (`app=web`) is, if anywhere.
    pub label_selector: Option<String>,
}

/// One of a CRD version's `additionalPrinterColumns`.
#[derive(Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
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
        scale_paths: None,
        generation: false,
        categories: &[],
        crd: None,
        columns: &[],
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

/// HorizontalPodAutoscalers, in one version (served in `autoscaling/v1` and `v2`).
const fn autoscaler(version: &'static str) -> Resource {
    let mut resource = workload(
        r(
            "autoscaling",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            true,
            &["hpa"],
        ),
        false,
    );
    resource.version = version;
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
    // The same stored Events through the newer API (conversion.rs; `prefix` shares the key).
    r("events.k8s.io", "Event", "events", "event", true, &["ev"]),
    with_status(r("", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"])),
    workload(r("apps", "Deployment", "deployments", "deployment", true, &["deploy"]), true),
    workload(r("apps", "ReplicaSet", "replicasets", "replicaset", true, &["rs"]), true),
    workload(r("apps", "DaemonSet", "daemonsets", "daemonset", true, &["ds"]), false),
    workload(r("apps", "StatefulSet", "statefulsets", "statefulset", true, &["sts"]), true),
    workload(r("batch", "Job", "jobs", "job", true, &[]), false),
    r("apps", "ControllerRevision", "controllerrevisions", "controllerrevision", true, &[]),
    r("coordination.k8s.io", "Lease", "leases", "lease", true, &[]),
    r("discovery.k8s.io", "EndpointSlice", "endpointslices", "endpointslice", true, &[]),
    // Beyond what the control plane acts on: stored and served so that real
    // applications (RBAC, storage, ingress, autoscaling) apply whole.
    with_status(r("", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, &["pvc"])),
    with_status(r("", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"])),
    r("", "LimitRange", "limitranges", "limitrange", true, &["limits"]),
    Resource { categories: &["all"], ..workload(r("batch", "CronJob", "cronjobs", "cronjob", true, &["cj"]), false) },
    autoscaler("v2"),
    // What `kubectl autoscale` writes; stored as v2 (conversion.rs).
    autoscaler("v1"),
    // The resource metrics API (metrics-server's, served here from the nodes: metrics.rs).
    Resource { version: "v1beta1", ..r("metrics.k8s.io", "NodeMetrics", "nodes", "", false, &[]) },
    Resource { version: "v1beta1", ..r("metrics.k8s.io", "PodMetrics", "pods", "", true, &[]) },
    with_status(r("policy", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"])),
    with_status(r("networking.k8s.io", "Ingress", "ingresses", "ingress", true, &["ing"])),
    r("networking.k8s.io", "IngressClass", "ingressclasses", "ingressclass", false, &[]),
    r("networking.k8s.io", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"]),
    // Reviews: answered, not stored (authorization.rs).
    r("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "", false, &[]),
    r("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "", false, &[]),
    r("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", "", false, &[]),
    r("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", "", true, &[]),
    r("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", "", false, &[]),
    r("authentication.k8s.io", "TokenReview", "tokenreviews", "", false, &[]),
    r("rbac.authorization.k8s.io", "Role", "roles", "role", true, &[]),
    r("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", "clusterrole", false, &[]),
    r("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", "rolebinding", true, &[]),
    r("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, &[]),
    r("storage.k8s.io", "StorageClass", "storageclasses", "storageclass", false, &["sc"]),
    r("scheduling.k8s.io", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"]),
    Resource {
        categories: &["api-extensions"],
        generation: true,
        ..with_status(r(
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            "validatingadmissionpolicy",
            false,
            &[],
        ))
    },
    Resource {
        categories: &["api-extensions"],
        generation: true,
        ..r(
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            "validatingadmissionpolicybinding",
            false,
            &[],
        )
    },
    Resource {
        categories: &["api-extensions"],
        generation: true,
        ..r(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            false,
            &[],
        )
    },
    Resource {
        categories: &["api-extensions"],
        generation: true,
        ..r(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            false,
            &[],
        )
    },
    Resource {
        categories: &["api-extensions"],
        generation: true,
        ..with_status(r(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            false,
            &["crd", "crds"],
        ))
    },
];

/// A built-in resource (callers that only ever mean built-in kinds: logs, proxies).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// The kinds one CustomResourceDefinition serves: a row per served version, preferred
/// version first.
#[derive(Clone, Debug, Default)]
pub struct CustomKinds {
    pub rows: Vec<&'static Resource>,
    /// Each row's `openAPIV3Schema`, as the CRD gives it (for OpenAPI documents).
    pub schemas: Vec<Value>,
    /// Being deleted: its objects may be read and deleted, not created.
    pub terminating: bool,
    /// The `apiVersion` objects are stored in (`group/version`).
    pub storage: &'static str,
    /// How an object changes version.
    pub conversion: Conversion,
}

/// A CRD's `spec.conversion`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Conversion {
    /// Only `apiVersion` changes.
    #[default]
    None,
    /// A webhook converts: its `clientConfig` and the `ConversionReview` versions it takes.
    Webhook { client_config: Arc<Value>, review_versions: Vec<String> },
}

/// What the server serves at one moment: the built-in kinds and the custom ones.
#[derive(Clone, Debug, Default)]
pub struct Served {
    /// By CRD name.
    custom: BTreeMap<String, CustomKinds>,
    /// Counts changes, so that documents built from a snapshot (OpenAPI) are rebuilt.
    pub generation: u64,
}

/// The custom kinds, swapped whole on every change (a CRD established or gone), so a
/// request sees one consistent set from routing to discovery.
#[derive(Default)]
pub struct Registry {
    served: RwLock<Arc<Served>>,
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Served> {
        Arc::clone(&self.served.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn change(&self, change: impl FnOnce(&mut Served)) {
        let mut served = self.served.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Served::clone(&served);
        change(&mut next);
        next.generation += 1;
        *served = Arc::new(next);
    }

    /// Serves a CRD's kinds (replacing what it served before).
    pub fn set(&self, crd: &str, kinds: CustomKinds) {
        self.change(|served| {
            served.custom.insert(crd.to_string(), kinds);
        });
    }

    pub fn remove(&self, crd: &str) {
        if self.snapshot().custom.contains_key(crd) {
            self.change(|served| {
                served.custom.remove(crd);
            });
        }
    }
}

impl Served {
    fn custom_rows(&self) -> impl Iterator<Item = &'static Resource> + '_ {
        self.custom.values().flat_map(|kinds| kinds.rows.iter().copied())
    }

    /// The resource at a path's group, version and plural: built-in kinds first (a CRD
    /// never shadows one), then custom ones.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        find(group, version, plural)
            .or_else(|| self.custom_rows().find(|r| r.group == group && r.version == version && r.plural == plural))
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&'static Resource> {
        by_kind(group, kind).or_else(|| self.custom_rows().find(|r| r.group == group && r.kind == kind))
    }

    /// What a CRD (by name) serves, when it is served.
    pub fn kinds(&self, crd: &str) -> Option<&CustomKinds> {
        self.custom.get(crd)
    }

    /// How a custom resource's objects are stored and converted; `None` for built-in kinds.
    pub fn storage_of(&self, resource: &Resource) -> Option<(&'static str, &Conversion)> {
        let kinds = self.custom.get(resource.crd?)?;
        Some((kinds.storage, &kinds.conversion))
    }

    /// Whether the CRD that defines a custom resource is being deleted.
    pub fn terminating(&self, resource: &Resource) -> bool {
        resource.crd.and_then(|crd| self.custom.get(crd)).is_some_and(|kinds| kinds.terminating)
    }

    /// Every custom row, for documents built from all kinds (OpenAPI).
    pub fn custom_resources(&self) -> Vec<&'static Resource> {
        self.custom_rows().collect()
    }

    /// Every custom row with its schema.
    pub fn custom_schemas(&self) -> Vec<(&'static Resource, &Value)> {
        self.custom.values().flat_map(|kinds| kinds.rows.iter().copied().zip(kinds.schemas.iter())).collect()
    }

    /// The named groups, in discovery order (built-in ones, then custom ones by name),
    /// each with its served versions, preferred first.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        fn add(groups: &mut Vec<(&'static str, Vec<&'static str>)>, resource: &'static Resource) {
            match groups.iter_mut().find(|(g, _)| *g == resource.group) {
                Some((_, versions)) if !versions.contains(&resource.version) => versions.push(resource.version),
                Some(_) => {}
                None => groups.push((resource.group, vec![resource.version])),
            }
        }
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for resource in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
            add(&mut groups, resource);
        }
        let builtin = groups.len();
        let mut custom: Vec<&'static Resource> = self.custom_rows().collect();
        custom.sort_by_key(|r| r.group);
        for resource in custom {
            add(&mut groups, resource);
        }
        for (_, versions) in &mut groups[builtin..] {
            // Kubernetes' order: GA before beta before alpha, higher first, others by name.
            versions.sort_by_key(|v| (std::cmp::Reverse(kubeyard_compiler::schema::removed::version_priority(v)), *v));
        }
        groups
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        let mut resources = Vec::new();
        let rows = RESOURCES.iter().chain(self.custom_rows()).filter(|r| r.group == group && r.version == version);
        for resource in rows {
            resources.push(self.describe(resource));
            for sub in resource.subresources() {
                resources.push(subresource(resource, sub));
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
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    }

    fn describe(&self, resource: &Resource) -> Value {
        // Custom resources list their verbs in the order Kubernetes' CRD handler does;
        // a terminating CRD's kinds can no longer be created or changed.
        let verbs: &[&str] = match resource.crd {
            None if resource.is_metrics() => METRICS_VERBS,
            None if resource.group == "authorization.k8s.io" || resource.group == "authentication.k8s.io" => {
                &["create"]
            }
            None => VERBS,
            Some(_) if self.terminating(resource) => TERMINATING_VERBS,
            Some(_) => CUSTOM_VERBS,
        };
        let mut described = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": verbs,
            "shortNames": resource.short_names,
            "categories": resource.categories,
        });
        if resource.crd.is_some() {
            // Omitted when empty, as Kubernetes serialises them.
            for key in ["shortNames", "categories"] {
                if described[key].as_array().is_some_and(Vec::is_empty) {
                    described.as_object_mut().map(|m| m.remove(key));
                }
            }
        }
        described
    }

    /// `GET /apis`.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self.groups().into_iter().map(|(g, v)| group_document(g, &v)).collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /api` or `GET /apis` as aggregated discovery (`apidiscovery.k8s.io`
    /// `APIGroupDiscoveryList`, `version` `v2` or `v2beta1`): every group, version and
    /// resource in one document, which kubectl 1.32 asks for first and reads in one round
    /// trip instead of one request per group version.
    pub fn aggregated(&self, core: bool, version: &str) -> Value {
        let groups: Vec<(&'static str, Vec<&'static str>)> = if core { vec![("", vec!["v1"])] } else { self.groups() };
        let items: Vec<Value> = groups
            .into_iter()
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .into_iter()
                    .map(|v| {
                        let resources: Vec<Value> = RESOURCES
                            .iter()
                            .chain(self.custom_rows())
                            .filter(|r| r.group == group && r.version == v)
                            .map(|resource| self.discovered(resource))
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                let metadata = if group.is_empty() {
                    json!({"creationTimestamp": null})
                } else {
                    json!({"name": group, "creationTimestamp": null})
                };
                json!({"metadata": metadata, "versions": versions})
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": format!("apidiscovery.k8s.io/{version}"),
            "metadata": {},
            "items": items,
        })
    }

    /// A resource's `APIResourceDiscovery`, its subresources within.
    fn discovered(&self, resource: &Resource) -> Value {
        let described = self.describe(resource);
        let subresources: Vec<Value> = resource
            .subresources()
            .into_iter()
            .map(|sub| {
                let entry = subresource(resource, sub);
                json!({
                    "subresource": sub,
                    "responseKind": {"group": entry["group"], "version": entry["version"], "kind": entry["kind"]},
                    "verbs": entry["verbs"],
                })
            })
            .collect();
        let mut discovered = json!({
            "resource": resource.plural,
            "responseKind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
            "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": resource.singular,
            "verbs": described["verbs"],
        });
        for key in ["shortNames", "categories"] {
            if described[key].as_array().is_some_and(|items| !items.is_empty()) {
                discovered[key] = described[key].clone();
            }
        }
        if !subresources.is_empty() {
            discovered["subresources"] = json!(subresources);
        }
        discovered
    }

    /// `GET /apis/{group}`.
    pub fn group(&self, group: &str) -> Option<Value> {
        self.groups().into_iter().find(|(g, _)| *g == group).map(|(group, versions)| {
            let mut document = group_document(group, &versions);
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            document
        })
    }
}

/// A row for a custom kind, kept for the life of the process: requests, watches and
/// tables hold `&'static Resource`. The same description gives the same row, so a CRD
/// updated or created again many times leaks nothing more.
pub fn intern(resource: Resource) -> &'static Resource {
    static ROWS: Mutex<Vec<&'static Resource>> = Mutex::new(Vec::new());
    let mut rows = ROWS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(row) = rows.iter().find(|row| same_row(row, &resource)) {
        return row;
    }
    let row: &'static Resource = Box::leak(Box::new(resource));
    rows.push(row);
    row
}

fn same_row(a: &Resource, b: &Resource) -> bool {
    (a.group, a.version, a.kind, a.plural, a.singular, a.namespaced, a.short_names, a.categories, a.crd)
        == (b.group, b.version, b.kind, b.plural, b.singular, b.namespaced, b.short_names, b.categories, b.crd)
        && (a.status, a.scale, a.generation) == (b.status, b.scale, b.generation)
        && a.scale_paths == b.scale_paths
        && a.columns == b.columns
}

/// A string kept for the life of the process (a custom row's names), each text once.
pub fn leak(text: &str) -> &'static str {
    static TEXTS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut texts = TEXTS.lock().unwrap_or_else(|e| e.into_inner());
    let texts = texts.get_or_insert_with(HashSet::new);
    if let Some(text) = texts.get(text) {
        return text;
    }
    let text: &'static str = Box::leak(text.to_string().into_boxed_str());
    texts.insert(text);
    text
}

/// Printer columns kept for the life of the process, each list once.
pub fn leak_columns(columns: Vec<PrinterColumn>) -> &'static [PrinterColumn] {
    static LISTS: Mutex<Vec<&'static [PrinterColumn]>> = Mutex::new(Vec::new());
    if columns.is_empty() {
        return &[];
    }
    let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(list) = lists.iter().find(|list| **list == columns.as_slice()) {
        return list;
    }
    let list: &'static [PrinterColumn] = Box::leak(columns.into_boxed_slice());
    lists.push(list);
    list
}

/// Scale paths kept for the life of the process, each set once.
pub fn leak_scale_paths(paths: ScalePaths) -> &'static ScalePaths {
    static PATHS: Mutex<Vec<&'static ScalePaths>> = Mutex::new(Vec::new());
    let mut all = PATHS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(kept) = all.iter().find(|kept| ***kept == paths) {
        return kept;
    }
    let kept: &'static ScalePaths = Box::leak(Box::new(paths));
    all.push(kept);
    kept
}

/// A list of strings kept for the life of the process.
pub fn leak_list(items: &[String]) -> &'static [&'static str] {
    if items.is_empty() {
        return &[];
    }
    let list: Vec<&'static str> = items.iter().map(|item| leak(item)).collect();
    Box::leak(list.into_boxed_slice())
}

impl Resource {
    /// The kind as behaviour particular to built-in kinds is keyed: empty for a custom
    /// kind, so that a CRD's `Job` (Volcano's) or `Service` (Knative's) gets none of it.
    pub fn builtin_kind(&self) -> &'static str {
        if self.crd.is_some() { "" } else { self.kind }
    }

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
        // events.k8s.io's Events are core's, as Kubernetes stores them once.
        let group = if self.group.is_empty() || (self.group == "events.k8s.io" && self.kind == "Event") {
            "core"
        } else {
            self.group
        };
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

    /// The key Kubernetes' own API server stores the object under in etcd, as its storage
    /// errors name it (`Key: /registry/pods/default/web`): the resource's plural, but for
    /// the few kept under older names, and custom resources (with CRDs and APIServices)
    /// under their group. kubeyard's store keys (`key`) also carry core's group.
    pub fn etcd_key(&self, namespace: Option<&str>, name: &str) -> String {
        let prefix = match (self.group, self.plural) {
            ("", "nodes") => "minions".to_string(),
            ("", "replicationcontrollers") => "controllers".to_string(),
            ("", "services") => "services/specs".to_string(),
            ("", "endpoints") => "services/endpoints".to_string(),
            ("networking.k8s.io", "ingresses") => "ingress".to_string(),
            ("apiextensions.k8s.io" | "apiregistration.k8s.io", plural) => format!("{}/{plural}", self.group),
            (group, plural) if self.crd.is_some() => format!("{group}/{plural}"),
            (_, plural) => plural.to_string(),
        };
        match namespace {
            Some(namespace) if self.namespaced => format!("/registry/{prefix}/{namespace}/{name}"),
            _ => format!("/registry/{prefix}/{name}"),
        }
    }

    /// A kind of the resource metrics API (`metrics.k8s.io`): computed, not stored.
    pub fn is_metrics(&self) -> bool {
        self.group == "metrics.k8s.io"
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
            subresources.push("eviction");
            subresources.push("ephemeralcontainers");
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
/// The metrics API's: read only, no watch.
const METRICS_VERBS: &[&str] = &["get", "list"];
/// A custom resource's verbs, in the order Kubernetes' CRD handler lists them.
const CUSTOM_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"];
const TERMINATING_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "watch"];

/// The kinds of the subresources that take an object of their own, as discovery lists
/// them and admission sees them.
pub const SCALE: Kind<'static> = Kind { group: "autoscaling", version: "v1", kind: "Scale" };
pub const BINDING: Kind<'static> = Kind { group: "", version: "v1", kind: "Binding" };
/// The legacy `POST namespaces/{ns}/bindings`, as admission sees it: a resource of its
/// own (not stored, and listed in discovery by `list`), whose objects are Bindings.
pub static BINDINGS: Resource = r("", "Binding", "bindings", "binding", true, &[]);
pub const EVICTION: Kind<'static> = Kind { group: "policy", version: "v1", kind: "Eviction" };

/// A subresource's discovery entry.
fn subresource(resource: &Resource, sub: &str) -> Value {
    let (kind, group, version, verbs): (&str, &str, &str, &[&str]) = match sub {
        "scale" => (SCALE.kind, SCALE.group, SCALE.version, &["get", "patch", "update"]),
        "binding" => (BINDING.kind, BINDING.group, BINDING.version, &["create"]),
        "eviction" => (EVICTION.kind, EVICTION.group, EVICTION.version, &["create"]),
        "ephemeralcontainers" => ("Pod", "", "v1", &["get", "patch", "update"]),
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
    json!({
        "name": format!("{}/{sub}", resource.plural),
        "singularName": "",
        "namespaced": resource.namespaced,
        "group": group,
        "version": version,
        "kind": kind,
        "verbs": verbs,
    })
}

fn group_document(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
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
