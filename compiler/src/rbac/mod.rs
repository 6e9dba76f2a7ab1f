//! Role-based access control as Kubernetes' RBAC authorizer decides it
//! (`pkg/apis/rbac/v1/evaluation_helpers.go`, `plugin/pkg/auth/authorizer/rbac`): allow
//! only, the union of what the ClusterRoleBindings grant anywhere and what the request
//! namespace's RoleBindings grant there. One home for the API server's authorizer, its
//! access reviews (`kubectl auth can-i`, `--list`), the ClusterRole aggregation controller
//! and the 403's words.

pub mod bootstrap;
pub mod escalation;

use crate::selector::Selector;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Who makes a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    /// A ServiceAccount's user: `system:serviceaccount:<ns>:<name>` and its groups.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> User {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            uid: uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// `system:masters` is allowed everything, before RBAC is asked (as Kubernetes' node
    /// of its authorizer chain does).
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// What a request asks to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// Empty: the cluster scope (or every namespace).
    pub namespace: String,
    /// A non-resource request's path (`/healthz`); empty for resource requests.
    pub path: String,
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// `RuleAllows`.
pub fn rule_allows(rule: &Value, request: &Attributes) -> bool {
    let verbs = strings(rule, "verbs");
    if !verbs.iter().any(|v| v == "*" || *v == request.verb) {
        return false;
    }
    if !request.path.is_empty() {
        return strings(rule, "nonResourceURLs").iter().any(|url| {
            url == "*"
                || *url == request.path
                || url.strip_suffix('*').is_some_and(|prefix| request.path.starts_with(prefix))
        });
    }
    let groups = strings(rule, "apiGroups");
    if !groups.iter().any(|g| g == "*" || *g == request.group) {
        return false;
    }
    let combined = if request.subresource.is_empty() {
        request.resource.clone()
    } else {
        format!("{}/{}", request.resource, request.subresource)
    };
    let resources = strings(rule, "resources");
    let resource_matches = resources.iter().any(|r| {
        r == "*" || *r == combined || (!request.subresource.is_empty() && *r == format!("*/{}", request.subresource))
    });
    if !resource_matches {
        return false;
    }
    let names = strings(rule, "resourceNames");
    names.is_empty() || names.contains(&request.name)
}

/// Whether a binding's subjects include the user (`appliesTo`).
fn binds(binding: &Value, user: &User, binding_namespace: &str) -> Option<String> {
    for subject in binding.get("subjects").and_then(Value::as_array).into_iter().flatten() {
        let name = text(subject, "/name");
        let matched = match text(subject, "/kind") {
            "User" => name == user.name,
            "Group" => user.groups.iter().any(|g| g == name),
            "ServiceAccount" => {
                let namespace =
                    Some(text(subject, "/namespace")).filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
                user.name == format!("system:serviceaccount:{namespace}:{name}")
            }
            _ => false,
        };
        if matched {
            return Some(format!("{} \"{}\"", text(subject, "/kind"), name));
        }
    }
    None
}

/// The roles and bindings RBAC reads: Roles and RoleBindings by namespace, ClusterRoles
/// and ClusterRoleBindings.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub roles: Vec<Value>,
    pub cluster_roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
}

impl Policy {
    fn role(&self, binding: &Value) -> Option<&Value> {
        let (kind, name) = (text(binding, "/roleRef/kind"), text(binding, "/roleRef/name"));
        let namespace = text(binding, "/metadata/namespace");
        match kind {
            "ClusterRole" => self.cluster_roles.iter().find(|r| text(r, "/metadata/name") == name),
            "Role" => self
                .roles
                .iter()
                .find(|r| text(r, "/metadata/name") == name && text(r, "/metadata/namespace") == namespace),
            _ => None,
        }
    }

    /// The bindings that apply to the user for a namespace ("" : cluster bindings only),
    /// each with the rules it grants and how the reason names it.
    fn grants(&self, user: &User, namespace: &str) -> Vec<(String, Vec<Value>)> {
        self.grants_with(user, namespace, false)
    }

    /// `grants`, with a RoleBinding's non-resource rules kept (`keep_urls`: what
    /// `RulesFor` returns; they never allow a request, which has no namespace).
    fn grants_with(&self, user: &User, namespace: &str, keep_urls: bool) -> Vec<(String, Vec<Value>)> {
        let mut grants = Vec::new();
        for binding in &self.cluster_role_bindings {
            if let (Some(subject), Some(role)) = (binds(binding, user, ""), self.role(binding)) {
                let why = format!(
                    "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{}\" to {subject}",
                    text(binding, "/metadata/name"),
                    text(role, "/metadata/name")
                );
                grants.push((why, role.get("rules").and_then(Value::as_array).cloned().unwrap_or_default()));
            }
        }
        if namespace.is_empty() {
            return grants;
        }
        for binding in self.role_bindings.iter().filter(|b| text(b, "/metadata/namespace") == namespace) {
            if let (Some(subject), Some(role)) = (binds(binding, user, namespace), self.role(binding)) {
                let why = format!(
                    "RBAC: allowed by RoleBinding \"{}/{namespace}\" of {} \"{}\" to {subject}",
                    text(binding, "/metadata/name"),
                    text(binding, "/roleRef/kind"),
                    text(role, "/metadata/name")
                );
                // Non-resource URLs are granted only by cluster bindings.
                let rules = role.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
                let rules =
                    rules.into_iter().filter(|r| keep_urls || strings(r, "nonResourceURLs").is_empty()).collect();
                grants.push((why, rules));
            }
        }
        grants
    }

    /// The reason the request is allowed, or `None` (denied: RBAC has no deny).
    pub fn allows(&self, user: &User, request: &Attributes) -> Option<String> {
        self.grants(user, &request.namespace)
            .into_iter()
            .find(|(_, rules)| rules.iter().any(|rule| rule_allows(rule, request)))
            .map(|(why, _)| why)
    }

    /// Every rule the user holds in a namespace ("": at the cluster scope), as written
    /// (`RulesFor`, what the escalation check compares with).
    pub fn rules_for(&self, user: &User, namespace: &str) -> Vec<Value> {
        self.grants_with(user, namespace, true).into_iter().flat_map(|(_, rules)| rules).collect()
    }

    /// Whether `binding`'s role exists, and its rules.
    pub fn role_rules(&self, binding: &Value) -> Option<Vec<Value>> {
        let role = self.role(binding)?;
        Some(role.get("rules").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// Every rule that applies to the user in a namespace (`SelfSubjectRulesReview`):
    /// (resource rules, non-resource rules).
    pub fn rules(&self, user: &User, namespace: &str) -> (Vec<Value>, Vec<Value>) {
        let (mut resource, mut non_resource) = (Vec::new(), Vec::new());
        for (_, rules) in self.grants(user, namespace) {
            for rule in rules {
                if strings(&rule, "nonResourceURLs").is_empty() {
                    let mut shown = json!({"verbs": strings(&rule, "verbs"), "apiGroups": strings(&rule, "apiGroups"),
                                           "resources": strings(&rule, "resources")});
                    let names = strings(&rule, "resourceNames");
                    if !names.is_empty() {
                        shown["resourceNames"] = json!(names);
                    }
                    resource.push(shown);
                } else {
                    non_resource.push(
                        json!({"verbs": strings(&rule, "verbs"), "nonResourceURLs": strings(&rule, "nonResourceURLs")}),
                    );
                }
            }
        }
        (resource, non_resource)
    }
}

/// The 403 a denied request gets, in Kubernetes' words (`forbiddenMessage`).
pub fn forbidden_message(user: &User, request: &Attributes) -> String {
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    if !request.path.is_empty() {
        return escape(&format!("forbidden: User \"{}\" cannot {} path \"{}\"", user.name, request.verb, request.path));
    }
    let qualified = if request.group.is_empty() {
        request.resource.clone()
    } else {
        format!("{}.{}", request.resource, request.group)
    };
    let subject = if request.name.is_empty() { qualified } else { format!("{qualified} \"{}\"", request.name) };
    let resource = if request.subresource.is_empty() {
        request.resource.clone()
    } else {
        format!("{}/{}", request.resource, request.subresource)
    };
    let scope = if request.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", request.namespace)
    };
    escape(&format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, request.verb, request.group
    ))
}

/// The rules an aggregated ClusterRole should hold: the union, without repeats, of the
/// rules of every ClusterRole its `aggregationRule` selects (itself excluded), in name
/// order; `None` for a ClusterRole that aggregates nothing.
pub fn aggregated_rules(role: &Value, cluster_roles: &[Value]) -> Option<Vec<Value>> {
    let selectors = role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array)?;
    let selectors: Vec<Selector> =
        selectors.iter().filter_map(|s| Selector::from_label_selector(Some(s)).ok()).collect();
    let me = text(role, "/metadata/name");
    let mut sorted: Vec<&Value> = cluster_roles.iter().filter(|r| text(r, "/metadata/name") != me).collect();
    sorted.sort_by_key(|r| text(r, "/metadata/name").to_string());
    let mut rules: Vec<Value> = Vec::new();
    for other in sorted {
        let labels: BTreeMap<String, String> = other
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        if selectors.iter().any(|s| s.matches(&labels)) {
            for rule in other.get("rules").and_then(Value::as_array).into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(verb: &str, group: &str, resource: &str, namespace: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            ..Attributes::default()
        }
    }

    fn policy() -> Policy {
        Policy {
            roles: vec![json!({"metadata": {"name": "reader", "namespace": "shop"},
                               "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
                                         {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["get"]}]})],
            role_bindings: vec![json!({"metadata": {"name": "read", "namespace": "shop"},
                                       "roleRef": {"kind": "Role", "name": "reader"},
                                       "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "shop"}]})],
            cluster_roles: vec![
                json!({"metadata": {"name": "health"}, "rules": [{"nonResourceURLs": ["/healthz*"], "verbs": ["get"]}]}),
            ],
            cluster_role_bindings: vec![
                json!({"metadata": {"name": "health"}, "roleRef": {"kind": "ClusterRole", "name": "health"},
                                               "subjects": [{"kind": "Group", "name": "system:authenticated"}]}),
            ],
        }
    }

    #[test]
    fn a_service_account_may_what_its_namespace_binds_and_no_more() {
        let ci = User::service_account("shop", "ci", "u1");
        let policy = policy();
        assert_eq!(
            policy.allows(&ci, &request("list", "", "pods", "shop")).as_deref(),
            Some("RBAC: allowed by RoleBinding \"read/shop\" of Role \"reader\" to ServiceAccount \"ci\"")
        );
        assert!(policy.allows(&ci, &request("list", "", "pods", "other")).is_none(), "another namespace");
        assert!(policy.allows(&ci, &request("delete", "", "pods", "shop")).is_none(), "another verb");
        let mut exec = request("create", "", "pods", "shop");
        exec.subresource = "exec".into();
        assert!(policy.allows(&ci, &exec).is_none(), "pods does not grant pods/exec");
        let mut log = request("get", "", "pods", "shop");
        log.subresource = "log".into();
        assert!(policy.allows(&ci, &log).is_some());
        let mut web = request("get", "apps", "deployments", "shop");
        web.name = "web".into();
        assert!(policy.allows(&ci, &web).is_some());
        web.name = "api".into();
        assert!(policy.allows(&ci, &web).is_none(), "resourceNames restrict");
        let health = Attributes { verb: "get".into(), path: "/healthz/ready".into(), ..Attributes::default() };
        assert!(policy.allows(&ci, &health).is_some());
        let (resource_rules, non_resource) = policy.rules(&ci, "shop");
        assert_eq!((resource_rules.len(), non_resource.len()), (2, 1));
    }

    #[test]
    fn refusals_read_as_kubernetes_words_them() {
        let jane = User { name: "jane".into(), uid: String::new(), groups: vec![] };
        assert_eq!(
            forbidden_message(&jane, &request("list", "", "pods", "default")),
            "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let mut get = request("get", "apps", "deployments", "");
        get.name = "web".into();
        assert_eq!(
            forbidden_message(&jane, &get),
            "deployments.apps \"web\" is forbidden: User \"jane\" cannot get resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        let path = Attributes { verb: "get".into(), path: "/metrics".into(), ..Attributes::default() };
        assert_eq!(forbidden_message(&jane, &path), "forbidden: User \"jane\" cannot get path \"/metrics\"");
    }

    #[test]
    fn aggregated_roles_hold_the_union_of_those_they_select() {
        let view = json!({"metadata": {"name": "view"},
                          "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-view": "true"}}]}});
        let a = json!({"metadata": {"name": "a", "labels": {"rbac.example.com/aggregate-to-view": "true"}},
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        let b = json!({"metadata": {"name": "b", "labels": {"rbac.example.com/aggregate-to-view": "true"}},
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                                 {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]});
        let other =
            json!({"metadata": {"name": "c"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
        let rules = aggregated_rules(&view, &[view.clone(), b, a, other]).unwrap();
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(aggregated_rules(&json!({"metadata": {"name": "plain"}}), &[]).is_none());
    }
}
