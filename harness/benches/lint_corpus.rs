//! End-to-end lint throughput, as a user meets it: process start to exit.
//!
//! Builds a corpus of 10,000 documents from the valid documents of `../shared/corpus`
//! (renamed copies, one file each, in 100 folders), then runs `kubeyard lint` over it
//! repeatedly and reports documents per second and peak memory.
//!
//! Run: `cargo bench -p kubeyard-harness --bench lint_corpus` (add `-- --docs N --runs N`,
//! or `--keep DIR` to leave a copy of the corpus for profiling).
//! Target (issue 2): at least 20,000 documents/s and under 150 MB on a 2-core machine.

use kubeyard_compiler::yaml::Documents;
use kubeyard_compiler::{LintOptions, Linter, SourceFile, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// One run of `kubeyard args`: wall time, CPU time (user + system) and peak memory of
/// that process alone (wait4 reports each child's own usage).
// The child is reaped by wait4, which std's Child cannot see.
#[allow(clippy::zombie_processes)]
fn run(binary: &str, args: &[&str]) -> (Sample, String) {
    let started = Instant::now();
    let child = Command::new(binary).args(args).stdout(std::process::Stdio::piped()).spawn().expect("kubeyard runs");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).expect("stdout is text");
        text
    });
    // SAFETY: wait4 fills the status and rusage we own, for our own child.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        (status, usage)
    };
    let wall = started.elapsed();
    let text = reader.join().expect("reader thread");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "kubeyard {args:?} failed:\n{text}");
    let seconds = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let sample = Sample { wall, cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime), max_rss_kb: usage.ru_maxrss };
    let last = text.lines().last().unwrap_or_default();
    (sample, format!("{} lines of output, the last: {last}", text.lines().count()))
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
