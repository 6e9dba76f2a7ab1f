//! HorizontalPodAutoscalers between `autoscaling/v1` and `autoscaling/v2`, as the API
//! server converts them (`pkg/apis/autoscaling/v1/conversion.go`): v1 knows only a CPU
//! utilization target, so what v2 holds beyond it (other metrics, `behavior`, conditions,
//! the current metrics) rides in v1 annotations and comes back when the object returns
//! to v2. `kubectl autoscale` writes v1; the API server stores v2.
//!
//! The annotations hold the v2 JSON of what they carry (Kubernetes writes the v1 API's
//! own metric types there, which no client reads but this round trip).

use serde_json::{Map, Value, json};

pub const METRIC_SPECS: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const METRIC_STATUSES: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
pub const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric.pointer("/resource/name") == Some(&json!("cpu"))
        && metric.pointer("/resource/target/averageUtilization").is_some()
}

fn annotations(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"].as_object_mut().expect("made an object above")
}

fn drop_empty_annotations(object: &mut Value) {
    if object.pointer("/metadata/annotations").and_then(Value::as_object).is_some_and(Map::is_empty)
        && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
    {
        metadata.remove("annotations");
    }
}

/// A v2 object as v1 shows it.
pub fn to_v1(v2: &Value) -> Value {
    let mut v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler"});
    v1["metadata"] = v2.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let spec = v2.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut v1_spec = Map::new();
    for key in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(value) = spec.get(key) {
            v1_spec.insert(key.into(), value.clone());
        }
    }
    let metrics = spec.get("metrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let (cpu, others): (Vec<Value>, Vec<Value>) = metrics.into_iter().partition(is_cpu_utilization);
    if let Some(target) = cpu.first().and_then(|m| m.pointer("/resource/target/averageUtilization")) {
        v1_spec.insert("targetCPUUtilizationPercentage".into(), target.clone());
    }
    v1["spec"] = Value::Object(v1_spec);
    let status = v2.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut v1_status = Map::new();
    for key in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
        if let Some(value) = status.get(key) {
            v1_status.insert(key.into(), value.clone());
        }
    }
    v1_status.entry("currentReplicas").or_insert(json!(0));
    v1_status.entry("desiredReplicas").or_insert(json!(0));
    let current = status.get("currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let cpu_now = current.iter().find_map(|m| {
        (m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
            .then(|| m.pointer("/resource/current/averageUtilization").cloned())
            .flatten()
    });
    if let Some(now) = cpu_now {
        v1_status.insert("currentCPUUtilizationPercentage".into(), now);
    }
    if v2.get("status").is_some() {
        v1["status"] = Value::Object(v1_status);
    }
    let carried = [
        (METRIC_SPECS, (!others.is_empty()).then_some(Value::Array(others))),
        (METRIC_STATUSES, (!current.is_empty()).then_some(Value::Array(current))),
        (BEHAVIOR, spec.get("behavior").cloned()),
        (CONDITIONS, status.get("conditions").filter(|c| c.as_array().is_some_and(|c| !c.is_empty())).cloned()),
    ];
    for (annotation, value) in carried {
        if let Some(value) = value {
            annotations(&mut v1).insert(annotation.into(), json!(value.to_string()));
        }
    }
    v1
}

/// A v1 object as v2 holds it: the CPU target a metric, the annotations' contents back.
pub fn to_v2(v1: &Value) -> Value {
    let mut v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"});
    v2["metadata"] = v1.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let carried = |v2: &mut Value, annotation: &str| -> Option<Value> {
        let text = annotations(v2).remove(annotation)?;
        serde_json::from_str(text.as_str()?).ok()
    };
    let other_metrics = carried(&mut v2, METRIC_SPECS);
    let current_metrics = carried(&mut v2, METRIC_STATUSES);
    let behavior = carried(&mut v2, BEHAVIOR);
    let conditions = carried(&mut v2, CONDITIONS);
    drop_empty_annotations(&mut v2);
    let spec = v1.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut v2_spec = Map::new();
    for key in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(value) = spec.get(key) {
            v2_spec.insert(key.into(), value.clone());
        }
    }
    let mut metrics = Vec::new();
    if let Some(target) = spec.get("targetCPUUtilizationPercentage") {
        metrics.push(json!({"type": "Resource",
                            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}));
    }
    metrics.extend(other_metrics.and_then(|m| m.as_array().cloned()).unwrap_or_default());
    if !metrics.is_empty() {
        v2_spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(behavior) = behavior {
        v2_spec.insert("behavior".into(), behavior);
    }
    v2["spec"] = Value::Object(v2_spec);
    if let Some(status) = v1.get("status") {
        let mut v2_status = Map::new();
        for key in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            if let Some(value) = status.get(key) {
                v2_status.insert(key.into(), value.clone());
            }
        }
        if let Some(current) = current_metrics {
            v2_status.insert("currentMetrics".into(), current);
        }
        if let Some(conditions) = conditions {
            v2_status.insert("conditions".into(), conditions);
        }
        v2["status"] = Value::Object(v2_status);
    }
    v2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_autoscales_in_v1_and_v2_holds_a_cpu_metric() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                        "metadata": {"name": "web"},
                        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                                 "minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 80}});
        let v2 = to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 80})
        );
        assert!(v2["metadata"].get("annotations").is_none());
        assert_eq!(to_v1(&v2)["spec"], v1["spec"]);
    }

    #[test]
    fn what_v1_cannot_say_rides_in_annotations_and_comes_back() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                        "metadata": {"name": "web", "annotations": {"team": "shop"}},
                        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                                 "metrics": [
                                     {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                                     {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
                                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
                        "status": {"currentReplicas": 3, "desiredReplicas": 3,
                                   "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 42, "averageValue": "84m"}}}],
                                   "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}});
        let v1 = to_v1(&v2);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 42);
        let annotations = v1["metadata"]["annotations"].as_object().unwrap();
        assert!(annotations.contains_key(METRIC_SPECS) && annotations.contains_key(BEHAVIOR));
        assert!(annotations.contains_key(CONDITIONS) && annotations.contains_key(METRIC_STATUSES));
        let back = to_v2(&v1);
        assert_eq!(back["metadata"]["annotations"], json!({"team": "shop"}));
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        // The CPU target first, then the others, as Kubernetes orders them back.
        assert_eq!(back["spec"]["metrics"].as_array().unwrap().len(), 2);
        assert_eq!(back["spec"]["metrics"][0]["resource"]["name"], "cpu");
    }
}
