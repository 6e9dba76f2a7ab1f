//! Which objects need which: read from the normalized objects alone (no lint facts), so
//! the same code orders the desired objects and the ones a state holds. An edge is added
//! only when both ends are in the set: a reference to an object that is not there is the
//! reference rules' business, not the order's.

use super::{ObjectId, Reason};
use serde_json::Value;
use std::collections::HashMap;

type Index<'a> = HashMap<&'a ObjectId, usize>;
/// Per namespace, the objects that make pods and their pods' labels.
type Templates<'a> = HashMap<&'a str, Vec<(usize, &'a [(String, String)])>>;

/// What ordering needs to know of one object, read from it once: the graph of a hundred
/// thousand objects is built from these without holding the objects themselves (as
/// `serde_json::Value`s they would take ten times their text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// A CustomResourceDefinition's group and kind.
    defines: Option<(String, String)>,
    /// The string-valued labels of the pods the object makes (a Pod's own).
    pod_labels: Option<Vec<(String, String)>>,
    /// A Service's selector, when it has pairs and every value is a string (a selector
    /// with another value selects nothing).
    selector: Option<Vec<(String, String)>>,
    /// Objects it names by identity, and why it needs them.
    references: Vec<(ObjectId, Reason)>,
    /// Its `config.kubernetes.io/depends-on` entries: each as written, and the identity
    /// it names when it is well formed.
    depends_on: Vec<(String, Option<ObjectId>)>,
}

impl Facts {
    /// The facts of `object`, a normalized object whose identity is `id`.
    pub fn of(id: &ObjectId, object: &Value) -> Facts {
        let mut facts = Facts::default();
        let namespace = id.namespace.as_deref();
        if id.group == "apiextensions.k8s.io" && id.kind == "CustomResourceDefinition" {
            let spec = object.get("spec");
            if let (Some(group), Some(kind)) = (
                spec.and_then(|s| s.get("group")).and_then(Value::as_str),
                spec.and_then(|s| s.pointer("/names/kind")).and_then(Value::as_str),
            ) {
                facts.defines = Some((group.to_string(), kind.to_string()));
            }
        }
        facts.pod_labels = pod_template_labels(id, object)
            .map(|labels| labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect());
        let mut edge = |kind: &str, group: &str, ns: Option<&str>, name: &str, reason: Reason| {
            let target = ObjectId {
                group: group.to_string(),
                kind: kind.to_string(),
                namespace: ns.map(str::to_string),
                name: name.to_string(),
            };
            facts.references.push((target, reason));
        };
        owners(object, namespace, &mut edge);
        if let Some(spec) = pod_spec(id, object) {
            pod_references(spec, &mut |kind, name| edge(kind, "", namespace, name, Reason::Uses));
        }
        match (id.group.as_str(), id.kind.as_str()) {
            ("networking.k8s.io", "Ingress") => {
                let spec = object.get("spec");
                let mut backends: Vec<&Value> = spec.and_then(|s| s.get("defaultBackend")).into_iter().collect();
                for rule in array(spec, "rules") {
                    for path in array(rule.get("http"), "paths") {
                        backends.extend(path.get("backend"));
                    }
                }
                for backend in backends {
                    if let Some(name) = backend.pointer("/service/name").and_then(Value::as_str) {
                        edge("Service", "", namespace, name, Reason::Routes);
                    }
                }
                if let Some(class) = spec.and_then(|s| s.get("ingressClassName")).and_then(Value::as_str) {
                    edge("IngressClass", "networking.k8s.io", None, class, Reason::Needs);
                }
            }
            ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
                if let Some(role) = object.get("roleRef") {
                    let name = role.get("name").and_then(Value::as_str).unwrap_or_default();
                    match role.get("kind").and_then(Value::as_str) {
                        Some("Role") => edge("Role", "rbac.authorization.k8s.io", namespace, name, Reason::Binds),
                        Some("ClusterRole") => {
                            edge("ClusterRole", "rbac.authorization.k8s.io", None, name, Reason::Binds)
                        }
                        _ => {}
                    }
                }
                for subject in array(Some(object), "subjects") {
                    if subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                        && let Some(name) = subject.get("name").and_then(Value::as_str)
                    {
                        let ns = subject.get("namespace").and_then(Value::as_str).or(namespace);
                        edge("ServiceAccount", "", ns, name, Reason::Binds);
                    }
                }
            }
            ("", "PersistentVolumeClaim") => {
                let spec = object.get("spec");
                if let Some(class) = spec.and_then(|s| s.get("storageClassName")).and_then(Value::as_str) {
                    edge("StorageClass", "storage.k8s.io", None, class, Reason::Needs);
                }
                if let Some(volume) = spec.and_then(|s| s.get("volumeName")).and_then(Value::as_str) {
                    edge("PersistentVolume", "", None, volume, Reason::Needs);
                }
            }
            ("", "PersistentVolume") => {
                if let Some(class) = object.pointer("/spec/storageClassName").and_then(Value::as_str) {
                    edge("StorageClass", "storage.k8s.io", None, class, Reason::Needs);
                }
            }
            ("autoscaling", "HorizontalPodAutoscaler") => {
                if let Some(target) = object.pointer("/spec/scaleTargetRef") {
                    let group = target
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .and_then(|v| v.split_once('/'))
                        .map_or("", |(g, _)| g);
                    if let (Some(kind), Some(name)) =
                        (target.get("kind").and_then(Value::as_str), target.get("name").and_then(Value::as_str))
                    {
                        edge(kind, group, namespace, name, Reason::Needs);
                    }
                }
            }
            ("", "Service") => {
                let selector = object.pointer("/spec/selector").and_then(Value::as_object).filter(|s| !s.is_empty());
                facts.selector = selector.and_then(|selector| {
                    selector.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
                });
            }
            _ => {}
        }
        facts.depends_on = depends_on(object);
        facts
    }
}

/// Pushes `(from, to, reason)` for every dependency among the objects `ids` names, whose
/// facts are `facts`.
pub fn find(
    ids: &[ObjectId],
    facts: &[Facts],
    index: &Index<'_>,
    out: &mut Vec<(usize, usize, Reason)>,
    problems: &mut Vec<super::Problem>,
) {
    // Each custom kind's CRD, and per namespace the objects that make pods with their
    // pods' labels (for Services).
    let mut crds: HashMap<(&str, &str), usize> = HashMap::new();
    let mut templates: Templates<'_> = HashMap::new();
    for (i, facts) in facts.iter().enumerate() {
        if let Some((group, kind)) = &facts.defines {
            crds.insert((group, kind), i);
        }
        if let Some(labels) = &facts.pod_labels {
            templates.entry(ids[i].namespace.as_deref().unwrap_or("")).or_default().push((i, labels));
        }
    }

    // Per namespace, label pair → the templates (positions in `templates`) that carry it.
    let mut by_label: HashMap<&str, HashMap<(&str, &str), Vec<usize>>> = HashMap::new();
    for (namespace, list) in &templates {
        let index = by_label.entry(namespace).or_default();
        for (t, (_, labels)) in list.iter().enumerate() {
            for (k, v) in labels.iter() {
                index.entry((k.as_str(), v.as_str())).or_default().push(t);
            }
        }
    }
    // Edges that do not go through a lookup by identity.
    let mut direct = Vec::new();
    for (i, facts) in facts.iter().enumerate() {
        let id = &ids[i];
        let namespace = id.namespace.as_deref();
        // An edge to an object named by identity, when the set holds it.
        let mut edge = |target: &ObjectId, reason: Reason| {
            if let Some(&j) = index.get(target)
                && j != i
            {
                out.push((j, i, reason));
            }
        };
        if let Some(ns) = namespace {
            let target = ObjectId { group: String::new(), kind: "Namespace".into(), namespace: None, name: ns.into() };
            edge(&target, Reason::Contains);
        }
        if let Some(&crd) = crds.get(&(id.group.as_str(), id.kind.as_str())) {
            direct.push((crd, i, Reason::Defines));
        }
        for (target, reason) in &facts.references {
            edge(target, *reason);
        }
        for (reference, target) in &facts.depends_on {
            match target.as_ref().map(|target| index.get(target)) {
                None => problems.push(super::Problem::MalformedDependsOn { object: i, reference: reference.clone() }),
                Some(Some(&j)) if j != i => direct.push((j, i, Reason::DependsOn)),
                Some(Some(_)) => {}
                Some(None) => {
                    problems.push(super::Problem::MissingDependency { object: i, reference: reference.clone() })
                }
            }
        }
        if let Some(selector) = &facts.selector
            && let Some(index) = by_label.get(namespace.unwrap_or(""))
        {
            // Candidates from the selector's rarest pair, then checked against all.
            let lists: Option<Vec<&Vec<usize>>> =
                selector.iter().map(|(k, v)| index.get(&(k.as_str(), v.as_str()))).collect();
            let Some(rarest) = lists.as_ref().and_then(|lists| lists.iter().min_by_key(|l| l.len())) else {
                continue;
            };
            for &t in rarest.iter() {
                let (j, labels) = templates[namespace.unwrap_or("")][t];
                if selector.iter().all(|pair| labels.contains(pair)) {
                    direct.push((i, j, Reason::Selects));
                }
            }
        }
    }
    out.append(&mut direct);
}

fn array<'a>(parent: Option<&'a Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    parent.and_then(|p| p.get(key)).and_then(Value::as_array).into_iter().flatten()
}

/// The pod spec of kinds that make pods.
fn pod_spec<'a>(id: &ObjectId, object: &'a Value) -> Option<&'a Value> {
    let pointer = match (id.group.as_str(), id.kind.as_str()) {
        ("", "Pod") => "/spec",
        ("", "PodTemplate") => "/template/spec",
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => "/spec/template/spec",
        ("batch", "CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    };
    object.pointer(pointer)
}

/// The labels of the pods an object makes (a Pod's own labels).
fn pod_template_labels<'a>(id: &ObjectId, object: &'a Value) -> Option<&'a serde_json::Map<String, Value>> {
    let pointer = match (id.group.as_str(), id.kind.as_str()) {
        ("", "Pod") => "/metadata/labels",
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => "/spec/template/metadata/labels",
        ("batch", "CronJob") => "/spec/jobTemplate/spec/template/metadata/labels",
        _ => return None,
    };
    object.pointer(pointer).and_then(Value::as_object)
}

/// Every ConfigMap, Secret, ServiceAccount and PersistentVolumeClaim a pod spec names.
fn pod_references(spec: &Value, add: &mut impl FnMut(&str, &str)) {
    let name = |v: Option<&Value>, key: &str| v.and_then(|v| v.get(key)).and_then(Value::as_str).map(str::to_string);
    if let Some(account) = name(Some(spec), "serviceAccountName").or_else(|| name(Some(spec), "serviceAccount")) {
        add("ServiceAccount", &account);
    }
    for secret in array(Some(spec), "imagePullSecrets") {
        if let Some(n) = name(Some(secret), "name") {
            add("Secret", &n);
        }
    }
    for volume in array(Some(spec), "volumes") {
        if let Some(n) = name(volume.get("configMap"), "name") {
            add("ConfigMap", &n);
        }
        if let Some(n) = name(volume.get("secret"), "secretName") {
            add("Secret", &n);
        }
        if let Some(n) = name(volume.get("persistentVolumeClaim"), "claimName") {
            add("PersistentVolumeClaim", &n);
        }
        for source in array(volume.get("projected"), "sources") {
            if let Some(n) = name(source.get("configMap"), "name") {
                add("ConfigMap", &n);
            }
            if let Some(n) = name(source.get("secret"), "name") {
                add("Secret", &n);
            }
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in array(Some(spec), list) {
            for env in array(Some(container), "env") {
                let from = env.get("valueFrom");
                if let Some(n) = name(from.and_then(|f| f.get("configMapKeyRef")), "name") {
                    add("ConfigMap", &n);
                }
                if let Some(n) = name(from.and_then(|f| f.get("secretKeyRef")), "name") {
                    add("Secret", &n);
                }
            }
            for source in array(Some(container), "envFrom") {
                if let Some(n) = name(source.get("configMapRef"), "name") {
                    add("ConfigMap", &n);
                }
                if let Some(n) = name(source.get("secretRef"), "name") {
                    add("Secret", &n);
                }
            }
        }
    }
}

/// `metadata.ownerReferences`: the owner first. An owner is in the object's namespace,
/// or cluster-scoped; both are tried.
fn owners(object: &Value, namespace: Option<&str>, edge: &mut impl FnMut(&str, &str, Option<&str>, &str, Reason)) {
    for owner in object.pointer("/metadata/ownerReferences").and_then(Value::as_array).into_iter().flatten() {
        let group =
            owner.get("apiVersion").and_then(Value::as_str).and_then(|v| v.split_once('/')).map_or("", |(g, _)| g);
        if let (Some(kind), Some(name)) =
            (owner.get("kind").and_then(Value::as_str), owner.get("name").and_then(Value::as_str))
        {
            edge(kind, group, namespace, name, Reason::Owns);
            if namespace.is_some() {
                edge(kind, group, None, name, Reason::Owns);
            }
        }
    }
}

/// cli-utils' `config.kubernetes.io/depends-on`: comma-separated
/// `<group>/namespaces/<namespace>/<kind>/<name>` or `<group>/<kind>/<name>`; each entry
/// with the identity it names, none when it is not of that form.
fn depends_on(object: &Value) -> Vec<(String, Option<ObjectId>)> {
    let Some(text) = object.pointer("/metadata/annotations/config.kubernetes.io~1depends-on").and_then(Value::as_str)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for reference in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let parts: Vec<&str> = reference.split('/').collect();
        let target = match parts.as_slice() {
            [group, "namespaces", namespace, kind, name] => Some((group, Some(namespace), kind, name)),
            [group, kind, name] => Some((group, None, kind, name)),
            _ => None,
        };
        let id = target.map(|(group, namespace, kind, name)| ObjectId {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(|n| n.to_string()),
            name: name.to_string(),
        });
        out.push((reference.to_string(), id));
    }
    out
}
