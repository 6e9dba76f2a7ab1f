//! The roles and bindings every cluster starts with: Kubernetes' bootstrap policy
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`), the part users see and bind to.
//! `cluster-admin`, and `admin`, `edit` and `view`, aggregated from the
//! `system:aggregate-to-*` roles (so a CRD's roles labelled `aggregate-to-view` widen
//! `view`, as on a real cluster); the discovery, basic-user, public-info and monitoring
//! roles with their bindings; `system:auth-delegator`. The roles of Kubernetes' own
//! components (`system:node`, `system:kube-scheduler`, the `system:controller:*` ones) are
//! not made: kubeyard's components are the cluster's administrators.

use super::aggregated_rules;
use serde_json::{Value, json};

/// `(API groups, resources, verbs)`.
type Rule = (&'static [&'static str], &'static [&'static str], &'static [&'static str]);

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const EVERY: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

const AGGREGATE_TO_ADMIN: &[Rule] = &[
    (&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
    (&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], EVERY),
];

const AGGREGATE_TO_EDIT: &[Rule] = &[
    (&[""], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
    (&[""], &["serviceaccounts"], &["impersonate"]),
    (&[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
    (&[""], &["pods/eviction"], &["create"]),
    (
        &[""],
        &[
            "configmaps",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
        WRITE,
    ),
    (&[""], &["serviceaccounts/token"], &["create"]),
    (
        &["apps"],
        &[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
        WRITE,
    ),
    (&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
    (&["batch"], &["cronjobs", "jobs"], WRITE),
    (
        &["extensions"],
        &[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "ingresses",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicationcontrollers/scale",
        ],
        WRITE,
    ),
    (&["policy"], &["poddisruptionbudgets"], WRITE),
    (&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
    (&["coordination.k8s.io"], &["leases"], EVERY),
];

const AGGREGATE_TO_VIEW: &[Rule] = &[
    (
        &[""],
        &[
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
        ],
        READ,
    ),
    (
        &[""],
        &[
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ],
        READ,
    ),
    (&[""], &["namespaces"], READ),
    (&["discovery.k8s.io"], &["endpointslices"], READ),
    (
        &["apps"],
        &[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
        READ,
    ),
    (&["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
    (&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
    (
        &["extensions"],
        &[
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "ingresses",
            "ingresses/status",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "replicationcontrollers/scale",
        ],
        READ,
    ),
    (&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
    (&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
];

const BASIC_USER: &[Rule] = &[
    (&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
    (&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
];

const AUTH_DELEGATOR: &[Rule] = &[
    (&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
    (&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
];

const DISCOVERY_URLS: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
];
const PUBLIC_INFO_URLS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];
const MONITORING_URLS: &[&str] =
    &["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"];

/// The label and annotation Kubernetes marks its bootstrap objects with.
fn metadata(name: &str, aggregate_to: Option<&str>) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let Some(to) = aggregate_to {
        labels[format!("rbac.authorization.k8s.io/aggregate-to-{to}")] = json!("true");
    }
    json!({"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
}

fn cluster_role(name: &str, aggregate_to: Option<&str>, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, aggregate_to),
        "rules": rules,
    })
}

fn resource_rules(rules: &[Rule]) -> Vec<Value> {
    rules
        .iter()
        .map(|(groups, resources, verbs)| json!({"apiGroups": groups, "resources": resources, "verbs": verbs}))
        .collect()
}

fn url_rules(urls: &[&str]) -> Vec<Value> {
    vec![json!({"nonResourceURLs": urls, "verbs": ["get"]})]
}

/// A ClusterRole that holds what the roles labelled `aggregate-to-<from>` hold.
fn aggregating(name: &str, from: &str, aggregate_to: Option<&str>) -> Value {
    let mut role = cluster_role(name, aggregate_to, Vec::new());
    role["aggregationRule"] = json!({
        "clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{from}"): "true"}}]
    });
    role
}

/// The bootstrap ClusterRoles, the aggregated ones with their rules filled in (as the
/// aggregation controller fills them).
pub fn cluster_roles() -> Vec<Value> {
    let everything = vec![
        json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
        json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
    ];
    let mut roles = vec![
        aggregating("admin", "admin", None),
        cluster_role("cluster-admin", None, everything),
        aggregating("edit", "edit", Some("admin")),
        cluster_role("system:aggregate-to-admin", Some("admin"), resource_rules(AGGREGATE_TO_ADMIN)),
        cluster_role("system:aggregate-to-edit", Some("edit"), resource_rules(AGGREGATE_TO_EDIT)),
        cluster_role("system:aggregate-to-view", Some("view"), resource_rules(AGGREGATE_TO_VIEW)),
        cluster_role("system:auth-delegator", None, resource_rules(AUTH_DELEGATOR)),
        cluster_role("system:basic-user", None, resource_rules(BASIC_USER)),
        cluster_role("system:discovery", None, url_rules(DISCOVERY_URLS)),
        cluster_role("system:monitoring", None, url_rules(MONITORING_URLS)),
        cluster_role("system:public-info-viewer", None, url_rules(PUBLIC_INFO_URLS)),
        aggregating("view", "view", Some("edit")),
    ];
    // view feeds edit, which feeds admin: fill them in that order.
    for name in ["view", "edit", "admin"] {
        let Some(at) = roles.iter().position(|r| r["metadata"]["name"] == name) else { continue };
        if let Some(rules) = aggregated_rules(&roles[at], &roles) {
            roles[at]["rules"] = Value::Array(rules);
        }
    }
    roles
}

/// The bootstrap ClusterRoleBindings of those roles.
pub fn cluster_role_bindings() -> Vec<Value> {
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|group| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}))
            .collect();
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": metadata(name, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        })
    };
    vec![
        binding("cluster-admin", &["system:masters"]),
        binding("system:basic-user", &["system:authenticated"]),
        binding("system:discovery", &["system:authenticated"]),
        binding("system:monitoring", &["system:monitoring"]),
        binding("system:public-info-viewer", &["system:authenticated", "system:unauthenticated"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::{Attributes, Policy, User};
    use super::*;

    fn user(name: &str) -> User {
        User { name: name.into(), uid: String::new(), groups: vec!["system:authenticated".into()] }
    }

    fn binding(role: &str, user: &str) -> Value {
        json!({"metadata": {"name": format!("{user}-{role}"), "namespace": "shop"},
               "roleRef": {"kind": "ClusterRole", "name": role},
               "subjects": [{"kind": "User", "name": user}]})
    }

    fn asks(verb: &str, group: &str, resource: &str) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: "shop".into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn view_edit_and_admin_nest_as_in_kubernetes() {
        let policy = Policy {
            cluster_roles: cluster_roles(),
            cluster_role_bindings: cluster_role_bindings(),
            role_bindings: vec![binding("view", "viv"), binding("edit", "ed"), binding("admin", "ada")],
            ..Policy::default()
        };
        let may = |who: &str, verb: &str, group: &str, resource: &str| {
            policy.allows(&user(who), &asks(verb, group, resource)).is_some()
        };
        assert!(may("viv", "list", "apps", "deployments"));
        assert!(!may("viv", "get", "", "secrets"), "view does not read Secrets");
        assert!(!may("viv", "delete", "", "pods"));
        assert!(may("ed", "get", "", "secrets") && may("ed", "delete", "", "pods") && may("ed", "list", "", "pods"));
        assert!(may("ed", "create", "", "pods/exec"));
        assert!(!may("ed", "create", "rbac.authorization.k8s.io", "roles"), "edit does not grant roles");
        assert!(may("ada", "create", "rbac.authorization.k8s.io", "roles") && may("ada", "get", "", "secrets"));
        assert!(!may("ada", "delete", "", "namespaces"), "admin is for one namespace's objects");
        // Every authenticated user may ask what they may do, and read discovery.
        assert!(may("nobody", "create", "authorization.k8s.io", "selfsubjectaccessreviews"));
        let discovery = Attributes { verb: "get".into(), path: "/apis/apps".into(), ..Attributes::default() };
        assert!(policy.allows(&user("nobody"), &discovery).is_some());
    }

    #[test]
    fn the_masters_are_cluster_admins_by_binding_too() {
        let policy = Policy {
            cluster_roles: cluster_roles(),
            cluster_role_bindings: cluster_role_bindings(),
            ..Policy::default()
        };
        let admin = User { name: "kubernetes-admin".into(), uid: String::new(), groups: vec!["system:masters".into()] };
        let why = policy.allows(&admin, &asks("delete", "", "namespaces")).unwrap();
        assert!(why.contains("ClusterRoleBinding \"cluster-admin\""), "{why}");
    }
}
