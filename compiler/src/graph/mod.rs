//! The dependency graph of a set of normalized objects, and the order to apply them in.
//!
//! Nodes are objects; an edge `a → b` says `a` must exist before `b` (a Namespace before
//! what lives in it, a ConfigMap before the Deployment that mounts it, a CRD before its
//! custom objects). Which edges there are is `edges`' job. The apply order is a
//! topological order in which, among the objects ready at each step, the one with the
//! lowest key goes first: the kind's install priority (Helm's order), then namespace, then
//! name, so the order is a pure function of the input. Objects on a cycle cannot be
//! ordered; each cycle is reported with its members.

pub mod edges;
pub mod render;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

/// An object's identity: what the API server keys it by (the version aside).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectId {
    pub group: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// The identity of a normalized object (`apiVersion`, `kind`, `metadata`), if it has one.
    pub fn of(object: &Value) -> Option<ObjectId> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let group = api_version.split_once('/').map_or("", |(group, _)| group);
        let metadata = object.get("metadata")?;
        Some(ObjectId {
            group: group.to_string(),
            kind: object.get("kind")?.as_str()?.to_string(),
            namespace: metadata.get("namespace").and_then(Value::as_str).map(str::to_string),
            name: metadata.get("name")?.as_str()?.to_string(),
        })
    }
}

impl fmt::Display for ObjectId {
    /// `Deployment/shop/web` for a namespaced object, `Namespace/shop` for a cluster one;
    /// the group is left out for Kubernetes' own kinds, which are unambiguous.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() || self.group.ends_with(".k8s.io") || !self.group.contains('.') {
            f.write_str(&self.kind)?;
        } else {
            write!(f, "{}.{}", self.kind, self.group)?;
        }
        if let Some(namespace) = &self.namespace {
            write!(f, "/{namespace}")?;
        }
        write!(f, "/{}", self.name)
    }
}

/// Why one object comes before another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// A Namespace before the objects in it.
    Contains,
    /// A ConfigMap, Secret, ServiceAccount or PersistentVolumeClaim before the pods that use it.
    Uses,
    /// A Service before the workloads whose pods it selects.
    Selects,
    /// A Service before the Ingress that routes to it.
    Routes,
    /// A Role or ClusterRole, and the ServiceAccounts, before the binding.
    Binds,
    /// A CustomResourceDefinition before the objects of its kind.
    Defines,
    /// An owner before what it owns (`metadata.ownerReferences`).
    Owns,
    /// A StorageClass or PersistentVolume before the claim; a scale target before its autoscaler.
    Needs,
    /// Declared with the `config.kubernetes.io/depends-on` annotation.
    DependsOn,
}

impl Reason {
    /// An ordering kubeyard infers for convenience rather than one the API needs: dropped
    /// when it would close a cycle.
    pub fn is_soft(self) -> bool {
        matches!(self, Reason::Selects | Reason::Routes | Reason::Needs)
    }

    /// Why the dependent waits, in its own words (`Deployment/web` waits for
    /// `ConfigMap/cfg`: "uses it").
    pub fn why(self) -> &'static str {
        match self {
            Reason::Contains => "its namespace",
            Reason::Uses => "uses it",
            Reason::Selects => "selects its pods",
            Reason::Routes => "routes to it",
            Reason::Binds => "binds it",
            Reason::Defines => "defines its kind",
            Reason::Owns => "its owner",
            Reason::Needs => "needs it",
            Reason::DependsOn => "depends-on annotation",
        }
    }

    /// The edge's label, read from the dependency to the dependent.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Contains => "contains",
            Reason::Uses => "used by",
            Reason::Selects => "selects",
            Reason::Routes => "routed to by",
            Reason::Binds => "bound by",
            Reason::Defines => "defines",
            Reason::Owns => "owns",
            Reason::Needs => "needed by",
            Reason::DependsOn => "depended on by",
        }
    }
}

/// The objects, their dependencies, and the order to apply them in.
#[derive(Debug)]
pub struct Graph {
    pub ids: Vec<ObjectId>,
    pub graph: DiGraph<usize, Reason>,
    /// Every object's index, in apply order (a cycle is entered at its first object by key).
    pub order: Vec<usize>,
    /// Each cycle's members, in key order.
    pub cycles: Vec<Vec<usize>>,
    /// For each object, its wave: 0 for objects that need nothing, else one more than the
    /// latest wave among what it needs. Objects in one wave could be applied together.
    pub waves: Vec<usize>,
    /// Declared dependencies that cannot be honoured.
    pub problems: Vec<Problem>,
}

/// A `config.kubernetes.io/depends-on` entry the graph cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not `<group>/namespaces/<namespace>/<kind>/<name>` or `<group>/<kind>/<name>`.
    MalformedDependsOn { object: usize, reference: String },
    /// Names an object the set does not hold (it may exist in the cluster already).
    MissingDependency { object: usize, reference: String },
}

/// Install order of kinds, as Helm's `InstallOrder` (`pkg/release/v1/util/kind_sorter.go`).
/// Kinds not listed come after, alphabetically.
pub const KIND_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The tie-break key: kind priority, then (for unlisted kinds) the kind, namespace, name.
pub type SortKey<'a> = (usize, &'a str, &'a str, &'a str, &'a str);

pub fn sort_key(id: &ObjectId) -> SortKey<'_> {
    let priority = KIND_ORDER.iter().position(|k| *k == id.kind).unwrap_or(KIND_ORDER.len());
    let kind = if priority == KIND_ORDER.len() { id.kind.as_str() } else { "" };
    (priority, kind, id.namespace.as_deref().unwrap_or(""), &id.name, &id.group)
}

/// Builds the graph of `objects` (normalized, each with an identity) and orders it.
pub fn build(objects: &[&Value]) -> Graph {
    let ids: Vec<ObjectId> = objects.iter().map(|o| ObjectId::of(o).unwrap_or_default()).collect();
    let facts: Vec<edges::Facts> = objects.iter().zip(&ids).map(|(o, id)| edges::Facts::of(id, o)).collect();
    build_from(ids, &facts)
}

/// Builds the graph of the objects `ids` names from their facts (`edges::Facts::of`),
/// and orders it: what `build` does, for callers that do not hold the objects.
pub fn build_from(ids: Vec<ObjectId>, facts: &[edges::Facts]) -> Graph {
    let mut graph = DiGraph::with_capacity(ids.len(), ids.len() * 2);
    for i in 0..ids.len() {
        graph.add_node(i);
    }
    let index: HashMap<&ObjectId, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut found = Vec::new();
    let mut problems = Vec::new();
    edges::find(&ids, facts, &index, &mut found, &mut problems);
    found.sort_unstable();
    found.dedup_by_key(|(from, to, _)| (*from, *to));
    for (from, to, reason) in found {
        graph.add_edge(NodeIndex::new(from), NodeIndex::new(to), reason);
    }
    // Inferred orderings (a Service before what it selects, a backend before its Ingress,
    // a target before its autoscaler) give way when they close a cycle with declared or
    // structural ones, as kapp's `ignoreIfCyclical` rules do; what remains is a real cycle.
    let mut soft_in_cycles = Vec::new();
    for scc in tarjan_scc(&graph).into_iter().filter(|scc| scc.len() > 1) {
        let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        for edge in graph.edge_indices() {
            if let Some((a, b)) = graph.edge_endpoints(edge)
                && members.contains(&a)
                && members.contains(&b)
                && graph[edge].is_soft()
            {
                soft_in_cycles.push(edge);
            }
        }
    }
    // Removing shifts the last edge into the removed slot: highest index first.
    soft_in_cycles.sort_unstable_by(|a, b| b.cmp(a));
    for edge in soft_in_cycles {
        graph.remove_edge(edge);
    }
    let (order, waves) = topological(&graph, &ids);
    let mut cycles: Vec<Vec<usize>> = tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
        .map(|scc| {
            let mut members: Vec<usize> = scc.into_iter().map(NodeIndex::index).collect();
            members.sort_by(|a, b| sort_key(&ids[*a]).cmp(&sort_key(&ids[*b])));
            members
        })
        .collect();
    cycles.sort_by(|a, b| sort_key(&ids[a[0]]).cmp(&sort_key(&ids[b[0]])));
    Graph { ids, graph, order, cycles, waves, problems }
}

/// Kahn's algorithm with a priority queue: deterministic whatever the input order.
fn topological(graph: &DiGraph<usize, Reason>, ids: &[ObjectId]) -> (Vec<usize>, Vec<usize>) {
    let n = ids.len();
    let mut waiting: Vec<usize> =
        (0..n).map(|i| graph.neighbors_directed(NodeIndex::new(i), petgraph::Incoming).count()).collect();
    // Parallel edges were removed, but a node may still list a neighbour once per edge.
    let mut ready: BinaryHeap<Reverse<(SortKey<'_>, usize)>> =
        (0..n).filter(|i| waiting[*i] == 0).map(|i| Reverse((sort_key(&ids[i]), i))).collect();
    let mut order = Vec::with_capacity(n);
    let mut waves = vec![0usize; n];
    let mut done = vec![false; n];
    loop {
        while let Some(Reverse((_, i))) = ready.pop() {
            if done[i] {
                continue;
            }
            order.push(i);
            done[i] = true;
            for next in graph.neighbors_directed(NodeIndex::new(i), petgraph::Outgoing) {
                let j = next.index();
                if done[j] {
                    continue; // the edge that closed a cycle
                }
                waves[j] = waves[j].max(waves[i] + 1);
                waiting[j] = waiting[j].saturating_sub(1);
                if waiting[j] == 0 && !done[j] {
                    ready.push(Reverse((sort_key(&ids[j]), j)));
                }
            }
        }
        if order.len() == n {
            break;
        }
        // Only cycles are left waiting: release the first of them by key, so what depends
        // on a cycle still comes after it (the cycle itself is reported as an error).
        let stuck = (0..n).filter(|i| !done[*i]).min_by(|a, b| sort_key(&ids[*a]).cmp(&sort_key(&ids[*b])));
        match stuck {
            Some(i) => {
                waiting[i] = 0;
                ready.push(Reverse((sort_key(&ids[i]), i)));
            }
            None => break,
        }
    }
    (order, waves)
}

impl Graph {
    /// The objects `i` needs, with why, in key order.
    pub fn needs(&self, i: usize) -> Vec<(usize, Reason)> {
        let mut out: Vec<(usize, Reason)> = self
            .graph
            .edges_directed(NodeIndex::new(i), petgraph::Incoming)
            .map(|e| (petgraph::visit::EdgeRef::source(&e).index(), *e.weight()))
            .collect();
        out.sort_by(|a, b| sort_key(&self.ids[a.0]).cmp(&sort_key(&self.ids[b.0])));
        out
    }

    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Every edge as (from, to, reason), sorted by apply position.
    pub fn edges(&self) -> Vec<(usize, usize, Reason)> {
        let position = self.positions();
        let mut out: Vec<(usize, usize, Reason)> = self
            .graph
            .edge_indices()
            .filter_map(|e| {
                let (a, b) = self.graph.edge_endpoints(e)?;
                Some((a.index(), b.index(), self.graph[e]))
            })
            .collect();
        out.sort_by_key(|(a, b, _)| (position[*b], position[*a]));
        out
    }

    /// Each object's position in the apply order.
    pub fn positions(&self) -> Vec<usize> {
        let mut position = vec![0; self.ids.len()];
        for (at, i) in self.order.iter().enumerate() {
            position[*i] = at;
        }
        position
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(graph: &Graph) -> Vec<String> {
        graph.order.iter().map(|i| graph.ids[*i].to_string()).collect()
    }

    #[test]
    fn orders_by_dependency_then_kind_then_name() {
        let objects = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"serviceAccountName": "web",
                   "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}, "spec": {"selector": {"app": "web"}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "shop"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
                   "spec": {"group": "example.com", "names": {"kind": "Widget"}}}),
        ];
        let refs: Vec<&Value> = objects.iter().collect();
        let graph = build(&refs);
        assert_eq!(
            names(&graph),
            [
                "Namespace/shop",
                "ServiceAccount/shop/web",
                "ConfigMap/shop/cfg",
                "CustomResourceDefinition/widgets.example.com",
                "Service/shop/web",
                "Deployment/shop/web",
                "Widget.example.com/shop/w"
            ]
        );
        assert!(graph.cycles.is_empty());
        let deployment = graph.ids.iter().position(|id| id.kind == "Deployment").unwrap();
        let needs: Vec<(String, Reason)> =
            graph.needs(deployment).into_iter().map(|(i, r)| (graph.ids[i].to_string(), r)).collect();
        assert_eq!(
            needs,
            [
                ("Namespace/shop".to_string(), Reason::Contains),
                ("ServiceAccount/shop/web".to_string(), Reason::Uses),
                ("ConfigMap/shop/cfg".to_string(), Reason::Uses),
                ("Service/shop/web".to_string(), Reason::Selects),
            ]
        );
        assert_eq!(graph.waves[deployment], 2);
        // The input order does not matter.
        let reversed: Vec<&Value> = objects.iter().rev().collect();
        assert_eq!(names(&build(&reversed)), names(&graph));
    }

    #[test]
    fn cycles_are_found_and_named() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default",
            "annotations": {"config.kubernetes.io/depends-on": "/namespaces/default/ConfigMap/b"}}});
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "default",
            "annotations": {"config.kubernetes.io/depends-on": "/namespaces/default/ConfigMap/a"}}});
        let c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
        let graph = build(&[&a, &b, &c]);
        assert_eq!(graph.cycles, vec![vec![0, 1]]);
        assert!(graph.problems.is_empty());
        // A Service declared to wait for the Deployment it selects: the inferred
        // Service-before-workload edge gives way instead of making a cycle.
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}});
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default",
            "annotations": {"config.kubernetes.io/depends-on": "apps/namespaces/default/Deployment/web"}},
            "spec": {"selector": {"app": "web"}}});
        let soft = build(&[&service, &deployment]);
        assert!(soft.cycles.is_empty());
        assert_eq!(names(&soft), ["Deployment/default/web", "Service/default/web"]);
        let odd = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d", "namespace": "default",
            "annotations": {"config.kubernetes.io/depends-on": "ConfigMap/a, /namespaces/default/ConfigMap/zzz"}}});
        assert_eq!(
            build(&[&odd]).problems,
            [
                Problem::MalformedDependsOn { object: 0, reference: "ConfigMap/a".into() },
                Problem::MissingDependency { object: 0, reference: "/namespaces/default/ConfigMap/zzz".into() }
            ]
        );
        assert_eq!(names(&graph), ["ConfigMap/default/c", "ConfigMap/default/a", "ConfigMap/default/b"]);
    }
}
