//! Field selectors: `fieldSelector=spec.nodeName=n1,status.phase!=Running`. As in
//! Kubernetes, each kind supports a fixed set of fields (besides `metadata.name` and
//! `metadata.namespace`); any other is a 400.

use super::status::ApiError;
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

/// Fields a kind can be selected by, beyond name and namespace, with where each lives.
fn supported(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "Pod" => &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.hostNetwork", "/spec/hostNetwork"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        "Event" => &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            ("involvedObject.resourceVersion", "/involvedObject/resourceVersion"),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ],
        "Secret" => &[("type", "/type")],
        "Node" => &[("spec.unschedulable", "/spec/unschedulable")],
        "Namespace" => &[("status.phase", "/status/phase")],
        "ReplicaSet" | "ReplicationController" => &[("status.replicas", "/status/replicas")],
        "Job" => &[("status.successful", "/status/succeeded")],
        _ => &[],
    }
}

/// What a field that is not set reads as: its Go zero value, as Kubernetes formats it.
fn zero(field: &str) -> &'static str {
    match field {
        "spec.unschedulable" | "spec.hostNetwork" => "false",
        "status.replicas" | "status.successful" => "0",
        _ => "",
    }
}

fn pointer(kind: &str, field: &str) -> Option<&'static str> {
    match field {
        "metadata.name" => Some("/metadata/name"),
        "metadata.namespace" => Some("/metadata/namespace"),
        _ => supported(kind).iter().find(|(name, _)| *name == field).map(|(_, pointer)| *pointer),
    }
}

impl FieldSelector {
    pub fn parse(kind: &str, text: &str) -> Result<FieldSelector, ApiError> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((field, value)) = term.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (field, true, value)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector: '{term}' has no operator")));
            };
            let field = field.trim();
            if pointer(kind, field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field} (a {kind} can be selected by metadata.name, metadata.namespace{})",
                    supported(kind).iter().map(|(name, _)| format!(", {name}")).collect::<String>()
                )));
            }
            requirements.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The single name it pins, if it does (`metadata.name=x`): a get instead of a scan.
    pub fn name(&self) -> Option<&str> {
        self.requirements.iter().find(|(f, equal, _)| f == "metadata.name" && *equal).map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, kind: &str, object: &Value) -> bool {
        self.requirements.iter().all(|(field, equal, wanted)| {
            let actual = pointer(kind, field).and_then(|p| object.pointer(p)).map_or_else(
                || zero(field).to_string(),
                |v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => zero(field).to_string(),
                    other => other.to_string(),
                },
            );
            (actual == *wanted) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_by_the_fields_each_kind_supports() {
        let pod = json!({"metadata": {"name": "p", "namespace": "a"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let select = |text: &str| FieldSelector::parse("Pod", text).unwrap().matches("Pod", &pod);
        assert!(select("spec.nodeName=n1"));
        assert!(select("metadata.name==p,status.phase!=Pending"));
        assert!(!select("spec.nodeName=n2"));
        assert!(!select("spec.nodeName="));
        assert!(select(""));
        assert_eq!(FieldSelector::parse("Pod", "spec.containers=x").unwrap_err().code, 400);
        assert_eq!(FieldSelector::parse("Pod", "nonsense").unwrap_err().code, 400);
        assert_eq!(FieldSelector::parse("Pod", "metadata.name=p").unwrap().name(), Some("p"));
        // Unset fields read as their zero value.
        assert!(FieldSelector::parse("Node", "spec.unschedulable=false").unwrap().matches("Node", &json!({})));
    }
}
