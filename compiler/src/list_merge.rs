//! How lists merge: the one reading of the schemas' list markers, for every writer that
//! merges or pairs the items of two lists: the strategic merge patch the API server
//! applies (`patch`), kubectl apply's three-way merge the plan predicts and the plan's
//! field diff (`plan::merge`), and tests' assertions (`assertion::matching`).
//!
//! Two sets of markers say how a list merges, and which counts depends on who writes:
//! - a strategic merge patch (kubectl's client-side apply, `kubectl patch`, most
//!   controllers) reads only `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`,
//!   the Go struct tags of the built-in types: a list without them is replaced whole, even
//!   when it is `x-kubernetes-list-type: map` (a container's `resources.claims`);
//! - server-side apply and comparisons of stored objects read `x-kubernetes-list-type`
//!   (`atomic`, `set`, `map` with all of its `x-kubernetes-list-map-keys`: a Service port is
//!   its `port` and `protocol`), falling back to the patch markers where a built-in type
//!   has no list type.
//!
//! Custom resources have no patch markers: kubectl merges them with JSON merge patches,
//! which replace lists whole; that is what `Writer::Strategic` says of them.

use serde_json::Value;
use std::collections::HashMap;

/// Where in the schema a value sits, to read its list markers.
#[derive(Clone, Copy)]
pub struct Schema<'a> {
    pub node: Option<&'a Value>,
    pub definitions: Option<&'a rustc_hash::FxHashMap<String, Value>>,
}

/// Who merges: the markers each reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// A strategic merge patch, and kubectl's client-side apply that sends one.
    Strategic,
    /// Server-side apply, and pairing the items of two stored lists.
    Structural,
}

/// How the items of a list merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind<'a> {
    /// Item by item, each known by the values of these keys.
    Map(Vec<&'a str>),
    /// Scalars, each once: what is wanted is added, the rest kept.
    Set,
    /// Replaced whole.
    Atomic,
}

impl<'a> Schema<'a> {
    pub const NONE: Schema<'static> = Schema { node: None, definitions: None };

    fn resolved(self) -> Option<&'a Value> {
        let node = self.node?;
        Some(crate::normalize::resolve(self.definitions?, node).0)
    }

    pub fn property(self, key: &str) -> Schema<'a> {
        let resolved = self.resolved();
        let child = resolved.and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        Schema { node: child, definitions: self.definitions }
    }

    pub fn items(self) -> Schema<'a> {
        Schema { node: self.resolved().and_then(|s| s.get("items")), definitions: self.definitions }
    }

    fn marker(self, name: &str) -> Option<&'a str> {
        // The markers sit on the property itself, beside its `items`.
        self.node.and_then(|n| n.get(name)).and_then(Value::as_str)
    }

    /// `x-kubernetes-patch-strategy: retainKeys` (a Deployment's `strategy`, a volume's
    /// source): what a configuration leaves out goes, whoever set it.
    pub fn retains_keys(self) -> bool {
        self.marker("x-kubernetes-patch-strategy").is_some_and(|s| s.contains("retainKeys"))
    }

    /// How the list here merges when `writer` writes it.
    pub fn list_kind(self, writer: Writer) -> ListKind<'a> {
        if writer == Writer::Structural {
            match self.marker("x-kubernetes-list-type") {
                Some("map") => {
                    let keys: Vec<&str> = self
                        .node
                        .and_then(|n| n.get("x-kubernetes-list-map-keys"))
                        .and_then(Value::as_array)
                        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        return ListKind::Map(keys);
                    }
                }
                Some("set") => return ListKind::Set,
                Some("atomic") => return ListKind::Atomic,
                _ => {}
            }
        }
        if !self.marker("x-kubernetes-patch-strategy").is_some_and(|s| s.contains("merge")) {
            return ListKind::Atomic;
        }
        match self.marker("x-kubernetes-patch-merge-key") {
            Some(key) => ListKind::Map(vec![key]),
            None => ListKind::Set,
        }
    }

    /// Whether the object here declares `key` as a field (`properties`), rather than
    /// taking it as a map key (`additionalProperties`, or no schema at all).
    pub fn declares(self, key: &str) -> bool {
        self.resolved().and_then(|s| s.get("properties")).is_some_and(|p| p.get(key).is_some())
    }

    /// `x-kubernetes-map-type: atomic` (a LabelSelector): the object here is one value,
    /// owned and replaced whole.
    pub fn is_atomic_map(self) -> bool {
        let atomic = |node: &Value| node.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
        self.node.is_some_and(atomic) || self.resolved().is_some_and(atomic)
    }

    /// The one key an item of the list here is best known by, for messages and for
    /// pairing items a user wrote with those stored (a strategic merge key, else the
    /// first list-map key).
    pub fn item_key(self) -> Option<&'a str> {
        match (self.list_kind(Writer::Strategic), self.list_kind(Writer::Structural)) {
            (ListKind::Map(keys), _) | (_, ListKind::Map(keys)) => keys.first().copied(),
            _ => None,
        }
    }
}

/// An item's identity in a keyed list: its key values, and which occurrence of them it
/// is, so the n-th item with a key pairs with the n-th (env names may repeat).
pub type Identity = (String, usize);

/// The values of `keys` in an item, as one text; `None` when it lacks one.
pub fn key_values(item: &Value, keys: &[&str]) -> Option<String> {
    let mut key = String::new();
    for k in keys {
        let value = item.get(*k)?;
        key.push_str(&value.to_string());
        key.push('\u{0}');
    }
    Some(key)
}

/// Each item's identity, in order.
pub fn identities(list: &[Value], keys: &[&str]) -> Vec<Option<Identity>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    list.iter()
        .map(|item| {
            let key = key_values(item, keys)?;
            let n = seen.entry(key.clone()).or_default();
            *n += 1;
            Some((key, *n))
        })
        .collect()
}

/// Each item's identity, and where each identity is.
pub fn index(list: &[Value], keys: &[&str]) -> (Vec<Option<Identity>>, HashMap<Identity, usize>) {
    let ids = identities(list, keys);
    let map = ids.iter().enumerate().filter_map(|(i, id)| Some((id.clone()?, i))).collect();
    (ids, map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::GroupVersionKind;
    use crate::schema::{Catalog, CatalogOptions};

    fn pod_spec(catalog: &Catalog) -> Schema<'_> {
        let (node, definitions) =
            catalog.builtin_definition(&GroupVersionKind::new("", "v1", "Pod")).expect("Pod is built in");
        Schema { node: Some(node), definitions: Some(definitions) }.property("spec")
    }

    #[test]
    fn each_writer_reads_its_own_markers() {
        let catalog = Catalog::new(CatalogOptions::default()).unwrap();
        let spec = pod_spec(&catalog);
        let containers = spec.property("containers");
        assert_eq!(containers.list_kind(Writer::Strategic), ListKind::Map(vec!["name"]));
        assert_eq!(containers.list_kind(Writer::Structural), ListKind::Map(vec!["name"]));
        // Container ports: the patch merges by containerPort; the stored list is keyed by
        // the port and its protocol.
        let ports = containers.items().property("ports");
        assert_eq!(ports.list_kind(Writer::Strategic), ListKind::Map(vec!["containerPort"]));
        assert_eq!(ports.list_kind(Writer::Structural), ListKind::Map(vec!["containerPort", "protocol"]));
        assert_eq!(ports.item_key(), Some("containerPort"));
        // `resources.claims` is a list-type map with no patch strategy: kubectl's patch
        // replaces it whole.
        let claims = containers.items().property("resources").property("claims");
        assert_eq!(claims.list_kind(Writer::Strategic), ListKind::Atomic);
        assert_eq!(claims.list_kind(Writer::Structural), ListKind::Map(vec!["name"]));
        assert_eq!(claims.item_key(), Some("name"));
        // Arguments are atomic to everyone.
        let args = containers.items().property("args");
        assert_eq!(args.list_kind(Writer::Strategic), ListKind::Atomic);
        assert_eq!(args.list_kind(Writer::Structural), ListKind::Atomic);
        assert_eq!(Schema::NONE.list_kind(Writer::Strategic), ListKind::Atomic);
    }

    #[test]
    fn repeated_keys_pair_by_occurrence() {
        let list = vec![
            serde_json::json!({"name": "A", "value": "1"}),
            serde_json::json!({"name": "A", "value": "2"}),
            serde_json::json!({"value": "3"}),
        ];
        let (ids, index) = index(&list, &["name"]);
        assert_eq!(ids[0].as_ref().map(|(_, n)| *n), Some(1));
        assert_eq!(ids[1].as_ref().map(|(_, n)| *n), Some(2));
        assert_eq!(ids[2], None);
        assert_eq!(index.len(), 2);
    }
}
