//! From a YAML tree to a Kubernetes object: its type (apiVersion and kind) and identity
//! (namespace and name), or the reason the document is not an object at all.

use crate::source::Span;
use crate::yaml::{Node, Value};
use std::fmt;

/// An API group, version and kind: the key every schema is found by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionKind {
    /// Empty for the core group (`apiVersion: v1`).
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl GroupVersionKind {
    pub fn new(group: impl Into<String>, version: impl Into<String>, kind: impl Into<String>) -> GroupVersionKind {
        GroupVersionKind { group: group.into(), version: version.into(), kind: kind.into() }
    }

    /// Splits an `apiVersion` (`apps/v1`, `v1`) and pairs it with a kind.
    pub fn from_api_version(api_version: &str, kind: &str) -> GroupVersionKind {
        match api_version.split_once('/') {
            Some((group, version)) => GroupVersionKind::new(group, version, kind),
            None => GroupVersionKind::new("", api_version, kind),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Whether the group belongs to Kubernetes itself rather than to an extension.
    pub fn is_builtin_group(&self) -> bool {
        !self.group.contains('.') || self.group.ends_with(".k8s.io")
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.api_version(), self.kind)
    }
}

/// A document that is a Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub gvk: GroupVersionKind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub generate_name: Option<String>,
    /// Where the `kind` value is written: the anchor for object-wide diagnostics.
    pub kind_span: Span,
    pub api_version_span: Span,
    /// Where `metadata.namespace` is written, if it is.
    pub namespace_span: Option<Span>,
}

impl ObjectInfo {
    /// `Kind/namespace/name`, or as much of it as the object has.
    pub fn display_name(&self) -> String {
        let name = self
            .name
            .clone()
            .or_else(|| self.generate_name.as_ref().map(|g| format!("{g}*")))
            .unwrap_or_else(|| "<unnamed>".into());
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.gvk.kind, ns, name),
            None => format!("{}/{}", self.gvk.kind, name),
        }
    }
}

/// Why a document is not a usable Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotAnObject {
    /// The document is a list or a scalar, not a mapping.
    NotAMapping {
        found: &'static str,
        span: Span,
    },
    /// A mapping with neither `apiVersion` nor `kind`: some other YAML file.
    NoTypeMeta {
        span: Span,
    },
    MissingApiVersion {
        kind: Option<String>,
        span: Span,
    },
    MissingKind {
        api_version: Option<String>,
        span: Span,
    },
    /// `apiVersion` or `kind` is present but not a well-formed string.
    Malformed {
        field: &'static str,
        problem: String,
        span: Span,
    },
}

/// What a document holds.
#[derive(Debug)]
pub enum Classified<'a> {
    Object(ObjectInfo),
    /// `apiVersion: v1, kind: List`: each item is an object of its own.
    List {
        info: ObjectInfo,
        items: &'a [Node],
    },
    Invalid(NotAnObject),
}

/// The strings of a JSON list at `pointer` (`/spec/versions`), skipping what is not one;
/// none when there is no list there.
pub fn json_strings(value: &serde_json::Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .map(str::to_string)
        .collect()
}

pub fn classify(root: &Node) -> Classified<'_> {
    let Value::Map(entries) = &root.value else {
        return Classified::Invalid(NotAnObject::NotAMapping { found: root.type_name(), span: root.span });
    };
    let first_line = entries.first().map_or(root.span, |e| e.key.span);
    let api_version = root.entry("apiVersion");
    let kind = root.entry("kind");
    if api_version.is_none() && kind.is_none() {
        return Classified::Invalid(NotAnObject::NoTypeMeta { span: first_line });
    }
    let api_version = match api_version.map(|e| type_meta_string("apiVersion", e)) {
        Some(Err(problem)) => return Classified::Invalid(problem),
        Some(Ok(value)) => Some(value),
        None => None,
    };
    let kind = match kind.map(|e| type_meta_string("kind", e)) {
        Some(Err(problem)) => return Classified::Invalid(problem),
        Some(Ok(value)) => Some(value),
        None => None,
    };
    let (api_version, kind) = match (api_version, kind) {
        (Some(a), Some(k)) => (a, k),
        (None, Some((kind, span))) => {
            return Classified::Invalid(NotAnObject::MissingApiVersion { kind: Some(kind.to_string()), span });
        }
        (Some((api_version, span)), None) => {
            return Classified::Invalid(NotAnObject::MissingKind { api_version: Some(api_version.to_string()), span });
        }
        (None, None) => unreachable!("handled above"),
    };
    if let Some(problem) = api_version_problem(api_version.0) {
        return Classified::Invalid(NotAnObject::Malformed { field: "apiVersion", problem, span: api_version.1 });
    }
    let metadata = root.get("metadata");
    let meta_string = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Node::as_str).map(str::to_string);
    let info = ObjectInfo {
        gvk: GroupVersionKind::from_api_version(api_version.0, kind.0),
        namespace: meta_string("namespace"),
        name: meta_string("name"),
        generate_name: meta_string("generateName"),
        kind_span: kind.1,
        api_version_span: api_version.1,
        namespace_span: metadata.and_then(|m| m.get("namespace")).map(|n| n.span),
    };
    if info.gvk.group.is_empty()
        && info.gvk.version == "v1"
        && info.gvk.kind == "List"
        && let Some(items) = root.get("items").and_then(Node::as_seq)
    {
        return Classified::List { info, items };
    }
    Classified::Object(info)
}

fn type_meta_string<'a>(field: &'static str, entry: &'a crate::yaml::Entry) -> Result<(&'a str, Span), NotAnObject> {
    match &entry.value.value {
        Value::String(s) if !s.trim().is_empty() => Ok((s.as_str(), entry.value.span)),
        Value::String(_) | Value::Null => Err(NotAnObject::Malformed {
            field,
            problem: "is empty".into(),
            span: entry.value.span.join(entry.key.span),
        }),
        _ => Err(NotAnObject::Malformed {
            field,
            problem: format!("must be a string, found {}", entry.value.type_name()),
            span: entry.value.span,
        }),
    }
}

fn api_version_problem(api_version: &str) -> Option<String> {
    if api_version.chars().any(char::is_whitespace) {
        return Some(format!("\"{api_version}\" contains white space"));
    }
    let parts: Vec<&str> = api_version.split('/').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Some(format!("\"{api_version}\" is not of the form `group/version` or `version`"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::yaml::Documents;

    fn with_root<T>(text: &str, f: impl FnOnce(&Node) -> T) -> T {
        let source = SourceFile::new("t.yaml", text).unwrap();
        let doc = Documents::new(&source).next().unwrap().unwrap();
        f(doc.root.as_ref().unwrap())
    }

    #[test]
    fn reads_type_and_identity() {
        with_root("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n", |root| {
            let Classified::Object(info) = classify(root) else { panic!("not an object") };
            assert_eq!(info.gvk, GroupVersionKind::new("apps", "v1", "Deployment"));
            assert_eq!(info.display_name(), "Deployment/shop/web");
        });
    }

    #[test]
    fn tells_why_a_document_is_not_an_object() {
        with_root("- a\n- b\n", |root| {
            assert!(matches!(classify(root), Classified::Invalid(NotAnObject::NotAMapping { found: "array", .. })));
        });
        with_root("cluster_name: test\nseeds: 1\n", |root| {
            assert!(matches!(classify(root), Classified::Invalid(NotAnObject::NoTypeMeta { .. })));
        });
        with_root("kind: Pod\n", |root| {
            assert!(matches!(classify(root), Classified::Invalid(NotAnObject::MissingApiVersion { .. })));
        });
        with_root("apiVersion: v1\nkind: 3\n", |root| {
            assert!(matches!(classify(root), Classified::Invalid(NotAnObject::Malformed { field: "kind", .. })));
        });
        with_root("apiVersion: apps/v1/x\nkind: Pod\n", |root| {
            assert!(matches!(classify(root), Classified::Invalid(NotAnObject::Malformed { field: "apiVersion", .. })));
        });
    }

    #[test]
    fn recognises_lists() {
        with_root("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod}\n", |root| {
            let Classified::List { items, .. } = classify(root) else { panic!("not a list") };
            assert_eq!(items.len(), 1);
        });
    }
}
