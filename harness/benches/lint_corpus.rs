//! End-to-end lint throughput, as a user meets it: process start to exit.
//!
//! Builds a corpus of 10,000 documents from the valid documents of `../shared/corpus`
//! (renamed copies, one file each, in 100 folders), then runs `kubeyard lint` over it
//! repeatedly and reports documents per second and peak memory.
//!
//! Run: `cargo bench -p kubeyard-harness --bench lint_corpus` (add `-- --docs N --runs N`).
//! Target (issue 2): at least 20,000 documents/s and under 150 MB on a 2-core machine.

use kubeyard_compiler::yaml::Documents;
use kubeyard_compiler::{LintOptions, Linter, SourceFile, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut docs = 10_000usize;
    let mut runs = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--docs" => docs = args.next().and_then(|v| v.parse().ok()).expect("--docs N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let corpus = workspace.join("../shared/corpus");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let written = build_corpus(&corpus, dir.path(), docs);
    let bytes: u64 = files_under(dir.path()).iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).sum();
    println!("corpus: {written} documents, {:.1} MB, in {}", bytes as f64 / 1e6, dir.path().display());

    let binary = env!("CARGO_BIN_EXE_kubeyard");
    let run = || {
        let started = Instant::now();
        let output = Command::new(binary)
            .args(["lint", dir.path().to_str().expect("UTF-8 temp path")])
            .output()
            .expect("kubeyard runs");
        let elapsed = started.elapsed();
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
        (elapsed, String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    for _ in 0..2 {
        run();
    }
    let mut times: Vec<Duration> = Vec::new();
    let mut summary = String::new();
    for _ in 0..runs {
        let (elapsed, out) = run();
        times.push(elapsed);
        summary = out;
    }
    times.sort();
    let median = times[times.len() / 2];
    let best = times[0];
    println!("kubeyard says: {summary}");
    println!(
        "lint {written} docs: median {:.3} s, best {:.3} s over {runs} runs => {:.0} docs/s (median), {:.0} docs/s (best)",
        median.as_secs_f64(),
        best.as_secs_f64(),
        written as f64 / median.as_secs_f64(),
        written as f64 / best.as_secs_f64()
    );
    println!("peak RSS: {:.1} MB", peak_child_rss_kb() as f64 / 1024.0);
}

/// Writes `count` renamed copies of the corpus's valid documents, one per file.
fn build_corpus(corpus: &Path, out: &Path, count: usize) -> usize {
    assert!(corpus.is_dir(), "{} is missing", corpus.display());
    let linter = Linter::new(LintOptions::default()).expect("schemas load");
    // Each template: the document's text and where its metadata.name is in it.
    let mut templates: Vec<(String, usize, usize)> = Vec::new();
    let mut files = files_under(corpus);
    files.sort();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(source) = SourceFile::new(path.display().to_string(), text) else {
            continue;
        };
        let reports = linter.lint(&source);
        for document in Documents::new(&source).flatten() {
            let Some(root) = &document.root else { continue };
            let valid = reports
                .iter()
                .any(|r| r.document == Some(document.index) && r.item.is_none() && r.verdict == Verdict::Valid);
            let Some(name) = root.get("metadata").and_then(|m| m.get("name")) else {
                continue;
            };
            if !valid || name.as_str().is_none() {
                continue;
            }
            let start = root.span.start as usize;
            let text = source.text()[start..root.span.end as usize].to_string();
            templates.push((text, name.span.start as usize - start, name.span.end as usize - start));
        }
    }
    assert!(!templates.is_empty(), "no valid documents in the corpus");
    for n in 0..count {
        let (text, start, end) = &templates[n % templates.len()];
        let old = &text[*start..*end];
        let renamed = match old.chars().next() {
            Some(q @ ('"' | '\'')) => format!("{q}{}-{n}{q}", old.trim_matches(q)),
            _ => format!("{old}-{n}"),
        };
        let document = format!("{}{renamed}{}\n", &text[..*start], &text[*end..]);
        let folder = out.join(format!("{:03}", n / 100));
        std::fs::create_dir_all(&folder).expect("corpus folder");
        std::fs::write(folder.join(format!("{n:05}.yaml")), document).expect("corpus file");
    }
    count
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
                files.push(path);
            }
        }
    }
    files
}

/// The largest resident set of any child waited for (Linux reports kilobytes).
fn peak_child_rss_kb() -> i64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}
