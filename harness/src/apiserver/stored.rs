//! Reading the stored form without decoding it whole. A list of 100,000 pods decoded
//! each pod into a `Value` and encoded it again only to write its `resourceVersion` in
//! (the store keeps the revision apart, as etcd does): most of a list's time, and lists
//! of every pod are what a watcher that fell behind, a test's `converged` and kubectl
//! ask for. Here a list item is the stored bytes with the revision spliced into their
//! `metadata` ([`revised`]), and a selector reads only the few fields it compares
//! ([`Wanted`], [`peek`]).

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Writes `bytes` (a stored object: compact JSON, as the server writes it) into `out`
/// with `"resourceVersion":"<revision>"` first in its top-level `metadata`. `false`, with
/// nothing written, when the bytes are not an object with a `metadata` object, an
/// `apiVersion` and a `kind` at the top: the caller decodes those the long way.
pub fn revised(bytes: &[u8], revision: u64, out: &mut Vec<u8>) -> bool {
    let Some(at) = revision_at(bytes) else { return false };
    out.reserve(bytes.len() + 40);
    out.extend_from_slice(&bytes[..at]);
    write_revision(bytes, at, revision, out);
    out.extend_from_slice(&bytes[at..]);
    true
}

/// Where a stored object takes its revision: just past the `{` of its top-level
/// `metadata`. `None` when the bytes are not an object with a `metadata` object, an
/// `apiVersion` and a `kind` at the top, or not compact JSON as the server writes it
/// (`{ }`), which is left to a decode rather than spliced into something invalid.
pub fn revision_at(bytes: &[u8]) -> Option<usize> {
    let at = metadata_start(bytes)?;
    (!bytes.get(at).is_some_and(u8::is_ascii_whitespace)).then_some(at)
}

/// Writes onto `out` what goes into `bytes` at `revision_at`: the field, and the comma
/// before the fields that follow it.
pub fn write_revision(bytes: &[u8], at: usize, revision: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"resourceVersion\":\"");
    // Written in place: a `Vec` takes formatted text without failing.
    let _ = std::io::Write::write_fmt(out, format_args!("{revision}"));
    out.push(b'"');
    if bytes.get(at) != Some(&b'}') {
        out.push(b',');
    }
}

/// Just past the `{` of the top-level `metadata` object, when the top level also has
/// `apiVersion` and `kind` strings. A scan that follows strings and nesting, so a
/// `"metadata":{` inside a value or a deeper object is never taken for it.
fn metadata_start(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut i) = (0usize, 0usize);
    let (mut metadata, mut api_version, mut kind) = (None, false, false);
    // At depth 1, whether the next string is a key (after `{` or `,`) or a value.
    let mut key_next = false;
    let mut key: &[u8] = b"";
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i)?;
                if depth == 1 {
                    if key_next {
                        key = &bytes[i + 1..end];
                        key_next = false;
                    } else {
                        // A string value at the top level.
                        api_version |= key == b"apiVersion";
                        kind |= key == b"kind";
                    }
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 1 {
                    key_next = true;
                } else if depth == 2 && key == b"metadata" && bytes[i] == b'{' && metadata.is_none() {
                    metadata = Some(i + 1);
                }
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (api_version && kind).then_some(metadata).flatten();
                }
            }
            b',' if depth == 1 => key_next = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote closing the string opened at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The parts of an object a reader needs, as a tree of field names; a leaf takes the
/// whole value there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wanted {
    fields: Vec<(String, Wanted)>,
}

impl Wanted {
    /// What the JSON pointers (`/metadata/labels`, `/status/phase`) reach.
    pub fn pointers<'a>(pointers: impl IntoIterator<Item = &'a str>) -> Wanted {
        let mut wanted = Wanted::default();
        for pointer in pointers {
            let mut node = &mut wanted;
            for part in pointer.split('/').filter(|p| !p.is_empty()) {
                let at = match node.fields.iter().position(|(name, _)| name == part) {
                    Some(at) => at,
                    None => {
                        node.fields.push((part.to_string(), Wanted::default()));
                        node.fields.len() - 1
                    }
                };
                node = &mut node.fields[at].1;
            }
        }
        wanted
    }

    fn is_leaf(&self) -> bool {
        self.fields.is_empty()
    }
}

/// The object in `bytes` with only what `wanted` names decoded (the rest is skipped
/// without being built): what a selector compares, at a fraction of a whole decode.
pub fn peek(bytes: &[u8], wanted: &Wanted) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Pruned(wanted).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

struct Pruned<'w>(&'w Wanted);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.0.is_leaf() {
            serde::Deserialize::deserialize(deserializer)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(found) = map.next_key_seed(Key(&self.0.fields))? {
            match found {
                Some(at) => {
                    let (name, wanted) = &self.0.fields[at];
                    kept.insert(name.clone(), map.next_value_seed(Pruned(wanted))?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    // Where a map was wanted and something else stands, it reads as absent.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A map key, read as which wanted field it is (none: skipped), without allocating.
struct Key<'w>(&'w [(String, Wanted)]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(name, _)| name == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn spliced(object: &Value, revision: u64) -> Option<Value> {
        let mut out = Vec::new();
        revised(&serde_json::to_vec(object).unwrap(), revision, &mut out).then(|| serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn the_revision_goes_into_the_top_level_metadata_only() {
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Thing",
            // A decoy: an object called metadata deeper down, and a string saying it.
            "data": {"metadata": {"name": "inner"}, "text": "\"metadata\":{\"x\":1}"},
            "metadata": {"name": "thing", "labels": {"a": "b"}},
        });
        let mut expected = object.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(spliced(&object, 42), Some(expected));
        let empty = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
        assert_eq!(
            spliced(&empty, 7),
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"resourceVersion": "7"}}))
        );
    }

    #[test]
    fn what_it_cannot_splice_it_leaves_to_a_decode() {
        for object in [
            json!({"kind": "ConfigMap", "metadata": {}}),
            json!({"apiVersion": "v1", "metadata": {}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": []}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"apiVersion": "v1", "kind": "x"}, "metadata": null}),
            json!(["apiVersion", "kind", {"metadata": {}}]),
        ] {
            assert_eq!(spliced(&object, 1), None, "{object}");
        }
        let mut out = Vec::new();
        assert!(!revised(b"{\"apiVersion\":\"v1\",\"kind\":\"x\",\"metadata\":{", 1, &mut out));
        assert!(!revised(b"{\"apiVersion\":\"v1\",\"kind\":\"x\",\"metadata\":{ }}", 1, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn a_peek_holds_what_is_wanted_and_nothing_else() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}], "hostNetwork": true},
            "status": ["not", "a", "map"],
        });
        let wanted = Wanted::pointers([
            "/metadata/name",
            "/metadata/labels",
            "/spec/nodeName",
            "/spec/hostNetwork",
            "/status/phase",
        ]);
        let peeked = peek(&serde_json::to_vec(&pod).unwrap(), &wanted).unwrap();
        assert_eq!(
            peeked,
            json!({"metadata": {"name": "p", "labels": {"app": "web"}},
                   "spec": {"nodeName": "node-1", "hostNetwork": true}, "status": null})
        );
        assert!(peek(b"{\"metadata\":", &wanted).is_err(), "a broken object is an error, not a guess");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z\"\\\\{}:,\\[\\] ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("(metadata|kind|apiVersion|[a-z\"{}]{1,6})", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Splicing the revision into the bytes gives what decoding, setting it and
        /// encoding gives, whatever else the object holds.
        #[test]
        fn splicing_is_decoding_and_setting(
            rest in prop::collection::btree_map("[a-z\"{}]{1,6}", json_value(), 0..4),
            metadata in prop::collection::btree_map("(name|[a-z\"{}]{1,6})", json_value(), 0..4),
            revision in any::<u64>(),
        ) {
            let mut object: Map<String, Value> = rest.into_iter().collect();
            object.insert("apiVersion".into(), json!("v1"));
            object.insert("kind".into(), json!("Thing"));
            object.insert("metadata".into(), Value::Object(metadata.into_iter().collect()));
            let object = Value::Object(object);
            let mut expected = object.clone();
            expected["metadata"]["resourceVersion"] = json!(revision.to_string());
            prop_assert_eq!(spliced(&object, revision), Some(expected));
        }

        /// A peek reads what a whole decode reads at each wanted pointer.
        #[test]
        fn a_peek_agrees_with_a_whole_decode(object in json_value()) {
            let pointers = ["/metadata/name", "/metadata/labels", "/kind", "/a/b"];
            let peeked = peek(&serde_json::to_vec(&object).unwrap(), &Wanted::pointers(pointers)).unwrap();
            for pointer in pointers {
                let whole = object.pointer(pointer).filter(|v| !v.is_null());
                prop_assert_eq!(peeked.pointer(pointer).filter(|v| !v.is_null()), whole, "{}", pointer);
            }
        }
    }
}
