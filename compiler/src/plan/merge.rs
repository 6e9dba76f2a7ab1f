//! `kubectl apply`'s three-way merge, and the field-level difference it makes.
//!
//! From the desired object, the last-applied configuration and the live object, the merge
//! computes what the object will be after the apply: desired fields are set; fields that
//! were applied last time and are no longer desired are removed; fields nobody applied
//! (status, defaults, `metadata.uid`) stay as the cluster has them. Lists whose schema
//! names a merge key (`x-kubernetes-patch-merge-key`: containers by `name`, ports by
//! `containerPort`) merge item by item; other lists are replaced whole: kubectl sends a
//! strategic merge patch, and `list_merge` says how each list merges under one, for this
//! prediction and for the API server that applies the patch alike.

use crate::list_merge::{ListKind, Schema, Writer, identities, index};
use serde_json::{Map, Value};

/// The object after applying `desired` over `live`, given what was `last` applied.
pub fn merge(last: Option<&Value>, desired: &Value, live: &Value, schema: Schema<'_>) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Object(v)) => {
            let empty = Map::new();
            let l = last.and_then(Value::as_object).unwrap_or(&empty);
            let retain = schema.retains_keys();
            let mut out = Map::with_capacity(d.len().max(v.len()));
            for (key, value) in v {
                match d.get(key) {
                    // `key: null` in the configuration clears the field.
                    Some(Value::Null) => {}
                    Some(wanted) => {
                        out.insert(key.clone(), merge(l.get(key), wanted, value, schema.property(key)));
                    }
                    // Applied last time, not wanted now: removed. Never applied: the
                    // cluster's, kept.
                    None if retain || l.contains_key(key) => {}
                    None => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
            for (key, wanted) in d {
                if !v.contains_key(key) && !wanted.is_null() {
                    out.insert(key.clone(), wanted.clone());
                }
            }
            Value::Object(out)
        }
        (Value::Array(d), Value::Array(v)) => match schema.list_kind(Writer::Strategic) {
            ListKind::Map(keys) => merge_list(last.and_then(Value::as_array), d, v, &keys, schema.items()),
            ListKind::Set => {
                // A set: what is wanted, plus what the cluster added and nobody applied.
                let applied = last.and_then(Value::as_array);
                let mut out = d.clone();
                for item in v {
                    if !d.contains(item) && !applied.is_some_and(|a| a.contains(item)) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            ListKind::Atomic => desired.clone(),
        },
        _ => desired.clone(),
    }
}

fn merge_list(last: Option<&Vec<Value>>, desired: &[Value], live: &[Value], keys: &[&str], items: Schema<'_>) -> Value {
    let (desired_ids, desired_index) = index(desired, keys);
    let (live_ids, live_index) = index(live, keys);
    let last_index = last.map(|l| index(l, keys).1).unwrap_or_default();
    let mut out = Vec::with_capacity(desired.len().max(live.len()));
    for (wanted, id) in desired.iter().zip(&desired_ids) {
        let Some(id) = id else {
            out.push(wanted.clone());
            continue;
        };
        let previous = last.and_then(|l| last_index.get(id).map(|i| &l[*i]));
        match live_index.get(id) {
            Some(&i) => out.push(merge(previous, wanted, &live[i], items)),
            None => out.push(wanted.clone()),
        }
    }
    // Live items nobody asked for: kept unless they were applied last time. Items without
    // the key cannot be matched: kept, rather than silently dropped.
    for (item, id) in live.iter().zip(&live_ids) {
        let keep = match id {
            Some(id) => !desired_index.contains_key(id) && !last_index.contains_key(id),
            None => true,
        };
        if keep {
            out.push(item.clone());
        }
    }
    Value::Array(out)
}

/// One field-level change.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    /// `spec.template.spec.containers[name=web].image`
    pub path: String,
    pub op: Op,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Remove,
    Change,
}

/// The differences from `before` to `after`, leaf by leaf (a whole subtree when it is
/// added or removed), lists aligned by merge key where the schema gives one.
pub fn diff(before: &Value, after: &Value, schema: Schema<'_>, path: &mut String, out: &mut Vec<Change>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys().filter(|k| !b.contains_key(*k))).collect();
            keys.sort_unstable();
            for key in keys {
                let len = path.len();
                push_key(path, key);
                match (b.get(key), a.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, schema.property(key), path, out),
                    (Some(x), None) => out.push(change(path, Op::Remove, Some(x), None)),
                    (None, Some(y)) => out.push(change(path, Op::Add, None, Some(y))),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(b), Value::Array(a)) => match schema.list_kind(Writer::Structural) {
            ListKind::Map(keys) if identities(b, &keys).iter().chain(&identities(a, &keys)).all(Option::is_some) => {
                let (b_ids, b_index) = index(b, &keys);
                let (a_ids, a_index) = index(a, &keys);
                let label = |item: &Value| {
                    let parts: Vec<String> = keys
                        .iter()
                        .map(|k| match item.get(*k) {
                            Some(Value::String(s)) => format!("{k}={s}"),
                            Some(other) => format!("{k}={other}"),
                            None => format!("{k}="),
                        })
                        .collect();
                    format!("[{}]", parts.join(","))
                };
                for (item, id) in b.iter().zip(&b_ids) {
                    let len = path.len();
                    path.push_str(&label(item));
                    match id.as_ref().and_then(|id| a_index.get(id)) {
                        Some(&j) => diff(item, &a[j], schema.items(), path, out),
                        None => out.push(change(path, Op::Remove, Some(item), None)),
                    }
                    path.truncate(len);
                }
                for (item, id) in a.iter().zip(&a_ids) {
                    if id.as_ref().is_none_or(|id| !b_index.contains_key(id)) {
                        let len = path.len();
                        path.push_str(&label(item));
                        out.push(change(path, Op::Add, None, Some(item)));
                        path.truncate(len);
                    }
                }
            }
            // Lists of structures of one length: item by item reads better than the whole.
            _ if b.len() == a.len() && b.iter().chain(a).all(Value::is_object) => {
                for (i, (x, y)) in b.iter().zip(a).enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    diff(x, y, schema.items(), path, out);
                    path.truncate(len);
                }
            }
            _ => out.push(change(path, Op::Change, Some(before), Some(after))),
        },
        _ => out.push(change(path, Op::Change, Some(before), Some(after))),
    }
}

fn change(path: &str, op: Op, before: Option<&Value>, after: Option<&Value>) -> Change {
    Change { path: path.to_string(), op, before: before.cloned(), after: after.cloned() }
}

/// `a.b`, or `a["kubernetes.io/name"]` for keys that are not plain words.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str(&format!("[{}]", Value::String(key.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::GroupVersionKind;
    use crate::schema::{Catalog, CatalogOptions};
    use serde_json::json;

    fn changes(before: &Value, after: &Value, schema: Schema<'_>) -> Vec<(String, Op)> {
        let mut out = Vec::new();
        diff(before, after, schema, &mut String::new(), &mut out);
        out.into_iter().map(|c| (c.path, c.op)).collect()
    }

    #[test]
    fn three_way_merge_as_kubectl_apply() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let (node, definitions) =
            catalog.builtin_definition(&GroupVersionKind::new("apps", "v1", "Deployment")).unwrap();
        let schema = Schema { node: Some(node), definitions: Some(definitions) };
        // The documentation's example: helper-a was applied and is no longer wanted,
        // helper-b keeps its live args, helper-c is new, helper-d was never applied.
        let containers = |list: Value| json!({"spec": {"template": {"spec": {"containers": list}}}});
        let last = containers(json!([{"name": "main"}, {"name": "helper-a"}, {"name": "helper-b"}]));
        let desired = containers(json!([{"name": "main", "image": "v2"}, {"name": "helper-b"}, {"name": "helper-c"}]));
        let live = containers(json!([
            {"name": "main", "image": "v1", "terminationMessagePath": "/dev/termination-log"},
            {"name": "helper-a"}, {"name": "helper-b", "args": ["x"]}, {"name": "helper-d"}
        ]));
        let merged = merge(Some(&last), &desired, &live, schema);
        assert_eq!(
            merged,
            containers(json!([
                {"name": "main", "image": "v2", "terminationMessagePath": "/dev/termination-log"},
                {"name": "helper-b", "args": ["x"]}, {"name": "helper-c"}, {"name": "helper-d"}
            ]))
        );
        assert_eq!(
            changes(&live, &merged, schema),
            [
                ("spec.template.spec.containers[name=main].image".to_string(), Op::Change),
                ("spec.template.spec.containers[name=helper-a]".to_string(), Op::Remove),
                ("spec.template.spec.containers[name=helper-c]".to_string(), Op::Add),
            ]
        );
        // Fields only the cluster set are not drift; a field dropped from the config is removed.
        let last = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"replicas": 2}});
        let desired = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 2}});
        let live = json!({"metadata": {"labels": {"app": "web", "tier": "front"}, "uid": "1"}, "spec": {"replicas": 2}, "status": {"ready": 2}});
        let merged = merge(Some(&last), &desired, &live, schema);
        assert_eq!(changes(&live, &merged, schema), [("metadata.labels.tier".to_string(), Op::Remove)]);
        // Repeated keys pair in order (a DNS Service's port 53 over TCP and UDP); a set
        // keeps what the cluster added; retainKeys drops what the configuration left out.
        let (node, definitions) = catalog.builtin_definition(&GroupVersionKind::new("", "v1", "Service")).unwrap();
        let service = Schema { node: Some(node), definitions: Some(definitions) };
        let ports = json!({"spec": {"ports": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let merged = merge(Some(&ports), &ports, &ports, service);
        assert_eq!(merged, ports);
        assert!(changes(&ports, &merged, service).is_empty());
        let last = json!({"metadata": {"finalizers": ["a"]}, "spec": {"strategy": {"type": "RollingUpdate"}}});
        let desired = json!({"metadata": {"finalizers": ["b"]}, "spec": {"strategy": {"type": "Recreate"}}});
        let live = json!({"metadata": {"finalizers": ["a", "kubernetes.io/pvc-protection"]},
            "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}});
        assert_eq!(
            merge(Some(&last), &desired, &live, schema),
            json!({"metadata": {"finalizers": ["b", "kubernetes.io/pvc-protection"]}, "spec": {"strategy": {"type": "Recreate"}}})
        );
        // Primitive lists are replaced, and keys with dots are quoted.
        let before = json!({"metadata": {"annotations": {"example.com/a": "1"}}, "args": ["a", "b"]});
        let after = json!({"metadata": {"annotations": {"example.com/a": "2"}}, "args": ["a"]});
        assert_eq!(
            changes(&before, &after, Schema::NONE),
            [("args".to_string(), Op::Change), ("metadata.annotations[\"example.com/a\"]".to_string(), Op::Change)]
        );
    }
}
