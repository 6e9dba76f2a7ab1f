//! The command line: one module per subcommand, each turning flags into calls of the
//! compiler (or, later, the harness) and results into output and an exit code.

pub mod compile;
pub mod graph;
mod inputs;
pub mod lint;
pub mod normalize;
pub mod rules;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes shared by every subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything checked out.
    Ok = 0,
    /// The input has problems (invalid manifests, failed tests).
    Findings = 1,
    /// kubeyard could not do its job: bad flags, unreadable paths.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
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
    /// Show the objects' dependency graph and the order to apply them in (text, DOT, Mermaid).
    Graph(graph::GraphArgs),
    /// List the rules `kubeyard lint` runs, or show one.
    Rules(rules::RulesArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Lint(args) => lint::run(args),
        Command::Normalize(args) => normalize::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Rules(args) => rules::run(args),
    };
    exit.into()
}
