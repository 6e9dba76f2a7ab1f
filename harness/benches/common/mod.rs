//! What the benchmarks share: building the corpus, and timing one run of kubeyard.

#![allow(dead_code)]

use kubeyard_compiler::yaml::Documents;
use kubeyard_compiler::{LintOptions, Linter, SourceFile, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kb: i64,
}

pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// One run of `kubeyard args`: wall time, CPU time (user + system) and peak memory of
/// that process alone (wait4 reports each child's own usage).
// The child is reaped by wait4, which std's Child cannot see.
#[allow(clippy::zombie_processes)]
pub fn run(binary: &str, args: &[&str]) -> (Sample, String) {
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
pub fn build_corpus(corpus: &Path, out: &Path, count: usize) -> usize {
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

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
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
