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

/// Where every field `kind` can be selected by lives (name and namespace too).
pub fn pointers(kind: &str) -> impl Iterator<Item = &'static str> {
    ["/metadata/name", "/metadata/namespace"].into_iter().chain(supported(kind).iter().map(|(_, pointer)| *pointer))
}

/// The value of every field `kind` can be selected by (name and namespace too), as a
/// selector compares it: read once per object, matched by any number of selectors.
pub fn attributes(kind: &str, object: &Value) -> Vec<(&'static str, String)> {
    let read = |field: &'static str, pointer: &str| {
        let value = object.pointer(pointer).map_or_else(
            || zero(field).to_string(),
            |v| match v {
                Value::String(s) => s.clone(),
                Value::Null => zero(field).to_string(),
                other => other.to_string(),
            },
        );
        (field, value)
    };
    let mut fields = vec![read("metadata.name", "/metadata/name"), read("metadata.namespace", "/metadata/namespace")];
    fields.extend(supported(kind).iter().map(|(field, pointer)| read(field, pointer)));
    fields
}

impl FieldSelector {
    /// Whether attributes read by [`attributes`] for the same kind match.
    pub fn matches_attributes(&self, fields: &[(&'static str, String)]) -> bool {
        self.requirements.iter().all(|(field, equal, wanted)| {
            let actual = fields.iter().find(|(name, _)| name == field).map_or("", |(_, value)| value.as_str());
            (actual == wanted) == *equal
        })
    }

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

    /// Matching the attributes read once says what matching the object says, for every
    /// selector of the kind: a watch decides on the shared attributes of an event.
    #[test]
    fn attributes_match_as_the_object_does() {
        let objects = [
            (
                "Pod",
                json!({"metadata": {"name": "p", "namespace": "a"}, "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"phase": "Running"}}),
            ),
            ("Pod", json!({"metadata": {"name": "q"}, "spec": {}})),
            ("Node", json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}})),
            ("Job", json!({"metadata": {"name": "j"}, "status": {"succeeded": 2}})),
            ("ConfigMap", json!({"metadata": {"name": "c", "namespace": "a"}})),
        ];
        let selectors = [
            "",
            "spec.nodeName=n1",
            "spec.nodeName!=n1",
            "spec.nodeName=",
            "metadata.name=p,status.phase=Running",
            "metadata.namespace=a",
            "metadata.namespace!=",
            "spec.hostNetwork=true",
            "spec.hostNetwork=false",
            "spec.unschedulable=true",
            "spec.unschedulable=false",
            "status.successful=2",
            "status.successful=0",
            "metadata.name=c",
        ];
        for (kind, object) in &objects {
            let attributes = attributes(kind, object);
            for text in selectors {
                let Ok(selector) = FieldSelector::parse(kind, text) else { continue };
                assert_eq!(selector.matches_attributes(&attributes), selector.matches(kind, object), "{kind} {text}");
            }
        }
    }
}
