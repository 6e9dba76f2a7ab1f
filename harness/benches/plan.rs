//! Planning at scale, end to end: 10,000 desired objects against a state of 10,000, of
//! which 10% drifted (a label applied before and no longer in the manifests).
//!
//! Run: `cargo bench -p kubeyard-harness --bench plan` (add `-- --docs N --runs N`).
//! Target (issue 4): under 1 second, process start to exit, on a 2-core machine.

mod common;

use common::{build_corpus, median, run};
use kubeyard_compiler::SourceFile;
use kubeyard_compiler::yaml::Documents;
use serde_json::Value;
use std::path::Path;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn main() {
    let mut docs = 10_000usize;
    let mut runs = 11usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--docs" => docs = args.next().and_then(|v| v.parse().ok()).expect("--docs N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => {}
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifests = dir.path().join("manifests");
    let written = build_corpus(&workspace.join("../shared/corpus"), &manifests, docs);
    let binary = env!("CARGO_BIN_EXE_kubeyard");
    let manifests = manifests.to_str().expect("UTF-8 path").to_string();
    let applied = dir.path().join("applied.yaml");
    let applied_path = applied.to_str().expect("UTF-8 path").to_string();
    let (sample, _) = run(binary, &["apply", &manifests, "--state", &applied_path]);
    println!("apply of {written} objects to an empty state: {:.3} s", sample.wall.as_secs_f64());

    // Drift one object in ten: a label that was applied and is no longer wanted.
    let source = SourceFile::new("applied.yaml", std::fs::read_to_string(&applied).expect("state written"))
        .expect("state is text");
    // kubeyard's state: a header document, then one document per object.
    let mut documents: Vec<Value> =
        Documents::unlimited(&source).map(|d| d.expect("valid YAML").root.expect("a document").to_json()).collect();
    let objects = &mut documents[1..];
    let mut drifted = 0;
    for object in objects.iter_mut().step_by(10) {
        let metadata = object["metadata"].as_object_mut().expect("metadata");
        let labels = metadata.entry("labels").or_insert_with(|| serde_json::json!({}));
        labels["kubeyard.dev/bench"] = Value::String("drift".into());
        let annotations = metadata.get_mut("annotations").expect("annotations");
        let mut last: Value = serde_json::from_str(annotations[LAST_APPLIED].as_str().expect("last applied")).unwrap();
        let last_metadata = last["metadata"].as_object_mut().expect("metadata");
        let labels = last_metadata.entry("labels").or_insert_with(|| serde_json::json!({}));
        labels["kubeyard.dev/bench"] = Value::String("drift".into());
        annotations[LAST_APPLIED] = Value::String(last.to_string());
        drifted += 1;
    }
    let state_path = dir.path().join("state.yaml");
    std::fs::write(&state_path, kubeyard_compiler::print::to_yaml_stream(&documents)).expect("state written");
    let state_path = state_path.to_str().expect("UTF-8 path").to_string();
    let bytes = std::fs::metadata(&state_path).map(|m| m.len()).unwrap_or(0);
    println!("state: {written} objects, {drifted} drifted, {:.1} MB", bytes as f64 / 1e6);

    let args = ["plan", manifests.as_str(), "--state", state_path.as_str(), "-o", "json"];
    let mut samples = Vec::new();
    let mut last = String::new();
    for round in 0..runs + 1 {
        let (sample, _) = run(binary, &args);
        if round > 0 {
            samples.push(sample);
        }
        if round == runs {
            let output = std::process::Command::new(binary).args(args).output().expect("plan runs");
            let plan: Value = serde_json::from_slice(&output.stdout).expect("a JSON plan");
            last = plan["summary"].to_string();
            assert_eq!(plan["summary"]["update"], drifted, "every drifted object is an update");
        }
    }
    let wall = median(samples.iter().map(|s| s.wall).collect());
    let cpu = median(samples.iter().map(|s| s.cpu).collect());
    let rss = samples.iter().map(|s| s.max_rss_kb).max().unwrap_or(0);
    println!("plan: kubeyard {}", args.join(" "));
    println!("  summary: {last}");
    println!(
        "  {written} objects against {written}: wall median {:.3} s; CPU median {:.3} s; peak RSS {:.1} MB ({runs} runs)",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        rss as f64 / 1024.0
    );
}
