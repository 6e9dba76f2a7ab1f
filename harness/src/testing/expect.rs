//! What a test expects of the cluster, judged against it as it is now: an object that
//! matches (`assert`), none that does (`absent`), how many do (`count`), or the whole
//! applied set realised (`converged`). A miss says exactly how: the expected object, the
//! closest actual one, the fields that differ (the cluster adds the recent events of what
//! is involved).

use super::cluster::{Cluster, Error};
use super::spec::Bounds;
use kubeyard_compiler::assertion::expr::{self, Expr};
use kubeyard_compiler::assertion::{Options, mismatches};
use kubeyard_compiler::list_merge::Schema;
use kubeyard_compiler::schema::{Catalog, CatalogOptions};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

/// Why an expectation does not hold, with what is needed to see why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failure {
    pub summary: String,
    pub expected: Option<Value>,
    /// The actual object nearest to the expected one.
    pub closest: Option<Value>,
    /// Field by field, how the closest object differs (or which expressions fail).
    pub differences: Vec<String>,
    /// Other objects the failure is about (what is not converged).
    pub subjects: Vec<Value>,
    /// Recent events of the objects involved.
    pub events: Vec<String>,
}

impl Failure {
    pub(super) fn within(mut self, within: Duration) -> Failure {
        self.summary = format!("{} (still, after {})", self.summary, show(within));
        self
    }

    pub(super) fn consistently(mut self, duration: Duration) -> Failure {
        self.summary = format!("{} (it had to hold for {})", self.summary, show(duration));
        self
    }
}

pub fn show(duration: Duration) -> String {
    kubeyard_compiler::duration::Duration(i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)).to_string()
}

pub enum Holds {
    Yes,
    No(Failure),
}

#[derive(Debug, Clone)]
enum Kind {
    Match,
    Absent,
    Count(Bounds),
    Converged,
}

/// One expectation about the cluster.
#[derive(Debug, Clone)]
pub struct Expectation {
    kind: Kind,
    object: Value,
    selector: Option<String>,
    that: Vec<(String, Expr)>,
    options: Options,
}

/// The built-in schemas, for the merge keys lists are matched by.
fn catalog() -> Option<&'static Catalog> {
    static CATALOG: OnceLock<Option<Catalog>> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::new(CatalogOptions::default()).ok()).as_ref()
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn describe(object: &Value) -> String {
    let kind = text(object, "/kind").unwrap_or("object");
    match (text(object, "/metadata/namespace"), text(object, "/metadata/name")) {
        (Some(namespace), Some(name)) => format!("{kind} {namespace}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => kind.to_string(),
    }
}

impl Expectation {
    /// An object that matches `object` (a partial object with `apiVersion` and `kind`;
    /// with `metadata.name`, that object).
    pub fn matching(object: Value) -> Expectation {
        Expectation { kind: Kind::Match, object, selector: None, that: Vec::new(), options: Options::default() }
    }

    /// No object matches `object`.
    pub fn absent(object: Value) -> Expectation {
        Expectation { kind: Kind::Absent, ..Expectation::matching(object) }
    }

    /// As many objects match `object` as `bounds` allow.
    pub fn count(object: Value, bounds: Bounds) -> Expectation {
        Expectation { kind: Kind::Count(bounds), ..Expectation::matching(object) }
    }

    /// Everything the test applied is realised.
    pub fn converged() -> Expectation {
        Expectation { kind: Kind::Converged, ..Expectation::matching(json!({})) }
    }

    /// Only the objects this label selector picks, and every one of them must match.
    pub fn selector(mut self, selector: &str) -> Result<Expectation, String> {
        selector.parse::<Selector>().map_err(|e| format!("selector {selector:?}: {e}"))?;
        self.selector = Some(selector.to_string());
        Ok(self)
    }

    /// An expression every matching object satisfies (`status.readyReplicas >= spec.replicas`).
    pub fn that(mut self, expression: &str) -> Result<Expectation, String> {
        let parsed = expr::parse(expression).map_err(|e| format!("{expression:?}: {e}"))?;
        self.that.push((expression.to_string(), parsed));
        Ok(self)
    }

    /// Lists matched item by item.
    pub fn ordered(mut self, ordered: bool) -> Expectation {
        self.options.ordered = ordered;
        self
    }

    fn api_version(&self) -> &str {
        text(&self.object, "/apiVersion").unwrap_or("v1")
    }

    fn kind_name(&self) -> &str {
        text(&self.object, "/kind").unwrap_or_default()
    }

    /// The kinds whose changes may change the verdict.
    pub fn kinds(&self) -> Vec<(String, String)> {
        match self.kind {
            Kind::Converged => [
                ("v1", "Pod"),
                ("apps/v1", "Deployment"),
                ("apps/v1", "StatefulSet"),
                ("apps/v1", "DaemonSet"),
                ("apps/v1", "ReplicaSet"),
                ("batch/v1", "Job"),
                ("v1", "Endpoints"),
            ]
            .iter()
            .map(|(a, k)| (a.to_string(), k.to_string()))
            .collect(),
            _ => vec![(self.api_version().to_string(), self.kind_name().to_string())],
        }
    }

    fn schema(&self) -> Schema<'static> {
        let (group, version) = self.api_version().split_once('/').unwrap_or(("", self.api_version()));
        let gvk = kubeyard_compiler::object::GroupVersionKind::new(group, version, self.kind_name());
        catalog()
            .and_then(|c| c.builtin_definition(&gvk))
            .map_or(Schema::NONE, |(node, definitions)| Schema { node: Some(node), definitions: Some(definitions) })
    }

    /// How `actual` falls short: fields that differ, then expressions that fail.
    fn differences(&self, actual: &Value) -> Vec<String> {
        let mut expected = self.object.clone();
        // `apiVersion` and `kind` chose the candidates; the name chose the object.
        if let Some(map) = expected.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        let mut found: Vec<String> =
            mismatches(&expected, actual, self.schema(), self.options).iter().map(ToString::to_string).collect();
        for (text, expression) in &self.that {
            match expression.truth(actual) {
                Ok(true) => {}
                Ok(false) => found.push(format!("{text}: false")),
                Err(error) => found.push(format!("{text}: {error}")),
            }
        }
        found
    }

    async fn candidates(&self, cluster: &Cluster) -> Result<Vec<Value>, Error> {
        let namespace = text(&self.object, "/metadata/namespace");
        let name = text(&self.object, "/metadata/name");
        match name {
            Some(name) => {
                Ok(cluster.get(self.api_version(), self.kind_name(), namespace, name).await?.into_iter().collect())
            }
            None => cluster.list(self.api_version(), self.kind_name(), namespace, self.selector.as_deref()).await,
        }
    }

    pub async fn check(&self, cluster: &Cluster) -> Result<Holds, Error> {
        if let Kind::Converged = self.kind {
            return super::converged::check(cluster).await;
        }
        let candidates = self.candidates(cluster).await?;
        let judged: Vec<(Value, Vec<String>)> = candidates
            .into_iter()
            .map(|c| {
                let d = self.differences(&c);
                (c, d)
            })
            .collect();
        let matching = judged.iter().filter(|(_, d)| d.is_empty()).count();
        let every = self.selector.is_some();
        let what = describe(&self.object);
        let failure = |summary: String, closest: Option<&(Value, Vec<String>)>| Failure {
            summary,
            expected: Some(self.object.clone()),
            closest: closest.map(|(c, _)| c.clone()),
            differences: closest.map(|(_, d)| d.clone()).unwrap_or_default(),
            ..Failure::default()
        };
        let closest = || judged.iter().filter(|(_, d)| !d.is_empty()).min_by_key(|(_, d)| d.len());
        Ok(match &self.kind {
            Kind::Match if judged.is_empty() => Holds::No(failure(format!("no {what} exists"), None)),
            Kind::Match if every && matching < judged.len() => Holds::No(failure(
                format!("{} of the {} {what} the selector picks do not match", judged.len() - matching, judged.len()),
                closest(),
            )),
            Kind::Match if matching == 0 => {
                let summary = if judged.len() == 1 {
                    format!("{what} does not match")
                } else {
                    format!("none of the {} {what} matches", judged.len())
                };
                Holds::No(failure(summary, closest()))
            }
            Kind::Match => Holds::Yes,
            Kind::Absent if matching == 0 => Holds::Yes,
            Kind::Absent => {
                let present = judged.iter().find(|(_, d)| d.is_empty());
                Holds::No(Failure {
                    summary: format!("{what} is present, and should not be"),
                    expected: Some(self.object.clone()),
                    closest: present.map(|(c, _)| c.clone()),
                    ..Failure::default()
                })
            }
            Kind::Count(bounds) if bounds.allow(matching) => Holds::Yes,
            Kind::Count(bounds) => Holds::No(Failure {
                summary: format!("{matching} {what} match, expected {bounds}"),
                expected: Some(self.object.clone()),
                subjects: judged.iter().filter(|(_, d)| d.is_empty()).map(|(c, _)| c.clone()).collect(),
                ..Failure::default()
            }),
            Kind::Converged => Holds::Yes,
        })
    }
}
