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

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const STATE_API_VERSION: &str = "kubeyard.dev/v1alpha1";

/// One object as the cluster has it.
#[derive(Clone, Debug)]
pub struct Current {
    pub live: Value,
    /// `None` when nothing says what was applied (an object made by `kubectl create`):
    /// then nothing counts as removed from the configuration.
    pub last_applied: Option<Value>,
    /// Whether a prune may delete it: objects of kubeyard's state, and objects that carry
    /// a last-applied configuration (`kubectl apply --prune`'s rule).
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

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Adds the objects of one state file. Problems are diagnostics at their place.
    pub fn read(&mut self, source: &SourceFile) -> Result<(), Vec<Diagnostic>> {
        let mut problems = Vec::new();
        for document in Documents::new(source) {
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
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
            let ours = kind == "State" && value.get("apiVersion").and_then(Value::as_str) == Some(STATE_API_VERSION);
            let (objects, ours): (Vec<Value>, bool) = if ours {
                (value.get("objects").and_then(Value::as_array).cloned().unwrap_or_default(), true)
            } else if kind.ends_with("List") && value.get("items").is_some_and(Value::is_array) {
                (value.get("items").and_then(Value::as_array).cloned().unwrap_or_default(), false)
            } else {
                (vec![value], false)
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
                let last_applied = {
                    match object.pointer("/metadata/annotations").and_then(|a| a.get(LAST_APPLIED)) {
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
                    }
                };
                let managed = ours || last_applied.is_some();
                self.insert(id, Current { live: object, last_applied, managed });
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}
