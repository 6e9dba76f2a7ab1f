//! A node's readiness, as Kubernetes reads it (`nodeutil.IsNodeReady`): its `Ready`
//! condition is `True`. The kubelet, the node controller's view, `kubeyard up`'s progress
//! and tests' snapshots all ask here. The rule has the shape of `IsPodReady` (the first
//! `Ready` condition decides), so both are answered by one function.

use serde_json::Value;
use std::collections::BTreeMap;

/// The labels a kubelet sets on its Node (`kubelet.go` `initialNode`, Linux on amd64):
/// the hostname, os and arch, and the `beta.` forms of os and arch, which it still sets.
/// The zone, region and instance type come from a cloud provider, not the kubelet.
pub fn kubelet_labels(name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}

/// From the node's conditions as (type, status).
pub fn ready<'a>(conditions: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    crate::pod::ready(conditions)
}

/// Of a node object.
pub fn is_ready(node: &Value) -> bool {
    // A node keeps its conditions where a pod does: `status.conditions`.
    crate::pod::is_ready(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_is_the_ready_condition_true() {
        let node = |status: &str| {
            json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": status}]}})
        };
        assert!(is_ready(&node("True")));
        assert!(!is_ready(&node("Unknown")));
        assert!(!is_ready(&node("False")));
        assert!(!is_ready(&json!({"metadata": {"name": "fresh"}})));
    }
}
