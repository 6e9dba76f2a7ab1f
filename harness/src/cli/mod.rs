//! The command line: one module per subcommand, each turning flags into calls of the
//! compiler (or, later, the harness) and results into output and an exit code.

pub mod apiserver;
pub mod compile;
pub mod components;
pub mod get;
pub mod graph;
pub mod image;
pub mod inputs;
pub mod lint;
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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate manifests against the Kubernetes schemas of one version, and run the rules.
    Lint(lint::LintArgs),
    /// Print every object as the API server would store it: defaults applied, canonical form.
    Normalize(normalize::NormalizeArgs),
    /// Show what applying the manifests would change, in apply order, against a state.
    Plan(plan::PlanArgs),
    /// Apply the manifests to a live cluster (--kubeconfig, --cluster) in plan order, or to
    /// a state file (--state).
    Apply(plan::ApplyArgs),
    /// Show the objects' dependency graph and the order to apply them in (text, DOT, Mermaid).
    Graph(graph::GraphArgs),
    /// List the rules `kubeyard lint` runs, or show one.
    Rules(rules::RulesArgs),
    /// Serve the Kubernetes API (for kubectl and any client) over kubeyard's store.
    #[command(name = "apiserver")]
    ApiServer(apiserver::ApiServerArgs),
    /// List or show objects of a live cluster, as kubectl get prints them.
    Get(get::GetArgs),
    /// Run a whole cluster in this process (API server, scheduler, controllers, simulated
    /// nodes), apply the manifests and show them converge, until interrupted.
    Up(up::UpArgs),
    /// Run convergence tests (kubeyard.dev/v1alpha1 Test), each on a fresh cluster.
    #[command(args_conflicts_with_subcommands = true)]
    Test(test::TestArgs),
    /// Run the scheduler against an API server (as the cluster's containers do).
    Scheduler(components::SchedulerArgs),
    /// Run the controller manager against an API server (as the cluster's containers do).
    ControllerManager(components::ControllerManagerArgs),
    /// Run a node agent against an API server (as the cluster's node containers do).
    Kubelet(components::KubeletArgs),
    /// Pass TCP connections to several API servers in turn, skipping those that are down
    /// (the load balancer of `up --containers --api-servers N`).
    #[command(name = "loadbalancer")]
    LoadBalancer(components::LoadBalancerArgs),
    /// Build the images of the containerized control plane (no registry needed).
    Image(image::ImageArgs),
    /// Remove container clusters (`--all`: every one, what interrupted runs left).
    Down(image::DownArgs),
    /// The built-in image kubeyard/echo: an HTTP server answering with its pod's name.
    Echo(crate::echo::EchoArgs),
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
        Command::Echo(args) => return crate::echo::run(args),
        Command::Pause(args) => return crate::kubelet::pause::run(args),
    };
    exit.into()
}
