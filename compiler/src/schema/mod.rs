//! The schemas objects are validated against: the upstream Kubernetes JSON Schemas of
//! one version (embedded, from `schemas/`), schema folders the user adds, and the
//! schemas of CustomResourceDefinitions found in the input.
//!
//! A `Catalog` compiles each (group, version, kind) once, on first use, and shares the
//! compiled validator between threads. The definitions are parsed once per process.

pub mod cel;
pub mod cel_cost;
pub mod descriptions;
pub mod enums;
pub mod openapi;
pub mod prune;
pub mod removed;
pub mod structural;

use crate::diagnostic::{Code, did_you_mean};
use crate::object::GroupVersionKind;
use jsonschema::{Draft, Registry, Validator};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// kubeyard's own API group.
pub const KUBEYARD_GROUP: &str = "kubeyard.dev";

/// kubeyard's own kinds: `(kind, OpenAPI schema, namespaced)`.
const KUBEYARD_KINDS: &[(&str, &str, bool)] = &[
    ("Cluster", include_str!("../../../schemas/kubeyard.dev/v1alpha1/cluster.json"), false),
    ("Test", include_str!("../../../schemas/kubeyard.dev/v1alpha1/test.json"), false),
];

/// The URI the upstream per-kind schemas use for the shared definitions.
pub const DEFINITIONS_URI: &str = "https://kubernetes.io/api/_definitions.json";

/// A Kubernetes minor version (`1.NN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubernetesVersion {
    pub minor: u32,
}

impl KubernetesVersion {
    /// The versions kubeyard has schemas for, oldest first.
    pub fn shipped() -> impl Iterator<Item = KubernetesVersion> {
        embedded::VERSIONS.iter().map(|&(minor, _)| KubernetesVersion { minor })
    }

    pub fn latest() -> KubernetesVersion {
        KubernetesVersion::shipped().last().expect("build.rs refuses to build without schemas")
    }

    fn definitions_text(self) -> Option<&'static str> {
        embedded::VERSIONS.iter().find(|&&(minor, _)| minor == self.minor).map(|&(_, text)| text)
    }

    fn shipped_list() -> String {
        let versions: Vec<String> = KubernetesVersion::shipped().map(|v| v.to_string()).collect();
        versions.join(", ")
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

impl FromStr for KubernetesVersion {
    type Err = SchemaError;

    /// Accepts `1.31`, `v1.31`, `1.31.4` and `latest`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "latest" {
            return Ok(KubernetesVersion::latest());
        }
        let bad = || SchemaError::BadVersion(text.to_string());
        let trimmed = text.strip_prefix('v').unwrap_or(text);
        let mut parts = trimmed.split('.');
        let (Some("1"), Some(minor)) = (parts.next(), parts.next()) else {
            return Err(bad());
        };
        let minor: u32 = minor.parse().map_err(|_| bad())?;
        if parts.clone().count() > 1 || parts.any(|p| p.parse::<u32>().is_err()) {
            return Err(bad());
        }
        let version = KubernetesVersion { minor };
        if version.definitions_text().is_none() {
            return Err(SchemaError::NotShipped {
                version: version.to_string(),
                shipped: KubernetesVersion::shipped_list(),
            });
        }
        Ok(version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid Kubernetes version {0:?}: expected 1.NN (for example 1.32)")]
    BadVersion(String),
    #[error("kubeyard has no schemas for Kubernetes {version}; it has {shipped}")]
    NotShipped { version: String, shipped: String },
    #[error("schema folder {}: {message}", path.display())]
    Folder { path: PathBuf, message: String },
    #[error("the embedded schemas for Kubernetes {version} are unusable: {message}")]
    Embedded { version: String, message: String },
}

#[derive(Clone, Debug)]
pub struct CatalogOptions {
    pub version: KubernetesVersion,
    /// Unknown fields are errors (the default, like `kubectl --validate=strict`).
    pub strict: bool,
    /// Folders of extra schemas, searched before the built-in ones.
    pub schema_dirs: Vec<Arc<dyn SchemaFolder>>,
}

/// A folder of extra schemas (`--schema-dir`), in kubeconform's layout. The compiler
/// does no I/O: whoever runs it (the harness) opens the folder and reads its files when
/// the catalog asks for them by name.
pub trait SchemaFolder: Send + Sync + fmt::Debug {
    /// The folder's absolute path: schemas' origins and their `file://` URIs name it.
    fn path(&self) -> &Path;

    /// The text of the file `name` (a path relative to the folder, `/`-separated): `None`
    /// when there is no such file, an error message when it is there and unreadable.
    fn read(&self, name: &str) -> Option<Result<String, String>>;
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions { version: KubernetesVersion::latest(), strict: true, schema_dirs: Vec::new() }
    }
}

/// Where a compiled schema came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin { definition: String },
    File { path: PathBuf },
    CustomResourceDefinition { name: String },
}

/// A validator for one kind, with what it takes to explain its errors.
pub struct CompiledSchema {
    pub origin: Origin,
    pub validator: Validator,
    base_uri: String,
    root: Value,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema").field("origin", &self.origin).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub enum Lookup {
    Found(Arc<CompiledSchema>),
    /// No schema knows this kind; `Catalog::explain_missing` says why.
    Missing,
    /// A schema exists but cannot be compiled.
    Broken {
        origin: Origin,
        message: String,
    },
}

/// Why no schema was found, phrased for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingSchema {
    pub code: Code,
    pub message: String,
    pub help: String,
    /// A custom resource whose schema the user has not given (as opposed to a built-in
    /// kind that does not exist): `--ignore-missing-schemas` skips these.
    pub custom: bool,
    /// The kind is at fault (misspelt or unknown), not the apiVersion.
    pub blames_kind: bool,
}

impl MissingSchema {
    fn custom_resource(gvk: &GroupVersionKind) -> MissingSchema {
        MissingSchema {
            code: Code::UnknownKind,
            message: format!("no schema for the custom resource {gvk}"),
            help: "include its CustomResourceDefinition in the input, add its JSON schema with --schema-dir, or skip such objects with --ignore-missing-schemas".into(),
            custom: true,
            blames_kind: false,
        }
    }
}

struct SchemaDir {
    folder: Arc<dyn SchemaFolder>,
    /// The registry URI of the folder's `_definitions.json`, when it has one.
    definitions_uri: Option<String>,
}

struct CustomKind {
    crd_name: String,
    /// The JSON-Schema translation `lint` validates with.
    schema: Value,
    /// The version's `openAPIV3Schema` as written, which the API server validates with
    /// (`structural`).
    structural: Arc<Value>,
    /// Its CEL rules (`x-kubernetes-validations`), compiled; `None` when it has none.
    rules: Option<Arc<cel::Rules>>,
    namespaced: bool,
    /// Whether the version has the `status` subresource (then writes of the main resource
    /// reset `status`, and `status` writes everything else).
    status_subresource: bool,
}

pub struct Catalog {
    version: KubernetesVersion,
    strict: bool,
    registry: Registry<'static>,
    /// Every document in the registry by URI, to read the schema an error points into.
    documents: HashMap<String, Arc<Value>>,
    builtin: HashMap<GroupVersionKind, String>,
    dirs: Vec<SchemaDir>,
    /// The kinds CRDs define. Behind a lock: the API server registers and removes them
    /// while it serves (a CRD created or deleted), lint only while it reads its inputs.
    custom: RwLock<HashMap<GroupVersionKind, CustomKind>>,
    cache: RwLock<HashMap<GroupVersionKind, Arc<OnceLock<Lookup>>>>,
    /// The built-in definitions by name, hashed, for walking objects alongside their
    /// schema (normalization); built on first use.
    definitions: OnceLock<rustc_hash::FxHashMap<String, Value>>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog").field("version", &self.version).field("strict", &self.strict).finish_non_exhaustive()
    }
}

impl Catalog {
    pub fn new(options: CatalogOptions) -> Result<Catalog, SchemaError> {
        let version = options.version;
        let embedded_error = |message: String| SchemaError::Embedded { version: version.to_string(), message };
        let text = version.definitions_text().ok_or_else(|| SchemaError::NotShipped {
            version: version.to_string(),
            shipped: KubernetesVersion::shipped_list(),
        })?;
        let mut definitions: Value = serde_json::from_str(text).map_err(|e| embedded_error(e.to_string()))?;
        if options.strict {
            openapi::make_strict(&mut definitions, openapi::Reach::Everywhere);
        }
        let builtin = index_kinds(&definitions);
        let mut documents = HashMap::new();
        documents.insert(DEFINITIONS_URI.to_string(), Arc::new(definitions));

        let mut dirs = Vec::new();
        for folder in &options.schema_dirs {
            let folder_error = |message: String| SchemaError::Folder { path: folder.path().to_path_buf(), message };
            let definitions_uri = match folder.read("_definitions.json") {
                None => None,
                Some(text) => {
                    let text = text.map_err(|e| folder_error(format!("_definitions.json: {e}")))?;
                    let mut value: Value = serde_json::from_str(&text)
                        .map_err(|e| folder_error(format!("_definitions.json is not JSON: {e}")))?;
                    if options.strict {
                        openapi::make_strict(&mut value, openapi::Reach::Everywhere);
                    }
                    // Upstream copies claim the built-in definitions' `$id`; this folder's own
                    // definitions must not be confused with (or shadow) the embedded ones.
                    if let Value::Object(map) = &mut value {
                        map.remove("$id");
                    }
                    let uri = file_uri(&folder.path().join("_definitions.json"));
                    documents.insert(uri.clone(), Arc::new(value));
                    Some(uri)
                }
            };
            dirs.push(SchemaDir { folder: Arc::clone(folder), definitions_uri });
        }

        let mut builder = Registry::new().draft(Draft::Draft202012);
        for (uri, document) in &documents {
            builder = builder.add(uri, Arc::clone(document)).map_err(|e| embedded_error(format!("{uri}: {e}")))?;
        }
        let registry = builder.prepare().map_err(|e| embedded_error(e.to_string()))?;
        let mut catalog = Catalog {
            version,
            strict: options.strict,
            registry,
            documents,
            builtin,
            dirs,
            custom: RwLock::new(HashMap::new()),
            cache: RwLock::new(HashMap::new()),
            definitions: OnceLock::new(),
        };
        catalog.register_kubeyard_kinds().map_err(embedded_error)?;
        Ok(catalog)
    }

    /// kubeyard's own kinds (`kubeyard.dev/v1alpha1`), described like custom resources.
    fn register_kubeyard_kinds(&mut self) -> Result<(), String> {
        for (kind, text, namespaced) in KUBEYARD_KINDS {
            let open_api: Value = serde_json::from_str(text).map_err(|e| format!("{kind}: {e}"))?;
            let gvk = GroupVersionKind::new(KUBEYARD_GROUP, "v1alpha1", *kind);
            let schema = openapi::custom_resource_schema(Some(&open_api), &gvk.api_version(), kind, self.strict);
            let crd_name = format!("{}s.{KUBEYARD_GROUP}", kind.to_lowercase());
            self.custom.get_mut().unwrap_or_else(|e| e.into_inner()).insert(
                gvk,
                CustomKind {
                    crd_name,
                    schema,
                    structural: Arc::new(open_api),
                    rules: None,
                    namespaced: *namespaced,
                    status_subresource: false,
                },
            );
        }
        Ok(())
    }

    pub fn version(&self) -> KubernetesVersion {
        self.version
    }

    pub fn strict(&self) -> bool {
        self.strict
    }

    fn customs(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupVersionKind, CustomKind>> {
        self.custom.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the kinds a CustomResourceDefinition defines (its served versions), so
    /// objects of those kinds are validated against its schema; versions it no longer
    /// serves are dropped. Returns the kinds, or why the CRD is unusable.
    pub fn register_crd(&self, crd: &Value) -> Result<Vec<GroupVersionKind>, String> {
        let spec = crd.get("spec").ok_or("the CustomResourceDefinition has no spec")?;
        let group = spec.get("group").and_then(Value::as_str).ok_or("spec.group is missing")?;
        let kind = spec.pointer("/names/kind").and_then(Value::as_str).ok_or("spec.names.kind is missing")?;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{}.{group}", kind.to_lowercase()), str::to_string);
        // apiextensions/v1beta1 had one schema for all versions, and a single `version`.
        let shared_schema = spec.pointer("/validation/openAPIV3Schema");
        let shared_status = spec.pointer("/subresources/status").is_some();
        let mut versions: Vec<(String, Option<&Value>, bool)> = Vec::new();
        if let Some(list) = spec.get("versions").and_then(Value::as_array) {
            for entry in list {
                // The API server refuses objects of a version it does not serve.
                if entry.get("served") == Some(&Value::Bool(false)) {
                    continue;
                }
                if let Some(version) = entry.get("name").and_then(Value::as_str) {
                    let schema = entry.pointer("/schema/openAPIV3Schema").or(shared_schema);
                    let status = entry.pointer("/subresources/status").is_some() || shared_status;
                    versions.push((version.to_string(), schema, status));
                }
            }
        } else if let Some(version) = spec.get("version").and_then(Value::as_str) {
            versions.push((version.to_string(), shared_schema, shared_status));
        }
        if versions.is_empty() {
            return Err("spec.versions lists no version".into());
        }
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        let mut kinds = Vec::new();
        for (version, open_api, status_subresource) in versions {
            let gvk = GroupVersionKind::new(group, version, kind);
            let schema = openapi::custom_resource_schema(open_api, &gvk.api_version(), kind, self.strict);
            let structural = open_api
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
            let rules = cel::Rules::compile(&structural, &gvk.api_version(), kind).map(Arc::new);
            let structural = Arc::new(structural);
            let custom =
                CustomKind { crd_name: name.clone(), schema, structural, rules, namespaced, status_subresource };
            kinds.push((gvk, custom));
        }
        let registered: Vec<GroupVersionKind> = kinds.iter().map(|(gvk, _)| gvk.clone()).collect();
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        let before: Vec<GroupVersionKind> =
            custom.iter().filter(|(_, c)| c.crd_name == name).map(|(gvk, _)| gvk.clone()).collect();
        for gvk in &before {
            custom.remove(gvk);
        }
        custom.extend(kinds);
        drop(custom);
        // The schemas are in place before the compiled ones are forgotten: a lookup racing
        // this compiles the new schema, never keeps the old one.
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        for gvk in before.iter().chain(&registered) {
            cache.remove(gvk);
        }
        Ok(registered)
    }

    /// Whether each served version's schema of a CRD compiles (a bad `pattern` does
    /// not), without registering anything: what the API server checks before storing it.
    pub fn check_crd(&self, crd: &Value) -> Result<(), String> {
        let kinds = {
            let spec = crd.get("spec").ok_or("the CustomResourceDefinition has no spec")?;
            let group = spec.get("group").and_then(Value::as_str).unwrap_or_default();
            let kind = spec.pointer("/names/kind").and_then(Value::as_str).unwrap_or_default();
            let mut kinds = Vec::new();
            for (index, entry) in spec.get("versions").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let version = entry.get("name").and_then(Value::as_str).unwrap_or_default();
                let gvk = GroupVersionKind::new(group, version, kind);
                let open_api = entry.pointer("/schema/openAPIV3Schema");
                let schema = openapi::custom_resource_schema(open_api, &gvk.api_version(), kind, self.strict);
                kinds.push((index, gvk, schema));
            }
            kinds
        };
        // Compiled and thrown away: nothing is registered or cached.
        for (index, gvk, schema) in kinds {
            let base = format!("https://kubeyard.dev/crd-check/{}/{}.json", gvk.version, gvk.kind.to_lowercase());
            let origin = Origin::CustomResourceDefinition { name: String::new() };
            if let Lookup::Broken { message, .. } = self.build(origin, base, schema) {
                return Err(format!("spec.versions[{index}].schema.openAPIV3Schema: {message}"));
            }
        }
        Ok(())
    }

    /// Prunes and defaults an object of a custom kind as the API server decodes it (see
    /// `prune`): the fields dropped; `None` for kinds no CRD defines.
    pub fn prune_custom(&self, gvk: &GroupVersionKind, object: &mut Value) -> Option<Vec<String>> {
        let custom = self.customs();
        let kind = custom.get(gvk)?;
        Some(prune::prune_and_default(&kind.schema, object))
    }

    /// Drops the fields a built-in kind does not have, as the API server decodes it (see
    /// `prune::drop_unknown`): the fields dropped; `None` for kinds without a built-in
    /// definition.
    pub fn prune_builtin(&self, gvk: &GroupVersionKind, object: &mut Value) -> Option<Vec<String>> {
        let (definition, definitions) = self.builtin_definition(gvk)?;
        Some(prune::drop_unknown(definition, definitions, object))
    }

    /// Checks an object of a custom kind against its CRD version's schema as the API
    /// server does (see `structural`): the findings, in Kubernetes' words; `None` for
    /// kinds no CRD defines.
    /// `old` is the object an update replaces, for CEL transition rules.
    pub fn validate_custom(
        &self,
        gvk: &GroupVersionKind,
        object: &Value,
        old: Option<&Value>,
    ) -> Option<Vec<crate::admission::Cause>> {
        let (structural, rules) = {
            let custom = self.customs();
            let kind = custom.get(gvk)?;
            (kind.structural.clone(), kind.rules.clone())
        };
        let mut causes = structural::validate(&structural, object);
        if let Some(rules) = rules {
            let found = rules.check(&structural, object, old, &causes);
            causes.extend(found);
        }
        Some(causes)
    }

    /// A custom kind's schema as its CRD version writes it; `None` for built-in kinds.
    pub fn custom_schema(&self, gvk: &GroupVersionKind) -> Option<Arc<Value>> {
        self.customs().get(gvk).map(|kind| Arc::clone(&kind.structural))
    }

    /// Runs `f` with a kind's merge topology (server-side apply's): a custom kind's
    /// schema, a built-in kind's definition, or none (every object a map, every list
    /// atomic) for a kind without a schema.
    pub fn with_merge_schema<T>(
        &self,
        gvk: &GroupVersionKind,
        f: impl FnOnce(crate::list_merge::Schema<'_>) -> T,
    ) -> T {
        let none = rustc_hash::FxHashMap::default();
        if let Some(custom) = self.custom_schema(gvk) {
            return f(crate::list_merge::Schema { node: Some(&custom), definitions: Some(&none) });
        }
        match self.builtin_definition(gvk) {
            Some((node, definitions)) => {
                f(crate::list_merge::Schema { node: Some(node), definitions: Some(definitions) })
            }
            None => f(crate::list_merge::Schema { node: None, definitions: Some(&none) }),
        }
    }

    /// The CEL rules' findings alone for an object of a custom kind (what `lint` adds to
    /// its schema check): empty for kinds without rules.
    /// `object` makes the object's JSON, only when the kind has rules (lint holds a tree).
    pub fn check_custom_rules(
        &self,
        gvk: &GroupVersionKind,
        object: impl FnOnce() -> Value,
    ) -> Vec<crate::admission::Cause> {
        let (structural, rules) = {
            let custom = self.customs();
            let Some(kind) = custom.get(gvk) else { return Vec::new() };
            let Some(rules) = kind.rules.clone() else { return Vec::new() };
            (kind.structural.clone(), rules)
        };
        let object = object();
        let earlier = structural::validate(&structural, &object);
        rules.check(&structural, &object, None, &earlier)
    }

    /// The name of the CustomResourceDefinition that defines a custom kind.
    pub fn crd_name(&self, gvk: &GroupVersionKind) -> Option<String> {
        self.customs().get(gvk).map(|c| c.crd_name.clone())
    }

    /// Forgets the kinds a CustomResourceDefinition (by name) defined: it was deleted.
    pub fn unregister_crd(&self, crd_name: &str) -> Vec<GroupVersionKind> {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<GroupVersionKind> =
            custom.iter().filter(|(_, c)| c.crd_name == crd_name).map(|(gvk, _)| gvk.clone()).collect();
        for gvk in &gone {
            custom.remove(gvk);
        }
        drop(custom);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        for gvk in &gone {
            cache.remove(gvk);
        }
        gone
    }

    /// Every custom kind registered (each served version of each CRD).
    pub fn custom_kinds(&self) -> Vec<GroupVersionKind> {
        self.customs().keys().cloned().collect()
    }

    /// Every built-in kind of this version.
    pub fn builtin_kinds(&self) -> impl Iterator<Item = &GroupVersionKind> {
        self.builtin.keys()
    }

    /// The name of a built-in kind's definition (`io.k8s.api.apps.v1.Deployment`).
    pub fn builtin_name(&self, gvk: &GroupVersionKind) -> Option<&str> {
        self.builtin.get(gvk).map(String::as_str)
    }

    /// The built-in definition of a kind and the definitions it refers to (`$defs`), for
    /// walking an object alongside its schema. `None` for custom resources. Strictness
    /// (`additionalProperties: false`) is part of what it returns.
    pub fn builtin_definition(
        &self,
        gvk: &GroupVersionKind,
    ) -> Option<(&Value, &rustc_hash::FxHashMap<String, Value>)> {
        let name = self.builtin.get(gvk)?;
        let definitions = self.definitions.get_or_init(|| {
            let defs = self.documents.get(DEFINITIONS_URI).and_then(|d| d.get("$defs")).and_then(Value::as_object);
            defs.map(|defs| defs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
        });
        Some((definitions.get(name)?, definitions))
    }

    /// Whether writes of a kind's main resource reset its `status` (server-side apply's
    /// ownership leaves it out): a CRD version with the `status` subresource, a built-in
    /// kind with a `status`.
    pub fn resets_status(&self, gvk: &GroupVersionKind) -> bool {
        if let Some(custom) = self.customs().get(gvk) {
            return custom.status_subresource;
        }
        self.builtin_definition(gvk).is_some_and(|(node, definitions)| {
            crate::list_merge::Schema { node: Some(node), definitions: Some(definitions) }.declares("status")
        })
    }

    /// Whether objects of a kind live in a namespace: CRDs say so in `spec.scope`.
    pub fn is_namespaced(&self, gvk: &GroupVersionKind) -> bool {
        match self.customs().get(gvk) {
            Some(custom) => custom.namespaced,
            None => crate::scope::builtin_is_namespaced(&gvk.group, &gvk.kind),
        }
    }

    /// The compiled schema for a kind, compiling it on first use.
    pub fn lookup(&self, gvk: &GroupVersionKind) -> Lookup {
        let cell = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache.get(gvk).cloned()
        };
        let cell = cell.unwrap_or_else(|| {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            Arc::clone(cache.entry(gvk.clone()).or_default())
        });
        cell.get_or_init(|| self.compile(gvk)).clone()
    }

    fn compile(&self, gvk: &GroupVersionKind) -> Lookup {
        if let Some((path, text, dir)) = self.find_in_dirs(gvk) {
            let origin = Origin::File { path: path.clone() };
            return match text.and_then(|text| self.load_file(&path, &text, dir)) {
                Ok(root) => self.build(origin, file_uri(&path), root),
                Err(message) => Lookup::Broken { origin, message },
            };
        }
        let custom = self.customs().get(gvk).map(|c| (c.crd_name.clone(), c.schema.clone()));
        if let Some((crd_name, schema)) = custom {
            let base = format!("https://kubeyard.dev/crd/{crd_name}/{}/{}.json", gvk.version, gvk.kind.to_lowercase());
            let origin = Origin::CustomResourceDefinition { name: crd_name };
            return self.build(origin, base, schema);
        }
        if let Some(definition) = self.builtin.get(gvk) {
            let root = serde_json::json!({ "$ref": format!("{DEFINITIONS_URI}#/$defs/{definition}") });
            let origin = Origin::Builtin { definition: definition.clone() };
            return self.build(origin, "https://kubernetes.io/api/root.json".into(), root);
        }
        Lookup::Missing
    }

    fn build(&self, origin: Origin, base_uri: String, root: Value) -> Lookup {
        let draft = match root.get("$schema").and_then(Value::as_str) {
            Some(s) if s.contains("draft-04") => Draft::Draft4,
            Some(s) if s.contains("draft-06") => Draft::Draft6,
            Some(s) if s.contains("draft-07") => Draft::Draft7,
            _ => Draft::Draft202012,
        };
        match jsonschema::options()
            .with_draft(draft)
            .with_registry(&self.registry)
            .with_base_uri(base_uri.clone())
            .build(&root)
        {
            Ok(validator) => Lookup::Found(Arc::new(CompiledSchema { origin, validator, base_uri, root })),
            Err(error) => Lookup::Broken { origin, message: error.to_string() },
        }
    }

    /// kubeconform's file names: `deployment-apps-v1.json` (first label of the group),
    /// the same with the whole group, and the CRD catalog's `group/kind_version.json`.
    fn find_in_dirs(&self, gvk: &GroupVersionKind) -> Option<(PathBuf, Result<String, String>, &SchemaDir)> {
        let kind = gvk.kind.to_lowercase();
        let short_group = gvk.group.split('.').next().unwrap_or_default();
        let mut names = Vec::with_capacity(4);
        if gvk.group.is_empty() {
            names.push(format!("{kind}-{}.json", gvk.version));
        } else {
            names.push(format!("{kind}-{short_group}-{}.json", gvk.version));
            names.push(format!("{kind}-{}-{}.json", gvk.group, gvk.version));
            names.push(format!("{}/{kind}_{}.json", gvk.group, gvk.version));
        }
        names.push(format!("{kind}_{}.json", gvk.version));
        self.dirs.iter().find_map(|dir| {
            names.iter().find_map(|name| {
                let path = dir.folder.path().join(name);
                let text = dir.folder.read(name)?.map_err(|e| format!("cannot read {}: {e}", path.display()));
                Some((path, text, dir))
            })
        })
    }

    fn load_file(&self, path: &Path, text: &str, dir: &SchemaDir) -> Result<Value, String> {
        let mut root: Value = serde_json::from_str(text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        if let Some(uri) = &dir.definitions_uri {
            point_refs_at(&mut root, uri);
        }
        if self.strict {
            openapi::make_strict(&mut root, openapi::Reach::Everywhere);
        }
        Ok(root)
    }

    /// The schema object an error's absolute keyword location points into, minus the
    /// keyword itself: for `.../PodSpec/additionalProperties`, the PodSpec schema.
    pub fn schema_at<'a>(&'a self, compiled: &'a CompiledSchema, location: &str) -> Option<&'a Value> {
        let (document, fragment) = location.split_once('#').unwrap_or((location, ""));
        let pointer = percent_decode(fragment);
        let parent = pointer.rsplit_once('/').map_or("", |(parent, _)| parent);
        let root = if document == compiled.base_uri { &compiled.root } else { self.documents.get(document)?.as_ref() };
        root.pointer(parent)
    }

    /// The `apiVersion`s that serve `kind` in this catalog, best first.
    pub fn api_versions_for(&self, kind: &str) -> Vec<String> {
        let custom = self.customs();
        let mut found: Vec<&GroupVersionKind> =
            self.builtin.keys().chain(custom.keys()).filter(|g| g.kind == kind).collect();
        found.sort_by_key(|g| (std::cmp::Reverse(removed::version_priority(&g.version)), g.group.clone()));
        let mut seen = BTreeSet::new();
        found.into_iter().map(GroupVersionKind::api_version).filter(|v| seen.insert(v.clone())).collect()
    }

    /// Says why a kind has no schema: removed, not yet added, misspelt, or a custom
    /// resource nobody described.
    pub fn explain_missing(&self, gvk: &GroupVersionKind) -> MissingSchema {
        let target = self.version;
        let api_version = gvk.api_version();
        let served_in_group = |group: &str| -> Option<String> {
            let mut versions: Vec<&GroupVersionKind> =
                self.builtin.keys().filter(|g| g.group == group && g.kind == gvk.kind).collect();
            versions.sort_by_key(|g| std::cmp::Reverse(removed::version_priority(&g.version)));
            versions.first().map(|g| g.api_version())
        };
        let removed_error = |removed_in: u32, replacement: Option<String>| {
            let help = match replacement {
                Some(replacement) => format!("use apiVersion: {replacement} (check the migration guide for field changes)"),
                None if gvk.kind == "PodSecurityPolicy" => {
                    "PodSecurityPolicy has no replacement API: use Pod Security Admission (namespace labels pod-security.kubernetes.io/enforce)".into()
                }
                None => format!("Kubernetes {target} has no replacement API for {}", gvk.kind),
            };
            MissingSchema {
                code: Code::RemovedApi,
                message: format!("{api_version} {} was removed in Kubernetes 1.{removed_in}", gvk.kind),
                help,
                custom: false,
                blames_kind: false,
            }
        };
        if let Some(removal) = removed::removal(&api_version, &gvk.kind, target.minor) {
            let replacement = removal.replacement_group.and_then(served_in_group);
            return removed_error(removal.removed_in, replacement);
        }
        // A snapshot: the lock is not held while other lookups run.
        let custom: HashMap<GroupVersionKind, String> =
            self.customs().iter().map(|(g, c)| (g.clone(), c.crd_name.clone())).collect();
        if let Some(crd_name) = custom.iter().find(|(g, _)| g.group == gvk.group && g.kind == gvk.kind).map(|(_, c)| c)
        {
            let mut versions: Vec<&str> = custom
                .keys()
                .filter(|g| g.group == gvk.group && g.kind == gvk.kind)
                .map(|g| g.version.as_str())
                .collect();
            versions.sort_by_key(|v| std::cmp::Reverse(removed::version_priority(v)));
            return MissingSchema {
                code: Code::UnknownKind,
                message: format!(
                    "the CustomResourceDefinition {} does not serve version {} of {}",
                    crd_name, gvk.version, gvk.kind
                ),
                help: format!("use apiVersion: {}/{} (served: {})", gvk.group, versions[0], versions.join(", ")),
                custom: false,
                blames_kind: false,
            };
        }
        let known_group = gvk.group.is_empty() || self.builtin.keys().any(|g| g.group == gvk.group);
        if !known_group && !gvk.is_builtin_group() {
            // A custom resource may share its kind with a built-in one (Knative's Service,
            // Volcano's Job): the built-in kind is no hint.
            return MissingSchema::custom_resource(gvk);
        }
        let elsewhere = self.api_versions_for(&gvk.kind);
        let shipped_in: Vec<KubernetesVersion> = KubernetesVersion::shipped()
            .filter(|v| v.definitions_text().is_some_and(|text| text.contains(&gvk_marker(gvk))))
            .collect();
        if let Some(last) = shipped_in.iter().filter(|v| **v < target).max()
            && !shipped_in.iter().any(|v| *v > target)
        {
            let replacement = served_in_group(&gvk.group).or_else(|| elsewhere.first().cloned());
            let removed_in = KubernetesVersion::shipped().find(|v| v > last).map_or(last.minor + 1, |v| v.minor);
            return removed_error(removed_in, replacement);
        }
        if let Some(first) = shipped_in.iter().filter(|v| **v > target).min() {
            return MissingSchema {
                code: Code::UnknownKind,
                message: format!(
                    "{api_version} {} is not served by Kubernetes {target}; it was added in {first}",
                    gvk.kind
                ),
                help: match elsewhere.first() {
                    Some(available) => format!(
                        "use apiVersion: {available}, or target a newer cluster with --kubernetes-version {first}"
                    ),
                    None => format!("target a newer cluster with --kubernetes-version {first}"),
                },
                custom: false,
                blames_kind: false,
            };
        }
        if let Some(best) = elsewhere.first() {
            let also = if elsewhere.len() > 1 {
                format!(" (also served as {})", elsewhere[1..].join(", "))
            } else {
                String::new()
            };
            return MissingSchema {
                code: Code::UnknownKind,
                message: format!("{api_version} does not serve {} in Kubernetes {target}", gvk.kind),
                help: format!("use apiVersion: {best}{also}"),
                custom: false,
                blames_kind: false,
            };
        }
        let same_api: Vec<&str> = self
            .builtin
            .keys()
            .chain(custom.keys())
            .filter(|g| g.group == gvk.group && g.version == gvk.version)
            .map(|g| g.kind.as_str())
            .collect();
        if let Some(suggestion) = did_you_mean(&gvk.kind, same_api.iter().copied()) {
            return MissingSchema {
                code: Code::UnknownKind,
                message: format!("{api_version} has no kind {} in Kubernetes {target}", gvk.kind),
                help: format!("did you mean kind: {suggestion}? (kinds are case-sensitive)"),
                custom: false,
                blames_kind: true,
            };
        }
        if !known_group && gvk.group.contains('.') {
            return MissingSchema::custom_resource(gvk);
        }
        let group_versions: BTreeSet<String> =
            self.builtin.keys().filter(|g| g.group == gvk.group).map(GroupVersionKind::api_version).collect();
        MissingSchema {
            code: Code::UnknownKind,
            message: format!("Kubernetes {target} has no {api_version} {}", gvk.kind),
            // With a real group, the kind is what is wrong; without one, the apiVersion.
            blames_kind: !group_versions.is_empty(),
            help: if group_versions.is_empty() {
                format!("no API group \"{}\" exists in Kubernetes {target}; check the apiVersion", gvk.group)
            } else {
                format!(
                    "this group serves {}; check the kind and apiVersion",
                    group_versions.into_iter().collect::<Vec<_>>().join(", ")
                )
            },
            custom: false,
        }
    }
}

/// The definitions that are top-level kinds, from their `x-kubernetes-group-version-kind`.
fn index_kinds(definitions: &Value) -> HashMap<GroupVersionKind, String> {
    let mut kinds = HashMap::new();
    let Some(defs) = definitions.get("$defs").and_then(Value::as_object) else {
        return kinds;
    };
    for (name, schema) in defs {
        let Some(list) = schema.get("x-kubernetes-group-version-kind").and_then(Value::as_array) else {
            continue;
        };
        // Shared types (DeleteOptions, WatchEvent) list every group; they are not objects
        // anyone writes in a manifest, and would shadow nothing, so they stay indexed.
        for gvk in list {
            let field = |key: &str| gvk.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            kinds
                .entry(GroupVersionKind::new(field("group"), field("version"), field("kind")))
                .or_insert_with(|| name.clone());
        }
    }
    kinds
}

/// How the import script writes a group-version-kind (keys sorted, no spaces).
fn gvk_marker(gvk: &GroupVersionKind) -> String {
    format!(
        "{{\"group\":{},\"kind\":{},\"version\":{}}}",
        Value::from(gvk.group.as_str()),
        Value::from(gvk.kind.as_str()),
        Value::from(gvk.version.as_str())
    )
}

/// Points every `$ref` into a `_definitions.json` at the folder's registered copy, so
/// both upstream layouts (`/api/_definitions.json#...` and `_definitions.json#...`) work.
fn point_refs_at(schema: &mut Value, uri: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(reference) = value
                    && let Some((document, fragment)) = reference.split_once('#')
                    && document.ends_with("_definitions.json")
                {
                    *reference = format!("{uri}#{fragment}");
                } else {
                    point_refs_at(value, uri);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| point_refs_at(item, uri)),
        _ => {}
    }
}

fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(CatalogOptions::default()).unwrap()
    }

    #[test]
    fn parses_versions() {
        let latest = KubernetesVersion::latest();
        assert_eq!(format!("v{latest}").parse::<KubernetesVersion>().unwrap(), latest);
        assert_eq!(format!("{latest}.3").parse::<KubernetesVersion>().unwrap(), latest);
        assert!(matches!("1.2".parse::<KubernetesVersion>(), Err(SchemaError::NotShipped { .. })));
        assert!(matches!("2.30".parse::<KubernetesVersion>(), Err(SchemaError::BadVersion(_))));
        assert!(KubernetesVersion::shipped().count() >= 3);
    }

    #[test]
    fn finds_and_compiles_builtin_kinds() {
        let catalog = catalog();
        let Lookup::Found(schema) = catalog.lookup(&GroupVersionKind::new("apps", "v1", "Deployment")) else {
            panic!("no Deployment schema");
        };
        assert_eq!(schema.origin, Origin::Builtin { definition: "io.k8s.api.apps.v1.Deployment".into() });
        assert!(matches!(catalog.lookup(&GroupVersionKind::new("apps", "v1", "Nope")), Lookup::Missing));
    }

    #[test]
    fn explains_missing_kinds() {
        let catalog = catalog();
        let removed = catalog.explain_missing(&GroupVersionKind::new("extensions", "v1beta1", "Deployment"));
        assert_eq!(removed.code, Code::RemovedApi);
        assert_eq!(removed.message, "extensions/v1beta1 Deployment was removed in Kubernetes 1.16");
        assert!(removed.help.contains("apps/v1"), "{}", removed.help);

        let wrong_version = catalog.explain_missing(&GroupVersionKind::new("apps", "v2", "Deployment"));
        assert_eq!(wrong_version.code, Code::UnknownKind);
        assert!(wrong_version.help.contains("apps/v1"));

        let case = catalog.explain_missing(&GroupVersionKind::new("apps", "v1", "deployment"));
        assert!(case.help.contains("kind: Deployment"), "{}", case.help);

        let custom = catalog.explain_missing(&GroupVersionKind::new("monitoring.coreos.com", "v1", "ServiceMonitor"));
        assert!(custom.custom);
        let knative = catalog.explain_missing(&GroupVersionKind::new("serving.knative.dev", "v1", "Service"));
        assert!(knative.custom, "{knative:?}");
        let no_group = catalog.explain_missing(&GroupVersionKind::new("foo", "v1", "Bar"));
        assert!(!no_group.blames_kind, "{no_group:?}");
    }

    #[test]
    fn registers_custom_resources() {
        let catalog = catalog();
        let crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget"}, "versions": [
                {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}
            ]}
        });
        let kinds = catalog.register_crd(&crd).unwrap();
        assert_eq!(kinds, vec![GroupVersionKind::new("example.com", "v1", "Widget")]);
        let Lookup::Found(schema) = catalog.lookup(&kinds[0]) else { panic!("not registered") };
        let valid = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
        assert!(schema.validator.is_valid(&valid));
        let typo = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "lables": {}}, "spec": {"sise": 3}});
        assert_eq!(schema.validator.iter_errors(&typo).count(), 2);
    }
}
