//! `kubeyard plan`: what applying the manifests would change, object by object in apply
//! order, against a state file; and `kubeyard apply --state`, which records the result.

use super::Exit;
use super::compile::{Compiled, PlanPiece, compile};
use super::inputs::{Inputs, print_problems, read_source};
use super::lint::usage_error;
use crate::client::{self, Client, Connected};
use clap::{Args, ValueEnum};
use kubeyard_compiler::graph::ObjectId;
use kubeyard_compiler::plan::render::{self, Style};
use kubeyard_compiler::plan::state::{STATE_API_VERSION, State};
use kubeyard_compiler::plan::{self, Plan};
use kubeyard_compiler::print;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    inputs: Inputs,

    #[command(flatten)]
    target: Target,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,

    /// Exit 0 when nothing would change, 2 when something would, 1 on errors.
    #[arg(long)]
    detailed_exitcode: bool,

    /// Write the plan to FILE in its stable YAML form (for review in version control).
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,

    /// With --snapshot: do not write, fail with a diff when the plan differs from FILE.
    #[arg(long, requires = "snapshot")]
    check: bool,
}

#[derive(Args, Debug, Default)]
pub struct Target {
    /// The state to compare with: kubeyard's state file (`kubeyard apply --state`), or
    /// objects as `kubectl get -o yaml` prints them. A file that does not exist is an
    /// empty state (everything is created).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kubeconfig", "cluster"])]
    pub state: Option<PathBuf>,

    #[command(flatten)]
    pub connection: Connection,

    /// Delete objects the state has and the manifests no longer do.
    #[arg(long)]
    pub prune: bool,

    /// Apply server-side (as `kubectl apply --server-side`): each object as written,
    /// merged by the server, which records who owns what and refuses to change fields
    /// another manager owns. A plan predicts the merge and the conflicts from the
    /// managedFields of the state (a live cluster's, or a state file's)
    #[arg(long)]
    pub server_side: bool,

    /// The field manager server-side applies are made as
    #[arg(long, default_value = "kubeyard", requires = "server_side")]
    pub field_manager: String,

    /// Take the fields other managers own instead of refusing (server-side only)
    #[arg(long, requires = "server_side")]
    pub force_conflicts: bool,
}

impl Target {
    /// How the plan applies its objects.
    pub fn applier(&self) -> plan::Applier {
        if !self.server_side {
            return plan::Applier::ClientSide;
        }
        let now = crate::clock::Clock::real().timestamp();
        plan::Applier::ServerSide {
            manager: self.field_manager.clone(),
            force: self.force_conflicts,
            now,
            answers: Default::default(),
        }
    }
}

/// How to reach a live cluster: a kubeconfig, or a URL with a token.
#[derive(Args, Debug, Default, Clone)]
pub struct Connection {
    /// A live cluster, reached through this kubeconfig (its current context, or
    /// --context): any Kubernetes cluster, kubeyard's own included.
    #[arg(long, value_name = "FILE", conflicts_with = "cluster")]
    pub kubeconfig: Option<PathBuf>,

    /// With --kubeconfig: the context to use instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// The live cluster at this URL (plain HTTP, or HTTPS with --insecure-skip-tls-verify),
    /// with no credentials but --token.
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,

    /// With --cluster: the bearer token to send.
    #[arg(long, requires = "cluster")]
    pub token: Option<String>,

    /// With --cluster: do not check the server's certificate.
    #[arg(long, requires = "cluster")]
    pub insecure_skip_tls_verify: bool,
}

impl Connection {
    /// The cluster of `--kubeconfig` or `--cluster`, connected (within a runtime: the
    /// client lives on it); none when neither is given.
    pub async fn connect(&self) -> Result<Option<Connected>, String> {
        match (&self.kubeconfig, &self.cluster) {
            (Some(path), _) => Client::connect(Some(path), self.context.as_deref()).await.map(Some),
            (None, Some(url)) => {
                Client::for_url(url.trim_end_matches('/'), self.token.as_deref(), self.insecure_skip_tls_verify)
                    .map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// Whether a live cluster is named.
    pub fn is_live(&self) -> bool {
        self.kubeconfig.is_some() || self.cluster.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    inputs: Inputs,

    #[command(flatten)]
    target: Target,
}

/// A plan, with the objects as written (by identity) and the state it was made against.
pub(super) struct Planned {
    pub plan: Plan,
    pub written: std::collections::HashMap<ObjectId, Value>,
    pub state: State,
}

/// A plan for library users: problems come back as rendered text instead of being printed.
pub fn plan_with(inputs: &Inputs, target: &Target) -> Result<Plan, String> {
    let mut compiled =
        compile(inputs).map_err(|_| "kubeyard could not read its inputs or configuration".to_string())?;
    let graph = compiled.graph();
    if let Some(problems) = compiled.problems_text()
        && compiled.reports.iter().flat_map(|r| &r.objects).any(|o| o.diagnostics.iter().any(|d| d.is_error()))
    {
        return Err(problems);
    }
    let (state, applier) = match &target.state {
        Some(path) => {
            (read_state(path).map_err(|_| format!("the state {} cannot be read", path.display()))?, target.applier())
        }
        None => read_live(target, &compiled, true)?,
    };
    Ok(compiled.plan(&graph, &state, target.prune, &applier))
}

pub(super) fn make_plan(inputs: &Inputs, target: &Target, keep_written: bool) -> Result<Planned, Exit> {
    let mut compiled = compile(inputs)?;
    let graph = compiled.graph();
    compiled.report_problems()?;
    // An apply is the server's answer itself: its plan asks for no dry run first.
    let (state, applier) = match &target.state {
        Some(path) => (read_state(path)?, target.applier()),
        None => read_live(target, &compiled, false).map_err(|message| usage_error(&message))?,
    };
    let plan = compiled.plan(&graph, &state, target.prune, &applier);
    let written = if keep_written {
        graph.ids.iter().cloned().zip(compiled.objects.iter().map(|d| d.written())).collect()
    } else {
        Default::default()
    };
    // The process ends soon: freeing ten thousand trees one by one is wasted time.
    std::mem::forget(compiled);
    std::mem::forget(graph);
    Ok(Planned { plan, written, state })
}

/// What the live cluster of `--kubeconfig` or `--cluster` holds for the desired objects
/// (an empty state when neither is given), and how the plan applies. With `dry_run`, a
/// server-side plan asks the cluster for a dry run of each apply of an object it holds:
/// the server's own merge, admission and conflicts, as `kubectl diff --server-side` asks.
fn read_live(target: &Target, compiled: &Compiled, dry_run: bool) -> Result<(State, plan::Applier), String> {
    let mut applier = target.applier();
    if !target.connection.is_live() {
        return Ok((State::default(), applier));
    }
    let values: Vec<Value> = compiled.objects.iter().map(|d| d.value()).collect();
    let desired: Vec<&Value> = values.iter().collect();
    let runtime = super::runtime(false)?;
    runtime.block_on(async {
        let Some(Connected { client, .. }) = target.connection.connect().await? else {
            return Ok((State::default(), applier));
        };
        let reading = |message| format!("reading the cluster at {}: {message}", client.server());
        let state = client::state::read(&client, &desired, target.prune).await.map_err(reading)?;
        if let (plan::Applier::ServerSide { manager, force, answers, .. }, true) = (&mut applier, dry_run) {
            let written: Vec<Value> = compiled.objects.iter().map(|d| d.written()).collect();
            let pairs: Vec<(&Value, &Value)> = values.iter().zip(&written).collect();
            *answers = client::state::dry_run_applies(&client, &pairs, &state, manager, *force)
                .await
                .map_err(|message| format!("a dry run of the applies at {}: {message}", client.server()))?;
        }
        Ok((state, applier))
    })
}

fn read_state(path: &Path) -> Result<State, Exit> {
    let mut state = State::default();
    if matches!(path.try_exists(), Ok(false)) {
        eprintln!("note: {} does not exist yet: planning against an empty state", path.display());
        return Ok(state);
    }
    let source = read_source(path)?;
    if let Err(problems) = state.read(&source) {
        print_problems(source, problems);
        return Err(Exit::Usage);
    }
    Ok(state)
}

pub fn run(args: PlanArgs) -> Result<Exit, Exit> {
    let error = if args.detailed_exitcode { Exit::Findings } else { Exit::Usage };
    let usage = |exit| if exit == Exit::Usage { error } else { exit };
    let mut compiled = compile(&args.inputs).map_err(usage)?;
    let graph = compiled.graph();
    compiled.report_problems().map_err(usage)?;
    let (state, applier) = match &args.target.state {
        Some(path) => (read_state(path).map_err(usage)?, args.target.applier()),
        None => read_live(&args.target, &compiled, true).map_err(|message| usage(usage_error(&message)))?,
    };
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let style = Style { color };
    // Each entry is rendered as soon as it is planned and written as it comes, its trees
    // dropped: a plan of a hundred thousand objects is never held. A closed standard
    // output (`| head`) is not an error of the plan: what cannot be written is dropped.
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let snapshot = args.snapshot.is_some();
    let mut snapshot_entries = Vec::new();
    let mut written = 0usize;
    let summary = compiled.plan_each(
        &graph,
        &state,
        args.target.prune,
        &applier,
        |entry| {
            let shown = match args.output {
                Format::Text => render::text_entry(&entry, style),
                Format::Json => render::json_entry(&entry),
                Format::Yaml => render::yaml_entry(&entry),
            };
            let recorded = match (snapshot, args.output) {
                (false, _) => None,
                (true, Format::Yaml) => Some(shown.clone()),
                (true, _) => Some(render::yaml_entry(&entry)),
            };
            (shown, recorded)
        },
        |piece| match piece {
            PlanPiece::Summary(summary) => {
                let open = match args.output {
                    Format::Text => render::text_head(&summary).to_string(),
                    Format::Json => render::json_open(&summary),
                    Format::Yaml => render::yaml_open(&summary),
                };
                let _ = stdout.write_all(open.as_bytes());
            }
            PlanPiece::Entry((shown, recorded)) => {
                if args.output == Format::Json && written > 0 {
                    let _ = stdout.write_all(render::JSON_BETWEEN.as_bytes());
                }
                let _ = stdout.write_all(shown.as_bytes());
                written += 1;
                snapshot_entries.extend(recorded);
            }
        },
    );
    // The process ends soon: freeing a hundred thousand objects one by one is wasted time.
    std::mem::forget(compiled);
    std::mem::forget(graph);
    let end = match args.output {
        Format::Text => render::text_tail(&summary, style),
        Format::Json => render::json_close(&summary).to_string(),
        Format::Yaml => render::yaml_close(&summary),
    };
    let _ = stdout.write_all(end.as_bytes()).and_then(|()| stdout.flush());
    drop(stdout);

    if let Some(path) = &args.snapshot {
        let snapshot = render::yaml_document(&summary, &snapshot_entries);
        if args.check {
            let recorded = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!(
                        "error: cannot read the snapshot {}: {e} (run without --check to write it)",
                        path.display()
                    );
                    return Err(Exit::Findings);
                }
            };
            if recorded != snapshot {
                eprintln!("error: the plan differs from the snapshot {}:", path.display());
                let diff = similar::TextDiff::from_lines(&recorded, &snapshot);
                eprint!(
                    "{}",
                    diff.unified_diff().context_radius(3).header(&path.display().to_string(), "the plan now")
                );
                eprintln!("(run without --check to accept the new plan)");
                return Err(Exit::Findings);
            }
        } else if let Err(e) = write_atomically(path, &snapshot) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return Err(error);
        }
    }
    // An apply that would be refused is a problem of the manifests, not a change.
    if summary.conflict > 0 {
        return Ok(Exit::Findings);
    }
    if args.detailed_exitcode && summary.has_changes() {
        return Ok(Exit::Changes);
    }
    Ok(Exit::Ok)
}

/// `kubeyard apply`: to a live cluster (`--kubeconfig`, `--cluster`), carrying out the plan
/// and saying what became of each object as kubectl does; or to a state file (`--state`),
/// printing the plan and recording the objects as applied.
pub fn apply(args: ApplyArgs) -> Exit {
    if args.target.connection.is_live() {
        let planned = match make_plan(&args.inputs, &args.target, true) {
            Ok(planned) => planned,
            Err(exit) => return exit,
        };
        let runtime = match super::runtime(false) {
            Ok(runtime) => runtime,
            Err(message) => return usage_error(&message),
        };
        return runtime.block_on(async {
            match args.target.connection.connect().await {
                Ok(Some(Connected { client, .. })) => {
                    let mode = if args.target.server_side {
                        client::apply::Mode::ServerSide {
                            manager: args.target.field_manager.clone(),
                            force: args.target.force_conflicts,
                        }
                    } else {
                        client::apply::Mode::ClientSide
                    };
                    apply_live(&client, &planned, &mode).await
                }
                Ok(None) => usage_error("no live cluster named"),
                Err(message) => usage_error(&message),
            }
        });
    }
    let Some(path) = args.target.state.clone() else {
        return usage_error(
            "kubeyard apply needs a target: --kubeconfig FILE or --cluster URL for a live cluster, \
             or --state FILE for a state file",
        );
    };
    let planned = match make_plan(&args.inputs, &args.target, true) {
        Ok(planned) => planned,
        Err(exit) => return exit,
    };
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    print!("{}", render::text(&planned.plan, Style { color }));
    // A refused apply changes nothing: the state is not written.
    if planned.plan.summary.conflict > 0 {
        eprintln!("error: the state {} is left as it was: applies in conflict are refused", path.display());
        return Exit::Findings;
    }
    let objects = plan::applied(&planned.plan, &planned.written, &planned.state);
    // A header, then one document per object: any size of state reads back one object
    // at a time.
    let header = json!({"apiVersion": STATE_API_VERSION, "kind": "State"});
    let text = print::to_yaml_stream(std::iter::once(&header).chain(&objects));
    match write_atomically(&path, &text) {
        Ok(()) => {
            println!("State written to {}.", path.display());
            Exit::Ok
        }
        Err(e) => usage_error(&format!("cannot write {}: {e}", path.display())),
    }
}

/// Carries out a plan on a live cluster, one line per object as kubectl prints them
/// (`deployment.apps/web created`); Findings when any object failed.
pub(super) async fn apply_live(client: &Client, planned: &Planned, mode: &client::apply::Mode) -> Exit {
    let mut failed = 0;
    let server_side = matches!(mode, client::apply::Mode::ServerSide { .. });
    client::apply::apply(client, &planned.plan, &planned.written, mode, |entry, result| {
        let object = &entry.object;
        let group = object.api_version.split_once('/').map(|(group, _)| group).unwrap_or("");
        let kind = object.kind.to_lowercase();
        let name = if group.is_empty() {
            format!("{kind}/{}", object.name)
        } else {
            format!("{kind}.{group}/{}", object.name)
        };
        let shown = match &object.namespace {
            Some(namespace) if namespace != "default" => format!("{name} (namespace {namespace})"),
            _ => name,
        };
        match result {
            Ok(()) => {
                let verb = match entry.action {
                    plan::Action::Create | plan::Action::Update | plan::Action::Unchanged | plan::Action::Conflict
                        if server_side =>
                    {
                        "serverside-applied"
                    }
                    plan::Action::Conflict => "in conflict",
                    plan::Action::Create => "created",
                    plan::Action::Update => "configured",
                    plan::Action::Delete => "pruned",
                    plan::Action::Unchanged => "unchanged",
                };
                println!("{shown} {verb}");
            }
            Err(client::Written::Conflict(message)) if server_side => {
                failed += 1;
                eprintln!(
                    "error: {shown}: {message}\n  (another field manager owns these fields: take them with \
                     --force-conflicts, or leave them out of the configuration)"
                );
            }
            Err(client::Written::Conflict(message)) => {
                failed += 1;
                eprintln!("error: {shown}: changed on the cluster since it was planned; apply again ({message})");
            }
            Err(client::Written::Failed(message)) => {
                failed += 1;
                eprintln!("error: {shown}: {message}");
            }
        }
    })
    .await;
    if failed > 0 { Exit::Findings } else { Exit::Ok }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.kubeyard-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}
