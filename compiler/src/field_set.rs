//! Sets of an object's fields, as server-side apply tracks who owns what
//! (structured-merge-diff's `fieldpath.Set`): a tree of path elements (a field name, a
//! list item known by its keys, a set item known by its value, a list index) whose
//! members are the paths owned. It is written in `metadata.managedFields[].fieldsV1` in
//! the "V1" format (`{"f:spec":{"f:replicas":{}}}`, `k:{"name":"web"}`, `v:"x"`, `i:0`,
//! and `.` for a path owned that also has owned children), and conflicts name its paths
//! as Kubernetes prints them (`.spec.template.spec.containers[name="web"].image`).
//!
//! This module is the set alone: reading and writing it, the set operations the field
//! manager needs, and its paths' text. Which paths an object's fields make, and the
//! merge of an applied configuration, are issue 21's next part.

use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
pub enum PathElement {
    /// A field of a struct or a key of a map: `f:<name>`.
    Field(String),
    /// An item of an associative list (`x-kubernetes-list-type: map`), by its key
    /// fields sorted by name: `k:{"containerPort":80,"protocol":"TCP"}`.
    Key(Vec<(String, Value)>),
    /// An item of a set (`x-kubernetes-list-type: set`), by its value: `v:"x"`.
    Value(Value),
    /// An item of a list known by position only: `i:0`.
    Index(usize),
}

impl Eq for PathElement {}

/// Values in structured-merge-diff's order: by type (null, booleans, numbers, strings,
/// lists, maps), then within the type.
fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                match compare_values(x, y) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                match kx.cmp(ky).then_with(|| compare_values(vx, vy)) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Ord for PathElement {
    /// Field names, then keys, then values, then indexes (`PathElement.Compare`).
    fn cmp(&self, other: &Self) -> Ordering {
        fn rank(element: &PathElement) -> u8 {
            match element {
                PathElement::Field(_) => 0,
                PathElement::Key(_) => 1,
                PathElement::Value(_) => 2,
                PathElement::Index(_) => 3,
            }
        }
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((na, va), (nb, vb)) in a.iter().zip(b) {
                    match na.cmp(nb).then_with(|| compare_values(va, vb)) {
                        Ordering::Equal => {}
                        other => return other,
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Go's `%q` of a string (what conflict paths quote values with).
fn go_quoted(value: &Value) -> String {
    match value {
        Value::String(text) => crate::field_error::go_quote(text),
        other => other.to_string(),
    }
}

impl PathElement {
    /// The element as a key of the V1 format.
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let map: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(map))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// A key of the V1 format as an element.
    fn decode(text: &str) -> Result<PathElement, FieldSetError> {
        let bad = || FieldSetError(format!("unknown path element {text:?}"));
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(fields)) => {
                    let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok(PathElement::Key(fields))
                }
                _ => Err(bad()),
            },
            "v" => serde_json::from_str(rest).map(PathElement::Value).map_err(|_| bad()),
            "i" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// The element in a path's text, as conflicts print it (`fieldpath.Path.String`).
    fn text(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> =
                    fields.iter().map(|(name, value)| format!("{name}={}", go_quoted(value))).collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(value) => format!("[={}]", go_quoted(value)),
            PathElement::Index(index) => format!("[{index}]"),
        }
    }
}

/// A path from an object's root.
pub type Path = Vec<PathElement>;

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="web"].image`.
pub fn path_text(path: &[PathElement]) -> String {
    path.iter().map(PathElement::text).collect()
}

/// A `fieldsV1` that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldSetError(pub String);

/// A set of paths: the members here, and the sets below each element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeMap<PathElement, ()>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds a path (an empty path adds nothing: the root is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                if !self.members.contains_key(last) {
                    self.members.insert(last.clone(), ());
                }
            }
            // The element is cloned only when its child set is new.
            [first, rest @ ..] => match self.children.get_mut(first) {
                Some(child) => child.insert(rest),
                None => self.children.entry(first.clone()).or_default().insert(rest),
            },
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains_key(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|child| child.has(rest)),
        }
    }

    /// Whether some member is below `path` (not `path` itself).
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        match path {
            [] => !self.is_empty(),
            [first, rest @ ..] => self.children.get(first).is_some_and(|child| child.has_prefix(rest)),
        }
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        // Members and children merged in element order, a member before its children.
        let mut elements: Vec<&PathElement> = self.members.keys().chain(self.children.keys()).collect();
        elements.sort();
        elements.dedup();
        for element in elements {
            prefix.push(element.clone());
            if self.members.contains_key(element) {
                out.push(prefix.clone());
            }
            if let Some(child) = self.children.get(element) {
                child.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every path of `other` (tree by tree: no path is spelled out).
    pub fn union_with(&mut self, other: &FieldSet) {
        for element in other.members.keys() {
            if !self.members.contains_key(element) {
                self.members.insert(element.clone(), ());
            }
        }
        for (element, child) in &other.children {
            match self.children.get_mut(element) {
                Some(mine) => mine.union_with(child),
                None if !child.is_empty() => {
                    self.children.insert(element.clone(), child.clone());
                }
                None => {}
            }
        }
    }

    /// Takes out the paths of `other` (in place: the cost is `other`'s size).
    pub fn remove_all(&mut self, other: &FieldSet) {
        for element in other.members.keys() {
            self.members.remove(element);
        }
        for (element, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(element) {
                mine.remove_all(theirs);
                if mine.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    /// Takes out the paths of `other` and everything below them (in place).
    pub fn remove_below(&mut self, other: &FieldSet) {
        for element in other.members.keys() {
            self.members.remove(element);
            self.children.remove(element);
        }
        for (element, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(element) {
                mine.remove_below(theirs);
                if mine.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    /// The paths in this set and not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for element in self.members.keys() {
            if !other.members.contains_key(element) {
                out.members.insert(element.clone(), ());
            }
        }
        for (element, child) in &self.children {
            let kept = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !kept.is_empty() {
                out.children.insert(element.clone(), kept);
            }
        }
        out
    }

    /// The paths in this set neither in `other` nor below one of its paths
    /// (`RecursiveDifference`: what reset fields take away).
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for element in self.members.keys() {
            if !other.members.contains_key(element) {
                out.members.insert(element.clone(), ());
            }
        }
        for (element, child) in &self.children {
            // A member of `other` here takes everything below it.
            if other.members.contains_key(element) {
                continue;
            }
            let kept = match other.children.get(element) {
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !kept.is_empty() {
                out.children.insert(element.clone(), kept);
            }
        }
        out
    }

    /// The paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for element in self.members.keys() {
            if other.members.contains_key(element) {
                out.members.insert(element.clone(), ());
            }
        }
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// The set as `fieldsV1`: each element a key, `{}` below a member without children,
    /// `"."` beside the children of a member that has them.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        let mut elements: Vec<&PathElement> = self.members.keys().chain(self.children.keys()).collect();
        elements.sort();
        elements.dedup();
        for element in elements {
            let child = self.children.get(element).filter(|c| !c.is_empty());
            let value = match child {
                Some(child) => {
                    let mut inner = child.to_fields_v1();
                    if self.members.contains_key(element)
                        && let Value::Object(inner) = &mut inner
                    {
                        inner.insert(".".into(), Value::Object(Map::new()));
                    }
                    inner
                }
                None if self.members.contains_key(element) => Value::Object(Map::new()),
                None => continue,
            };
            map.insert(element.encode(), value);
        }
        Value::Object(map)
    }

    /// Reads a `fieldsV1`.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldSetError> {
        let Value::Object(map) = value else {
            return Err(FieldSetError("fieldsV1 must be an object".into()));
        };
        let mut set = FieldSet::new();
        for (key, inner) in map {
            if key == "." {
                continue;
            }
            let element = PathElement::decode(key)?;
            let Value::Object(inner_map) = inner else {
                return Err(FieldSetError(format!("{key:?} must hold an object")));
            };
            // A leaf, or a path marked owned by ".": a member.
            if inner_map.is_empty() || inner_map.contains_key(".") {
                set.members.insert(element.clone(), ());
            }
            let child = FieldSet::from_fields_v1(inner)?;
            if !child.is_empty() {
                set.children.insert(element, child);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn fields_v1_reads_and_writes_back_as_kubernetes_writes_it() {
        let written = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}},
                }}},
                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}},
            },
            "f:metadata2": {"f:finalizers": {"v:\"example.com/f\"": {}}},
            "f:list": {"i:0": {}},
        });
        let set = FieldSet::from_fields_v1(&written).unwrap();
        assert_eq!(set.to_fields_v1(), written);
        assert!(set.has(&[field("spec"), field("replicas")]));
        assert!(set.has(&[field("metadata"), field("labels")]), "a member with children");
        assert!(!set.has(&[field("spec")]), "a parent only");
        let paths: Vec<String> = set.paths().iter().map(|p| path_text(p)).collect();
        assert_eq!(
            paths,
            [
                ".list[0]",
                ".metadata.labels",
                ".metadata.labels.app",
                r#".metadata2.finalizers[="example.com/f"]"#,
                r#".spec.ports[containerPort=80,protocol="TCP"]"#,
                ".spec.replicas",
                r#".spec.template.spec.containers[name="nginx"]"#,
                r#".spec.template.spec.containers[name="nginx"].image"#,
                r#".spec.template.spec.containers[name="nginx"].name"#,
            ]
        );
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    }

    #[test]
    fn elements_sort_fields_then_keys_then_values_then_indexes() {
        let key = |port: i64| PathElement::Key(vec![("containerPort".into(), json!(port))]);
        let mut elements =
            vec![PathElement::Index(0), PathElement::Value(json!("a")), key(8080), key(80), field("z"), field("a")];
        elements.sort();
        assert_eq!(
            elements,
            vec![field("a"), field("z"), key(80), key(8080), PathElement::Value(json!("a")), PathElement::Index(0)]
        );
    }

    #[test]
    fn sets_unite_subtract_and_intersect_by_path() {
        let mut mine = FieldSet::new();
        mine.insert(&[field("spec"), field("replicas")]);
        mine.insert(&[field("spec"), field("paused")]);
        let mut theirs = FieldSet::new();
        theirs.insert(&[field("spec"), field("replicas")]);
        theirs.insert(&[field("data"), field("a")]);
        assert_eq!(mine.intersection(&theirs).paths(), vec![vec![field("spec"), field("replicas")]]);
        assert_eq!(mine.difference(&theirs).paths(), vec![vec![field("spec"), field("paused")]]);
        assert_eq!(mine.union(&theirs).paths().len(), 3);
        assert!(mine.difference(&mine).is_empty());
        assert_eq!(mine.difference(&mine).to_fields_v1(), json!({}));
    }

    fn element() -> impl proptest::strategy::Strategy<Value = PathElement> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-c]{1,2}".prop_map(PathElement::Field),
            (0i64..3, "[x-z]").prop_map(|(port, name)| PathElement::Key(vec![
                ("name".into(), json!(name)),
                ("port".into(), json!(port)),
            ])),
            "[a-b]".prop_map(|v| PathElement::Value(json!(v))),
            (0usize..3).prop_map(PathElement::Index),
        ]
    }

    proptest::proptest! {
        /// Writing a set as fieldsV1 and reading it back gives the same set, and the
        /// same paths.
        #[test]
        fn fields_v1_reads_back_what_it_wrote(paths in proptest::collection::vec(proptest::collection::vec(element(), 1..4), 0..12)) {
            let mut set = FieldSet::new();
            for path in &paths {
                set.insert(path);
            }
            let read = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
            proptest::prop_assert_eq!(read.paths(), set.paths());
            for path in &paths {
                proptest::prop_assert!(read.has(path));
            }
        }

        /// The set operations, done tree by tree, are the operations on the sets of
        /// paths, and their results compare equal to the same sets built path by path.
        #[test]
        fn tree_operations_are_the_operations_on_paths(
            left in proptest::collection::vec(proptest::collection::vec(element(), 1..4), 0..10),
            right in proptest::collection::vec(proptest::collection::vec(element(), 1..4), 0..10),
        ) {
            let build = |paths: &[Path]| {
                let mut set = FieldSet::new();
                for path in paths {
                    set.insert(path);
                }
                set
            };
            let (a, b) = (build(&left), build(&right));
            let a_paths = a.paths();
            let in_b = |p: &Path| b.has(p);
            let below_b = |p: &Path| (1..=p.len()).any(|end| b.has(&p[..end]));
            let expected_union = build(&[a_paths.clone(), b.paths()].concat());
            let expected_difference = build(&a_paths.iter().filter(|p| !in_b(p)).cloned().collect::<Vec<_>>());
            let expected_intersection = build(&a_paths.iter().filter(|p| in_b(p)).cloned().collect::<Vec<_>>());
            let expected_recursive = build(&a_paths.iter().filter(|p| !below_b(p)).cloned().collect::<Vec<_>>());
            proptest::prop_assert_eq!(a.union(&b), expected_union);
            proptest::prop_assert_eq!(a.difference(&b), expected_difference.clone());
            proptest::prop_assert_eq!(a.intersection(&b), expected_intersection);
            proptest::prop_assert_eq!(a.recursive_difference(&b), expected_recursive.clone());
            let mut removed = a.clone();
            removed.remove_all(&b);
            proptest::prop_assert_eq!(removed, expected_difference);
            let mut below = a.clone();
            below.remove_below(&b);
            proptest::prop_assert_eq!(below, expected_recursive);
        }
    }
}
