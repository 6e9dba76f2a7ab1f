//! `kubeyard rules`: the rule catalogue, from the same source as `docs/rules.md`.

use super::Exit;
use clap::{Args, ValueEnum};
use kubeyard_compiler::diagnostic::did_you_mean;
use kubeyard_compiler::rules::{self, RULES};

#[derive(Args, Debug)]
pub struct RulesArgs {
    /// Show one rule in full (its rationale and fix).
    #[arg(value_name = "ID")]
    id: Option<String>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
}

pub fn run(args: RulesArgs) -> Exit {
    let selected: Vec<_> = match &args.id {
        None => RULES.to_vec(),
        Some(id) => match rules::find(id) {
            Some(rule) => vec![rule],
            None => {
                let hint = did_you_mean(id, RULES.iter().map(|r| r.id))
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                eprintln!("error: no rule \"{id}\"{hint}; `kubeyard rules` lists them");
                return Exit::Usage;
            }
        },
    };
    let text = match args.output {
        Format::Markdown => rules::markdown(),
        Format::Json => {
            let list: Vec<serde_json::Value> = selected
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "name": r.name(), "severity": r.severity.as_str(), "onByDefault": r.on_by_default,
                        "rationale": r.rationale(), "fix": r.fix(), "needsSet": r.needs_set(),
                    })
                })
                .collect();
            format!("{}\n", serde_json::to_string_pretty(&list).expect("plain data serializes"))
        }
        Format::Text if args.id.is_some() => {
            let r = selected[0];
            format!(
                "{} ({})\n  {}\n\n  {}\n\n  fix: {}\n",
                r.id,
                r.default_severity(),
                r.name(),
                r.rationale(),
                r.fix()
            )
        }
        Format::Text => {
            let width = RULES.iter().map(|r| r.id.len()).max().unwrap_or(0);
            let mut out = String::new();
            for r in &selected {
                out.push_str(&format!("{:width$}  {:7}  {}\n", r.id, r.default_severity(), r.name()));
            }
            out
        }
    };
    print!("{text}");
    Exit::Ok
}
