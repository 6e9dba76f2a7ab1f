//! `.kubeyard.yaml`: a project's settings, read with the same YAML front end as
//! manifests, so a mistake in it gets the same kind of diagnostic.
//!
//! ```yaml
//! kubernetesVersion: "1.31"
//! strict: true
//! ignoreMissingSchemas: false
//! schemaDirs: [schemas/crds]
//! cluster: nodes=3,cpu=4,memory=8Gi
//! rules:
//!   image/latest-tag: error
//!   resources/missing-limits: off
//! ```

use crate::diagnostic::{Code, Diagnostic, Severity, did_you_mean};
use crate::rules::{self, ClusterShape, RuleSettings};
use crate::schema::KubernetesVersion;
use crate::source::SourceFile;
use crate::yaml::{Documents, Node, Value};
use std::path::{Path, PathBuf};

/// The file names looked for, walking up from the linted path.
pub const FILE_NAMES: &[&str] = &[".kubeyard.yaml", ".kubeyard.yml"];

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub kubernetes_version: Option<KubernetesVersion>,
    pub strict: Option<bool>,
    pub ignore_missing_schemas: Option<bool>,
    /// Resolved against the configuration file's folder.
    pub schema_dirs: Vec<PathBuf>,
    pub cluster: Option<ClusterShape>,
    pub rules: RuleSettings,
}

const KEYS: &[&str] = &["kubernetesVersion", "strict", "ignoreMissingSchemas", "schemaDirs", "cluster", "rules"];

/// Parses a configuration file; `base` is the folder it is in.
pub fn parse(source: &SourceFile, base: &Path) -> (Config, Vec<Diagnostic>) {
    let mut config = Config::default();
    let mut problems = Vec::new();
    let root = match Documents::new(source).next() {
        None => return (config, problems),
        Some(Err(diagnostic)) => return (config, vec![*diagnostic]),
        Some(Ok(document)) => {
            problems.extend(document.diagnostics);
            match document.root {
                Some(root) if !root.is_null() => root,
                _ => return (config, problems),
            }
        }
    };
    let Some(entries) = root.as_map() else {
        problems.push(error(root.span, "the configuration must be a mapping", "start from `rules: {}`"));
        return (config, problems);
    };
    for entry in entries {
        let value = &entry.value;
        match entry.key.name.as_str() {
            "kubernetesVersion" => {
                let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_json().to_string());
                match text.parse::<KubernetesVersion>() {
                    Ok(version) => config.kubernetes_version = Some(version),
                    Err(e) => problems.push(error(value.span, e.to_string(), "write it quoted, like \"1.32\"")),
                }
            }
            "strict" => config.strict = boolean(value, &mut problems),
            "ignoreMissingSchemas" => config.ignore_missing_schemas = boolean(value, &mut problems),
            "schemaDirs" => match value.as_seq() {
                Some(items) => {
                    for item in items {
                        match item.as_str() {
                            Some(dir) => config.schema_dirs.push(base.join(dir)),
                            None => problems.push(error(
                                item.span,
                                "a schema folder must be a path",
                                "write the folder as a string",
                            )),
                        }
                    }
                }
                None => problems.push(error(
                    value.span,
                    "schemaDirs must be a list of folders",
                    "write `schemaDirs: [path/to/schemas]`",
                )),
            },
            "cluster" => match value.as_str() {
                Some(text) => match text.parse::<ClusterShape>() {
                    Ok(shape) => config.cluster = Some(shape),
                    Err(e) => problems.push(error(value.span, e, "write it like nodes=3,cpu=4,memory=8Gi")),
                },
                None => problems.push(error(
                    value.span,
                    "cluster must be a string",
                    "write it like nodes=3,cpu=4,memory=8Gi",
                )),
            },
            "rules" => rule_settings(value, &mut config.rules, &mut problems),
            other => {
                let help = match did_you_mean(other, KEYS.iter().copied()) {
                    Some(suggestion) => format!("did you mean \"{suggestion}\"?"),
                    None => format!("the settings are {}", KEYS.join(", ")),
                };
                problems.push(error(entry.key.span, format!("unknown setting \"{other}\""), help));
            }
        }
    }
    (config, problems)
}

fn rule_settings(value: &Node, settings: &mut RuleSettings, problems: &mut Vec<Diagnostic>) {
    let Some(entries) = value.as_map() else {
        problems.push(error(
            value.span,
            "rules must be a mapping of rule ids to severities",
            "write `rules: {image/latest-tag: off}`",
        ));
        return;
    };
    for entry in entries {
        let Some(rule) = rules::find(&entry.key.name) else {
            let help = match did_you_mean(&entry.key.name, rules::RULES.iter().map(|r| r.id)) {
                Some(suggestion) => format!("did you mean \"{suggestion}\"?"),
                None => "`kubeyard rules` lists the rule ids".into(),
            };
            problems.push(error(entry.key.span, format!("unknown rule \"{}\"", entry.key.name), help));
            continue;
        };
        match parse_severity(&entry.value) {
            Ok(severity) => settings.set(rule, severity),
            Err(NotASeverity) => problems.push(error(
                entry.value.span,
                format!("\"{}\" is not a severity", entry.value.to_json().to_string().trim_matches('"')),
                "use error, warning, info or off",
            )),
        }
    }
}

/// A rule setting that is not `error`, `warning`, `info` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a severity: use error, warning, info or off")]
pub struct NotASeverity;

/// `error`, `warning`, `info`, or `off` (YAML reads a bare `off` as false, which is
/// accepted; a bare `on` reads as true, which names no severity and is refused).
pub fn parse_severity(value: &Node) -> Result<Option<Severity>, NotASeverity> {
    match &value.value {
        Value::Bool(false) => Ok(None),
        Value::Bool(true) => Err(NotASeverity),
        Value::String(s) => match s.as_str() {
            "error" => Ok(Some(Severity::Error)),
            "warning" | "warn" => Ok(Some(Severity::Warning)),
            "info" => Ok(Some(Severity::Info)),
            "off" | "none" => Ok(None),
            _ => Err(NotASeverity),
        },
        _ => Err(NotASeverity),
    }
}

fn boolean(value: &Node, problems: &mut Vec<Diagnostic>) -> Option<bool> {
    match value.value {
        Value::Bool(b) => Some(b),
        _ => {
            problems.push(error(value.span, "expected true or false", "write true or false"));
            None
        }
    }
}

fn error(span: crate::source::Span, message: impl Into<String>, help: impl Into<String>) -> Diagnostic {
    Diagnostic::error(Code::BadConfig, span, message).with_help(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Config, Vec<Diagnostic>) {
        parse(&SourceFile::new(".kubeyard.yaml", text).unwrap(), Path::new("/project"))
    }

    #[test]
    fn reads_every_setting() {
        let (config, problems) = parsed(
            "kubernetesVersion: \"1.31\"\nstrict: false\nignoreMissingSchemas: true\nschemaDirs: [crds]\ncluster: nodes=2,cpu=2,memory=4Gi\nrules:\n  image/latest-tag: error\n  resources/missing-limits: off\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.kubernetes_version.unwrap().minor, 31);
        assert_eq!(config.strict, Some(false));
        assert_eq!(config.schema_dirs, vec![PathBuf::from("/project/crds")]);
        assert_eq!(config.cluster.unwrap().nodes.len(), 2);
        assert!(config.rules.is_off(rules::find("resources/missing-limits").unwrap()));
    }

    #[test]
    fn points_at_mistakes() {
        let (_, problems) = parsed("kubernetesVersoin: 1.31\nrules:\n  image/latest: off\n  pod/host-port: loud\n");
        let messages: Vec<&str> = problems.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "unknown setting \"kubernetesVersoin\"",
                "unknown rule \"image/latest\"",
                "\"loud\" is not a severity"
            ]
        );
        assert_eq!(problems[0].help.as_deref(), Some("did you mean \"kubernetesVersion\"?"));
        assert_eq!(problems[1].help.as_deref(), Some("did you mean \"image/latest-tag\"?"));
    }
}
