//! Shared by the integration tests: where things are, and how to lint one file the way
//! `kubeyard lint` does.

#![allow(dead_code)]

pub mod api;
pub mod etcd;
pub mod kubectl;
pub mod webhook;

use kubeyard_compiler::{FileReport, LintOptions, Linter, SourceFile};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ sits in the workspace").to_path_buf()
}

/// The switch that runs the corpus tests: `KUBEYARD_CORPUS` names the folder of real
/// manifests written by others (`../shared/corpus` in CI). The tests that read it are
/// `#[ignore]`d ("needs the corpus: ..."), so a fresh clone lists them as
/// ignored rather than passing them silently; `.ci/run` sets the variable and runs them
/// with `-- --ignored`, and a run that asks for them without the corpus fails here.
pub const CORPUS_VARIABLE: &str = "KUBEYARD_CORPUS";

/// The folder named by [`CORPUS_VARIABLE`]; a test that asks for it without it fails.
pub fn corpus() -> PathBuf {
    let Some(named) = std::env::var_os(CORPUS_VARIABLE) else {
        panic!(
            "{CORPUS_VARIABLE} is not set: the corpus tests need it to name the corpus folder, e.g. {CORPUS_VARIABLE}=../shared/corpus cargo test --workspace -- --ignored"
        )
    };
    // Relative to the workspace root, where the README's commands run.
    let corpus = workspace().join(named);
    assert!(corpus.is_dir(), "{CORPUS_VARIABLE} names {}, which is not a folder", corpus.display());
    corpus
}

/// A realistic application the project owns (`fixtures/apps/storefront`): what tests use
/// when they need "a real app" and not the corpus in particular.
pub fn storefront() -> PathBuf {
    workspace().join("fixtures/apps/storefront/manifests.yaml")
}

/// Lints one file, its own CRDs registered first, and names it relative to `base`.
pub fn lint_file(linter: &mut Linter, path: &Path, base: &Path) -> FileReport {
    let name = path.strip_prefix(base).unwrap_or(path).display().to_string();
    let bytes = std::fs::read(path).expect("fixture is readable");
    match SourceFile::from_bytes(name.clone(), bytes.clone()) {
        Ok(source) => {
            linter.register_crds(&source);
            linter.lint_source(source)
        }
        Err(_) => linter.lint_bytes(&name, bytes),
    }
}

pub fn linter() -> Linter {
    Linter::new(LintOptions::default()).expect("the embedded schemas load")
}

/// Runs the binary from the workspace root, killing it if it runs past a minute: a
/// linter that hangs on bad input fails the test instead of the CI job.
pub fn kubeyard(args: &[&str], stdin: Option<&[u8]>) -> Output {
    kubeyard_within(args, stdin, Duration::from_secs(60))
}

/// The same with another limit: for whole suites of tests, which take tens of seconds on
/// their own and more while the other tests share the machine's two cores.
pub fn kubeyard_within(args: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeyard"))
        .args(args)
        .current_dir(workspace())
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kubeyard binary runs");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin is piped").write_all(input).expect("stdin accepts input");
    }
    let started = Instant::now();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting works") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("kubeyard {args:?} ran for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader").into_bytes(),
        stderr: err.join().expect("stderr reader").into_bytes(),
    }
}

/// Output with the summary line's timing (`[0.02s]`) taken out, for snapshots.
pub fn without_timing(text: &str) -> String {
    let mut out: String = text
        .lines()
        .map(|line| match line.rfind(" [") {
            Some(at) if line.ends_with("s]") => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Waits (polling every 50 ms) until `check` holds, failing the test after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {within:?} waiting for {what}");
}

/// Waits (polling every 50 ms) until `check` is `Ok`, failing the test after `within`
/// with the last `Err`: what was seen instead.
pub async fn eventually_showing<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut last = String::from("(not checked)");
    while start.elapsed() < within {
        match check().await {
            Ok(()) => return,
            Err(seen) => last = seen,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {within:?} waiting for {what}; last seen: {last}");
}

/// The case folders under `fixtures/<kind>`, in name order.
pub fn case_dirs(kind: &str) -> Vec<PathBuf> {
    let root = workspace().join("fixtures").join(kind);
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).expect("fixture folder").flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// insta settings that put snapshots in `snapshots/<folder>` under plain names.
pub fn snapshots_in(folder: &str) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(workspace().join("snapshots").join(folder));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// The documents of a YAML file of the workspace (`fixtures/crds/cel/crd.yaml`), as JSON.
pub fn yaml_documents(path: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(workspace().join(path)).expect("the fixture exists");
    let source = kubeyard_compiler::SourceFile::new(path, text).expect("text");
    kubeyard_compiler::yaml::Documents::new(&source)
        .map(|d| d.expect("YAML").root.expect("an object").to_json())
        .collect()
}
