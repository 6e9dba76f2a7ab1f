//! What admission costs per custom object, without and with CEL rules on its kind (issue
//! 20: 5 rules should add under 20%), and per Pod and Deployment (what a control plane
//! admits most: every pod a ReplicaSet makes), on one thread and without HTTP:
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
    for (kind, make) in [("Pod", pod as fn(usize) -> Value), ("Deployment", deployment)] {
        let objects: Vec<Value> = (0..count).map(make).collect();
        admission.admit(&objects[0]).expect("admitted");
        let started = Instant::now();
        for object in &objects {
            admission.admit(object).expect("admitted");
        }
        let elapsed = started.elapsed();
        println!(
            "admit ({kind}) {count} in {:.3} s = {:.0}/s, {:.1} µs each",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / count as f64
        );
    }
}

/// A pod as a ReplicaSet makes it: two containers with ports, probes, resources, a
/// volume, tolerations.
fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-{i}"), "namespace": "default", "labels": {"app": "web"}},
        "spec": pod_spec()})
}

fn deployment(i: usize) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{i}"), "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()}}})
}

fn pod_spec() -> Value {
    let container = |name: &str, port: u16| {
        json!({"name": name, "image": "example/web:1.2.3", "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"}},
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]})
    };
    json!({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
        "containers": [container("web", 8080), container("sidecar", 9090)],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "tolerations": [{"key": "example.com/spot", "operator": "Exists", "effect": "NoSchedule"}]})
}
