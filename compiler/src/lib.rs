//! kubeyard's compiler: Kubernetes manifests in; diagnostics, normalized objects, the
//! dependency graph and plans out. No I/O and no async (`clippy.toml` forbids it): every
//! stage is a pure function of its input, so the API server runs the same code as
//! admission.
//!
//! The pipeline, one module a stage: `source` (bytes to text) → `yaml` (text to
//! spanned trees) → `object` (trees to Kubernetes objects) → `schema` + `validate`
//! (objects against the schemas of one Kubernetes version) → `lint` (the driver).

pub mod admission;
pub mod admission_policy;
pub mod assertion;
pub mod autoscaling;
pub mod config;
pub mod crd;
pub mod cron;
pub mod diagnostic;
pub mod duration;
pub mod events;
pub mod explain;
pub mod field_error;
pub mod field_set;
pub mod graph;
pub mod image;
pub mod int_or_percent;
pub mod lint;
pub mod list_merge;
pub mod managed_fields;
pub mod names;
pub mod node;
pub mod normalize;
pub mod object;
pub mod patch;
pub mod plan;
pub mod pod;
pub mod print;
pub mod quantity;
pub mod quota;
pub mod rbac;
pub mod rules;
pub mod scheduling;
pub mod schema;
pub mod scope;
pub mod selector;
pub mod source;
pub mod structured_merge;
pub mod template;
pub mod tokens;
pub mod validate;
pub mod workloads;
pub mod yaml;

pub use diagnostic::{Code, Diagnostic, Severity};
pub use lint::{FileReport, LintOptions, Linter, ObjectReport, Verdict};
pub use source::{SourceError, SourceFile, Span};
