//! What a pod is, as Kubernetes decides it, for everyone who asks: whether it is ready
//! (`IsPodReady`: the controllers, the endpoints, the tests), and what it asks for,
//! computed once for everyone who counts it: the scheduler (does it fit), the
//! ResourceQuota admission plugin (what it uses) and lint (would it fit, would it pass
//! the quota). Kubernetes has one home for the arithmetic too, component-helpers'
//! `resource.PodRequests` and `PodLimits`:
//!
//! - containers add up; a sidecar (an init container with `restartPolicy: Always`) adds to
//!   them too, since it keeps running beside them;
//! - an ordinary init container runs alone, beside the sidecars started before it: the
//!   pod needs, per resource, the larger of the steady state and its largest such moment;
//! - the pod's `overhead` comes on top (of limits, only where a limit is set).

use crate::quantity::Quantity;
use serde_json::Value;
use std::collections::BTreeMap;

/// `IsPodReady`, from the pod's conditions as (type, status): its first `Ready`
/// condition is `True`. Typed pods and JSON ones both answer through it.
pub fn ready<'a>(conditions: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    conditions.into_iter().find(|(kind, _)| *kind == "Ready").is_some_and(|(_, status)| status == "True")
}

/// `IsPodReady` of a pod object.
/// Sets one of a pod's conditions as `podutil.UpdatePodCondition` does: a condition of
/// that type already there is replaced where it stands, its transition time kept when its
/// status does not change; a new type goes last. `condition` carries the time to use
/// otherwise.
pub fn update_condition(pod: &mut Value, condition: Value) {
    let Some(pod) = pod.as_object_mut() else { return };
    let status = pod.entry("status").or_insert_with(|| Value::Object(Default::default()));
    if !status.is_object() {
        *status = Value::Object(Default::default());
    }
    let Some(status) = status.as_object_mut() else { return };
    let conditions = status.entry("conditions").or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    if let Value::Array(conditions) = conditions {
        crate::crd::set_condition(conditions, condition);
    }
}

pub fn is_ready(pod: &Value) -> bool {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten();
    ready(conditions.map(|c| {
        let text = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or_default();
        (text("type"), text("status"))
    }))
}

/// Amounts per resource name (`cpu`, `memory`, `nvidia.com/gpu`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Which containers' amounts are summed: `resources.requests` or `resources.limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amounts {
    /// Requests as the API server stores them (it copies a missing request from its limit).
    Requests,
    /// Requests of a pod as written, before that defaulting: a limit stands in for a
    /// request that is not written, as the API server would default it.
    RequestsAsWritten,
    Limits,
}

/// A pod's effective requests, from its spec (`PodRequests`), overhead included.
pub fn requests(spec: &Value, amounts: Amounts) -> ResourceList {
    let mut total = aggregate(spec, amounts);
    for (name, amount) in list(spec.get("overhead")) {
        add(&mut total, name, amount);
    }
    total
}

/// A pod's effective limits, from its spec (`PodLimits`): the overhead is added only to
/// what has a limit (a pod with no memory limit has none with its overhead either).
pub fn limits(spec: &Value) -> ResourceList {
    let mut total = aggregate(spec, Amounts::Limits);
    for (name, amount) in list(spec.get("overhead")) {
        if let Some(limit) = total.get_mut(&name) {
            *limit = limit.checked_add(&amount).unwrap_or(*limit);
        }
    }
    total
}

/// `AggregateContainerRequests` / `AggregateContainerLimits`: the containers and sidecars
/// summed, or the largest moment of the init phase if that is more, per resource.
fn aggregate(spec: &Value, amounts: Amounts) -> ResourceList {
    let mut total = ResourceList::new();
    for container in containers(spec, "containers") {
        for (name, amount) in container_amounts(container, amounts) {
            add(&mut total, name, amount);
        }
    }
    let mut sidecars = ResourceList::new();
    let mut init_phase = ResourceList::new();
    for container in containers(spec, "initContainers") {
        let own = container_amounts(container, amounts);
        let moment = if container.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            for (name, amount) in &own {
                add(&mut total, name.clone(), *amount);
                add(&mut sidecars, name.clone(), *amount);
            }
            sidecars.clone()
        } else {
            let mut moment = own;
            for (name, amount) in &sidecars {
                add(&mut moment, name.clone(), *amount);
            }
            moment
        };
        max_into(&mut init_phase, moment);
    }
    max_into(&mut total, init_phase);
    total
}

fn containers<'a>(spec: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    spec.get(field).and_then(Value::as_array).into_iter().flatten()
}

fn container_amounts(container: &Value, amounts: Amounts) -> ResourceList {
    let resources = container.get("resources");
    match amounts {
        Amounts::Requests => list(resources.and_then(|r| r.get("requests"))),
        Amounts::Limits => list(resources.and_then(|r| r.get("limits"))),
        Amounts::RequestsAsWritten => {
            let mut requests = list(resources.and_then(|r| r.get("limits")));
            requests.extend(list(resources.and_then(|r| r.get("requests"))));
            requests
        }
    }
}

/// A `ResourceList` field; amounts that are not quantities are left out (validation
/// reports them).
fn list(map: Option<&Value>) -> ResourceList {
    map.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, amount)| Some((name.clone(), quantity(amount)?)))
        .collect()
}

/// A quantity written as a string, or as a YAML number.
pub fn quantity(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// Adds to a total; the first amount gives it its format (`64Mi` stays binary), as
/// Kubernetes' `Quantity.Add` keeps the receiver's.
fn add(total: &mut ResourceList, name: String, amount: Quantity) {
    match total.get_mut(&name) {
        Some(sum) => *sum = sum.checked_add(&amount).unwrap_or(*sum),
        None => {
            total.insert(name, amount);
        }
    }
}

/// `maxResourceList`: each resource of `other` that is more than `total`'s replaces it.
fn max_into(total: &mut ResourceList, other: ResourceList) {
    for (name, amount) in other {
        if total.get(&name).is_none_or(|current| amount > *current) {
            total.insert(name, amount);
        }
    }
}

/// The pod's quality-of-service class, as `ComputePodQOS` decides it over its
/// containers and init containers (a missing request defaulted to its limit): BestEffort
/// when no cpu or memory is requested or limited (zero counts as unset); Guaranteed when every container limits both and the
/// pod's summed requests equal its summed limits; Burstable otherwise.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let add = |sums: &mut BTreeMap<&'static str, Quantity>, name: &'static str, amount: Quantity| {
        let sum = sums.get(name).and_then(|s| s.checked_add(&amount)).unwrap_or(amount);
        sums.insert(name, sum);
    };
    for list in ["/spec/containers", "/spec/initContainers"] {
        for container in pod.pointer(list).and_then(Value::as_array).into_iter().flatten() {
            let mut limited = 0;
            for name in ["cpu", "memory"] {
                let positive = |section: &str| {
                    container
                        .pointer(&format!("/resources/{section}/{name}"))
                        .and_then(quantity)
                        .filter(|q| *q > Quantity::zero())
                };
                // A missing request is its limit, as the API server defaults it: the class
                // reads the same on an object before and after defaulting.
                let request = match container.pointer(&format!("/resources/requests/{name}")) {
                    Some(_) => positive("requests"),
                    None => positive("limits"),
                };
                if let Some(request) = request {
                    add(&mut requests, name, request);
                }
                if let Some(limit) = positive("limits") {
                    add(&mut limits, name, limit);
                    limited += 1;
                }
            }
            if limited < 2 {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let equal = requests.iter().all(|(name, request)| limits.get(name) == Some(request));
    if guaranteed && equal && requests.len() == limits.len() { "Guaranteed" } else { "Burstable" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_updated_where_it_stands_and_keeps_its_time_if_its_status_does() {
        let mut pod = serde_json::json!({"status": {"conditions": [
            {"type": "A", "status": "True", "lastTransitionTime": "t0"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": "t0"}]}});
        update_condition(
            &mut pod,
            serde_json::json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": "t1"}),
        );
        update_condition(&mut pod, serde_json::json!({"type": "A", "status": "True", "lastTransitionTime": "t2"}));
        update_condition(&mut pod, serde_json::json!({"type": "B", "status": "True", "lastTransitionTime": "t3"}));
        assert_eq!(
            pod["status"]["conditions"],
            serde_json::json!([
                {"type": "A", "status": "True", "lastTransitionTime": "t0"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t1"},
                {"type": "B", "status": "True", "lastTransitionTime": "t3"}])
        );
        let mut bare = serde_json::json!({"metadata": {}});
        update_condition(&mut bare, serde_json::json!({"type": "B", "status": "True"}));
        assert_eq!(bare["status"]["conditions"][0]["type"], "B");
    }
    use serde_json::json;

    fn amounts(list: &ResourceList) -> Vec<(String, String)> {
        list.iter().map(|(name, amount)| (name.clone(), amount.to_string())).collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect()
    }

    /// The shapes Kubernetes' tests of `PodRequests` and `PodLimits` cover, and the
    /// sidecar KEP's (753) arithmetic.
    #[test]
    fn requests_and_limits_as_kubernetes_computes_them() {
        let resources =
            |cpu: &str, memory: &str| json!({"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu}});
        let cases = [
            (
                "containers add up, overhead on top",
                json!({"containers": [{"resources": resources("250m", "64Mi")}, {"resources": {"requests": {"cpu": "250m"}}}],
                       "overhead": {"cpu": "10m", "memory": "1Mi"}}),
                vec![("cpu", "510m"), ("memory", "65Mi")],
                vec![("cpu", "260m")],
            ),
            (
                "an init container larger than the containers sets the pod's need",
                json!({"containers": [{"resources": resources("250m", "64Mi")}],
                       "initContainers": [{"resources": resources("1", "32Mi")}]}),
                vec![("cpu", "1"), ("memory", "64Mi")],
                vec![("cpu", "1")],
            ),
            (
                // KEP-753: the sidecar runs beside the containers (100m + 200m), and the
                // init container after it runs beside it (100m + 1) = 1100m.
                "a sidecar adds to the containers and to the init containers after it",
                json!({"containers": [{"resources": resources("200m", "64Mi")}],
                       "initContainers": [
                           {"restartPolicy": "Always", "resources": resources("100m", "16Mi")},
                           {"resources": resources("1", "16Mi")}]}),
                vec![("cpu", "1100m"), ("memory", "80Mi")],
                vec![("cpu", "1100m")],
            ),
            (
                "an init container before the sidecar runs alone",
                json!({"containers": [{"resources": resources("200m", "64Mi")}],
                       "initContainers": [
                           {"resources": resources("250m", "100Mi")},
                           {"restartPolicy": "Always", "resources": resources("100m", "16Mi")}]}),
                vec![("cpu", "300m"), ("memory", "100Mi")],
                vec![("cpu", "300m")],
            ),
        ];
        for (what, spec, want_requests, want_limits) in cases {
            assert_eq!(amounts(&requests(&spec, Amounts::Requests)), pairs(&want_requests), "{what}");
            assert_eq!(amounts(&limits(&spec)), pairs(&want_limits), "{what}");
        }
    }

    #[test]
    fn a_pod_is_ready_when_its_ready_condition_is_true() {
        let pod = |conditions: Value| json!({"status": {"conditions": conditions}});
        assert!(is_ready(&pod(
            json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}])
        )));
        assert!(!is_ready(&pod(json!([{"type": "Ready", "status": "False"}]))));
        assert!(!is_ready(&pod(json!([{"type": "ContainersReady", "status": "True"}]))));
        assert!(!is_ready(&json!({"status": {"phase": "Running"}})));
        // The first Ready condition decides, as `GetPodCondition` finds it.
        assert!(!is_ready(&pod(json!([{"type": "Ready", "status": "Unknown"}, {"type": "Ready", "status": "True"}]))));
    }

    #[test]
    fn as_written_a_limit_stands_in_for_a_missing_request() {
        let spec = json!({"containers": [
            {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}}},
            {"resources": {"requests": {"cpu": "x"}}}]});
        assert_eq!(amounts(&requests(&spec, Amounts::RequestsAsWritten)), pairs(&[("cpu", "100m"), ("memory", "1Gi")]));
        assert_eq!(amounts(&requests(&spec, Amounts::Requests)), pairs(&[("cpu", "100m")]));
    }

    #[test]
    fn quality_of_service_follows_requests_and_limits() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(
            qos_class(&pod(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "100m"}}))), "Burstable");
        // Quantities, not their spelling; zero is unset.
        assert_eq!(
            qos_class(&pod(
                json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "0"}, "limits": {"memory": "0"}}))), "BestEffort");
    }
}
