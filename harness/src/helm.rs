//! Helm charts as input: a chart directory is rendered by the `helm` binary (`helm template`,
//! as `helm install` would render it: the chart's `crds/` first, the hooks an install runs,
//! not those of `helm test`, delete, upgrade or rollback), and each template's output is
//! linted, planned and applied as a file of its own, named after the template
//! (`charts/web/templates/deployment.yaml (helm template)`): its lines are the rendered
//! ones, since a template is not YAML until it is rendered.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The file that makes a directory a chart.
pub const CHART_FILE: &str = "Chart.yaml";

pub fn is_chart(dir: &Path) -> bool {
    dir.is_dir() && dir.join(CHART_FILE).is_file()
}

/// How charts are rendered: the `--helm-*` flags, and the Kubernetes version linted for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Values files (`helm template -f`), later ones winning.
    pub values: Vec<PathBuf>,
    /// The release name [default: helm's own, `release-name`].
    pub release: Option<String>,
    /// `--kube-version`: what `.Capabilities.KubeVersion` says.
    pub kube_version: Option<String>,
    /// `.Release.Namespace` [default: `default`, not whatever the user's kubeconfig or
    /// `HELM_NAMESPACE` say, so a lint does not depend on them].
    pub namespace: Option<String>,
}

/// One template's rendered output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `<chart dir>/templates/x.yaml (helm template)`.
    pub name: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot render the chart {dir}: helm is not on the PATH")]
    NoHelm { dir: String },
    #[error("helm could not render {dir}: {message}")]
    Failed { dir: String, message: String },
    #[error("cannot render the chart {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

impl Error {
    /// Its diagnostic code: a missing program or an I/O failure means the input was not
    /// read at all (exit code 2); the tool's own error is a finding about the input.
    pub fn code(&self) -> kubeyard_compiler::diagnostic::Code {
        use kubeyard_compiler::diagnostic::Code;
        match self {
            Error::NoHelm { .. } => Code::MissingTool,
            Error::Io { .. } => Code::Unreadable,
            Error::Failed { .. } => Code::Helm,
        }
    }

    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            Error::NoHelm { .. } => {
                "install Helm 3 (https://helm.sh/docs/intro/install/), or render the chart yourself: `helm template DIR | kubeyard lint -`"
            }
            Error::Failed { .. } | Error::Io { .. } => {
                "`helm template DIR` shows the same error; kubeyard renders a chart as `helm install` would"
            }
        }
    }
}

/// Renders the chart in `dir`.
pub fn render(dir: &Path, options: &Options) -> Result<Vec<Template>, Error> {
    let shown = dir.display().to_string();
    let helm = crate::discover::program_on_path("helm").ok_or_else(|| Error::NoHelm { dir: shown.clone() })?;
    let mut command = Command::new(helm);
    command.arg("template");
    if let Some(release) = &options.release {
        command.arg(release);
    }
    // Test hooks run on `helm test`, not on install: they are not part of what is applied;
    // the chart's CRDs are (`helm install` creates them first).
    command.arg(dir).arg("--skip-tests").arg("--include-crds");
    command.arg("--namespace").arg(options.namespace.as_deref().unwrap_or("default"));
    for values in &options.values {
        command.arg("--values").arg(values);
    }
    if let Some(version) = &options.kube_version {
        command.arg("--kube-version").arg(version);
    }
    let output = command.output().map_err(|source| Error::Io { dir: shown.clone(), source })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message =
            stderr.lines().find_map(|l| l.strip_prefix("Error: ")).unwrap_or_else(|| stderr.trim()).to_string();
        return Err(Error::Failed { dir: shown, message });
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| Error::Failed { dir: shown.clone(), message: "the output is not UTF-8".into() })?;
    let mut templates = split(&text, &shown);
    for template in &mut templates {
        template.text = installed(&template.text);
    }
    templates.retain(|t| !t.text.trim().is_empty());
    Ok(templates)
}

/// A template's documents without the hooks an install does not run (`pre-delete`,
/// `post-upgrade`, ...): a hook runs on install when its `helm.sh/hook` names
/// `pre-install` or `post-install`.
fn installed(text: &str) -> String {
    let kept: Vec<&str> = documents(text)
        .into_iter()
        .filter(|document| {
            let Ok(source) = kubeyard_compiler::SourceFile::new("hook", document.to_string()) else { return true };
            let Some(Ok(parsed)) = kubeyard_compiler::yaml::Documents::new(&source).next() else { return true };
            let hook = parsed.root.as_ref().and_then(|root| {
                root.get("metadata")?.get("annotations")?.get("helm.sh/hook")?.as_str().map(str::to_string)
            });
            // helm reads hook names whatever their case (`Pre-Install` runs on install).
            hook.is_none_or(|hooks| {
                hooks.split(',').any(|h| {
                    let h = h.trim();
                    h.eq_ignore_ascii_case("pre-install") || h.eq_ignore_ascii_case("post-install")
                })
            })
        })
        .collect();
    let mut out = String::new();
    for document in kept {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(document);
        if !document.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// `helm template`'s output, a template at a time: each document follows a
/// `# Source: <chart>/templates/x.yaml` line; documents of one template go together, in
/// the order their templates first come. The chart's own name is replaced by its
/// directory as given, so the name says where the template is.
pub fn split(output: &str, dir: &str) -> Vec<Template> {
    let mut templates: Vec<Template> = Vec::new();
    let mut current: Option<usize> = None;
    for document in documents(output) {
        let source = document.lines().find_map(|l| l.strip_prefix("# Source: ")).map(str::trim);
        let slot = match source {
            Some(source) => {
                let within = source.split_once('/').map_or(source, |(_, rest)| rest);
                let name = format!("{}/{within}{}", dir.trim_end_matches('/'), crate::discover::HELM_SUFFIX);
                match templates.iter().position(|t| t.name == name) {
                    Some(slot) => slot,
                    None => {
                        templates.push(Template { name, text: String::new() });
                        templates.len() - 1
                    }
                }
            }
            // A document with no source line belongs with the one before it.
            None => match current {
                Some(slot) => slot,
                None if document.trim().is_empty() => continue,
                None => {
                    let name = format!("{dir}{}", crate::discover::HELM_SUFFIX);
                    templates.push(Template { name, text: String::new() });
                    templates.len() - 1
                }
            },
        };
        let template = &mut templates[slot];
        if !template.text.is_empty() {
            template.text.push_str("---\n");
        }
        template.text.push_str(document);
        if !document.ends_with('\n') {
            template.text.push('\n');
        }
        current = Some(slot);
    }
    templates
}

/// The documents of a YAML stream, split at `---` lines (the separator left out).
fn documents(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            out.push(&text[start..at]);
            start = at + line.len();
        }
        at += line.len();
    }
    out.push(&text[start..]);
    out.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_by_template_under_the_charts_directory() {
        let output = "---\n# Source: web/templates/service.yaml\napiVersion: v1\nkind: Service\n\
                      ---\n# Source: web/templates/deployment.yaml\nkind: Deployment\n\
                      ---\n# Source: web/charts/redis/templates/sts.yaml\nkind: StatefulSet\n\
                      ---\n# Source: web/templates/service.yaml\nkind: Service\nmetadata: {name: two}\n";
        let templates = split(output, "charts/web/");
        let names: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "charts/web/templates/service.yaml (helm template)",
                "charts/web/templates/deployment.yaml (helm template)",
                "charts/web/charts/redis/templates/sts.yaml (helm template)",
            ]
        );
        assert_eq!(
            templates[0].text,
            "# Source: web/templates/service.yaml\napiVersion: v1\nkind: Service\n---\n\
             # Source: web/templates/service.yaml\nkind: Service\nmetadata: {name: two}\n"
        );
        assert!(split("", "c").is_empty());
    }

    #[test]
    fn only_the_hooks_an_install_runs_are_kept() {
        let text = "kind: Job\nmetadata:\n  name: migrate\n  annotations: {helm.sh/hook: \"Pre-Install,pre-upgrade\"}\n---\n\
                    kind: Job\nmetadata:\n  name: cleanup\n  annotations: {helm.sh/hook: pre-delete}\n---\n\
                    kind: Service\nmetadata: {name: web}\n";
        let kept = installed(text);
        assert!(kept.contains("migrate") && kept.contains("name: web"), "{kept}");
        assert!(!kept.contains("cleanup"), "{kept}");
    }
}
