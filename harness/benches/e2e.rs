//! The convergence test suite in-process: `kubeyard test fixtures/e2e` (20 tests, Online
//! Boutique, rolling updates, node loss, quotas, crash loops and the rest), each on a
//! fresh cluster in virtual time, timed from the command's start to its exit.
//!
//! Run: `cargo bench -p kubeyard-harness --bench e2e` (add `-- --runs N --parallel P`).
//! Target (issue 7): a suite of 20 tests in under 10 seconds in-process.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const KUBEYARD: &str = env!("CARGO_BIN_EXE_kubeyard");

fn flag(name: &str, default: usize) -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == name {
            return args.next().and_then(|v| v.parse().ok()).unwrap_or(default);
        }
    }
    default
}

fn main() {
    let (runs, parallel) = (flag("--runs", 5), flag("--parallel", 2));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ sits in the workspace");
    let suite = workspace.join("fixtures/e2e");
    let tests = std::fs::read_dir(&suite).map(|d| d.count()).unwrap_or(0);
    let mut times: Vec<Duration> = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let output = Command::new(KUBEYARD)
            .args(["test", "--parallel", &parallel.to_string(), "--output", "json"])
            .arg(&suite)
            .output()
            .expect("kubeyard runs");
        let took = started.elapsed();
        assert!(
            output.status.success(),
            "run {run}: the suite failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("run {run}: {tests} tests in {took:.2?}");
        times.push(took);
    }
    times.sort();
    let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    println!(
        "kubeyard test fixtures/e2e --parallel {parallel}: {tests} tests, min {min:.2?}, median {median:.2?}, max {max:.2?} ({runs} runs; target under 10 s)"
    );
}
