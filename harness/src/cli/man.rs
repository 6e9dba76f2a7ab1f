//! `kubeyard man`: manual pages generated from the command line's own definition
//! (clap_mangen): kubeyard(1), and with `--dir` one page per subcommand as well
//! (`kubeyard-lint(1)`, `kubeyard-test-merge-reports(1)`), as git and cargo ship them.

use super::Exit;
use clap::{Args, CommandFactory};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write kubeyard.1 and a page per subcommand into this directory (made if missing),
    /// instead of kubeyard(1) on standard output.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(args: ManArgs) -> Exit {
    let command = super::Cli::command();
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        if let Err(error) = clap_mangen::Man::new(command).render(&mut page) {
            eprintln!("error: cannot render the manual page: {error}");
            return Exit::Usage;
        }
        use std::io::Write;
        let _ = std::io::stdout().write_all(&page);
        return Exit::Ok;
    };
    match write_pages(command, &dir) {
        Ok(written) => {
            eprintln!("wrote {written} manual pages to {}", dir.display());
            Exit::Ok
        }
        Err(error) => {
            eprintln!("error: {}: {error}", dir.display());
            Exit::Usage
        }
    }
}

/// The command's page and its visible subcommands' pages, recursively (clap_mangen names
/// them as git's are: `kubeyard-test-merge-reports.1`); how many.
fn write_pages(command: clap::Command, dir: &Path) -> std::io::Result<usize> {
    fn count(command: &clap::Command) -> usize {
        1 + command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help").map(count).sum::<usize>()
    }
    std::fs::create_dir_all(dir)?;
    let pages = count(&command);
    clap_mangen::generate_to(command, dir)?;
    Ok(pages)
}
