//! `kubeyard test`: every `kubeyard.dev/v1alpha1 Test` found in the paths, each on a
//! fresh cluster, with progress per test and per step; exit 1 when one fails.

use super::Exit;
use super::lint::usage_error;
use super::progress::{Mode, Progress};
use crate::testing::report::{self, Style};
use crate::testing::runner::{self, Target, Test, TestResult};
use crate::testing::shard::{self, Shard, ShardBy};
use clap::{Args, Subcommand, ValueEnum};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::time::Instant;

/// A task aborted when dropped (the live lines' ticker, when the run ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Junit,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClusterKind {
    /// A fresh control plane in this process for each test (virtual time unless the test
    /// asks for real time).
    InProcess,
    /// A fresh cluster of containers for each test (etcd, API server, scheduler,
    /// controller manager, a container per node), in real time.
    Containers,
    /// The cluster of a kubeconfig: each test in a namespace of its own, in real time.
    Kubeconfig,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Test files or directories to search for them [default: the current directory].
    #[arg(value_name = "DIRS")]
    paths: Vec<String>,

    /// How many tests run at once.
    #[arg(long, default_value_t = 2)]
    parallel: usize,

    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    #[arg(long, value_enum, default_value_t = ClusterKind::InProcess)]
    cluster: ClusterKind,

    /// With --cluster kubeconfig: the kubeconfig [default: $KUBECONFIG or ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,

    /// With --cluster kubeconfig: the context [default: the current one].
    #[arg(long, value_name = "NAME")]
    context: Option<String>,

    /// With --cluster containers: the etcd binary to package [default: `etcd` on the PATH].
    #[arg(long, value_name = "FILE")]
    etcd_binary: Option<PathBuf>,

    /// Only the tests whose name contains this.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,

    /// Keep a failed test's cluster for a look with kubectl (its kubeconfig's path is
    /// printed): a container cluster stays up (`kubeyard down ID` removes it), one in this
    /// process until Ctrl-C, a shared cluster's namespace stays.
    #[arg(long, visible_alias = "skip-delete")]
    keep_on_failure: bool,

    /// Under each step, what it set off: the events recorded while it ran, what it
    /// printed, and for a failed step the last log lines of the pods it names (pods that
    /// are real processes).
    #[arg(long, short = 'v')]
    verbose: bool,

    /// Leave out timings and mask generated names (reports to compare or snapshot).
    #[arg(long, hide = true)]
    stable: bool,

    /// Run only the K-th of N parts of the tests, as the K-th of N machines (`--shard 2/4`):
    /// every machine computes the same split, each test in exactly one part.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,

    /// How --shard splits: by a hash of each test's path (a test keeps its part as the
    /// suite changes), round-robin by count, or by the durations of an earlier report.
    #[arg(long, value_enum, default_value_t = ShardBy::Path, value_name = "HOW", requires = "shard")]
    shard_by: ShardBy,

    /// A report of an earlier run (`--output junit` or `json`) whose durations
    /// `--shard-by duration` balances.
    #[arg(long, value_name = "REPORT", requires = "shard")]
    durations: Option<PathBuf>,

    /// List the tests (of this shard) instead of running them: `name  file` lines, or
    /// with --output json a JSON array of {name, file, key}.
    #[arg(long)]
    list: bool,

    /// Under each test, what its control plane's components did (reconciles, failures,
    /// latencies, busy time, queue depth; the busiest first), to see which one a slow
    /// convergence waited on. Tests on a cluster of this process only.
    #[arg(long)]
    profile: bool,

    #[command(subcommand)]
    command: Option<TestCommand>,
}

#[derive(Subcommand, Debug)]
pub enum TestCommand {
    /// Merge the reports of a suite's shards (all JUnit or all JSON) into one, on
    /// standard output: `kubeyard test merge-reports shard-*.xml > report.xml` (a test
    /// folder named `merge-reports` is `./merge-reports`).
    #[command(after_help = super::examples::MERGE_REPORTS)]
    MergeReports(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The reports, one per shard.
    #[arg(required = true, value_name = "REPORTS")]
    reports: Vec<PathBuf>,
}

/// `kubeyard test merge-reports`.
fn merge_reports(args: &MergeArgs) -> Exit {
    let mut reports = Vec::new();
    for path in &args.reports {
        match std::fs::read_to_string(path) {
            Ok(text) => reports.push((path.display().to_string(), text)),
            Err(error) => return usage_error(&format!("{}: {error}", path.display())),
        }
    }
    match shard::merge(&reports) {
        Ok(merged) => {
            print!("{merged}");
            Exit::Ok
        }
        Err(message) => usage_error(&message),
    }
}

/// Keeps the tests of `shard` (all of them without one).
fn select(tests: Vec<Test>, args: &TestArgs) -> Result<Vec<Test>, String> {
    let Some(shard) = args.shard else { return Ok(tests) };
    let durations = match (args.shard_by, &args.durations) {
        (ShardBy::Duration, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            shard::durations(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        (ShardBy::Duration, None) => {
            return Err("--shard-by duration needs --durations REPORT (a JUnit or JSON report of a run)".into());
        }
        (_, Some(_)) => return Err("--durations is for --shard-by duration".into()),
        _ => Default::default(),
    };
    let keys: Vec<String> = tests.iter().map(|t| shard::key(&t.file, &t.name)).collect();
    let parts = shard::assign(&keys, shard.count, args.shard_by, &durations);
    Ok(tests.into_iter().zip(parts).filter(|(_, part)| *part == shard.index).map(|(test, _)| test).collect())
}

/// `--list`: the tests, without running them.
fn list(tests: &[Test], output: Output) -> Exit {
    match output {
        Output::Json => {
            let listed: Vec<serde_json::Value> = tests
                .iter()
                .map(|t| {
                    serde_json::json!({"name": t.name, "file": t.file.display().to_string(), "key": shard::key(&t.file, &t.name)})
                })
                .collect();
            println!("{:#}", serde_json::Value::Array(listed));
        }
        Output::Text => {
            for test in tests {
                println!("{}  {}", test.name, test.file.display());
            }
        }
        Output::Junit => return usage_error("--list prints text or json, not junit"),
    }
    Exit::Ok
}

pub fn run(args: TestArgs) -> Exit {
    if let Some(TestCommand::MergeReports(merge)) = &args.command {
        return merge_reports(merge);
    }
    let paths = if args.paths.is_empty() { vec![".".to_string()] } else { args.paths.clone() };
    let target = match args.cluster {
        ClusterKind::InProcess => Target::InProcess,
        ClusterKind::Containers => Target::Containers { etcd_binary: args.etcd_binary.clone() },
        ClusterKind::Kubeconfig => Target::Kubeconfig { path: args.kubeconfig.clone(), context: args.context.clone() },
    };
    let (mut tests, problems) = runner::find(&paths);
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if let Some(filter) = &args.filter {
        tests.retain(|t| t.name.contains(filter.as_str()));
    }
    if tests.is_empty() {
        eprintln!("error: no kubeyard.dev/v1alpha1 Test found in {}", paths.join(", "));
        return Exit::Usage;
    }
    if args.profile && (args.output != Output::Text || args.cluster != ClusterKind::InProcess) {
        eprintln!(
            "kubeyard test: warning: --profile shows in text output, for the clusters of this process (--cluster in-process)"
        );
    }
    let tests = match select(tests, &args) {
        Ok(tests) => tests,
        Err(message) => return usage_error(&message),
    };
    if args.list {
        return list(&tests, args.output);
    }
    if let Some(shard) = args.shard.filter(|_| tests.is_empty()) {
        // More parts than tests: this part has none, which is no failure, and its report
        // (empty) is still written, for the merge.
        eprintln!("kubeyard test: shard {}/{} has no tests", shard.index, shard.count);
    }
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    let style = Style { stable: args.stable, verbose: args.verbose, diff: false };
    let text = args.output == Output::Text;
    let serial = args.parallel <= 1;
    let started = Instant::now();
    // Progress on stderr while tests run; none for reports made to be compared.
    let live = Progress::new(if args.stable { Mode::Off } else { Mode::detect() });
    let print = |text: &str| live.print(text);
    let progress = |test: &Test, event: runner::Event<'_>| {
        live.event(test, event);
        if let (true, true, runner::Event::StepDone(step)) = (text, serial, event) {
            print(&report::step_line(step, style));
        }
    };
    let results: Vec<TestResult> = runtime.block_on(async {
        let _ticking = live.ticking(std::time::Duration::from_millis(250)).map(AbortOnDrop);
        let mut results = Vec::new();
        let mut running = futures_util::stream::iter(tests.iter().map(|test| {
            if text && serial {
                print(&format!("RUN  {} ({})\n", test.name, test.file.display()));
            }
            let (target, progress) = (&target, &progress);
            let options = runner::Options { keep_on_failure: args.keep_on_failure, verbose: args.verbose };
            async move { runner::run(test, target, options, progress).await }
        }))
        .buffered(args.parallel.max(1));
        loop {
            // Interrupted, the tests under way are dropped, and with them their clusters
            // (a container cluster removes its containers when dropped).
            let next = tokio::select! {
                next = running.next() => next,
                _ = super::components::interrupted() => {
                    eprintln!("kubeyard: interrupted; the tests' clusters are removed");
                    drop(running);
                    std::process::exit(130);
                }
            };
            let Some(result) = next else { break };
            live.finished(&result.name);
            if let Some(kept) = &result.kept {
                live.note(&format!("kubeyard test: {} failed; {}", result.name, kept.note));
            }
            if text {
                let mut block = if serial {
                    report::verdict_text(&result, style)
                } else {
                    // The same header as serially: one word for a test's block, in the docs too.
                    format!("RUN  {} ({})\n{}", result.name, result.file.display(), report::test_text(&result, style))
                };
                if let (true, Some(profile)) = (args.profile, &result.profile) {
                    block.push_str(&profile.lines().map(|l| format!("    {l}\n")).collect::<String>());
                }
                print(&block);
            }
            results.push(result);
        }
        results
    });
    live.done();
    match args.output {
        Output::Text => print(&format!("{}\n", report::summary(&results, (!style.stable).then(|| started.elapsed())))),
        Output::Junit => print(&report::junit(&results)),
        Output::Json => print(&format!("{:#}\n", report::json(&results))),
    }
    // Clusters of this process that failed tests kept: up until the user is done.
    let held: Vec<_> = results.iter().filter_map(|r| r.kept.as_ref()?.in_process.clone()).collect();
    if !held.is_empty() {
        eprintln!("kubeyard test: {} failed test(s) kept their clusters; press Ctrl-C to remove them", held.len());
        runtime.block_on(super::components::interrupted());
        drop(held);
    }
    if results.iter().all(TestResult::passed) && problems.is_empty() { Exit::Ok } else { Exit::Findings }
}
