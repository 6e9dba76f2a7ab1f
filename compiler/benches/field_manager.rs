//! What the field manager costs a create (its creator's managedFields entry: the object
//! as decoded, its field set, the entry encoded), next to admitting the object, on one
//! thread and without HTTP: `cargo bench -p kubeyard-compiler --bench field_manager`.

use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::field_set::FieldSet;
use kubeyard_compiler::managed_fields::Entry;
use kubeyard_compiler::object::GroupVersionKind;
use kubeyard_compiler::schema::CatalogOptions;
use kubeyard_compiler::structured_merge::{self, Write};
use serde_json::{Value, json};
use std::time::Instant;

fn config_map(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i}"), "namespace": "default", "labels": {"app": "bench", "tier": "web"}},
        "data": {"config.yaml": "replicas: 3\nimage: example/app:1.2.3\n", "mode": "production"}})
}

fn deployment(i: usize) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{i}"), "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                 "env": [{"name": "MODE", "value": "production"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}})
}

fn main() {
    let admission = Admission::new(CatalogOptions::default()).expect("the schemas load");
    let count = 50_000;
    for (what, make) in [("ConfigMap", config_map as fn(usize) -> Value), ("Deployment", deployment)] {
        let objects: Vec<Value> = (0..count).map(make).collect();
        let gvk = GroupVersionKind::from_api_version(
            objects[0]["apiVersion"].as_str().unwrap_or_default(),
            objects[0]["kind"].as_str().unwrap_or_default(),
        );
        admission.admit(&objects[0]).expect("admitted");
        let started = Instant::now();
        for object in &objects {
            admission.admit(object).expect("admitted");
        }
        let admit = started.elapsed().as_secs_f64() * 1e6 / count as f64;
        let writer =
            Write { manager: "bench", api_version: &gvk.api_version(), subresource: None, now: "2026-12-06T12:00:00Z" };
        let mut ignored = FieldSet::new();
        ignored.insert(&[kubeyard_compiler::field_set::PathElement::Field("status".into())]);
        let per = |started: Instant| started.elapsed().as_secs_f64() * 1e6 / count as f64;
        // In three steps, each timed: decoding (defaults), ownership, encoding.
        let started = Instant::now();
        let decoded: Vec<Value> = objects
            .iter()
            .map(|object| {
                let mut decoded = object.clone();
                admission.decode(&gvk, &mut decoded);
                decoded
            })
            .collect();
        let decode = per(started);
        let started = Instant::now();
        let owned: Vec<Vec<Entry>> = decoded
            .iter()
            .map(|decoded| {
                admission.catalog().with_merge_schema(&gvk, |schema| {
                    structured_merge::update(&json!({}), decoded, &[], &writer, &ignored, schema)
                })
            })
            .collect();
        let own = per(started);
        let started = Instant::now();
        let mut bytes = 0;
        for entries in &owned {
            let encoded: Vec<Value> = entries.iter().map(Entry::to_json).collect();
            bytes += Value::Array(encoded).to_string().len();
        }
        let encode = per(started);
        let track = decode + own + encode;
        println!(
            "{what}: admit {admit:.1} µs; the creator's managedFields {track:.1} µs ({:.0}% of admission: decode \
             {decode:.1}, ownership {own:.1}, encode {encode:.1}), {} bytes",
            100.0 * track / admit,
            bytes / count
        );
    }
}
