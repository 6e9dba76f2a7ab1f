//! End-to-end lint throughput, as a user meets it: process start to exit.
//!
//! Builds a corpus of 10,000 documents from the valid documents of `../shared/corpus`
//! (renamed copies, one file each, in 100 folders), then runs `kubeyard lint` over it
//! repeatedly and reports documents per second and peak memory.
//!
//! Run: `cargo bench -p kubeyard-harness --bench lint_corpus` (add `-- --docs N --runs N`,
//! or `--keep DIR` to leave a copy of the corpus for profiling).
//! Target (issue 2): at least 20,000 documents/s and under 150 MB on a 2-core machine.

mod common;

use common::{Sample, build_corpus, files_under, median, run};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn main() {
    let mut docs = 10_000usize;
    let mut runs = 15usize;
    let mut keep: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => keep = args.next().map(PathBuf::from),
            "--docs" => docs = args.next().and_then(|v| v.parse().ok()).expect("--docs N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let corpus = workspace.join("../shared/corpus");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let written = build_corpus(&corpus, dir.path(), docs);
    if let Some(keep) = keep {
        // For profiling: the same corpus, left on disk.
        build_corpus(&corpus, &keep, docs);
        println!("corpus kept in {}", keep.display());
    }
    let bytes: u64 = files_under(dir.path()).iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).sum();
    println!("corpus: {written} documents, {:.1} MB, in {}", bytes as f64 / 1e6, dir.path().display());

    let binary = env!("CARGO_BIN_EXE_kubeyard");
    let path = dir.path().to_str().expect("UTF-8 temp path").to_string();
    let configurations: [(&str, Vec<&str>); 4] = [
        ("schema only (--no-rules)", vec!["lint", "--no-rules", &path]),
        ("schema and rules (default)", vec!["lint", &path]),
        // The same findings without miette's layout: what the rules cost apart from printing
        // their twelve thousand warnings.
        ("schema and rules, JSON output", vec!["lint", "--output", "json", &path]),
        ("normalize (schema, then defaults and canonical YAML)", vec!["normalize", &path]),
    ];
    // Runs alternate between the configurations so that drift in the machine's speed
    // (other processes, frequency) falls on both alike.
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configurations.len()];
    let mut last_line = vec![String::new(); configurations.len()];
    for round in 0..runs + 2 {
        for (i, (_, args)) in configurations.iter().enumerate() {
            let (sample, line) = run(binary, args);
            if round >= 2 {
                samples[i].push(sample);
                last_line[i] = line;
            }
        }
    }
    let mut medians = Vec::new();
    for (i, (name, args)) in configurations.iter().enumerate() {
        let wall = median(samples[i].iter().map(|s| s.wall).collect());
        let cpu = median(samples[i].iter().map(|s| s.cpu).collect());
        let rss = samples[i].iter().map(|s| s.max_rss_kb).max().unwrap_or(0);
        println!("{name}: kubeyard {}", args.join(" "));
        println!("  says: {}", last_line[i]);
        println!(
            "  {written} docs: wall median {:.3} s => {:.0} docs/s; CPU median {:.3} s; peak RSS {:.1} MB ({runs} runs)",
            wall.as_secs_f64(),
            written as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64(),
            rss as f64 / 1024.0
        );
        medians.push((wall, cpu));
    }
    let ratio = |a: Duration, b: Duration| (b.as_secs_f64() / a.as_secs_f64() - 1.0) * 100.0;
    println!(
        "rules add {:.0}% wall time and {:.0}% CPU time to schema validation",
        ratio(medians[0].0, medians[1].0),
        ratio(medians[0].1, medians[1].1)
    );
    println!(
        "rules without text rendering add {:.0}% wall time and {:.0}% CPU time to schema validation",
        ratio(medians[0].0, medians[2].0),
        ratio(medians[0].1, medians[2].1)
    );
    println!(
        "normalization adds {:.0}% wall time and {:.0}% CPU time to schema validation",
        ratio(medians[0].0, medians[3].0),
        ratio(medians[0].1, medians[3].1)
    );
}
