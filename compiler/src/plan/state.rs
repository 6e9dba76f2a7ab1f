//! What a cluster holds, as a plan compares with it: each object live, and what was last
//! applied to it. Read from a state file: kubeyard's own (`kind: State`, written by
//! `kubeyard apply --state`), or any stream of objects such as `kubectl get -o yaml`
//! prints (a `List`, or documents), whose last-applied configuration comes from the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation. kubeyard's state keeps
//! the same annotation, so both read alike.

use crate::diagnostic::{Code, Diagnostic};
use crate::graph::ObjectId;
use crate::source::SourceFile;
use crate::yaml::Documents;
use serde_json::Value;
use std::collections::HashMap;

/// States larger than this are parsed on every core (kubeyard's own state of 10,000
/// objects is about 12 MB).
const PARALLEL_FROM: usize = 1 << 20;

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const STATE_API_VERSION: &str = "kubeyard.dev/v1alpha1";

/// One object as the cluster has it.
#[derive(Clone, Debug)]
pub struct Current {
    pub live: Value,
    /// `None` when nothing says what was applied (an object made by `kubectl create`):
    /// then nothing counts as removed from the configuration.
    pub last_applied: Option<Value>,
    /// Whether a prune may delete it: objects that carry a last-applied configuration
    /// (`kubectl apply --prune`'s rule; kubeyard's state writes it on what it applies).
    pub managed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct State {
    pub objects: Vec<(ObjectId, Current)>,
    index: HashMap<ObjectId, usize>,
}

impl State {
    pub fn get(&self, id: &ObjectId) -> Option<&Current> {
        self.index.get(id).map(|i| &self.objects[*i].1)
    }

    pub fn insert(&mut self, id: ObjectId, current: Current) {
        match self.index.get(&id) {
            Some(&i) => self.objects[i].1 = current,
            None => {
                self.index.insert(id.clone(), self.objects.len());
                self.objects.push((id, current));
            }
        }
    }

    /// Adds the objects of one state file. Problems are diagnostics at their place.
    pub fn read(&mut self, source: &SourceFile) -> Result<(), Vec<Diagnostic>> {
        let mut problems = Vec::new();
        // `kubectl get -o json` and other JSON: serde_json is many times faster than a YAML
        // parser with spans; invalid JSON goes through the YAML parser for a located error.
        let text = source.text().trim_start();
        if (text.starts_with('{') || text.starts_with('['))
            && let Ok(value) = serde_json::from_str::<Value>(source.text())
        {
            self.take(value, crate::source::Span::default(), &mut problems);
            return if problems.is_empty() { Ok(()) } else { Err(problems) };
        }
        if source.text().len() > PARALLEL_FROM
            && let Some(values) = parse_in_parallel(source)
        {
            for (value, span) in values {
                self.take(value, span, &mut problems);
            }
            return if problems.is_empty() { Ok(()) } else { Err(problems) };
        }
        for document in Documents::unlimited(source) {
            let document = match document {
                Ok(document) => document,
                Err(diagnostic) => {
                    problems.push(*diagnostic);
                    break;
                }
            };
            problems.extend(document.diagnostics.iter().filter(|d| d.is_error()).cloned());
            let Some(root) = document.root else { continue };
            let span = root.span;
            let value = root.to_json();
            drop(root);
            self.take(value, span, &mut problems);
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// Adds objects read from a cluster (a `List`, or one object), as a state file's are.
    pub fn add(&mut self, value: Value) -> Result<(), Vec<Diagnostic>> {
        let mut problems = Vec::new();
        self.take(value, crate::source::Span::default(), &mut problems);
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// One document: kubeyard's header (with `objects:` in a small hand-written state), a list,
    /// or an object.
    fn take(&mut self, value: Value, span: crate::source::Span, problems: &mut Vec<Diagnostic>) {
        if value.is_null() {
            return;
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
        let objects: Vec<Value> =
            if kind == "State" && value.get("apiVersion").and_then(Value::as_str) == Some(STATE_API_VERSION) {
                value.get("objects").and_then(Value::as_array).cloned().unwrap_or_default()
            } else if kind.ends_with("List")
                && value.get("items").is_some_and(Value::is_array)
                && value.pointer("/metadata/name").is_none()
            {
                match value {
                    Value::Object(mut map) => match map.remove("items") {
                        Some(Value::Array(items)) => items,
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            } else if let Value::Array(items) = value {
                items
            } else {
                vec![value]
            };
        for object in objects {
            let Some(id) = ObjectId::of(&object) else {
                problems.push(
                    Diagnostic::error(Code::BadState, span, "an object in the state has no apiVersion, kind or metadata.name")
                        .with_label("in this document")
                        .with_help("a state file holds Kubernetes objects: kubeyard's own (kubeyard apply --state) or what `kubectl get -o yaml` prints"),
                );
                continue;
            };
            let last_applied = match object.pointer("/metadata/annotations").and_then(|a| a.get(LAST_APPLIED)) {
                Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                    Ok(applied) => Some(applied),
                    Err(error) => {
                        problems.push(
                            Diagnostic::error(
                                Code::BadState,
                                span,
                                format!("{id}: the {LAST_APPLIED} annotation is not JSON ({error})"),
                            )
                            .with_label("in this object")
                            .with_help("remove the annotation, or apply the object again with kubectl apply"),
                        );
                        None
                    }
                },
                _ => None,
            };
            // Only what was applied may be pruned: an object copied from a `kubectl get`
            // dump into kubeyard's state stays unmanaged.
            let managed = last_applied.is_some();
            self.insert(id, Current { live: object, last_applied, managed });
        }
    }
}

/// Splits a YAML stream at its document markers (`---` at the start of a line, which
/// cannot occur inside a scalar of a valid document) and parses the pieces side by side.
/// `None` when any piece has a problem: the caller then parses the whole file in order,
/// for diagnostics at their true places.
fn parse_in_parallel(source: &SourceFile) -> Option<Vec<(Value, crate::source::Span)>> {
    use rayon::prelude::*;
    let text = source.text();
    let mut starts = vec![0usize];
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("\n---") {
        let marker = at + found + 1;
        let after = bytes.get(marker + 3).copied();
        if matches!(after, None | Some(b'\n' | b'\r' | b' ' | b'\t')) {
            starts.push(marker);
        }
        at = marker + 3;
    }
    // A few hundred pieces: enough to share out, few enough to cost nothing.
    let per_piece = (starts.len() / 256).max(1);
    let pieces: Vec<(usize, usize)> = starts
        .chunks(per_piece)
        .enumerate()
        .map(|(i, chunk)| {
            let end = starts.get((i + 1) * per_piece).copied().unwrap_or(text.len());
            (chunk[0], end)
        })
        .collect();
    let parsed: Vec<Option<Vec<(Value, crate::source::Span)>>> = pieces
        .par_iter()
        .map(|&(start, end)| {
            let piece = SourceFile::new(source.name(), &text[start..end]).ok()?;
            let mut out = Vec::new();
            for document in Documents::unlimited(&piece) {
                let document = document.ok()?;
                if document.diagnostics.iter().any(Diagnostic::is_error) {
                    return None;
                }
                if let Some(root) = document.root {
                    let span = crate::source::Span::new(root.span.start + start as u32, root.span.end + start as u32);
                    out.push((root.to_json(), span));
                }
            }
            Some(out)
        })
        .collect();
    let mut values = Vec::new();
    for piece in parsed {
        values.extend(piece?);
    }
    Some(values)
}
