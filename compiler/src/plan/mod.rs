//! Plans: for every desired object, in apply order, what applying it would do to what a
//! cluster holds (create, update with the field-level changes, or nothing), and with
//! pruning, which objects would be deleted (in reverse order). The comparison is
//! `kubectl apply`'s three-way merge (`merge`); the current state comes from `state`.

pub mod merge;
pub mod render;
pub mod state;

use crate::graph::{self, Graph, ObjectId};
use crate::list_merge::Schema;
use crate::object::{GroupVersionKind, ObjectInfo};
use crate::schema::Catalog;
use merge::Change;
use serde::Serialize;
use serde_json::Value;
use state::{LAST_APPLIED, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Unchanged,
    /// A server-side apply that other field managers' fields refuse (a 409).
    Conflict,
}

/// How the plan's objects are applied: kubectl's client-side three-way merge with the
/// last-applied configuration, or server-side apply by a field manager, whose merge and
/// conflicts are `structured_merge`'s, judged on the managedFields the state carries.
#[derive(Clone, Debug, Default)]
pub enum Applier {
    #[default]
    ClientSide,
    ServerSide {
        manager: String,
        force: bool,
        /// The time the applier's managedFields entry takes (RFC 3339).
        now: String,
        /// What a live cluster answered to a dry run of the apply, by object: the server's
        /// own merge (its admission and webhooks included) wins over the prediction.
        answers: std::collections::HashMap<ObjectId, DryRun>,
    },
}

/// A live cluster's answer to a server-side apply with `dryRun=All`.
#[derive(Clone, Debug)]
pub enum DryRun {
    /// The object as the server would store it.
    Applied(Value),
    /// The 409's conflicts.
    Refused(Vec<Conflict>),
}

/// A field another manager owns that a server-side apply would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// As Kubernetes prints it: `.spec.replicas`.
    pub field: String,
    /// As Kubernetes names it: `"kubectl-edit" using apps/v1`.
    pub manager: String,
}

impl Conflict {
    /// From a 409's `FieldManagerConflict` cause (`field`, `conflict with <manager>`).
    pub fn from_cause(field: String, message: &str) -> Conflict {
        Conflict { field, manager: message.trim_start_matches("conflict with ").to_string() }
    }
}

/// A create's changes: every field of the object but its type.
fn creation_changes(object: &Value, schema: Schema<'_>) -> Vec<Change> {
    let mut shown = object.clone();
    if let Some(map) = shown.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    let mut changes = Vec::new();
    merge::diff(&Value::Object(serde_json::Map::new()), &shown, schema, &mut String::new(), &mut changes);
    changes
}

/// One object's part of the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub object: Identity,
    pub action: Action,
    /// The apply wave (objects of one wave do not depend on each other); deletions have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// What refuses a server-side apply (action `conflict`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// The object as it will be after the apply (none for deletions).
    #[serde(skip)]
    pub result: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip)]
    pub id: ObjectId,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    /// In the state but not in the manifests, and not pruned: left alone.
    #[serde(rename = "notManaged")]
    pub not_managed: usize,
    /// Server-side applies other managers' fields refuse.
    #[serde(skip_serializing_if = "is_zero")]
    pub conflict: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub summary: Summary,
    pub objects: Vec<Entry>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.summary.has_changes()
    }
}

impl Summary {
    /// The counts of a plan whose entries take `actions`, with `not_managed` objects of
    /// the state left alone.
    pub fn of(actions: impl IntoIterator<Item = Action>, not_managed: usize) -> Summary {
        let mut summary = Summary { not_managed, ..Summary::default() };
        for action in actions {
            match action {
                Action::Create => summary.create += 1,
                Action::Update => summary.update += 1,
                Action::Delete => summary.delete += 1,
                Action::Unchanged => summary.unchanged += 1,
                Action::Conflict => summary.conflict += 1,
            }
        }
        summary
    }

    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.delete > 0
    }

    /// How many entries the plan has (objects of the state left alone have none).
    pub fn entries(&self) -> usize {
        self.create + self.update + self.delete + self.unchanged + self.conflict
    }
}

/// One desired object: as written (after templates), and normalized.
#[derive(Clone, Copy, Debug)]
pub struct Desired<'a> {
    pub written: &'a Value,
    pub normalized: &'a Value,
    pub info: &'a ObjectInfo,
}

/// Plans `desired` (`graph` is the graph of their normalized forms) against `state`.
///
/// An update is `kubectl apply`'s: the object as written is merged into the live one
/// (three-way, with the last-applied configuration), and the result normalized as the
/// API server would (a field dropped from the configuration gets its default back).
/// Comparing the normalized desired object instead would count every default as the
/// user's and undo what controllers and autoscalers set.
pub fn plan(
    desired: &[Desired<'_>],
    graph: &Graph,
    state: &State,
    catalog: &Catalog,
    prune: bool,
    applier: &Applier,
) -> Plan {
    use rayon::prelude::*;
    // Objects plan independently of each other: side by side, then counted in order.
    let mut objects: Vec<Entry> =
        graph.order.par_iter().map(|&i| plan_one(desired[i], graph, i, state, catalog, applier)).collect();
    let (deleted, not_managed) = deletions(graph, state, prune);
    objects.extend(deleted);
    let summary = Summary::of(objects.iter().map(|entry| entry.action), not_managed);
    Plan { api_version: state::STATE_API_VERSION, kind: "Plan", summary, objects }
}

/// What the state has and the manifests (`graph`'s objects) do not: with `prune`, their
/// deletions in reverse apply order (dependents before what they depend on); and how
/// many objects are left alone. Objects nobody applied (no last-applied configuration)
/// are never pruned, as kubectl does.
pub fn deletions(graph: &Graph, state: &State, prune: bool) -> (Vec<Entry>, usize) {
    let desired_ids: std::collections::HashSet<&ObjectId> = graph.ids.iter().collect();
    let (extra, foreign): (Vec<&(ObjectId, state::Current)>, Vec<_>) =
        state.objects.iter().filter(|(id, _)| !desired_ids.contains(id)).partition(|(_, current)| current.managed);
    let mut deleted = Vec::new();
    let mut not_managed = foreign.len();
    if prune && !extra.is_empty() {
        let values: Vec<&Value> = extra.iter().map(|(_, current)| &current.live).collect();
        let order = graph::build(&values).order;
        for &i in order.iter().rev() {
            let (id, current) = extra[i];
            deleted.push(Entry {
                object: identity(id, &current.live),
                action: Action::Delete,
                wave: None,
                changes: Vec::new(),
                conflicts: Vec::new(),
                result: None,
            });
        }
    } else {
        not_managed += extra.len();
    }
    (deleted, not_managed)
}

/// What applying object `i` of the graph does, when that takes no comparison: an
/// object the state does not hold is created. `None` when only `plan_one` can tell.
pub fn known_action(graph: &Graph, i: usize, state: &State) -> Option<Action> {
    state.get(&graph.ids[i]).is_none().then_some(Action::Create)
}

/// What applying one desired object (index `i` in the graph) does: one entry of `plan`,
/// for callers that make the entries one at a time.
pub fn plan_one(
    desired: Desired<'_>,
    graph: &Graph,
    i: usize,
    state: &State,
    catalog: &Catalog,
    applier: &Applier,
) -> Entry {
    if let Applier::ServerSide { manager, force, now, answers } = applier {
        let writer = ServerSideWriter { manager, force: *force, now, answer: answers.get(&graph.ids[i]) };
        return plan_server_side(desired, graph, i, state, catalog, &writer);
    }
    let Desired { written, normalized: wanted, info } = desired;
    let id = &graph.ids[i];
    let gvk = gvk_of(wanted);
    let definition = gvk.as_ref().and_then(|gvk| catalog.builtin_definition(gvk));
    let schema = definition
        .map_or(Schema::NONE, |(node, definitions)| Schema { node: Some(node), definitions: Some(definitions) });
    let (action, mut changes, result) = match state.get(id) {
        None => (Action::Create, creation_changes(wanted, schema), wanted.clone()),
        Some(current) => {
            // Both sides in stored form: a live object as kubectl prints it (nulls,
            // `creationTimestamp: null`, `stringData`) must not read as a difference.
            let mut live = current.live.clone();
            crate::normalize::normalize_value(info, &mut live, catalog);
            // kubectl puts the new last-applied annotation into the configuration before
            // merging, so the annotations map is always there: leaving it out would remove
            // the annotations controllers set.
            let written = with_last_applied(written);
            let mut merged = merge::merge(current.last_applied.as_ref(), &written, &live, schema);
            crate::normalize::normalize_value(info, &mut merged, catalog);
            // kubectl rewrites its own annotation on every apply: not a change of the object.
            without_last_applied(&mut live);
            without_last_applied(&mut merged);
            let mut changes = Vec::new();
            merge::diff(&live, &merged, schema, &mut String::new(), &mut changes);
            let action = if changes.is_empty() { Action::Unchanged } else { Action::Update };
            (action, changes, merged)
        }
    };
    if id.group.is_empty() && id.kind == "Secret" {
        mask_secret(&mut changes);
    }
    Entry {
        object: identity(id, wanted),
        action,
        wave: Some(graph.waves[i]),
        changes,
        conflicts: Vec::new(),
        result: Some(result),
    }
}

/// What a server-side apply of one desired object does to what the state holds: the
/// configuration as written merged by the schema's structure, owned by `manager`, with
/// the fields other managers own (the state's managedFields) refusing it unless `force`.
/// The result carries the managedFields the server would write, so a state recorded from
/// it predicts the next apply's conflicts.
struct ServerSideWriter<'a> {
    manager: &'a str,
    force: bool,
    now: &'a str,
    answer: Option<&'a DryRun>,
}

fn plan_server_side(
    desired: Desired<'_>,
    graph: &Graph,
    i: usize,
    state: &State,
    catalog: &Catalog,
    applier: &ServerSideWriter<'_>,
) -> Entry {
    let ServerSideWriter { manager, force, now, answer } = *applier;
    use crate::structured_merge::{self, Write};
    let Desired { written, normalized: wanted, info } = desired;
    let id = &graph.ids[i];
    let gvk = &info.gvk;
    let api_version = if gvk.group.is_empty() { gvk.version.clone() } else { format!("{}/{}", gvk.group, gvk.version) };
    let current = state.get(id);
    let mut live = match current {
        Some(current) => {
            let mut live = current.live.clone();
            crate::normalize::normalize_value(info, &mut live, catalog);
            live
        }
        None => Value::Object(serde_json::Map::new()),
    };
    // Entries that do not decode are none (the API server would refuse the write).
    let entries = live
        .pointer("/metadata/managedFields")
        .map(|m| crate::managed_fields::decode(m).unwrap_or_default())
        .unwrap_or_default();
    // kubeyard's server-side apply first takes over what its client-side applies own.
    let csa = crate::managed_fields::KUBEYARD_CLIENT_SIDE_APPLY;
    let entries = crate::managed_fields::upgrade_client_side(&entries, csa, manager).unwrap_or(entries);
    strip_managed_fields(&mut live);
    // A status written through the main resource is reset by the API server for kinds
    // that have one (the status subresource): not the applier's.
    let mut ignored = crate::field_set::FieldSet::new();
    if catalog.resets_status(gvk) {
        ignored.insert(&[crate::field_set::PathElement::Field("status".into())]);
    }
    let writer = Write { manager, api_version: &api_version, subresource: None, now };
    let applied = match answer {
        Some(DryRun::Refused(conflicts)) => Err(conflicts.clone()),
        Some(DryRun::Applied(object)) => {
            let mut object = object.clone();
            let entries = object
                .pointer("/metadata/managedFields")
                .map(|m| crate::managed_fields::decode(m).unwrap_or_default())
                .unwrap_or_default();
            strip_managed_fields(&mut object);
            // What the server keeps itself (a dry run's generation counts the change) is
            // not part of the plan: the live object's stands.
            if let (Some(answered), Some(held)) =
                (object.get_mut("metadata").and_then(Value::as_object_mut), live.get("metadata"))
            {
                for field in ["generation", "resourceVersion", "uid", "creationTimestamp"] {
                    match held.get(field) {
                        Some(value) => answered.insert(field.into(), value.clone()),
                        None => answered.remove(field),
                    };
                }
            }
            Ok((object, entries))
        }
        None => catalog
            .with_merge_schema(gvk, |schema| {
                structured_merge::apply(&live, written, &entries, &writer, force, &ignored, schema)
            })
            .map_err(|conflicts| {
                let (_, causes) = crate::managed_fields::conflict_status(&conflicts);
                causes.into_iter().map(|(field, message)| Conflict::from_cause(field, &message)).collect()
            }),
    };
    let definition = catalog.builtin_definition(gvk);
    let schema = definition
        .map_or(Schema::NONE, |(node, definitions)| Schema { node: Some(node), definitions: Some(definitions) });
    let mut entry = Entry {
        object: identity(id, wanted),
        action: Action::Unchanged,
        wave: Some(graph.waves[i]),
        changes: Vec::new(),
        conflicts: Vec::new(),
        result: None,
    };
    match applied {
        Err(conflicts) => {
            entry.action = Action::Conflict;
            entry.conflicts = conflicts;
            entry.result = current.map(|c| c.live.clone());
        }
        Ok((mut merged, entries)) => {
            crate::normalize::normalize_value(info, &mut merged, catalog);
            if current.is_some() {
                merge::diff(&live, &merged, schema, &mut String::new(), &mut entry.changes);
                entry.action = if entry.changes.is_empty() { Action::Unchanged } else { Action::Update };
            } else {
                entry.changes = creation_changes(&merged, schema);
                entry.action = Action::Create;
            }
            if let Some(metadata) = merged.get_mut("metadata").and_then(Value::as_object_mut)
                && !entries.is_empty()
            {
                let encoded = entries.iter().map(crate::managed_fields::Entry::to_json).collect();
                metadata.insert("managedFields".into(), Value::Array(encoded));
            }
            entry.result = Some(merged);
        }
    }
    if id.group.is_empty() && id.kind == "Secret" {
        mask_secret(&mut entry.changes);
    }
    entry
}

fn strip_managed_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

/// The objects a state holds after `plan` is applied to `previous`: each planned object as
/// it will be, carrying what was applied (`written`, by identity) in kubectl's
/// last-applied annotation; then what `previous` had that the plan leaves alone.
pub fn applied(plan: &Plan, written: &std::collections::HashMap<ObjectId, Value>, previous: &State) -> Vec<Value> {
    let mut objects = Vec::with_capacity(plan.objects.len());
    let mut planned = std::collections::HashSet::new();
    for entry in &plan.objects {
        planned.insert(&entry.object.id);
        let Some(mut object) = entry.result.clone() else { continue };
        if let Some(config) = written.get(&entry.object.id)
            && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(LAST_APPLIED.into(), Value::String(config.to_string()));
            }
        }
        objects.push(object);
    }
    for (id, current) in &previous.objects {
        if !planned.contains(id) {
            objects.push(current.live.clone());
        }
    }
    objects
}

fn without_last_applied(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        && let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
}

/// The configuration with kubectl's last-applied annotation set to itself.
fn with_last_applied(written: &Value) -> Value {
    let mut config = written.clone();
    let text = written.to_string();
    if let Some(metadata) =
        config.as_object_mut().map(|o| o.entry("metadata").or_insert_with(|| Value::Object(Default::default())))
        && let Some(metadata) = metadata.as_object_mut()
    {
        let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(LAST_APPLIED.into(), Value::String(text));
        }
    }
    config
}

fn gvk_of(object: &Value) -> Option<GroupVersionKind> {
    Some(GroupVersionKind::from_api_version(object.get("apiVersion")?.as_str()?, object.get("kind")?.as_str()?))
}

fn identity(id: &ObjectId, object: &Value) -> Identity {
    Identity {
        api_version: object.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string(),
        kind: id.kind.clone(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        id: id.clone(),
    }
}

/// A Secret's values never appear in a plan: that they change shows, not what they are.
fn mask_secret(changes: &mut [Change]) {
    const HIDDEN: &str = "(sensitive value)";
    fn hide(value: &mut Value) {
        match value {
            Value::Object(map) => map.values_mut().for_each(hide),
            _ => *value = Value::String(HIDDEN.into()),
        }
    }
    /// The last-applied annotation holds the whole Secret as written: never shown.
    fn scrub(value: &mut Value) {
        if let Value::Object(map) = value {
            for (key, child) in map.iter_mut() {
                if key == LAST_APPLIED {
                    *child = Value::String(HIDDEN.into());
                } else {
                    scrub(child);
                }
            }
        }
    }
    for change in changes.iter_mut() {
        if change.path.starts_with("metadata") {
            for value in [&mut change.before, &mut change.after].into_iter().flatten() {
                if change.path.contains(LAST_APPLIED) {
                    *value = Value::String(HIDDEN.into());
                }
                scrub(value);
            }
        }
    }
    for change in changes {
        let secret_field = ["data", "stringData"].iter().any(|field| {
            change.path == *field
                || change.path.starts_with(&format!("{field}."))
                || change.path.starts_with(&format!("{field}["))
        });
        if secret_field {
            for value in [&mut change.before, &mut change.after].into_iter().flatten() {
                hide(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CatalogOptions;
    use serde_json::json;

    fn info(object: &Value) -> ObjectInfo {
        let text = serde_json::to_string(object).unwrap();
        let source = crate::SourceFile::new("o.json", text).unwrap();
        let root = crate::yaml::Documents::new(&source).next().unwrap().unwrap().root.unwrap();
        match crate::object::classify(&root) {
            crate::object::Classified::Object(info) => info,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn creates_updates_deletes_and_hides_secrets() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "2"}});
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": {"p": "bmV3"}, "type": "Opaque"});
        let fresh =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "default"}});
        let old = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "default"}});
        let mut state = State::default();
        for (object, was) in [
            (
                &config,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}}),
            ),
            (
                &secret,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": {"p": "b2xk"}, "type": "Opaque"}),
            ),
            (&old, old.clone()),
        ] {
            state.insert(
                ObjectId::of(object).unwrap(),
                state::Current { live: was.clone(), last_applied: Some(was), managed: true },
            );
        }
        let objects = [&config, &secret, &fresh];
        let infos: Vec<ObjectInfo> = objects.iter().map(|o| info(o)).collect();
        let desired: Vec<Desired<'_>> =
            objects.iter().zip(&infos).map(|(o, info)| Desired { written: o, normalized: o, info }).collect();
        let graph = graph::build(&objects);
        let plan = plan(&desired, &graph, &state, &catalog, true, &Applier::ClientSide);
        let actions: Vec<(String, Action)> = plan.objects.iter().map(|e| (e.object.id.to_string(), e.action)).collect();
        assert_eq!(
            actions,
            [
                ("ServiceAccount/default/sa".to_string(), Action::Create),
                ("Secret/default/s".to_string(), Action::Update),
                ("ConfigMap/default/c".to_string(), Action::Update),
                ("ConfigMap/default/old".to_string(), Action::Delete),
            ]
        );
        assert_eq!(
            plan.summary,
            Summary { create: 1, update: 2, delete: 1, unchanged: 0, not_managed: 0, conflict: 0 }
        );
        let text = serde_json::to_string(&plan).unwrap();
        assert!(!text.contains("bmV3") && !text.contains("b2xk"), "{text}");
        assert!(text.contains("(sensitive value)"));
        let without_prune = super::plan(&desired, &graph, &state, &catalog, false, &Applier::ClientSide);
        assert_eq!(without_prune.summary.not_managed, 1);
        assert_eq!(without_prune.summary.delete, 0);
    }

    #[test]
    fn a_server_side_plan_predicts_the_merge_and_the_conflicts_from_managed_fields() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
                            "data": {"mode": "fast"}});
        // Created by kubeyard's apply, then the mode taken by `ops`, and a key of its own.
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "managedFields": [
                {"manager": "kubeyard", "operation": "Apply", "apiVersion": "v1", "time": "2026-12-06T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:mode": {}}}},
                {"manager": "ops", "operation": "Update", "apiVersion": "v1", "time": "2026-12-06T10:01:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:mode": {}, "f:extra": {}}}}]},
            "data": {"mode": "slow", "extra": "kept"}});
        let mut state = State::default();
        state.insert(ObjectId::of(&config).unwrap(), state::Current { live, last_applied: None, managed: false });
        let objects = [&config];
        let infos: Vec<ObjectInfo> = objects.iter().map(|o| info(o)).collect();
        let desired: Vec<Desired<'_>> =
            objects.iter().zip(&infos).map(|(o, info)| Desired { written: o, normalized: o, info }).collect();
        let graph = graph::build(&objects);
        let applier = |force| Applier::ServerSide {
            manager: "kubeyard".into(),
            force,
            now: "2026-12-06T11:00:00Z".into(),
            answers: Default::default(),
        };
        let refused = plan(&desired, &graph, &state, &catalog, false, &applier(false));
        assert_eq!(refused.objects[0].action, Action::Conflict);
        assert_eq!(
            refused.objects[0].conflicts,
            [Conflict { field: ".data.mode".into(), manager: r#""ops" using v1"#.into() }]
        );
        assert_eq!(refused.summary.conflict, 1);
        let text = render::text(&refused, render::Style { color: false });
        assert!(text.contains(r#"! .data.mode: owned by "ops" using v1"#), "{text}");
        // Forced: the mode changes, what `ops` alone owns stays, and the result records it.
        let forced = plan(&desired, &graph, &state, &catalog, false, &applier(true));
        let entry = &forced.objects[0];
        assert_eq!(entry.action, Action::Update);
        assert_eq!(entry.changes.len(), 1, "{:?}", entry.changes);
        assert_eq!(entry.changes[0].path, "data.mode");
        let result = entry.result.as_ref().unwrap();
        assert_eq!(result["data"], json!({"mode": "fast", "extra": "kept"}));
        let managers: Vec<&str> = result["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["kubeyard", "ops"]);
        // A new object is created, owned by the applier.
        let empty = State::default();
        let created = plan(&desired, &graph, &empty, &catalog, false, &applier(false));
        assert_eq!(created.objects[0].action, Action::Create);
        assert_eq!(created.objects[0].result.as_ref().unwrap()["metadata"]["managedFields"][0]["manager"], "kubeyard");
    }
}
