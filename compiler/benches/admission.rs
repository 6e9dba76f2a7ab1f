//! What admission costs per custom object, without and with CEL rules on its kind (issue
//! 20: 5 rules should add under 20%), on one thread and without HTTP:
//! `cargo bench -p kubeyard-compiler --bench admission`.

use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::schema::CatalogOptions;
use serde_json::{Value, json};
use std::time::Instant;

const RULES: [&str; 5] = [
    r#"{"rule":"self.size >= 1","message":"size must be positive"}"#,
    r#"{"rule":"self.size <= 1000"}"#,
    r#"{"rule":"self.color in ['red','green','blue']"}"#,
    r#"{"rule":"self.name.startsWith('g')","fieldPath":".name"}"#,
    r#"{"rule":"self.tags.all(t, t.size() <= 20)"}"#,
];

fn crd(n: usize, rules: usize) -> Value {
    let validations: Vec<Value> = RULES.iter().take(rules).map(|r| serde_json::from_str(r).unwrap()).collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadget{n}s.bench.example.com")},
        "spec": {"group": "bench.example.com", "scope": "Namespaced",
            "names": {"plural": format!("gadget{n}s"), "singular": format!("gadget{n}"), "kind": format!("Gadget{n}")},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": validations,
                    "properties": {"size": {"type": "integer"}, "color": {"type": "string"},
                        "name": {"type": "string", "maxLength": 63},
                        "tags": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 32}}}}}}}}]}})
}

fn gadget(n: usize, i: usize) -> Value {
    json!({"apiVersion": "bench.example.com/v1", "kind": format!("Gadget{n}"),
        "metadata": {"name": format!("g-{i}"), "namespace": "default", "labels": {"app": "bench"}},
        "spec": {"size": 3, "color": "red", "name": "gear", "tags": ["a", "b"]}})
}

fn main() {
    let admission = Admission::new(CatalogOptions::default()).expect("the schemas load");
    let count = 50_000;
    let mut rates = Vec::new();
    for (n, rules) in [(0, 0), (1, 5)] {
        admission.register_crd(&crd(n, rules)).expect("the CRD registers");
        let objects: Vec<Value> = (0..count).map(|i| gadget(n, i)).collect();
        // Warm the thread's CEL environment and the kind's compiled schema.
        admission.admit(&objects[0]).expect("admitted");
        let started = Instant::now();
        for object in &objects {
            admission.admit(object).expect("admitted");
        }
        let elapsed = started.elapsed();
        let rate = count as f64 / elapsed.as_secs_f64();
        rates.push(rate);
        println!(
            "admit (custom object, {rules} CEL rules) {count} in {:.3} s = {rate:.0}/s, {:.1} µs each",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / count as f64
        );
    }
    println!(
        "  5 CEL rules add {:.0}% to a custom object's admission time (target < 20% of a whole create)",
        (rates[0] / rates[1] - 1.0) * 100.0
    );
}
