//! `kubeyard completion SHELL`: the shell's completion script, generated from the command
//! line's own definition (clap_complete), so it knows every subcommand, flag and value.

use super::Exit;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: CompletionArgs) -> Exit {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, "kubeyard", &mut std::io::stdout());
    Exit::Ok
}
