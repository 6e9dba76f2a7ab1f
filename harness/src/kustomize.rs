//! Kustomize input: a directory holding a kustomization is built as `kubectl apply -k`
//! builds it (`kubectl kustomize`, else the `kustomize` binary), and the objects built are
//! what is linted, planned and applied. Findings are mapped back to the files the objects
//! came from: kustomize is asked again, through a kustomization of our own that only adds
//! `buildMetadata: [originAnnotations]`, where each object came from (a resource file, or
//! a generator of a kustomization file), and each finding is put on the same field in
//! that file, or, where the kustomization changed or added the field, on the object there
//! with a help line saying so.

use kubeyard_compiler::validate::field_node;
use kubeyard_compiler::yaml::{Documents, Node};
use kubeyard_compiler::{FileReport, ObjectReport, SourceFile, Span};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The file names kustomize looks for in a directory, in its order.
pub const FILE_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The kustomization file of a directory, if it has one.
pub fn file_of(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES.iter().map(|name| dir.join(name)).find(|p| p.is_file())
}

pub fn is_kustomization(dir: &Path) -> bool {
    dir.is_dir() && file_of(dir).is_some()
}

/// Where a built object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A resource file.
    Resource(PathBuf),
    /// A generator (`ConfigMapGenerator`, `SecretGenerator`) of this kustomization file.
    Generated { file: PathBuf, generator: String },
}

/// An object's identity: apiVersion, kind, namespace (empty for none), name.
pub type Identity = (String, String, String, String);

/// Where the objects of a build came from, by identity: the two builds that are compared
/// may order their objects differently (`sortOptions`), never name them differently.
pub type Origins = HashMap<Identity, Origin>;

/// What kustomize built: the YAML, and where its objects came from.
#[derive(Debug, Clone)]
pub struct Built {
    pub text: String,
    pub origins: Origins,
}

/// The identity of an object's tree.
fn identity(root: &Node) -> Identity {
    let text = |node: Option<&Node>| node.and_then(Node::as_str).unwrap_or_default().to_string();
    let metadata = root.get("metadata");
    (
        text(root.get("apiVersion")),
        text(root.get("kind")),
        text(metadata.and_then(|m| m.get("namespace"))),
        text(metadata.and_then(|m| m.get("name"))),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The messages name the directory as given.
    #[error("cannot build the kustomization {dir}: neither kubectl nor kustomize is on the PATH")]
    NoTool { dir: String },
    #[error("kustomize could not build {dir}: {message}")]
    Failed { dir: String, message: String },
    #[error("cannot build the kustomization {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

impl Error {
    /// Its diagnostic code: a missing program or an I/O failure means the input was not
    /// read at all (exit code 2); the tool's own error is a finding about the input.
    pub fn code(&self) -> kubeyard_compiler::diagnostic::Code {
        use kubeyard_compiler::diagnostic::Code;
        match self {
            Error::NoTool { .. } => Code::MissingTool,
            Error::Io { .. } => Code::Unreadable,
            Error::Failed { .. } => Code::Kustomize,
        }
    }

    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            Error::NoTool { .. } => {
                "install kubectl (`kubectl kustomize` builds kustomizations) or the kustomize binary, and put it on the PATH"
            }
            Error::Failed { .. } | Error::Io { .. } => {
                "`kubectl kustomize DIR` shows the same error; kubeyard builds a kustomization as `kubectl apply -k` does"
            }
        }
    }
}

/// `kubectl kustomize DIR`, or `kustomize build DIR`.
fn command() -> Option<(PathBuf, &'static [&'static str])> {
    if let Some(kubectl) = crate::discover::program_on_path("kubectl") {
        return Some((kubectl, &["kustomize"]));
    }
    crate::discover::program_on_path("kustomize").map(|k| (k, &["build"][..]))
}

fn run(dir: &Path) -> Result<String, Error> {
    let shown = dir.display().to_string();
    let (program, args) = command().ok_or_else(|| Error::NoTool { dir: shown.clone() })?;
    let output = Command::new(program)
        .args(args)
        .arg(dir)
        .output()
        .map_err(|source| Error::Io { dir: shown.clone(), source })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // kubectl says `error: ...`, klog's `E1207 ... "command failed" err="..."`, or both.
        let message = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .or_else(|| stderr.lines().rev().find_map(|l| l.split_once("err=\"").map(|(_, e)| e.trim_end_matches('"'))))
            .unwrap_or_else(|| stderr.trim())
            .to_string();
        return Err(Error::Failed { dir: shown, message });
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Error::Failed { dir: shown, message: "the output is not UTF-8".into() })
}

/// A path with `.` and `..` taken out, as written (no link followed).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` as the user would write it: relative to the working directory when under it.
fn shown(path: &Path) -> PathBuf {
    match std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf)) {
        Some(relative) => relative,
        None => path.to_path_buf(),
    }
}

/// A directory of our own for the wrapping kustomization, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the objects of the build came from; none for those kustomize could not say (a
/// remote base, an older kustomize): their findings stay on the built YAML.
fn origins(dir: &Path) -> Origins {
    let unknown = Origins::new();
    let Ok(target) = std::fs::canonicalize(dir) else { return unknown };
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Ok(temp) = std::fs::canonicalize(std::env::temp_dir()) else { return unknown };
    let scratch = Scratch(temp.join(format!("kubeyard-kustomize-{}-{n}", std::process::id())));
    if std::fs::create_dir_all(&scratch.0).is_err() {
        return unknown;
    }
    // kustomize refuses an absolute resource: the directory, relative to ours.
    let up = scratch.0.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let relative: PathBuf =
        std::iter::repeat_n("..", up).collect::<PathBuf>().join(target.strip_prefix("/").unwrap_or(&target));
    // Quoted (a JSON string is YAML): a folder may be named `x #y`.
    let quoted = serde_json::to_string(&relative.display().to_string()).unwrap_or_default();
    let wrapper = format!("resources:\n- {quoted}\nbuildMetadata: [originAnnotations]\n");
    if std::fs::write(scratch.0.join("kustomization.yaml"), wrapper).is_err() {
        return unknown;
    }
    let Ok(text) = run(&scratch.0) else { return unknown };
    let Ok(source) = SourceFile::new("origins", text) else { return unknown };
    Documents::unlimited(&source)
        .filter_map(|d| d.ok()?.root)
        .filter_map(|root| Some((identity(&root), origin(&root, &scratch.0)?)))
        .collect()
}

/// An object's `config.kubernetes.io/origin` annotation, read.
fn origin(root: &Node, base: &Path) -> Option<Origin> {
    let text = root.get("metadata")?.get("annotations")?.get("config.kubernetes.io/origin")?.as_str()?;
    let source = SourceFile::new("origin", text.to_string()).ok()?;
    let annotation = Documents::new(&source).next()?.ok()?.root?;
    if annotation.get("repo").is_some() {
        return None;
    }
    let resolve = |path: &str| lexical(&base.join(path));
    if let Some(path) = annotation.get("path").and_then(Node::as_str) {
        return Some(Origin::Resource(resolve(path)));
    }
    let file = annotation.get("configuredIn").and_then(Node::as_str)?;
    let generator = annotation.get("configuredBy")?.get("kind")?.as_str()?.to_string();
    Some(Origin::Generated { file: resolve(file), generator })
}

/// Builds the kustomization in `dir`.
pub fn build(dir: &Path) -> Result<Built, Error> {
    let text = run(dir)?;
    Ok(Built { text, origins: origins(dir) })
}

/// One object found again in the file it came from.
struct Found {
    document: usize,
    root: Node,
    span: Span,
}

/// The object in `source` that the built one came from: same kind and the same name, else
/// the one longest name the built one holds (kustomize adds prefixes, suffixes and
/// hashes); of two that fit as well, the one whose written namespace is the built one's
/// (kustomize's `namespace:` may have replaced it); none when that does not decide.
fn find_object(source: &SourceFile, kind: &str, namespace: Option<&str>, built_name: &str) -> Option<Found> {
    find_object_in(source, kind, namespace, built_name, true)
        .or_else(|| find_object_in(source, kind, namespace, built_name, false))
}

fn find_object_in(
    source: &SourceFile,
    kind: &str,
    namespace: Option<&str>,
    built_name: &str,
    same_namespace: bool,
) -> Option<Found> {
    let mut best: Option<(usize, Found)> = None;
    let mut tied = false;
    for document in Documents::unlimited(source).filter_map(|d| d.ok()) {
        let Some(root) = document.root else { continue };
        if root.get("kind").and_then(Node::as_str) != Some(kind) {
            continue;
        }
        let metadata = root.get("metadata");
        let written = metadata.and_then(|m| m.get("namespace")).and_then(Node::as_str);
        if same_namespace && written.is_some_and(|w| Some(w) != namespace) {
            continue;
        }
        let name = metadata.and_then(|m| m.get("name")).and_then(Node::as_str).unwrap_or_default();
        if name == built_name {
            return Some(Found { document: document.index, span: document.span, root });
        }
        if !built_name.contains(name) {
            continue;
        }
        match &best {
            Some((length, _)) if *length > name.len() => {}
            Some((length, _)) if *length == name.len() => tied = true,
            _ => {
                tied = false;
                best = Some((name.len(), Found { document: document.index, span: document.span, root }));
            }
        }
    }
    if tied { None } else { best.map(|(_, found)| found) }
}

/// The reports of a kustomization's build, findings moved to the files the objects came
/// from: a report per such file (in the order first met), then the built YAML's report
/// with what could not be moved (left out when nothing is left in it). Each report comes
/// with the positions, in the built report, of the objects it holds.
pub fn remap(built: FileReport, origins: &Origins, kustomization: &Path) -> Vec<(FileReport, Vec<usize>)> {
    let Some(built_source) = built.source.clone() else {
        let all = (0..built.objects.len()).collect();
        return vec![(built, all)];
    };
    let built_roots: HashMap<usize, Node> =
        Documents::unlimited(&built_source).filter_map(|d| d.ok()).filter_map(|d| Some((d.index, d.root?))).collect();
    let mut files: Vec<(PathBuf, Option<SourceFile>)> = Vec::new();
    let mut moved: HashMap<usize, Vec<(usize, ObjectReport)>> = HashMap::new();
    let mut kept = Vec::new();
    let mut kept_at = Vec::new();
    for (position, object) in built.objects.into_iter().enumerate() {
        let origin = object.object.as_ref().and_then(|info| {
            let key = (
                info.gvk.api_version(),
                info.gvk.kind.clone(),
                info.namespace.clone().unwrap_or_default(),
                info.name.clone().unwrap_or_default(),
            );
            origins.get(&key).cloned()
        });
        let target = match &origin {
            Some(Origin::Resource(path)) => path.clone(),
            Some(Origin::Generated { file, .. }) => file.clone(),
            None => {
                kept.push(object);
                kept_at.push(position);
                continue;
            }
        };
        let slot = match files.iter().position(|(p, _)| *p == target) {
            Some(slot) => slot,
            None => {
                let source = std::fs::read(&target)
                    .ok()
                    .and_then(|bytes| SourceFile::from_bytes(shown(&target).display().to_string(), bytes).ok());
                files.push((target.clone(), source));
                files.len() - 1
            }
        };
        let Some(source) = &files[slot].1 else {
            kept.push(object);
            kept_at.push(position);
            continue;
        };
        let built_root = object.document.and_then(|d| built_roots.get(&d));
        match moved_object(object, origin.as_ref(), source, built_root, kustomization) {
            Ok(object) => moved.entry(slot).or_default().push((position, object)),
            Err(object) => {
                kept.push(*object);
                kept_at.push(position);
            }
        }
    }
    let mut out = Vec::new();
    for (slot, (_, source)) in files.into_iter().enumerate() {
        let (Some(source), Some(mut objects)) = (source, moved.remove(&slot)) else { continue };
        // In the file's own order.
        objects.sort_by_key(|(position, object)| (object.document, *position));
        let positions = objects.iter().map(|(p, _)| *p).collect();
        let objects = objects.into_iter().map(|(_, o)| o).collect();
        out.push((FileReport { name: source.name().to_string(), source: Some(source), objects }, positions));
    }
    if !kept.is_empty() {
        out.push((FileReport { name: built.name, source: Some(built_source), objects: kept }, kept_at));
    }
    out
}

/// A help line, with where the value came from after it.
fn also(help: Option<String>, why: &str) -> String {
    match help {
        Some(help) => format!("{}; {why}", help.trim_end_matches('.')),
        None => why.to_string(),
    }
}

/// The object's report, its spans in `source`; the object back when it is not there.
fn moved_object(
    mut object: ObjectReport,
    origin: Option<&Origin>,
    source: &SourceFile,
    built_root: Option<&Node>,
    kustomization: &Path,
) -> Result<ObjectReport, Box<ObjectReport>> {
    let made_by = shown(kustomization).display().to_string();
    match origin {
        Some(Origin::Resource(_)) => {
            let Some(info) = object.object.clone() else { return Err(Box::new(object)) };
            let name = info.name.as_deref().unwrap_or_default();
            let Some(found) = find_object(source, &info.gvk.kind, info.namespace.as_deref(), name) else {
                return Err(Box::new(object));
            };
            let anchor = field_node(&found.root, "").map_or(found.span, |(_, span)| span);
            for diagnostic in &mut object.diagnostics {
                let path = diagnostic.path.clone().unwrap_or_default();
                if path.is_empty() {
                    diagnostic.span = anchor;
                    continue;
                }
                let here = field_node(&found.root, &path);
                let built = built_root.and_then(|root| field_node(root, &path));
                match (here, built) {
                    (Some((node, span)), Some((value, _))) if node.to_json() == value.to_json() => {
                        diagnostic.span = span;
                    }
                    // Missing from what was built, and so from here too: the object is
                    // where to add it.
                    (here, None) => diagnostic.span = here.map_or(anchor, |(_, span)| span),
                    (here, Some(_)) => {
                        // Kustomize set it (a patch, a prefix, the namespace): the object
                        // here is where to look, and the kustomization is why it differs.
                        diagnostic.span = here.map_or(anchor, |(_, span)| span);
                        let why = format!(
                            "the value is the kustomization's ({made_by}: its patches, transformers or replacements), not this file's"
                        );
                        diagnostic.help = Some(also(diagnostic.help.take(), &why));
                    }
                }
            }
            object.document = Some(found.document);
            object.item = None;
            object.span = found.span;
            if let Some(info) = &mut object.object {
                info.kind_span = anchor;
                info.api_version_span = found.root.entry("apiVersion").map_or(anchor, |e| e.value.span);
                // Written in the object as built (kustomize's `namespace:` sets it) is
                // written: what reads the span only asks whether it is there.
                let here = field_node(&found.root, "metadata.namespace").map(|(_, span)| span);
                info.namespace_span = info.namespace_span.and(here.or(Some(anchor)));
            }
            Ok(object)
        }
        Some(Origin::Generated { generator, .. }) => {
            let Some(root) = Documents::unlimited(source).filter_map(|d| d.ok()).find_map(|d| d.root) else {
                return Err(Box::new(object));
            };
            // `ConfigMapGenerator` is configured under `configMapGenerator`.
            let mut key = generator.clone();
            if let Some(first) = key.get(..1) {
                key = format!("{}{}", first.to_lowercase(), &key[1..]);
            }
            let span = root.entry(&key).map_or(root.span, |e| e.key.span);
            for diagnostic in &mut object.diagnostics {
                diagnostic.span = span;
                let why = format!("the object is made by this kustomization's {key}");
                diagnostic.help = Some(also(diagnostic.help.take(), &why));
            }
            object.document = Some(0);
            object.item = None;
            object.span = span;
            if let Some(info) = &mut object.object {
                info.kind_span = span;
                info.api_version_span = span;
                info.namespace_span = info.namespace_span.map(|_| span);
            }
            Ok(object)
        }
        None => Err(Box::new(object)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_as_written() {
        assert_eq!(lexical(Path::new("/tmp/w/../app/./base/x.yaml")), PathBuf::from("/tmp/app/base/x.yaml"));
        assert_eq!(lexical(Path::new("../a/../b")), PathBuf::from("../b"));
    }

    #[test]
    fn an_origin_annotation_names_a_file_or_a_generator() {
        let built = |annotation: &str| {
            let text = format!(
                "kind: ConfigMap\nmetadata:\n  annotations:\n    config.kubernetes.io/origin: |\n{}\n",
                annotation.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
            );
            let source = SourceFile::new("t", text).unwrap();
            let root = Documents::new(&source).next().unwrap().unwrap().root.unwrap();
            origin(&root, Path::new("/tmp/w"))
        };
        assert_eq!(built("path: ../app/base/cm.yaml"), Some(Origin::Resource("/tmp/app/base/cm.yaml".into())));
        assert_eq!(
            built(
                "configuredIn: ../app/kustomization.yaml\nconfiguredBy:\n  apiVersion: builtin\n  kind: ConfigMapGenerator"
            ),
            Some(Origin::Generated {
                file: "/tmp/app/kustomization.yaml".into(),
                generator: "ConfigMapGenerator".into()
            })
        );
        // A remote base's files are not here to point at.
        assert_eq!(built("path: examples/cm.yaml\nrepo: https://github.com/example/app\nref: v1"), None);
    }
}
