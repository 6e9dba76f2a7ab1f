//! Server-side apply's merge and ownership, as structured-merge-diff computes them
//! (`docs/design/server-side-apply.md` is the specification, with the Go functions each
//! rule comes from): the fields an object's values make (`field_set`, SMD's
//! `ToFieldSet`), what a write added, changed and removed (`compare`), an applied
//! configuration merged into a live object (`merge`), fields taken out (`remove`), and
//! the two operations of the field manager: an `update` (create, PUT, non-apply PATCH)
//! moves the changed fields to its manager; an `apply` merges, drops what the applier
//! no longer mentions and nobody else owns, and refuses (409) to change fields other
//! managers own unless forced.
//!
//! Topology comes from the schemas' markers (`list_merge::Schema`, `Writer::Structural`):
//! lists are atomic, sets (`v:`) or maps by keys (`k:`); objects are structs (declared
//! fields) or maps (every key its own field), or atomic (`x-kubernetes-map-type`). Where
//! there is no schema every object is a granular map and every list atomic, as for
//! Kubernetes' deduced types.

use crate::field_set::{FieldSet, Path, PathElement};
use crate::list_merge::{ListKind, Schema, Writer};
use crate::managed_fields::{Entry, Operation};
use serde_json::{Map, Value};

/// The metadata no manager owns (`StripMeta`), made once.
fn stripped() -> &'static FieldSet {
    static STRIPPED: std::sync::OnceLock<FieldSet> = std::sync::OnceLock::new();
    STRIPPED.get_or_init(stripped_paths)
}

fn stripped_paths() -> FieldSet {
    let mut set = FieldSet::new();
    let field = |name: &str| PathElement::Field(name.into());
    for top in ["apiVersion", "kind", "metadata"] {
        set.insert(&[field(top)]);
    }
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[field("metadata"), field(name)]);
    }
    set
}

/// The path element of an item of an associative list. A key field the item leaves out
/// takes its default (the schema's, or a port's `protocol: TCP`), as structured-merge-diff
/// takes it, so the item is the one admission will store.
fn item_element(item: &Value, kind: &ListKind<'_>, items: Schema<'_>) -> Option<PathElement> {
    match kind {
        ListKind::Map(keys) => {
            let key_value = |key: &str| {
                item.get(key).cloned().or_else(|| {
                    let field = items.property(key);
                    field
                        .node
                        .and_then(|n| n.get("default"))
                        .cloned()
                        .or_else(|| crate::normalize::defaults::port_default(key))
                })
            };
            let mut fields: Vec<(String, Value)> =
                keys.iter().map(|k| (k.to_string(), key_value(k).unwrap_or(Value::Null))).collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Some(PathElement::Key(fields))
        }
        ListKind::Set => Some(PathElement::Value(item.clone())),
        ListKind::Atomic => None,
    }
}

fn is_empty_container(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// Whether the value here is one leaf to ownership: a scalar, or an atomic list or map.
fn is_leaf(value: &Value, schema: Schema<'_>) -> bool {
    match value {
        Value::Object(_) => schema.is_atomic_map(),
        Value::Array(_) => schema.list_kind(Writer::Structural) == ListKind::Atomic,
        _ => true,
    }
}

/// The fields an object's values make (`ToFieldSet`): leaves, list items, keys of maps,
/// and struct fields whose value is null or `{}`.
pub fn field_set(value: &Value, schema: Schema<'_>) -> FieldSet {
    let mut set = FieldSet::new();
    walk(value, schema, &mut Vec::new(), &mut set);
    set.remove_all(stripped());
    set
}

fn walk(value: &Value, schema: Schema<'_>, path: &mut Path, set: &mut FieldSet) {
    if is_leaf(value, schema) {
        set.insert(path);
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                let child_schema = schema.property(key);
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty {
                    set.insert(path);
                } else {
                    walk(child, child_schema, path, set);
                    if !schema.declares(key) {
                        set.insert(path);
                    }
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = schema.list_kind(Writer::Structural);
            for item in items {
                let Some(element) = item_element(item, &kind, schema.items()) else { continue };
                path.push(element);
                if matches!(kind, ListKind::Map(_)) {
                    walk(item, schema.items(), path, set);
                }
                set.insert(path);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The items of associative lists an applied configuration holds twice, as
/// structured-merge-diff refuses them (`<path>: duplicate entries for key [name="a"]`),
/// once per key. Stored objects may hold duplicates (written by update); an apply may not.
pub fn duplicate_entries(value: &Value, schema: Schema<'_>) -> Vec<String> {
    let mut out = Vec::new();
    duplicates(value, schema, &mut Vec::new(), &mut out);
    out
}

fn duplicates(value: &Value, schema: Schema<'_>, path: &mut Path, out: &mut Vec<String>) {
    if is_leaf(value, schema) {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                duplicates(child, schema.property(key), path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = schema.list_kind(Writer::Structural);
            let mut seen = std::collections::BTreeSet::new();
            for item in items {
                let Some(element) = item_element(item, &kind, schema.items()) else { continue };
                // Every repeat is an error of its own, as structured-merge-diff reports them.
                if seen.contains(&element) {
                    let key = crate::field_set::path_text(std::slice::from_ref(&element));
                    out.push(format!("{}: duplicate entries for key {key}", crate::field_set::path_text(path)));
                } else {
                    seen.insert(element.clone());
                }
                if matches!(kind, ListKind::Map(_)) {
                    path.push(element);
                    duplicates(item, schema.items(), path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// What a write did, path by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added or modified: what the writer now sets.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// Without exactly `paths` (the stripped metadata: `metadata` itself, not its labels).
    fn without_exact(mut self, paths: &FieldSet) -> Comparison {
        self.added.remove_all(paths);
        self.modified.remove_all(paths);
        self.removed.remove_all(paths);
        self
    }

    /// Without `paths` and everything below them (reset fields).
    fn without(mut self, paths: &FieldSet) -> Comparison {
        self.added.remove_below(paths);
        self.modified.remove_below(paths);
        self.removed.remove_below(paths);
        self
    }
}

/// Deep equality as structured-merge-diff has it: numbers by value.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// What changed from `old` to `new` (`Compare`): a leaf (or a container empty on both
/// sides) is added, removed or modified; a container is added or removed, never modified.
pub fn compare(old: &Value, new: &Value, schema: Schema<'_>) -> Comparison {
    let mut comparison = Comparison::default();
    compare_at(Some(old), Some(new), schema, &mut Vec::new(), &mut comparison);
    comparison.without_exact(stripped())
}

fn compare_at(old: Option<&Value>, new: Option<&Value>, schema: Schema<'_>, path: &mut Path, out: &mut Comparison) {
    let leaf = match (old, new) {
        (Some(o), Some(n)) if std::mem::discriminant(o) != std::mem::discriminant(n) => true,
        _ => {
            let both_empty = is_empty_container(old) && is_empty_container(new);
            both_empty || old.or(new).is_none_or(|v| is_leaf(v, schema))
        }
    };
    if leaf {
        match (old, new) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(o), Some(n)) if !equal(o, n) => out.modified.insert(path),
            _ => {}
        }
        return;
    }
    match old.or(new) {
        Some(Value::Object(_)) => {
            let empty = Map::new();
            let old_map = old.and_then(Value::as_object).unwrap_or(&empty);
            let new_map = new.and_then(Value::as_object).unwrap_or(&empty);
            let mut keys: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                path.push(PathElement::Field(key.clone()));
                compare_at(old_map.get(key), new_map.get(key), schema.property(key), path, out);
                path.pop();
            }
        }
        Some(Value::Array(_)) => {
            let kind = schema.list_kind(Writer::Structural);
            // By element, so each item finds its twin in logarithmic time (the first of
            // duplicates, which the API server's validation refuses anyway).
            let (old_items, new_items) = (keyed_items(old, &kind, schema), keyed_items(new, &kind, schema));
            let mut elements: Vec<&PathElement> = old_items.keys().chain(new_items.keys()).collect();
            elements.sort();
            elements.dedup();
            for element in elements {
                let before = old_items.get(element).copied();
                let after = new_items.get(element).copied();
                path.push(element.clone());
                match kind {
                    ListKind::Map(_) => compare_at(before, after, schema.items(), path, out),
                    // A set's item is its value: there or not.
                    _ => match (before, after) {
                        (None, Some(_)) => out.added.insert(path),
                        (Some(_), None) => out.removed.insert(path),
                        _ => {}
                    },
                }
                path.pop();
            }
        }
        _ => {}
    }
    match (old, new) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

/// A list's items by their path element (the first of duplicates, which the API server's
/// validation refuses anyway), borrowed.
fn keyed_items<'v>(
    list: Option<&'v Value>,
    kind: &ListKind<'_>,
    schema: Schema<'_>,
) -> std::collections::BTreeMap<PathElement, &'v Value> {
    let mut map = std::collections::BTreeMap::new();
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        if let Some(element) = item_element(item, kind, schema.items()) {
            map.entry(element).or_insert(item);
        }
    }
    map
}

/// An applied configuration merged into a live object (`Merge`, keeping the
/// configuration's values): maps by key, associative lists by item (in the
/// configuration's order, live-only items kept in place), everything else replaced.
pub fn merge(live: &Value, config: &Value, schema: Schema<'_>) -> Value {
    let both_empty = is_empty_container(Some(live)) && is_empty_container(Some(config));
    if both_empty || is_leaf(config, schema) || std::mem::discriminant(live) != std::mem::discriminant(config) {
        // A null in the configuration for a granular map keeps what live holds.
        if config.is_null() && !is_leaf(live, schema) && !is_empty_container(Some(live)) {
            return live.clone();
        }
        return config.clone();
    }
    match (live, config) {
        (Value::Object(live_map), Value::Object(config_map)) => {
            let mut out = live_map.clone();
            for (key, value) in config_map {
                let merged = match live_map.get(key) {
                    Some(existing) => merge(existing, value, schema.property(key)),
                    None => value.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(live_items), Value::Array(config_items)) => {
            let kind = schema.list_kind(Writer::Structural);
            let element = |item: &Value| item_element(item, &kind, schema.items());
            let config_elements: Vec<Option<PathElement>> = config_items.iter().map(element).collect();
            let live_elements: Vec<Option<PathElement>> = live_items.iter().map(element).collect();
            let shared: Vec<&Option<PathElement>> =
                config_elements.iter().filter(|e| e.is_some() && live_elements.contains(e)).collect();
            let merged_item = |index: usize| -> Value {
                let config_item = &config_items[index];
                match live_elements.iter().position(|e| e.is_some() && *e == config_elements[index]) {
                    Some(at) if matches!(kind, ListKind::Map(_)) => merge(&live_items[at], config_item, schema.items()),
                    _ => config_item.clone(),
                }
            };
            // Configuration order, live-only items kept where they stand.
            let mut out = Vec::new();
            let (mut i, mut j, mut next_shared) = (0, 0, 0);
            while i < live_items.len() || j < config_items.len() {
                if i < live_items.len() {
                    let live_element = &live_elements[i];
                    let in_config = live_element.is_some() && config_elements.contains(live_element);
                    if !in_config {
                        out.push(live_items[i].clone());
                        i += 1;
                        continue;
                    }
                    if shared.get(next_shared).is_some_and(|s| *s != live_element) {
                        // Shared, but not the next shared one: it comes later.
                        i += 1;
                        continue;
                    }
                }
                if j < config_items.len() {
                    if shared.get(next_shared).is_some_and(|s| **s == config_elements[j]) {
                        next_shared += 1;
                        if i < live_items.len() && live_elements[i] == config_elements[j] {
                            i += 1;
                        }
                    }
                    out.push(merged_item(j));
                    j += 1;
                } else {
                    i += 1;
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// `value` without the paths of `paths` (`RemoveItems`); what ends up empty goes too.
pub fn remove(value: &Value, paths: &FieldSet, schema: Schema<'_>) -> Value {
    remove_at(value, paths, schema, &mut Vec::new()).unwrap_or(Value::Null)
}

fn remove_at(value: &Value, paths: &FieldSet, schema: Schema<'_>, path: &mut Path) -> Option<Value> {
    match value {
        Value::Object(map) if !schema.is_atomic_map() => {
            let mut out = Map::new();
            let mut changed = false;
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                if paths.has(path) {
                    changed = true;
                } else if paths.has_prefix(path) {
                    match remove_at(child, paths, schema.property(key), path) {
                        Some(kept) => {
                            changed |= &kept != child;
                            out.insert(key.clone(), kept);
                        }
                        None => changed = true,
                    }
                } else {
                    out.insert(key.clone(), child.clone());
                }
                path.pop();
            }
            if changed && out.is_empty() && !path.is_empty() { None } else { Some(Value::Object(out)) }
        }
        Value::Array(items) => {
            let kind = schema.list_kind(Writer::Structural);
            if kind == ListKind::Atomic {
                return Some(value.clone());
            }
            let mut out = Vec::new();
            let mut changed = false;
            for item in items {
                let Some(element) = item_element(item, &kind, schema.items()) else {
                    out.push(item.clone());
                    continue;
                };
                path.push(element);
                if paths.has(path) {
                    changed = true;
                } else if paths.has_prefix(path) && matches!(kind, ListKind::Map(_)) {
                    if let Some(kept) = remove_at(item, paths, schema.items(), path) {
                        out.push(kept);
                    }
                } else {
                    out.push(item.clone());
                }
                path.pop();
            }
            if changed && out.is_empty() { None } else { Some(Value::Array(out)) }
        }
        _ => Some(value.clone()),
    }
}

/// `EnsureNamedFieldsAreMembers`: every declared struct field the set passes through is
/// a member too (map keys and list items are not).
fn with_named_fields(set: &FieldSet, schema: Schema<'_>) -> FieldSet {
    let mut out = set.clone();
    for path in set.paths() {
        let mut node = schema;
        for depth in 0..path.len().saturating_sub(1) {
            match &path[depth] {
                PathElement::Field(name) => {
                    let declared = node.declares(name);
                    node = node.property(name);
                    if declared {
                        out.insert(&path[..=depth]);
                    }
                }
                _ => node = node.items(),
            }
        }
    }
    out
}

/// The operation a write is: who, in which version, through which subresource, when.
pub struct Write<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub now: &'a str,
}

/// Ownership after an update (create, PUT, non-apply PATCH) by `writer` from `live` to
/// `new`: the fields it changed move to it from everyone else; what it removed leaves
/// every set. On a create `live` is `{}`.
pub fn update(
    live: &Value,
    new: &Value,
    entries: &[Entry],
    writer: &Write<'_>,
    ignored: &FieldSet,
    schema: Schema<'_>,
) -> Vec<Entry> {
    let Comparison { added, modified, removed } = compare(live, new, schema).without(ignored);
    let mut changed = added;
    changed.union_with(&modified);
    let mine = |entry: &Entry| {
        entry.operation == Operation::Update
            && entry.manager == writer.manager
            && entry.api_version == writer.api_version
            && entry.subresource.as_deref() == writer.subresource
    };
    let mut out: Vec<Entry> = Vec::new();
    let mut previous = None;
    for entry in entries {
        if mine(entry) {
            previous = Some(entry.clone());
            continue;
        }
        // What the writer changed or removed is no longer theirs.
        let mut fields = entry.fields.clone();
        fields.remove_all(&changed);
        fields.remove_all(&removed);
        if !fields.is_empty() {
            out.push(Entry { fields, ..entry.clone() });
        }
    }
    let touched = !changed.is_empty();
    let fields = match &previous {
        Some(previous) => {
            let mut fields = previous.fields.clone();
            fields.remove_all(&removed);
            fields.union_with(&changed);
            fields
        }
        None => changed,
    };
    if !fields.is_empty() {
        let time = if touched { Some(writer.now.to_string()) } else { previous.and_then(|p| p.time) };
        out.push(Entry {
            manager: writer.manager.to_string(),
            operation: Operation::Update,
            api_version: writer.api_version.to_string(),
            time,
            fields,
            subresource: writer.subresource.map(str::to_string),
        });
    }
    crate::managed_fields::cap_updates(&mut out);
    crate::managed_fields::sort(&mut out);
    out
}

/// The manager whose applies migrate from client-side apply (`kubectl apply --server-side`).
const KUBECTL: &str = "kubectl";

fn last_applied(object: &Value) -> Option<&str> {
    object.pointer("/metadata/annotations")?.get(crate::plan::state::LAST_APPLIED)?.as_str()
}

fn set_last_applied(object: &mut Value, text: String) {
    if let Some(annotations) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.insert(crate::plan::state::LAST_APPLIED.into(), Value::String(text));
    }
}

/// An applied configuration as kubectl's annotation holds it: without the annotation,
/// compact JSON with sorted keys and a newline, HTML characters escaped (Go's JSON
/// encoder; these characters only occur inside strings, so escaping the text is exact).
pub fn last_applied_text(config: &Value) -> String {
    let mut config = config.clone();
    if let Some(annotations) = config.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.remove(crate::plan::state::LAST_APPLIED);
    }
    let mut text = String::new();
    for c in config.to_string().chars() {
        match c {
            '<' => text.push_str("\\u003c"),
            '>' => text.push_str("\\u003e"),
            '&' => text.push_str("\\u0026"),
            '\u{2028}' => text.push_str("\\u2028"),
            '\u{2029}' => text.push_str("\\u2029"),
            c => text.push(c),
        }
    }
    text.push('\n');
    text
}

/// The fields of the object's last-applied configuration (in `api_version`) whose
/// values it still holds: conflicts on them do not stop kubectl's first server-side
/// apply. `None` without the annotation, or when it is not an object of that version.
pub fn last_applied_fields(live: &Value, api_version: &str, schema: Schema<'_>) -> Option<FieldSet> {
    let applied: Value = serde_json::from_str(last_applied(live)?).ok()?;
    if applied.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let comparison = compare(&applied, live, schema);
    let differ = comparison.modified.union(&comparison.added).union(&comparison.removed);
    Some(field_set(&applied, schema).difference(&differ))
}

/// An apply refused: each other manager's entry with a path it owns that the apply would
/// change.
pub type Conflicts = Vec<(Entry, Path)>;

/// An apply of `config` by `writer` to `live` (`{}` when the object does not exist yet):
/// the object it makes and everyone's fields after it, or the conflicts that refuse it.
pub fn apply(
    live: &Value,
    config: &Value,
    entries: &[Entry],
    writer: &Write<'_>,
    force: bool,
    ignored: &FieldSet,
    schema: Schema<'_>,
) -> Result<(Value, Vec<Entry>), Conflicts> {
    let is_applier = |entry: &Entry| {
        entry.operation == Operation::Apply
            && entry.manager == writer.manager
            && entry.subresource.as_deref() == writer.subresource
    };
    let mut entries = entries.to_vec();
    // An object no manager tracks: what it holds is someone's before the apply.
    if entries.is_empty() && !field_set(live, schema).is_empty() {
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: Operation::Update,
            api_version: writer.api_version.into(),
            time: Some(writer.now.into()),
            fields: field_set(live, schema),
            subresource: None,
        });
    }
    let merged = merge(live, config, schema);
    // What the endpoint resets (status through the main resource, the rest through
    // `status`) is no one's to take.
    let applied = field_set(config, schema).recursive_difference(ignored);
    let last = entries.iter().find(|e| is_applier(e)).map(|e| e.fields.clone()).unwrap_or_default();
    // What the applier owned and dropped, that nobody owns now and that keeps nothing
    // owned below it, goes.
    // The metadata no manager owns is never dropped.
    let mut managed = applied.union(stripped());
    for entry in entries.iter().filter(|e| !is_applier(e)) {
        managed = managed.union(&entry.fields);
    }
    // A named field with an owned field below it stays; a list item nobody owns goes
    // whole, as structured-merge-diff prunes.
    let dropped = with_named_fields(&last, schema).difference(&with_named_fields(&managed, schema));
    let result = remove(&merged, &dropped, schema);
    let comparison = compare(live, &result, schema).without(ignored);
    let changed = comparison.changed();
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| !is_applier(e)) {
        for path in entry.fields.intersection(&changed).paths() {
            conflicts.push((entry.clone(), path));
        }
    }
    if !force && !conflicts.is_empty() {
        // kubectl moving from client-side apply (Kubernetes' lastAppliedManager): what its
        // last-applied configuration set, and the object still holds, is kubectl's to take.
        if writer.manager == KUBECTL
            && let Some(allowed) = last_applied_fields(live, writer.api_version, schema)
        {
            let left: Conflicts = conflicts.into_iter().filter(|(_, path)| !allowed.has(path)).collect();
            if !left.is_empty() {
                return Err(left);
            }
            return apply(live, config, &entries, writer, true, ignored, schema);
        }
        return Err(conflicts);
    }
    let mut out: Vec<Entry> = Vec::new();
    let previous = entries.iter().find(|e| is_applier(e)).cloned();
    for entry in entries.iter().filter(|e| !is_applier(e)) {
        let fields = entry.fields.difference(&entry.fields.intersection(&changed)).difference(&comparison.removed);
        if !fields.is_empty() {
            out.push(Entry { fields, ..entry.clone() });
        }
    }
    if !applied.is_empty() {
        let time = match (&previous, equal(live, &result)) {
            (Some(previous), true) => previous.time.clone(),
            _ => Some(writer.now.to_string()),
        };
        out.push(Entry {
            manager: writer.manager.to_string(),
            operation: Operation::Apply,
            api_version: writer.api_version.to_string(),
            time,
            fields: applied,
            subresource: writer.subresource.map(str::to_string),
        });
    }
    // Applies are not capped (Kubernetes' capManagersManager passes them through).
    crate::managed_fields::sort(&mut out);
    let mut result = result;
    // kubectl's applies keep its client-side annotation in step (Kubernetes'
    // lastAppliedUpdater, after the apply: it moves no time), so a later client-side
    // apply starts from this configuration.
    if writer.manager == KUBECTL && last_applied(&result).is_some_and(|text| !text.is_empty()) {
        set_last_applied(&mut result, last_applied_text(config));
    }
    Ok((result, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field_set::path_text;
    use serde_json::json;

    fn texts(set: &FieldSet) -> Vec<String> {
        set.paths().iter().map(|p| path_text(p)).collect()
    }

    /// A schema for tests: containers keyed by name, finalizers a set, args atomic,
    /// selector an atomic map, labels a map.
    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object", "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}}},
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "paused": {"type": "boolean"},
                "strategy": {"type": "object", "properties": {"type": {"type": "string"}}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                    "items": {"type": "object", "properties": {"containerPort": {"type": "integer"}, "protocol": {"type": "string"}}}},
                "containers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "image": {"type": "string"},
                        "args": {"type": "array", "items": {"type": "string"}}}}}}}}})
    }

    fn with<T>(f: impl FnOnce(Schema<'_>) -> T) -> T {
        let root = schema();
        let definitions = rustc_hash::FxHashMap::default();
        f(Schema { node: Some(&root), definitions: Some(&definitions) })
    }

    fn writer<'a>(manager: &'a str) -> Write<'a> {
        Write { manager, api_version: "apps/v1", subresource: None, now: "2026-12-06T10:00:00Z" }
    }

    #[test]
    fn an_objects_fields_are_leaves_items_map_keys_and_empty_structs() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "strategy": {}, "selector": {"matchLabels": {"app": "web"}},
                     "containers": [{"name": "web", "image": "nginx", "args": ["-v"]}]}});
        let set = with(|s| field_set(&object, s));
        assert_eq!(
            set.to_fields_v1(),
            // `labels` is a declared field holding something: its keys are owned, not it
            // (an Update's comparison is what adds "." to a map it creates).
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}}, "f:labels": {"f:app": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}},
                              "f:replicas": {}, "f:selector": {}, "f:strategy": {}}})
        );
    }

    #[test]
    fn a_comparison_adds_modifies_and_removes_leaves_and_adds_containers() {
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x"}], "paused": true}});
        let new = json!({"spec": {"containers": [{"name": "a", "image": "y"}, {"name": "b", "image": "z"}]}});
        let comparison = with(|s| compare(&old, &new, s));
        assert_eq!(
            texts(&comparison.added),
            [
                r#".spec.containers[name="b"]"#,
                r#".spec.containers[name="b"].image"#,
                r#".spec.containers[name="b"].name"#
            ]
        );
        assert_eq!(texts(&comparison.modified), [r#".spec.containers[name="a"].image"#]);
        assert_eq!(texts(&comparison.removed), [".spec.paused"]);
    }

    #[test]
    fn merges_keep_the_configurations_values_and_order() {
        let live = json!({"spec": {"replicas": 1, "paused": true, "containers": [
            {"name": "a", "image": "x", "args": ["1"]}, {"name": "b"}, {"name": "c"}]}});
        let config =
            json!({"spec": {"replicas": 3, "containers": [{"name": "c", "image": "z"}, {"name": "a", "args": ["2"]}]}});
        let merged = with(|s| merge(&live, &config, s));
        assert_eq!(
            merged,
            json!({"spec": {"replicas": 3, "paused": true, "containers": [
                {"name": "b"}, {"name": "c", "image": "z"}, {"name": "a", "image": "x", "args": ["2"]}]}})
        );
    }

    #[test]
    fn applies_take_shared_fields_refuse_conflicts_and_drop_what_the_applier_left() {
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                            "spec": {"replicas": 2, "containers": [{"name": "web", "image": "nginx:1"}]}});
        // Created by apply.
        let (object, entries) =
            with(|s| apply(&json!({}), &config, &[], &writer("kubectl"), false, &FieldSet::new(), s)).unwrap();
        assert_eq!(object, config);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].operation, Operation::Apply);
        // Another manager changes the replicas (an update): it owns them now.
        let mut scaled = object.clone();
        scaled["spec"]["replicas"] = json!(5);
        let entries =
            with(|s| update(&object, &scaled, &entries, &writer("kube-controller-manager"), &FieldSet::new(), s));
        let updater = entries.iter().find(|e| e.manager == "kube-controller-manager").unwrap();
        assert_eq!(texts(&updater.fields), [".spec.replicas"]);
        // Applying the old replicas again conflicts with it, in Kubernetes' words.
        let conflicts =
            with(|s| apply(&scaled, &config, &entries, &writer("kubectl"), false, &FieldSet::new(), s)).unwrap_err();
        let (message, _) = crate::managed_fields::conflict_status(&conflicts);
        assert_eq!(
            message,
            r#"Apply failed with 1 conflict: conflict with "kube-controller-manager" using apps/v1: .spec.replicas"#
        );
        // The same value is no conflict: the field is shared.
        let mut same = config.clone();
        same["spec"]["replicas"] = json!(5);
        let (unchanged, shared) =
            with(|s| apply(&scaled, &same, &entries, &writer("kubectl"), false, &FieldSet::new(), s)).unwrap();
        assert_eq!(unchanged, scaled);
        assert!(shared.iter().all(|e| texts(&e.fields).contains(&".spec.replicas".to_string())), "{shared:?}");
        // Forced, the field is the applier's alone.
        let (forced, entries) =
            with(|s| apply(&scaled, &config, &entries, &writer("kubectl"), true, &FieldSet::new(), s)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        assert!(entries.iter().all(|e| e.manager == "kubectl"), "{entries:?}");
        // A field the applier drops, nobody else owning it, goes; the list item too.
        let smaller = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                             "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let (dropped, _) =
            with(|s| apply(&forced, &smaller, &entries, &writer("kubectl"), false, &FieldSet::new(), s)).unwrap();
        assert!(dropped["spec"].get("replicas").is_none(), "{dropped}");
    }

    #[test]
    fn a_first_apply_to_an_untracked_object_can_conflict_with_what_it_holds() {
        let live = json!({"spec": {"replicas": 1}});
        let config = json!({"spec": {"replicas": 2}});
        let conflicts =
            with(|s| apply(&live, &config, &[], &writer("kubectl"), false, &FieldSet::new(), s)).unwrap_err();
        assert_eq!(conflicts[0].0.manager, "before-first-apply");
    }

    #[test]
    fn kubectl_takes_over_what_its_client_side_apply_set_and_keeps_the_annotation_in_step() {
        let first = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let mut live = first.clone();
        live["metadata"]["annotations"] = json!({crate::plan::state::LAST_APPLIED: last_applied_text(&first)});
        let entries =
            with(|s| update(&json!({}), &live, &[], &writer("kubectl-client-side-apply"), &FieldSet::new(), s));
        let mut config = first.clone();
        config["spec"]["replicas"] = json!(3);
        // Another applier conflicts as ever.
        let conflicts =
            with(|s| apply(&live, &config, &entries, &writer("flux"), false, &FieldSet::new(), s)).unwrap_err();
        assert_eq!(conflicts[0].0.manager, "kubectl-client-side-apply");
        // kubectl takes the fields its last-applied configuration set.
        let (result, after) =
            with(|s| apply(&live, &config, &entries, &writer("kubectl"), false, &FieldSet::new(), s)).unwrap();
        assert_eq!(result["spec"]["replicas"], 3);
        let annotation = result["metadata"]["annotations"][crate::plan::state::LAST_APPLIED].as_str().unwrap();
        assert_eq!(annotation, last_applied_text(&config));
        assert!(annotation.ends_with("}\n") && annotation.starts_with(r#"{"apiVersion":"apps/v1","kind""#));
        let kubectl = after.iter().find(|e| e.manager == "kubectl").unwrap();
        assert!(texts(&kubectl.fields).contains(&".spec.replicas".to_string()));
        // Not a field someone changed since: that conflict stands.
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(5);
        let entries = with(|s| update(&live, &edited, &entries, &writer("kubectl-edit"), &FieldSet::new(), s));
        let conflicts =
            with(|s| apply(&edited, &config, &entries, &writer("kubectl"), false, &FieldSet::new(), s)).unwrap_err();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].0.manager, "kubectl-edit");
    }

    #[test]
    fn every_repeated_item_of_a_keyed_list_or_set_is_an_error() {
        let config = json!({"metadata": {"finalizers": ["f", "f"]}, "spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "a"}, {"name": "a"},
            {"name": "b", "ports": []}],
            "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "TCP"}]}});
        assert_eq!(
            with(|s| duplicate_entries(&config, s)),
            [
                r#".metadata.finalizers: duplicate entries for key [="f"]"#,
                r#".spec.containers: duplicate entries for key [name="a"]"#,
                r#".spec.containers: duplicate entries for key [name="a"]"#,
                r#".spec.ports: duplicate entries for key [containerPort=80,protocol="TCP"]"#
            ]
        );
    }

    #[test]
    fn a_key_left_out_takes_its_default_so_a_reapply_matches_the_stored_item() {
        let stored = json!({"spec": {"ports": [{"containerPort": 80, "protocol": "TCP"}]}});
        let config = json!({"spec": {"ports": [{"containerPort": 80}]}});
        assert_eq!(with(|s| merge(&stored, &config, s)), stored);
        let set = with(|s| field_set(&config, s));
        assert_eq!(
            texts(&set),
            [
                r#".spec.ports[containerPort=80,protocol="TCP"]"#,
                r#".spec.ports[containerPort=80,protocol="TCP"].containerPort"#
            ]
        );
    }

    #[test]
    fn dropping_the_last_label_keeps_the_metadata_and_an_unowned_item_goes_whole() {
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "1"}},
                            "spec": {"containers": [{"name": "web", "image": "x"}, {"name": "side", "image": "y"}]}});
        let (object, entries) =
            with(|s| apply(&json!({}), &config, &[], &writer("kubectl"), false, &FieldSet::new(), s)).unwrap();
        // Someone else sets the sidecar's image: an Update owning a field inside the item.
        let mut changed = object.clone();
        changed["spec"]["containers"][1]["image"] = json!("z");
        let entries = with(|s| update(&object, &changed, &entries, &writer("kubectl-set"), &FieldSet::new(), s));
        let smaller = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                             "spec": {"containers": [{"name": "web", "image": "x"}]}});
        let (result, _) =
            with(|s| apply(&changed, &smaller, &entries, &writer("kubectl"), false, &FieldSet::new(), s)).unwrap();
        assert_eq!(result["metadata"], json!({"name": "web"}));
        assert_eq!(result["spec"]["containers"], json!([{"name": "web", "image": "x"}]));
    }
}
