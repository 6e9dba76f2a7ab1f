//! The flags every command that reads manifests shares (paths, Kubernetes version,
//! schema folders, strictness, configuration file), and how they combine with
//! `.kubeyard.yaml`: flags win over the file, the file over the defaults.

use super::Exit;
use super::lint::usage_error;
use crate::report;
use clap::Args;
use kubeyard_compiler::config::{self, Config};
use kubeyard_compiler::diagnostic::Diagnostic;
use kubeyard_compiler::schema::{CatalogOptions, KubernetesVersion, SchemaError, SchemaFolder};
use kubeyard_compiler::template::Values;
use kubeyard_compiler::{FileReport, ObjectReport, SourceFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug, Default)]
pub struct Inputs {
    /// Files or directories (default: the current directory); `-` reads standard input.
    /// Directories are searched for *.yaml, *.yml and *.json, skipping hidden files and
    /// folders.
    #[arg(value_name = "PATHS")]
    pub paths: Vec<String>,

    /// The Kubernetes version whose schemas to use (e.g. 1.32) [default: the newest
    /// kubeyard ships, or kubernetesVersion in .kubeyard.yaml].
    #[arg(long, short = 'k', value_name = "1.NN")]
    pub kubernetes_version: Option<String>,

    /// A folder of extra JSON schemas (kubeconform's names, e.g. `widget-example-v1.json`),
    /// searched before the built-in ones. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub schema_dir: Vec<PathBuf>,

    /// Allow fields the schema does not define, and duplicate keys (as warnings).
    #[arg(long)]
    pub no_strict: bool,

    /// Skip custom resources that have no schema instead of reporting them.
    #[arg(long)]
    pub ignore_missing_schemas: bool,

    /// The configuration file [default: the nearest .kubeyard.yaml in or above the first
    /// path].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Ignore any .kubeyard.yaml.
    #[arg(long, conflicts_with = "config")]
    pub no_config: bool,

    /// A values file for `${ }` templates. Repeatable; later files win.
    #[arg(long = "values", value_name = "FILE", help_heading = "Templates")]
    pub values: Vec<PathBuf>,

    /// Set one template value (`image.tag=v2`; the value reads as YAML: 3 is a number).
    /// Repeatable; wins over values files.
    #[arg(long = "set", value_name = "KEY=VALUE", help_heading = "Templates")]
    pub set: Vec<String>,

    /// Set one template value as text, whatever it looks like (`image.tag=1.10`).
    /// Repeatable; applied after --set.
    #[arg(long = "set-string", value_name = "KEY=VALUE", help_heading = "Templates")]
    pub set_string: Vec<String>,

    /// The environment: values/NAME.yaml next to the manifests, over values/default.yaml.
    #[arg(long, value_name = "NAME", help_heading = "Templates")]
    pub env: Option<String>,

    /// A values file for the Helm charts among the paths (`helm template --values`).
    /// Repeatable; later files win.
    #[arg(long, value_name = "FILE", help_heading = "Helm charts")]
    pub helm_values: Vec<PathBuf>,

    /// The release name charts are rendered with [default: helm's, `release-name`].
    #[arg(long, value_name = "NAME", help_heading = "Helm charts")]
    pub helm_release: Option<String>,

    /// The namespace charts are rendered for (`.Release.Namespace`) [default: default].
    #[arg(long, value_name = "NAMESPACE", help_heading = "Helm charts")]
    pub helm_namespace: Option<String>,
}

/// The template values of a run, and the values folder that must not be read as manifests.
pub struct Templating {
    pub values: Option<Arc<Values>>,
    pub values_dir: Option<PathBuf>,
}

impl Inputs {
    /// Templates are on when values are given, or when `values/default.yaml` sits next to
    /// the manifests; otherwise `${` is plain text, as in shell scripts inside ConfigMaps.
    /// Values come from values/default.yaml, then values/ENV.yaml, then each --values,
    /// then each --set. Problems are printed and end the run (exit 2).
    pub fn templating(&self, paths: &[String]) -> Result<Templating, Exit> {
        let base = paths
            .iter()
            .find(|p| *p != "-")
            .map(PathBuf::from)
            .map(|p| if p.is_dir() { p } else { p.parent().map(PathBuf::from).unwrap_or_default() });
        let dir = base.map(|b| if b.as_os_str().is_empty() { PathBuf::from(".") } else { b }.join("values"));
        let default_file = dir.as_ref().map(|d| d.join("default.yaml")).filter(|f| f.is_file());
        let asked =
            !self.values.is_empty() || !self.set.is_empty() || !self.set_string.is_empty() || self.env.is_some();
        if !asked && default_file.is_none() {
            return Ok(Templating { values: None, values_dir: None });
        }
        let mut files: Vec<PathBuf> = default_file.into_iter().collect();
        if let Some(env) = &self.env {
            let file = dir.as_ref().map(|d| d.join(format!("{env}.yaml")));
            match file {
                Some(file) if file.is_file() => files.push(file),
                _ => {
                    let shown = dir.as_ref().map_or_else(|| "values".into(), |d| d.display().to_string());
                    let known: Vec<String> = dir
                        .as_ref()
                        .and_then(|d| std::fs::read_dir(d).ok())
                        .map(|entries| {
                            let mut names: Vec<String> = entries
                                .flatten()
                                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_string))
                                .filter(|n| n != "default")
                                .collect();
                            names.sort();
                            names
                        })
                        .unwrap_or_default();
                    let have = if known.is_empty() {
                        "there are none".to_string()
                    } else {
                        format!("there are: {}", known.join(", "))
                    };
                    return Err(usage_error(&format!("--env {env}: no {shown}/{env}.yaml ({have})")));
                }
            }
        }
        files.extend(self.values.iter().cloned());
        let mut values = Values::default();
        for file in &files {
            let source = read_source(file)?;
            if let Err(problems) = values.merge_file(&source) {
                print_problems(source, problems);
                return Err(Exit::Usage);
            }
        }
        for assignment in &self.set {
            values.set(assignment).map_err(|message| usage_error(&message))?;
        }
        for assignment in &self.set_string {
            values.set_string(assignment).map_err(|message| usage_error(&message))?;
        }
        let values_dir = dir.filter(|d| d.is_dir());
        Ok(Templating { values: Some(Arc::new(values)), values_dir })
    }

    /// The paths to read: standard input only when asked for (`-`), since CI runners hand
    /// commands a stdin that is not a terminal, and reading that instead of the checkout
    /// would pass vacuously.
    pub fn paths(&self) -> Vec<String> {
        if self.paths.is_empty() { vec![".".to_string()] } else { self.paths.clone() }
    }

    /// The configuration: `--config`, else the nearest `.kubeyard.yaml`, else none. Its
    /// problems are printed; errors in it stop the run (exit 2).
    pub fn load_config(&self, paths: &[String]) -> Result<Config, Exit> {
        if self.no_config {
            return Ok(Config::default());
        }
        let path = match &self.config {
            Some(path) => path.clone(),
            None => {
                let start = paths.iter().find(|p| *p != "-").map_or_else(|| PathBuf::from("."), PathBuf::from);
                match find_config(&start) {
                    Some(path) => path,
                    None => return Ok(Config::default()),
                }
            }
        };
        let source = read_source(&path)?;
        let base = path.parent().map(PathBuf::from).unwrap_or_default();
        let (config, problems) = config::parse(&source, &base);
        let failed = problems.iter().any(Diagnostic::is_error);
        print_problems(source, problems);
        if failed {
            return Err(Exit::Usage);
        }
        Ok(config)
    }

    pub fn catalog_options(&self, config: &Config) -> Result<CatalogOptions, String> {
        let version = match &self.kubernetes_version {
            Some(text) => text.parse::<KubernetesVersion>().map_err(|e| e.to_string())?,
            None => config.kubernetes_version.unwrap_or_else(KubernetesVersion::latest),
        };
        let mut schema_dirs: Vec<Arc<dyn SchemaFolder>> = Vec::new();
        for path in config.schema_dirs.iter().chain(&self.schema_dir) {
            schema_dirs.push(Arc::new(SchemaDirectory::open(path)?));
        }
        Ok(CatalogOptions { version, strict: !self.no_strict && config.strict.unwrap_or(true), schema_dirs })
    }

    /// How the charts among the paths are rendered: the `--helm-*` flags, for the
    /// Kubernetes version linted against (`.Capabilities.KubeVersion`).
    pub fn helm(&self, catalog: &CatalogOptions) -> crate::helm::Options {
        crate::helm::Options {
            values: self.helm_values.clone(),
            release: self.helm_release.clone(),
            kube_version: Some(catalog.version.to_string()),
            namespace: self.helm_namespace.clone(),
        }
    }
}

/// The configuration file for a path: the nearest `.kubeyard.yaml` in its folder or
/// above.
fn find_config(start: &Path) -> Option<PathBuf> {
    let start =
        if start.is_dir() { start.to_path_buf() } else { start.parent().map(Path::to_path_buf).unwrap_or_default() };
    let start = start.canonicalize().unwrap_or(start);
    start
        .ancestors()
        .flat_map(|dir| config::FILE_NAMES.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
}

/// A `--schema-dir` folder on disk, read file by file as the compiler's catalog asks.
#[derive(Debug)]
pub struct SchemaDirectory {
    path: PathBuf,
}

impl SchemaDirectory {
    /// The folder at `path`, which must be one.
    pub fn open(path: &Path) -> Result<SchemaDirectory, String> {
        let folder_error = |message: String| SchemaError::Folder { path: path.to_path_buf(), message }.to_string();
        let path = path.canonicalize().map_err(|e| folder_error(e.to_string()))?;
        if !path.is_dir() {
            return Err(folder_error("not a directory".into()));
        }
        Ok(SchemaDirectory { path })
    }
}

impl SchemaFolder for SchemaDirectory {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, name: &str) -> Option<Result<String, String>> {
        let path = self.path.join(name);
        // Only files: a folder of that name is not a schema.
        if !path.is_file() {
            return None;
        }
        Some(std::fs::read_to_string(&path).map_err(|e| e.to_string()))
    }
}

/// A file kubeyard reads beside the manifests (configuration, values, a state) as text;
/// what cannot be read ends the run (exit 2).
pub fn read_source(path: &Path) -> Result<SourceFile, Exit> {
    let bytes = std::fs::read(path).map_err(|e| usage_error(&format!("cannot read {}: {e}", path.display())))?;
    SourceFile::from_bytes(path.display().to_string(), bytes)
        .map_err(|e| usage_error(&format!("{}: {e}", path.display())))
}

/// Prints the problems of such a file on standard error, as `kubeyard lint` renders them.
pub fn print_problems(source: SourceFile, problems: Vec<Diagnostic>) {
    if problems.is_empty() {
        return;
    }
    let report = FileReport {
        name: source.name().to_string(),
        source: Some(source),
        objects: vec![ObjectReport::whole_file(problems)],
    };
    eprint!("{}", report::text::render_diagnostics(&report));
}
