//! `kubeyard graph`: the dependency graph of the objects and the order to apply them in,
//! as text, Graphviz DOT or Mermaid.

use super::Exit;
use super::compile::compile;
use super::inputs::Inputs;
use clap::{Args, ValueEnum};
use kubeyard_compiler::graph::render;
use std::io::Write;

#[derive(Args, Debug)]
pub struct GraphArgs {
    #[command(flatten)]
    inputs: Inputs,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The apply order, each object with what it waits for.
    Text,
    /// Graphviz (`kubeyard graph -o dot | dot -Tsvg > graph.svg`).
    Dot,
    /// Mermaid, for Markdown that renders it (GitHub, GitLab).
    Mermaid,
}

pub fn run(args: GraphArgs) -> Exit {
    let mut compiled = match compile(&args.inputs) {
        Ok(compiled) => compiled,
        Err(exit) => return exit,
    };
    let graph = compiled.graph();
    let text = match args.output {
        Format::Text => render::text(&graph),
        Format::Dot => render::dot(&graph),
        Format::Mermaid => render::mermaid(&graph),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    match compiled.report_problems() {
        Ok(()) => Exit::Ok,
        Err(exit) => exit,
    }
}
