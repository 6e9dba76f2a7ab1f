//! Events, as every component records them (`EventRecorder`): a `v1` Event about one
//! object, with the reporting component and, for a kubelet, its node. Recording is best
//! effort, as in Kubernetes: an event that cannot be written is dropped, never an error
//! of the component's own work.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// Who reports: `default-scheduler`, `kubelet` (with its node), a controller.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub component: &'a str,
    pub host: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The Event recording `reason` and `message` about `object` (as the API returns it:
/// `apiVersion`, `kind` and `metadata`; a pod's kind is assumed when it says none) at
/// `timestamp` (the control plane's clock).
pub fn event(object: &Value, source: Source<'_>, kind: Type, reason: &str, message: &str, timestamp: &str) -> Value {
    let (namespace, name) = (text(object, "/metadata/namespace"), text(object, "/metadata/name"));
    let (api_version, kind_of) = match (text(object, "/apiVersion"), text(object, "/kind")) {
        ("", "") => ("v1", "Pod"),
        pair => pair,
    };
    let mut source_field = json!({"component": source.component});
    let mut event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {"apiVersion": api_version, "kind": kind_of, "name": name, "namespace": namespace,
                           "uid": text(object, "/metadata/uid")},
        "reason": reason,
        "message": message,
        "type": match kind { Type::Normal => "Normal", Type::Warning => "Warning" },
        "reportingComponent": source.component,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    });
    if let Some(host) = source.host {
        source_field["host"] = json!(host);
        event["reportingInstance"] = json!(host);
    }
    event["source"] = source_field;
    event
}

/// Writes the event into the object's namespace; a failure is dropped.
pub async fn record(
    client: &kube::Client,
    object: &Value,
    source: Source<'_>,
    kind: Type,
    reason: &str,
    message: &str,
    timestamp: &str,
) {
    let event = event(object, source, kind, reason, message, timestamp);
    let namespace = text(&event, "/metadata/namespace").to_string();
    if let Ok(event) = serde_json::from_value::<Event>(event) {
        let _ = Api::<Event>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_and_who_reported_it() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"}});
        let source = Source { component: "kubelet", host: Some("node-2") };
        let recorded = event(&pod, source, Type::Warning, "BackOff", "Back-off restarting", "2026-01-01T00:00:00Z");
        assert_eq!(recorded["metadata"], json!({"generateName": "web-1.", "namespace": "shop"}));
        assert_eq!(
            recorded["involvedObject"],
            json!({"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "u-1"})
        );
        assert_eq!(recorded["source"], json!({"component": "kubelet", "host": "node-2"}));
        assert_eq!(
            (recorded["reportingInstance"].as_str(), recorded["type"].as_str()),
            (Some("node-2"), Some("Warning"))
        );
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        let scaled = event(
            &deployment,
            Source { component: "deployment-controller", host: None },
            Type::Normal,
            "Scaled",
            "",
            "t",
        );
        assert_eq!(scaled["involvedObject"]["kind"], "Deployment");
        assert!(scaled.get("reportingInstance").is_none());
    }
}
