//! The command line: one module per subcommand, each turning flags into calls of the
//! compiler (or, later, the harness) and results into output and an exit code.

pub mod apiserver;
pub mod compile;
pub mod completion;
pub mod components;
pub mod examples;
pub mod get;
pub mod graph;
pub mod image;
pub mod inputs;
pub mod lint;
pub mod man;
pub mod normalize;
pub mod plan;
mod progress;
pub mod rules;
pub mod test;
pub mod up;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The async runtime a command that talks to a cluster runs on: one thread for a client,
/// every core for a server or a whole control plane.
pub(crate) fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|error| format!("cannot start the runtime: {error}"))
}

/// Exit codes shared by every subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything checked out.
    Ok,
    /// The input has problems (invalid manifests, failed tests).
    Findings,
    /// kubeyard could not do its job: bad flags, unreadable paths.
    Usage,
    /// `plan --detailed-exitcode`: the plan has changes (terraform's 2).
    Changes,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(match exit {
            Exit::Ok => 0,
            Exit::Findings => 1,
            Exit::Usage | Exit::Changes => 2,
        })
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "kubeyard",
    version,
    about = "Compile, lint and test Kubernetes manifests",
    long_about = None,
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate manifests against the Kubernetes schemas of one version, and run the rules.
    #[command(after_help = examples::LINT)]
    Lint(lint::LintArgs),
    /// Print every object as the API server would store it: defaults applied, canonical form.
    #[command(after_help = examples::NORMALIZE)]
    Normalize(normalize::NormalizeArgs),
    /// Show what applying the manifests would change, in apply order, against a state.
    #[command(after_help = examples::PLAN)]
    Plan(plan::PlanArgs),
    /// Apply the manifests to a live cluster (--kubeconfig, --cluster) in plan order, or to
    /// a state file (--state).
    #[command(after_help = examples::APPLY)]
    Apply(plan::ApplyArgs),
    /// Show the objects' dependency graph and the order to apply them in (text, DOT, Mermaid).
    #[command(after_help = examples::GRAPH)]
    Graph(graph::GraphArgs),
    /// List the rules `kubeyard lint` runs, or show one.
    #[command(after_help = examples::RULES)]
    Rules(rules::RulesArgs),
    /// Serve the Kubernetes API (for kubectl and any client) over kubeyard's store.
    #[command(name = "apiserver", after_help = examples::APISERVER)]
    ApiServer(apiserver::ApiServerArgs),
    /// List or show objects of a live cluster, as kubectl get prints them.
    #[command(after_help = examples::GET)]
    Get(get::GetArgs),
    /// Run a whole cluster in this process (API server, scheduler, controllers, simulated
    /// nodes), apply the manifests and show them converge, until interrupted.
    #[command(after_help = examples::UP)]
    Up(up::UpArgs),
    /// Run convergence tests (kubeyard.dev/v1alpha1 Test), each on a fresh cluster.
    #[command(args_conflicts_with_subcommands = true, after_help = examples::TEST)]
    Test(test::TestArgs),
    /// Run the scheduler against an API server (as the cluster's containers do).
    #[command(after_help = examples::SCHEDULER)]
    Scheduler(components::SchedulerArgs),
    /// Run the controller manager against an API server (as the cluster's containers do).
    #[command(after_help = examples::CONTROLLER_MANAGER)]
    ControllerManager(components::ControllerManagerArgs),
    /// Run a node agent against an API server (as the cluster's node containers do).
    #[command(after_help = examples::KUBELET)]
    Kubelet(components::KubeletArgs),
    /// Pass TCP connections to several API servers in turn, skipping those that are down
    /// (the load balancer of `up --containers --api-servers N`).
    #[command(name = "loadbalancer", after_help = examples::LOADBALANCER)]
    LoadBalancer(components::LoadBalancerArgs),
    /// Build the images of the containerized control plane (no registry needed).
    #[command(after_help = examples::IMAGE)]
    Image(image::ImageArgs),
    /// Remove container clusters (`--all`: every one, what interrupted runs left).
    #[command(after_help = examples::DOWN)]
    Down(image::DownArgs),
    /// The built-in image kubeyard/echo: an HTTP server answering with its pod's name.
    #[command(after_help = examples::ECHO)]
    Echo(crate::echo::EchoArgs),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    #[command(after_help = examples::COMPLETION)]
    Completion(completion::CompletionArgs),
    /// A language server on standard input and output: lint's diagnostics as you type,
    /// hover, completion and quick fixes in any LSP editor (docs/lsp.md).
    #[command(after_help = examples::LSP)]
    Lsp,
    /// Write kubeyard's manual pages (kubeyard(1), one per subcommand with --dir).
    #[command(after_help = examples::MAN)]
    Man(man::ManArgs),
    /// A pod sandbox's process (what Kubernetes' pause image does), run by container nodes.
    #[command(hide = true)]
    Pause(crate::kubelet::pause::PauseArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `kubeyard get pods | head` closes the pipe early: the commands that only print end
    // quietly then, as Unix tools do. The ones that run servers and clusters keep the
    // signal ignored, so a peer closing a connection is an error to handle, never death.
    let prints_only = matches!(
        cli.command,
        Command::Lint(_)
            | Command::Normalize(_)
            | Command::Graph(_)
            | Command::Plan(_)
            | Command::Rules(_)
            | Command::Get(_)
            | Command::Completion(_)
            | Command::Man(_)
    );
    #[cfg(unix)]
    if prints_only {
        // SAFETY: restoring the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let exit = match cli.command {
        Command::Lint(args) => lint::run(args),
        Command::Normalize(args) => normalize::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Plan(args) => plan::run(args).unwrap_or_else(|exit| exit),
        Command::Apply(args) => plan::apply(args),
        Command::Rules(args) => rules::run(args),
        Command::ApiServer(args) => apiserver::run(args),
        Command::Up(args) => up::run(args),
        Command::Get(args) => get::run(args),
        Command::Test(args) => test::run(args),
        Command::Scheduler(args) => components::scheduler(args),
        Command::ControllerManager(args) => components::controller_manager(args),
        Command::Kubelet(args) => components::kubelet(args),
        Command::LoadBalancer(args) => components::load_balancer(args),
        Command::Image(args) => image::run(args),
        Command::Down(args) => image::down(args),
        Command::Completion(args) => completion::run(args),
        Command::Lsp => match crate::lsp::run() {
            Ok(true) => Exit::Ok,
            Ok(false) => {
                eprintln!("kubeyard lsp: told to exit without a shutdown request first");
                Exit::Findings
            }
            Err(message) => lint::usage_error(&format!("kubeyard lsp: {message}")),
        },
        Command::Man(args) => man::run(args),
        Command::Echo(args) => return crate::echo::run(args),
        Command::Pause(args) => return crate::kubelet::pause::run(args),
    };
    exit.into()
}
