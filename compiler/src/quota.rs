//! What an object counts against a ResourceQuota, as Kubernetes' quota evaluators count
//! it (`pkg/quota/v1/evaluator/core`): one home for the ResourceQuota admission plugin
//! (which refuses what would go past `hard`) and the resource quota controller (which
//! fills `status.used`).
//!
//! - Every object counts `count/<resource>[.<group>]` (`count/configmaps`,
//!   `count/deployments.apps`) and, for the kinds that had them first, the old names
//!   (`pods`, `services`, `configmaps`, `secrets`, `persistentvolumeclaims`,
//!   `replicationcontrollers`, `resourcequotas`, `services.loadbalancers`,
//!   `services.nodeports`).
//! - A pod that is neither finished nor being deleted counts its effective requests and
//!   limits (`requests.cpu`, `cpu`, `limits.memory`, ...; [`crate::pod`]'s arithmetic); a
//!   claim its `requests.storage`.
//! - A quota on `cpu` or `memory` (requests or limits) wants every container to say it
//!   ([`missing_constraints`], Kubernetes' words).
//! - A quota with scopes counts only the pods they select ([`in_scope`]).

use crate::pod::{self, Amounts};
use crate::quantity::{Format, Quantity};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Amounts per quota resource name.
pub type Usage = BTreeMap<String, Quantity>;

fn one() -> Quantity {
    Quantity::from_units(1, Format::DecimalSI)
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The `count/` name of a resource: `count/configmaps`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

/// The resource (group, plural) a quota resource name counts objects of, if it does.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    if let Some(resource) = name.strip_prefix("count/") {
        return Some(match resource.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), resource.to_string()),
        });
    }
    let core = |plural: &str| Some((String::new(), plural.to_string()));
    match name {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods"),
        _ if name.starts_with("requests.") && name != "requests.storage" || name.starts_with("limits.") => core("pods"),
        "services" | "services.loadbalancers" | "services.nodeports" => core("services"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" | "persistentvolumeclaims" => core(name),
        "requests.storage" => core("persistentvolumeclaims"),
        _ => None,
    }
}

/// Whether an object counts at all at `now` (RFC 3339): a finished pod no longer does,
/// nor one still terminating past its deletion time and grace period (`QuotaV1Pod`: a pod
/// stuck on a lost node must not keep its namespace from scaling).
pub fn counts(group: &str, kind: &str, object: &Value, now: &str) -> bool {
    if group.is_empty() && kind == "Pod" {
        if matches!(text(object, "/status/phase"), "Succeeded" | "Failed") {
            return false;
        }
        let deleted = object.pointer("/metadata/deletionTimestamp").and_then(Value::as_str);
        let grace = object.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
        if let (Some(deleted), Some(grace), Ok(now)) = (deleted, grace, now.parse::<jiff::Timestamp>())
            && let Ok(deleted) = deleted.parse::<jiff::Timestamp>()
        {
            return now.as_second() <= deleted.as_second().saturating_add(grace);
        }
    }
    true
}

/// What one object counts.
pub fn usage(group: &str, plural: &str, kind: &str, object: &Value) -> Usage {
    let mut usage = Usage::new();
    usage.insert(count_name(group, plural), one());
    if !group.is_empty() {
        return usage;
    }
    match kind {
        "Pod" => {
            usage.insert("pods".into(), one());
            let empty = Value::Null;
            let spec = object.get("spec").unwrap_or(&empty);
            let requests = pod::requests(spec, Amounts::Requests);
            let limits = pod::limits(spec);
            for (resource, amount) in &requests {
                usage.insert(format!("requests.{resource}"), *amount);
                // `cpu`, `memory` and `ephemeral-storage` in a quota mean requests.
                if matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    usage.insert(resource.clone(), *amount);
                }
            }
            for (resource, amount) in &limits {
                usage.insert(format!("limits.{resource}"), *amount);
            }
        }
        "Service" => {
            usage.insert("services".into(), one());
            let ports = object.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
            let ports = Quantity::from_units(i64::try_from(ports).unwrap_or(0), Format::DecimalSI);
            match text(object, "/spec/type") {
                "LoadBalancer" => {
                    usage.insert("services.loadbalancers".into(), one());
                    usage.insert("services.nodeports".into(), ports);
                }
                "NodePort" => {
                    usage.insert("services.nodeports".into(), ports);
                }
                _ => {}
            }
        }
        "PersistentVolumeClaim" => {
            usage.insert("persistentvolumeclaims".into(), one());
            if let Some(storage) = object.pointer("/spec/resources/requests/storage").and_then(pod::quantity) {
                usage.insert("requests.storage".into(), storage);
            }
        }
        "ConfigMap" | "Secret" | "ReplicationController" | "ResourceQuota" => {
            usage.insert(format!("{}s", kind.to_ascii_lowercase()), one());
        }
        _ => {}
    }
    usage
}

/// A quota's scope requirements (`getScopeSelectorsFromQuota`): each of `spec.scopes`,
/// as `Exists`, and each of `spec.scopeSelector.matchExpressions`, as
/// `(scope, operator, values)`.
fn scope_requirements(quota: &Value) -> Vec<(&str, &str, Vec<&str>)> {
    let mut requirements: Vec<(&str, &str, Vec<&str>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|scope| (scope, "Exists", Vec::new()))
        .collect();
    for expression in
        quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array).into_iter().flatten()
    {
        let values = expression.get("values").and_then(Value::as_array).into_iter().flatten();
        requirements.push((
            text(expression, "/scopeName"),
            text(expression, "/operator"),
            values.filter_map(Value::as_str).collect(),
        ));
    }
    requirements
}

/// Whether a pod's namespace-crossing affinity (`namespaces` or `namespaceSelector` on a
/// pod affinity or anti-affinity term) puts it in the `CrossNamespacePodAffinity` scope.
fn crosses_namespaces(pod: &Value) -> bool {
    let mut terms = Vec::new();
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(affinity) = pod.pointer(&format!("/spec/affinity/{kind}")) else { continue };
        terms.extend(
            affinity
                .get("requiredDuringSchedulingIgnoredDuringExecution")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
        let preferred = affinity.get("preferredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        terms.extend(preferred.into_iter().flatten().filter_map(|p| p.get("podAffinityTerm")));
    }
    terms.iter().any(|term| {
        term.get("namespaceSelector").is_some_and(|s| !s.is_null())
            || term.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
    })
}

/// `podMatchesScopeFunc`: whether a pod is in one scope requirement.
fn pod_in_scope(pod: &Value, scope: &str, operator: &str, values: &[&str]) -> bool {
    let terminating = pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s >= 0);
    let best_effort = pod::qos_class(pod) == "BestEffort";
    match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "CrossNamespacePodAffinity" => crosses_namespaces(pod),
        "PriorityClass" => {
            // A label selector over `PriorityClass=<the pod's class>`, a label the pod has
            // only when it names a class (`podMatchesSelector`).
            let class = Some(text(pod, "/spec/priorityClassName")).filter(|c| !c.is_empty());
            match (operator, class) {
                ("Exists", class) => class.is_some(),
                ("DoesNotExist", class) => class.is_none(),
                ("In", Some(class)) => values.contains(&class),
                ("NotIn", Some(class)) => !values.contains(&class),
                ("NotIn", None) => true,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a quota counts an object (the evaluators' `Matches`): one without scopes
/// counts everything; one with scopes counts only the pods every scope requirement
/// selects (`Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort`,
/// `PriorityClass` with `In`, `NotIn`, `Exists` or `DoesNotExist`,
/// `CrossNamespacePodAffinity`), and no
/// object of another kind.
pub fn in_scope(quota: &Value, group: &str, kind: &str, object: &Value) -> bool {
    let requirements = scope_requirements(quota);
    if requirements.is_empty() {
        return true;
    }
    group.is_empty()
        && kind == "Pod"
        && requirements.iter().all(|(scope, operator, values)| pod_in_scope(object, scope, operator, values))
}

/// Whether an update is checked against quotas too (the evaluators that handle
/// `UPDATE`): a Service's (its type and ports change what it counts) and a claim's (a
/// larger `requests.storage`). Other objects are counted at their create only.
pub fn checks_updates(group: &str, kind: &str) -> bool {
    group.is_empty() && matches!(kind, "Service" | "PersistentVolumeClaim")
}

/// What an update adds (`usage` of the new object less the old's): the names that grow,
/// by how much; an update that adds nothing is not checked.
pub fn increase(new: &Usage, old: &Usage) -> Usage {
    let mut grown = Usage::new();
    for (name, amount) in new {
        let before = old.get(name).copied().unwrap_or_else(Quantity::zero);
        if *amount > before
            && let Some(delta) = before.checked_mul(-1).and_then(|minus| amount.checked_add(&minus))
        {
            grown.insert(name.clone(), delta);
        }
    }
    grown
}

/// Adds `usage` to `total`.
pub fn add(total: &mut Usage, usage: &Usage) {
    for (name, amount) in usage {
        let sum = total.get(name).and_then(|t| t.checked_add(amount)).unwrap_or(*amount);
        total.insert(name.clone(), sum);
    }
}

/// `podEvaluator.Constraints`: with `cpu` or `memory` quota'd (as requests or limits),
/// each container must say it; Kubernetes' words (`must specify requests.cpu for: web`)
/// when one does not.
pub fn missing_constraints<'a>(hard: impl IntoIterator<Item = &'a str>, pod: &Value) -> Option<String> {
    let required: BTreeSet<&str> = hard
        .into_iter()
        .filter(|r| {
            matches!(*r, "cpu" | "memory" | "requests.cpu" | "requests.memory" | "limits.cpu" | "limits.memory")
        })
        .collect();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for field in ["containers", "initContainers"] {
        for container in pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array).into_iter().flatten() {
            for resource in &required {
                let (section, name) = match resource.split_once('.') {
                    Some(("limits", name)) => ("limits", name),
                    Some((_, name)) => ("requests", name),
                    None => ("requests", *resource),
                };
                let said = container.pointer(&format!("/resources/{section}/{name}")).is_some();
                if !said {
                    missing.entry(resource).or_default().insert(text(container, "/name").to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(resource, names)| format!("{resource} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_count_under_their_count_names_and_the_old_ones() {
        let service = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        let counted = usage("", "services", "Service", &service);
        let shown: BTreeMap<&str, String> = counted.iter().map(|(k, v)| (k.as_str(), v.to_string())).collect();
        assert_eq!(
            shown,
            BTreeMap::from([
                ("count/services", "1".to_string()),
                ("services", "1".to_string()),
                ("services.loadbalancers", "1".to_string()),
                ("services.nodeports", "2".to_string()),
            ])
        );
        let deployment = usage("apps", "deployments", "Deployment", &json!({}));
        assert_eq!(deployment.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
        let pod = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}}}]}});
        let pod = usage("", "pods", "Pod", &pod);
        assert_eq!(pod["requests.cpu"].to_string(), "250m");
        assert_eq!(pod["cpu"].to_string(), "250m");
        assert_eq!(pod["limits.memory"].to_string(), "64Mi");
        let now = "2026-01-01T00:01:00Z";
        assert!(!counts("", "Pod", &json!({"status": {"phase": "Succeeded"}}), now));
        let terminating = |at: &str| json!({"metadata": {"deletionTimestamp": at, "deletionGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
        assert!(counts("", "Pod", &terminating("2026-01-01T00:00:45Z"), now), "still within its grace");
        assert!(!counts("", "Pod", &terminating("2026-01-01T00:00:00Z"), now), "stuck past deletion and grace");
        assert_eq!(counted_resource("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
        assert_eq!(counted_resource("requests.cpu"), Some((String::new(), "pods".into())));
        assert_eq!(counted_resource("requests.storage"), Some((String::new(), "persistentvolumeclaims".into())));
        assert_eq!(counted_resource("nvidia.com/gpu"), None);
    }

    #[test]
    fn a_cpu_quota_wants_every_container_to_ask_for_cpu() {
        let pod = json!({"spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": "1Gi"}}},
                                                 {"name": "side", "resources": {"requests": {"cpu": "10m"}}}]}});
        assert_eq!(
            missing_constraints(["requests.cpu", "pods"], &pod).as_deref(),
            Some("must specify requests.cpu for: web")
        );
        assert_eq!(
            missing_constraints(["limits.cpu", "memory"], &pod).as_deref(),
            Some("must specify limits.cpu for: side,web; memory for: side,web")
        );
        assert_eq!(missing_constraints(["pods", "count/configmaps"], &pod), None);
    }

    #[test]
    fn scoped_quotas_count_only_the_pods_their_scopes_select() {
        let quota = |spec: Value| json!({"spec": spec});
        let best_effort = json!({"spec": {"containers": [{"name": "c"}]}});
        let job = json!({"spec": {"activeDeadlineSeconds": 60, "priorityClassName": "high",
                                   "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        let terminating = quota(json!({"scopes": ["Terminating"]}));
        assert!(in_scope(&terminating, "", "Pod", &job));
        assert!(!in_scope(&terminating, "", "Pod", &best_effort));
        assert!(!in_scope(&terminating, "", "ConfigMap", &json!({})), "a scoped quota counts pods only");
        assert!(in_scope(&quota(json!({})), "", "ConfigMap", &json!({})));
        let both = quota(json!({"scopes": ["NotTerminating", "BestEffort"]}));
        assert!(in_scope(&both, "", "Pod", &best_effort) && !in_scope(&both, "", "Pod", &job));
        let high = quota(json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high", "critical"]}]}}));
        assert!(in_scope(&high, "", "Pod", &job) && !in_scope(&high, "", "Pod", &best_effort));
        let named = quota(
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "Exists"}]}}),
        );
        assert!(in_scope(&named, "", "Pod", &job) && !in_scope(&named, "", "Pod", &best_effort));
        let unnamed = quota(json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "DoesNotExist"}]}}));
        assert!(!in_scope(&unnamed, "", "Pod", &job) && in_scope(&unnamed, "", "Pod", &best_effort));
        let not_low = quota(json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "NotIn", "values": ["low"]}]}}));
        assert!(
            in_scope(&not_low, "", "Pod", &job) && in_scope(&not_low, "", "Pod", &best_effort),
            "no class is not in"
        );
        let empty_in = quota(json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": [""]}]}}));
        assert!(!in_scope(&empty_in, "", "Pod", &best_effort), "a pod without a class has no label to be in");
        let crossing = json!({"spec": {"containers": [{"name": "c"}], "affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "x", "namespaceSelector": {}}]}}}});
        let cross = quota(json!({"scopes": ["CrossNamespacePodAffinity"]}));
        assert!(in_scope(&cross, "", "Pod", &crossing) && !in_scope(&cross, "", "Pod", &best_effort));
    }

    #[test]
    fn a_claim_growing_is_checked_for_the_storage_it_adds() {
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        let old = usage("", "persistentvolumeclaims", "PersistentVolumeClaim", &claim("1Gi"));
        let new = usage("", "persistentvolumeclaims", "PersistentVolumeClaim", &claim("3Gi"));
        let grown = increase(&new, &old);
        assert_eq!(grown.keys().collect::<Vec<_>>(), ["requests.storage"], "the count does not grow");
        assert_eq!(grown["requests.storage"], "2Gi".parse::<Quantity>().unwrap());
        assert!(checks_updates("", "PersistentVolumeClaim"));
    }

    #[test]
    fn an_update_is_checked_for_what_it_adds() {
        let service = |kind: &str, ports: usize| {
            let ports: Vec<Value> = (0..ports).map(|p| json!({"port": 80 + p})).collect();
            json!({"spec": {"type": kind, "ports": ports}})
        };
        let old = usage("", "services", "Service", &service("ClusterIP", 1));
        let new = usage("", "services", "Service", &service("LoadBalancer", 2));
        let grown = increase(&new, &old);
        let shown: Vec<(String, String)> = grown.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        assert_eq!(
            shown,
            [("services.loadbalancers".to_string(), "1".to_string()), ("services.nodeports".into(), "2".into())]
        );
        assert!(increase(&old, &new).is_empty(), "a shrinking update adds nothing");
        assert!(checks_updates("", "Service") && !checks_updates("", "ConfigMap"));
    }
}
