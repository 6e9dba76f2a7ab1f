//! Memory and time on one large manifest, as a user meets them: process start to exit.
//!
//! Writes one 100 MB file of namespaced copies of the project's own application
//! (`fixtures/apps/storefront`: about 140,000 objects), then runs `kubeyard lint`,
//! `normalize` (YAML and JSON) and `plan` over it, and reports each run's wall time and
//! peak memory against the input's size.
//!
//! Run: `cargo bench -p kubeyard-harness --bench large_input` (add `-- --mb N` for another
//! size). Target (issue 16): normalize and plan within 10× the input's size.

mod common;

use common::run;
use std::io::Write;
use std::path::Path;

fn main() {
    let mut megabytes = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--mb" {
            megabytes = args.next().and_then(|v| v.parse().ok()).expect("--mb N");
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let app = std::fs::read_to_string(workspace.join("fixtures/apps/storefront/manifests.yaml")).expect("the app");
    let documents: Vec<&str> = app.split("\n---\n").filter(|d| d.contains("\nkind: ")).collect();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("large.yaml");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("the input"));
    let (mut written, mut copies, mut objects) = (0usize, 0usize, 0usize);
    while written < megabytes << 20 {
        for document in &documents {
            // Each copy in a namespace of its own: names and selectors stay unique.
            let copy = document.replacen("\nmetadata:\n", &format!("\nmetadata:\n  namespace: shop-{copies}\n"), 1);
            file.write_all(b"---\n").and_then(|()| file.write_all(copy.as_bytes())).expect("written");
            file.write_all(b"\n").expect("written");
            written += copy.len() + 5;
            objects += 1;
        }
        copies += 1;
    }
    drop(file);
    let size = std::fs::metadata(&path).expect("the input").len();
    println!("input: {:.1} MB, {objects} objects ({copies} copies of the storefront)", size as f64 / 1e6);

    let binary = env!("CARGO_BIN_EXE_kubeyard");
    let input = path.to_str().expect("a UTF-8 path");
    let mut bound = Vec::new();
    for (what, args) in [
        ("lint", vec!["lint", "--no-rules", input]),
        ("lint with rules", vec!["lint", input]),
        ("normalize", vec!["normalize", input]),
        ("normalize -o json", vec!["normalize", "-o", "json", input]),
        ("plan", vec!["plan", input]),
        ("plan -o json", vec!["plan", "-o", "json", input]),
    ] {
        let (sample, _) = run(binary, &args);
        let peak = sample.max_rss_kb as f64 * 1024.0;
        println!(
            "{what:<18} {:>7.2} s wall, {:>7.2} s CPU, peak {:>7.1} MB = {:>4.1}x the input",
            sample.wall.as_secs_f64(),
            sample.cpu.as_secs_f64(),
            peak / 1e6,
            peak / size as f64
        );
        bound.push((what, peak / size as f64));
    }
    // The bound issue 16 set: normalize and plan hold at most ten times their input.
    let over: Vec<String> = bound
        .iter()
        .filter(|(what, ratio)| (what.starts_with("normalize") || what.starts_with("plan")) && *ratio > BOUND)
        .map(|(what, ratio)| format!("{what} peaked at {ratio:.1}x the input"))
        .collect();
    assert!(over.is_empty(), "above the {BOUND}x bound: {}", over.join(", "));
}

/// Peak memory of `normalize` and `plan`, at most this many times the input's size.
const BOUND: f64 = 10.0;
