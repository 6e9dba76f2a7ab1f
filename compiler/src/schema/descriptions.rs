//! The Kubernetes API's prose: each definition's and each field's `description`, as the
//! schemas of a version give it. The schemas kubeyard validates with carry none (they are
//! most of their size and validation never reads them); the API server puts them back
//! into its OpenAPI documents, which is what `kubectl explain` prints.
//!
//! `schemas/descriptions.json` holds every shipped version at once: each text once, and
//! for each definition and field the minor versions from which a text applies.

use super::KubernetesVersion;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::Value;
use std::sync::OnceLock;

#[derive(Default, Deserialize)]
struct Descriptions {
    texts: Vec<String>,
    /// Definition name to field (`""` for the definition itself) to `(from minor, text)`.
    definitions: FxHashMap<String, FxHashMap<String, Vec<(u32, usize)>>>,
}

fn descriptions() -> &'static Descriptions {
    static PARSED: OnceLock<Descriptions> = OnceLock::new();
    // Parsed on first use only: most commands never show prose. The file is checked at
    // build time (see the tests), so the fallback is for a broken re-import, which then
    // shows no prose rather than stopping the server.
    PARSED.get_or_init(|| serde_json::from_str(super::embedded::DESCRIPTIONS).unwrap_or_default())
}

/// The prose `version` gives a definition (`field` empty) or one of its fields.
pub fn description(version: KubernetesVersion, definition: &str, field: &str) -> Option<&'static str> {
    let all = descriptions();
    let changes = all.definitions.get(definition)?.get(field)?;
    let (_, text) = changes.iter().rev().find(|(from, _)| *from <= version.minor)?;
    all.texts.get(*text).map(String::as_str)
}

/// Puts the prose back into a definition of `version`: on it, and on its properties.
pub fn describe(version: KubernetesVersion, name: &str, definition: &mut Value) {
    let Some(map) = definition.as_object_mut() else { return };
    if let Some(text) = description(version, name, "") {
        map.insert("description".into(), Value::String(text.to_string()));
    }
    let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (field, schema) in properties.iter_mut() {
        if let (Some(text), Some(schema)) = (description(version, name, field), schema.as_object_mut()) {
            schema.insert("description".into(), Value::String(text.to_string()));
        }
        // The enum values a live server's documents list (`kubectl explain`'s `enum:`).
        let values = super::enums::values(name, field);
        if values.is_empty() {
            continue;
        }
        let target = if schema.get("items").is_some() { &mut schema["items"] } else { schema };
        if let Some(target) = target.as_object_mut() {
            target.insert("enum".into(), values.iter().map(|v| Value::String(v.to_string())).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(minor: u32) -> KubernetesVersion {
        KubernetesVersion { minor }
    }

    #[test]
    fn the_shipped_file_parses_and_covers_every_version() {
        let all: Descriptions = serde_json::from_str(super::super::embedded::DESCRIPTIONS).expect("descriptions parse");
        assert!(all.texts.len() > 1000, "{} texts", all.texts.len());
        for shipped in KubernetesVersion::shipped() {
            assert_eq!(
                description(shipped, "io.k8s.api.core.v1.Pod", ""),
                Some(
                    "Pod is a collection of containers that can run on a host. This resource is created by clients and scheduled onto hosts."
                ),
                "1.{}",
                shipped.minor
            );
        }
    }

    #[test]
    fn a_field_reads_as_its_version_words_it() {
        // dnsPolicy's prose changed in 1.27; each version reads its own.
        let before = description(version(26), "io.k8s.api.core.v1.PodSpec", "dnsPolicy").expect("1.26 prose");
        let after = description(version(32), "io.k8s.api.core.v1.PodSpec", "dnsPolicy").expect("1.32 prose");
        assert_ne!(before, after);
        assert!(after.starts_with("Set DNS policy for the pod."), "{after}");
        // A field newer than the version has no prose in it.
        assert_eq!(description(version(32), "io.k8s.api.core.v1.PodSpec", "evictionResponders"), None);
        assert_eq!(description(version(32), "io.k8s.api.core.v1.NoSuchThing", ""), None);
    }

    #[test]
    fn describe_puts_prose_on_the_definition_and_its_fields() {
        let mut definition = serde_json::json!({
            "type": "object",
            "properties": {"restartPolicy": {"type": "string"}, "notAField": {"type": "string"}}
        });
        describe(version(32), "io.k8s.api.core.v1.PodSpec", &mut definition);
        assert_eq!(definition["description"], "PodSpec is a description of a pod.");
        let restart = definition["properties"]["restartPolicy"]["description"].as_str().expect("prose");
        assert!(restart.starts_with("Restart policy for all containers within the pod."), "{restart}");
        assert!(definition["properties"]["notAField"].get("description").is_none());
    }
}
