//! Tables, the form `kubectl get` asks for (`Accept: application/json;as=Table`): the
//! server chooses the columns, as Kubernetes' printers do for each kind.

use super::Query;
use super::resources::Resource;
use crate::clock;
use serde_json::{Value, json};

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn from_query(query: &Query) -> Include {
        match query.get("includeObject").map(String::as_str) {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

fn columns(kind: &str) -> &'static [(&'static str, &'static str, u8)] {
    match kind {
        "Pod" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        "Deployment" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
        ],
        "ReplicaSet" | "ReplicationController" => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
        ],
        "StatefulSet" => &[("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0)],
        // No printer of its own in Kubernetes: the generic one's columns.
        "CustomResourceDefinition" => &[("Name", "string", 0), ("Created At", "date", 0)],
        "DaemonSet" => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
        ],
        "Job" => &[("Name", "string", 0), ("Completions", "string", 0), ("Age", "string", 0)],
        "Service" => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
        ],
        "Namespace" => &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        "Node" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
        ],
        "ConfigMap" => &[("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            &[("Name", "string", 0), ("Webhooks", "integer", 0), ("Age", "string", 0)]
        }
        "Endpoints" => &[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        "Secret" => &[("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        "Event" => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        "PersistentVolumeClaim" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
        ],
        "PersistentVolume" => &[
            ("Name", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            ("Age", "string", 0),
        ],
        "StorageClass" => &[
            ("Name", "string", 0),
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            ("Age", "string", 0),
        ],
        _ => &[("Name", "string", 0), ("Age", "string", 0)],
    }
}

/// Access modes as kubectl abbreviates them (`RWO,ROX`).
fn access_modes(object: &Value, pointer: &str) -> String {
    let modes: Vec<&str> = object
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|mode| match mode {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    modes.join(",")
}

/// An unset VolumeAttributesClass, as kubectl shows it.
fn attributes_class(object: &Value) -> String {
    Some(string(object, "/spec/volumeAttributesClassName")).filter(|c| !c.is_empty()).unwrap_or("<unset>").to_string()
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn string<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn or_none(text: &str) -> String {
    if text.is_empty() { "<none>".into() } else { text.to_string() }
}

/// The ready addresses with their ports, as kubectl prints them: three, then how many
/// more (`10.244.1.2:80,10.244.2.2:80,10.244.3.2:80 + 2 more...`).
fn endpoints(object: &Value) -> String {
    let mut all = Vec::new();
    for subset in object.get("subsets").and_then(Value::as_array).into_iter().flatten() {
        let ports: Vec<i64> =
            subset.get("ports").and_then(Value::as_array).into_iter().flatten().map(|p| int(p, "/port")).collect();
        for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
            let ip = string(address, "/ip");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            all.extend(ports.iter().map(|port| format!("{ip}:{port}")));
        }
    }
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

fn cells(kind: &str, object: &Value) -> Vec<Value> {
    let name = json!(string(object, "/metadata/name"));
    let age = json!(clock::age(object.pointer("/metadata/creationTimestamp").and_then(Value::as_str)));
    match kind {
        "Pod" => {
            let statuses = object.pointer("/status/containerStatuses").and_then(Value::as_array);
            let total = object.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c.get("ready") == Some(&json!(true))).count());
            let restarts: i64 = statuses.map_or(0, |s| s.iter().map(|c| int(c, "/restartCount")).sum());
            let waiting = statuses
                .and_then(|s| s.iter().find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str)));
            let status = if object.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                waiting.unwrap_or_else(|| string(object, "/status/phase"))
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                age,
                json!(or_none(string(object, "/status/podIP"))),
                json!(or_none(string(object, "/spec/nodeName"))),
            ]
        }
        "Deployment" => vec![
            name,
            json!(format!("{}/{}", int(object, "/status/readyReplicas"), int(object, "/spec/replicas"))),
            json!(int(object, "/status/updatedReplicas")),
            json!(int(object, "/status/availableReplicas")),
            age,
        ],
        "ReplicaSet" | "ReplicationController" => vec![
            name,
            json!(int(object, "/spec/replicas")),
            json!(int(object, "/status/replicas")),
            json!(int(object, "/status/readyReplicas")),
            age,
        ],
        "StatefulSet" => {
            vec![
                name,
                json!(format!("{}/{}", int(object, "/status/readyReplicas"), int(object, "/spec/replicas"))),
                age,
            ]
        }
        "DaemonSet" => vec![
            name,
            json!(int(object, "/status/desiredNumberScheduled")),
            json!(int(object, "/status/currentNumberScheduled")),
            json!(int(object, "/status/numberReady")),
            json!(int(object, "/status/updatedNumberScheduled")),
            json!(int(object, "/status/numberAvailable")),
            age,
        ],
        "Job" => {
            let completions = object.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1);
            vec![name, json!(format!("{}/{completions}", int(object, "/status/succeeded"))), age]
        }
        "Service" => {
            let ports: Vec<String> = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let node_port =
                        p.get("nodePort").and_then(Value::as_i64).map(|n| format!(":{n}")).unwrap_or_default();
                    format!(
                        "{}{node_port}/{}",
                        int(p, "/port"),
                        p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    )
                })
                .collect();
            vec![
                name,
                json!(string(object, "/spec/type")),
                json!(or_none(string(object, "/spec/clusterIP"))),
                json!("<none>"),
                json!(or_none(&ports.join(","))),
                age,
            ]
        }
        "Namespace" => vec![name, json!(string(object, "/status/phase")), age],
        "PersistentVolumeClaim" => {
            let bound = string(object, "/spec/volumeName");
            vec![
                name,
                json!(string(object, "/status/phase")),
                json!(bound),
                json!(string(object, "/status/capacity/storage")),
                json!(access_modes(object, "/status/accessModes")),
                json!(string(object, "/spec/storageClassName")),
                json!(attributes_class(object)),
                age,
            ]
        }
        "PersistentVolume" => {
            let claim = match object.pointer("/spec/claimRef") {
                Some(claim) => format!("{}/{}", string(claim, "/namespace"), string(claim, "/name")),
                None => String::new(),
            };
            vec![
                name,
                json!(string(object, "/spec/capacity/storage")),
                json!(access_modes(object, "/spec/accessModes")),
                json!(string(object, "/spec/persistentVolumeReclaimPolicy")),
                json!(string(object, "/status/phase")),
                json!(claim),
                json!(string(object, "/spec/storageClassName")),
                json!(attributes_class(object)),
                json!(string(object, "/status/reason")),
                age,
            ]
        }
        "StorageClass" => {
            let default =
                string(object, "/metadata/annotations/storageclass.kubernetes.io~1is-default-class") == "true";
            let shown = format!("{}{}", string(object, "/metadata/name"), if default { " (default)" } else { "" });
            let mode = Some(string(object, "/volumeBindingMode")).filter(|m| !m.is_empty()).unwrap_or("Immediate");
            let policy = Some(string(object, "/reclaimPolicy")).filter(|p| !p.is_empty()).unwrap_or("Delete");
            let expansion = object.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false);
            vec![
                json!(shown),
                json!(string(object, "/provisioner")),
                json!(policy),
                json!(mode),
                json!(expansion.to_string()),
                age,
            ]
        }
        "Node" => {
            let ready = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
                .map(|c| if c.get("status") == Some(&json!("True")) { "Ready" } else { "NotReady" })
                .unwrap_or("Unknown");
            let status = if object.pointer("/spec/unschedulable") == Some(&json!(true)) {
                format!("{ready},SchedulingDisabled")
            } else {
                ready.to_string()
            };
            vec![name, json!(status), json!("<none>"), age, json!(string(object, "/status/nodeInfo/kubeletVersion"))]
        }
        "Endpoints" => vec![name, json!(endpoints(object)), age],
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            let count = object.get("webhooks").and_then(Value::as_array).map_or(0, Vec::len);
            vec![name, json!(count), age]
        }
        "ConfigMap" => {
            let count = |p: &str| object.pointer(p).and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(count("/data") + count("/binaryData")), age]
        }
        "Secret" => {
            let count = object.pointer("/data").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(string(object, "/type")), json!(count), age]
        }
        "Event" => {
            let seen = object
                .get("lastTimestamp")
                .and_then(Value::as_str)
                .or_else(|| object.get("eventTime").and_then(Value::as_str))
                .or_else(|| object.pointer("/metadata/creationTimestamp").and_then(Value::as_str));
            vec![
                json!(clock::age(seen)),
                json!(string(object, "/type")),
                json!(string(object, "/reason")),
                json!(format!(
                    "{}/{}",
                    string(object, "/involvedObject/kind").to_lowercase(),
                    string(object, "/involvedObject/name")
                )),
                json!(string(object, "/message")),
            ]
        }
        "CustomResourceDefinition" => vec![name, json!(string(object, "/metadata/creationTimestamp"))],
        _ => vec![name, age],
    }
}

/// A `meta.k8s.io/v1` Table of objects of one resource.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    revision: Option<u64>,
    token: Option<String>,
    include: Include,
) -> Value {
    let definitions: Vec<Value> = match resource.crd {
        Some(_) => custom::definitions(resource),
        None => columns(resource.builtin_kind())
            .iter()
            .map(|(name, kind, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                json!({"name": name, "type": kind, "format": format, "description": name, "priority": priority})
            })
            .collect(),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells = match resource.crd {
                Some(_) => custom::cells(resource, object),
                None => cells(resource.builtin_kind(), object),
            };
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
                Include::Object => row["object"] = super::objects::with_type(resource, object.clone()),
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(revision) = revision {
        metadata["resourceVersion"] = json!(revision.to_string());
    }
    if let Some(token) = token {
        metadata["continue"] = json!(token);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": definitions, "rows": rows})
}

/// Custom resources' tables: `Name`, then the CRD version's `additionalPrinterColumns`
/// (their JSONPaths evaluated, each cell of its column's type), or `Age` when it has none.
mod custom {
    use super::super::resources::Resource;
    use crate::clock;
    use jsonpath_rust::JsonPath;
    use serde_json::{Value, json};

    const AGE_PATH: &str = ".metadata.creationTimestamp";

    pub fn definitions(resource: &Resource) -> Vec<Value> {
        let mut definitions = vec![json!({
            "name": "Name", "type": "string", "format": "name", "priority": 0,
            "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        })];
        if resource.columns.is_empty() {
            definitions.push(json!({
                "name": "Age", "type": "date", "format": "", "priority": 0,
                "description": format!("Custom resource definition column (in JSONPath format): {AGE_PATH}"),
            }));
        }
        for column in resource.columns {
            definitions.push(json!({
                "name": column.name, "type": column.kind, "format": column.format,
                "description": column.description, "priority": column.priority,
            }));
        }
        definitions
    }

    pub fn cells(resource: &Resource, object: &Value) -> Vec<Value> {
        let mut cells = vec![json!(object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default())];
        if resource.columns.is_empty() {
            cells.push(cell("date", evaluate(object, AGE_PATH)));
        }
        for column in resource.columns {
            cells.push(cell(&column.kind, evaluate(object, &column.json_path)));
        }
        cells
    }

    /// A column's JSONPath (Kubernetes writes them without the leading `$`); its first
    /// value, as Kubernetes' table convertor takes it.
    fn evaluate<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
        let path = if path.starts_with('$') { path.to_string() } else { format!("${path}") };
        object.query(&path).ok()?.into_iter().next()
    }

    fn cell(kind: &str, value: Option<&Value>) -> Value {
        let Some(value) = value.filter(|v| !v.is_null()) else { return Value::Null };
        match kind {
            "integer" => value.as_i64().or_else(|| value.as_f64().map(|f| f as i64)).map_or(Value::Null, |n| json!(n)),
            "number" => value.as_f64().map_or(Value::Null, |n| json!(n)),
            "boolean" => value.as_bool().map_or(Value::Null, |b| json!(b)),
            "date" => value.as_str().map_or(Value::Null, |time| json!(clock::age(Some(time)))),
            _ => match value {
                Value::String(text) => json!(text),
                other => json!(other.to_string()),
            },
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn cells_follow_their_column_types_and_paths() {
            let object = json!({"spec": {"size": 3.7, "tags": ["a"]}, "status": {"conditions": [
                {"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
            let ready = evaluate(&object, ".status.conditions[?(@.type==\"Ready\")].status");
            assert_eq!(cell("string", ready), json!("True"));
            assert_eq!(cell("integer", evaluate(&object, ".spec.size")), json!(3));
            assert_eq!(cell("string", evaluate(&object, ".spec.tags")), json!("[\"a\"]"));
            assert_eq!(cell("boolean", evaluate(&object, ".spec.missing")), Value::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_print_three_addresses_then_how_many_more() {
        let subsets = |ips: &[&str]| {
            let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            json!({"subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]})
        };
        assert_eq!(endpoints(&json!({})), "<none>");
        assert_eq!(endpoints(&subsets(&["10.0.0.1", "10.0.0.2"])), "10.0.0.1:80,10.0.0.2:80");
        assert_eq!(
            endpoints(&subsets(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"])),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
        );
    }
}
