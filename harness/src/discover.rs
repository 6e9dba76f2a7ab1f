//! Which files a list of paths names: files as given, directories walked for
//! `*.yaml`, `*.yml` and `*.json` in a stable order, `-` for standard input.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
    /// A directory holding a kustomization: what `kubectl kustomize` builds of it.
    Kustomization(PathBuf),
    /// A Helm chart's directory: what `helm template` renders of it.
    HelmChart(PathBuf),
}

impl Input {
    pub fn display_name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".into(),
            Input::File(path) => path.display().to_string(),
            Input::Kustomization(dir) => format!("{}{KUSTOMIZE_SUFFIX}", dir.display()),
            Input::HelmChart(dir) => format!("{}{HELM_SUFFIX}", dir.display()),
        }
    }
}

/// A path that could not be listed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub path: String,
    pub reason: String,
}

const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// How the text a chart or a kustomization renders is named: after its template or its
/// directory, with this after, since its lines are the rendered ones, not the file's.
pub const HELM_SUFFIX: &str = " (helm template)";
pub const KUSTOMIZE_SUFFIX: &str = " (kustomize build)";

/// The file a report's name is, when it is one on disk whose lines the report's are: not
/// standard input, nor text a chart or a kustomization rendered.
pub fn real_file(name: &str) -> Option<&str> {
    let rendered = name.ends_with(HELM_SUFFIX) || name.ends_with(KUSTOMIZE_SUFFIX);
    (name != "<stdin>" && !rendered).then_some(name)
}

/// Where a program is on the PATH (the tools kubeyard runs: etcd, kubectl, helm).
pub fn program_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Expands paths into inputs. Directories are walked depth-first with entries sorted by
/// name, so output order does not depend on the file system; hidden files and folders
/// (`.git`, `.kubeyard.yaml`, ...) below a named directory are skipped.
pub fn discover(paths: &[String]) -> (Vec<Input>, Vec<Unreadable>) {
    discover_skipping(paths, None)
}

/// The directory of `Chart.yaml` or `kustomization.yaml` named alone: `.` when it is in
/// the working one.
fn folder_of(file: &Path) -> Option<&Path> {
    file.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
}

/// The inputs of the commands that read manifests (lint, normalize, plan, apply, up,
/// graph): `discover_skipping`, except that a directory named on the command line that
/// holds a kustomization (or the kustomization file itself) is built by kustomize, as
/// `kubectl apply -k` would, and a chart's directory (or its Chart.yaml) is rendered by
/// helm, instead of walked.
pub fn discover_manifests(paths: &[String], skip: Option<&Path>) -> (Vec<Input>, Vec<Unreadable>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let given = Path::new(path);
        let chart = if given.file_name().is_some_and(|f| f == crate::helm::CHART_FILE) {
            folder_of(given)
        } else {
            Some(given)
        };
        if let Some(chart) = chart.filter(|d| crate::helm::is_chart(d)) {
            inputs.push(Input::HelmChart(chart.to_path_buf()));
            continue;
        }
        let dir = if crate::kustomize::FILE_NAMES.iter().any(|n| given.file_name().is_some_and(|f| f == *n)) {
            folder_of(given)
        } else {
            Some(given)
        };
        match dir.filter(|d| crate::kustomize::is_kustomization(d)) {
            Some(dir) => inputs.push(Input::Kustomization(dir.to_path_buf())),
            None => {
                let (found, unreadable) = discover_skipping(std::slice::from_ref(path), skip);
                inputs.extend(found);
                problems.extend(unreadable);
            }
        }
    }
    (inputs, problems)
}

/// `discover`, leaving out one folder (the templates' `values/`: values, not manifests).
pub fn discover_skipping(paths: &[String], skip: Option<&Path>) -> (Vec<Input>, Vec<Unreadable>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let root = Path::new(path);
        match std::fs::metadata(root) {
            Err(error) => problems.push(Unreadable { path: path.clone(), reason: error.to_string() }),
            Ok(meta) if meta.is_dir() => walk(root, skip, &mut inputs, &mut problems),
            Ok(_) => inputs.push(Input::File(root.to_path_buf())),
        }
    }
    (inputs, problems)
}

fn walk(root: &Path, skip: Option<&Path>, inputs: &mut Vec<Input>, problems: &mut Vec<Unreadable>) {
    // Links are followed: ConfigMap mounts and generated trees are made of them (walkdir
    // reports a loop as an error instead of walking it forever).
    let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter().filter_entry(|entry| {
        entry.depth() == 0
            || !(entry.file_name().to_string_lossy().starts_with('.')
                || skip.is_some_and(|skip| entry.file_type().is_dir() && same_dir(entry.path(), skip)))
    });
    for entry in walker {
        match entry {
            Ok(entry) => {
                let wanted = entry.file_type().is_file()
                    && entry
                        .path()
                        .extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
                if wanted {
                    inputs.push(Input::File(entry.into_path()));
                }
            }
            Err(error) => problems.push(Unreadable {
                path: error.path().map_or_else(|| root.display().to_string(), |p| p.display().to_string()),
                reason: error.io_error().map_or_else(|| error.to_string(), ToString::to_string),
            }),
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_in_name_order_and_keeps_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/.git")).unwrap();
        for name in ["b/z.yaml", "b/a.yml", "b/.git/c.yaml", "a.json", "notes.txt", "c.YAML"] {
            std::fs::write(root.join(name), "").unwrap();
        }
        std::fs::write(root.join("explicit.txt"), "").unwrap();
        std::os::unix::fs::symlink(root.join("a.json"), root.join("b/linked.yaml")).unwrap();
        let paths = vec![root.display().to_string(), root.join("explicit.txt").display().to_string(), "missing".into()];
        let (inputs, problems) = discover(&paths);
        let names: Vec<String> = inputs
            .iter()
            .map(|i| match i {
                Input::File(p) => p.strip_prefix(root).unwrap().display().to_string(),
                Input::Stdin => "-".into(),
                Input::Kustomization(_) | Input::HelmChart(_) => unreachable!("discover walks them as folders"),
            })
            .collect();
        assert_eq!(names, vec!["a.json", "b/a.yml", "b/linked.yaml", "b/z.yaml", "c.YAML", "explicit.txt"]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "missing");
    }
}
