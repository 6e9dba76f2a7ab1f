//! Admission: what the API server does to every object written to it before storing
//! it, with the same code `kubeyard lint` and `kubeyard normalize` run. The object is
//! validated against its schema and the rules the API server itself enforces (names,
//! labels, quantities, ports, selectors), then defaulted and put in canonical form.

use crate::diagnostic::{Diagnostic, Severity};
use crate::lint::{LintOptions, Linter, Verdict};
use crate::normalize::{normalize, normalize_kind, normalize_value};
use crate::object::{Classified, GroupVersionKind, ObjectInfo, classify};
use crate::rules::{self, ObjectContext, RuleSettings};
use crate::schema::{Catalog, CatalogOptions, Lookup, SchemaError};
use crate::source::SourceFile;
use crate::yaml::Node;
use serde_json::Value;

/// The rules that mirror API server validation: an object that breaks one is refused
/// with 422, as a real cluster refuses it. The others are advice and stay with `lint`.
pub const ENFORCED_RULES: &[&str] = &[
    "admission/invalid-webhook",
    "metadata/invalid-name",
    "metadata/invalid-label",
    "metadata/invalid-annotation",
    "pod/invalid-container-name",
    "pod/duplicate-port-name",
    "pod/invalid-port-name",
    "resources/invalid-quantity",
    "resources/requests-above-limits",
    "service/node-port",
    "workload/selector-mismatch",
    "workload/negative-replicas",
    "workload/invalid-cron-schedule",
    "object/unsupported-value",
];

pub struct Admission {
    linter: Linter,
}

/// Why a field was refused, as a `Status` cause carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// The field path, kubectl style (`spec.replicas`); empty for the whole object.
    pub field: String,
    pub message: String,
    /// The compiler's diagnostic code (`schema/type`, `metadata/invalid-name`, ...), or
    /// the field error's (`field/required`, see `field_error`).
    pub code: &'static str,
}

impl Cause {
    /// The `Status` cause reason (`FieldValueInvalid`, `FieldValueRequired`, ...).
    pub fn reason(&self) -> &'static str {
        crate::field_error::reason_of(self.code, &self.message)
    }
}

/// An admitted object: defaulted and canonical.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub info: ObjectInfo,
    pub object: Value,
}

/// The rules the API server enforces, as errors, and no others: what every command that
/// sends objects to a cluster or predicts what it stores (`normalize`, `graph`, `plan`,
/// `apply`, `up`, `test`) lints with, so each refuses what the API server would refuse,
/// through the same path as `lint` and admission. Lint's predictions (a quota exceeded,
/// a reference the input lacks) stay `lint`'s: a cluster accepts such objects.
pub fn enforced_rule_settings() -> RuleSettings {
    let mut settings = RuleSettings::all_off();
    for id in ENFORCED_RULES {
        if let Some(rule) = rules::find(id) {
            settings.set(rule, Some(Severity::Error));
        }
    }
    settings
}

impl Admission {
    pub fn new(catalog: CatalogOptions) -> Result<Admission, SchemaError> {
        let settings = enforced_rule_settings();
        let options = LintOptions {
            catalog,
            ignore_missing_schemas: false,
            rules: settings,
            cluster: None,
            keep_trees: true,
            values: None,
        };
        Ok(Admission { linter: Linter::new(options)? })
    }

    pub fn catalog(&self) -> &Catalog {
        self.linter.catalog()
    }

    /// Admits objects of the kinds a CustomResourceDefinition defines from now on (the
    /// API server accepted its names); a CRD registered again replaces its kinds.
    pub fn register_crd(&self, crd: &Value) -> Result<Vec<GroupVersionKind>, String> {
        self.linter.catalog().register_crd(crd)
    }

    /// Refuses objects of a deleted CustomResourceDefinition's kinds from now on.
    pub fn unregister_crd(&self, crd_name: &str) -> Vec<GroupVersionKind> {
        self.linter.catalog().unregister_crd(crd_name)
    }

    /// An object of a built-in kind as the API server decodes it, before admission: its
    /// defaults filled and its quantities canonical, unchecked (the field manager gives a
    /// create's fields to its creator at this point). Custom objects are defaulted when
    /// pruned (`Catalog::prune_custom`); other objects are left as they are.
    pub fn decode(&self, gvk: &GroupVersionKind, object: &mut Value) {
        let catalog = self.linter.catalog();
        if catalog.builtin_definition(gvk).is_some() {
            normalize_kind(gvk, object, catalog);
        }
    }

    /// Validates and defaults one object written as JSON (or YAML).
    pub fn admit(&self, object: &Value) -> Result<Admitted, Vec<Cause>> {
        self.admit_change(object, None)
    }

    /// Validates and defaults an object that replaces `old` (on an update), or a new one:
    /// a custom object's CEL transition rules compare the two.
    pub fn admit_change(&self, object: &Value, old: Option<&Value>) -> Result<Admitted, Vec<Cause>> {
        // A custom object is checked against its CRD's schema and CEL rules as the
        // apiextensions server checks it, so its findings are Kubernetes' own words; the
        // rest (metadata) below.
        if let (Some(api_version), Some(kind)) =
            (object.get("apiVersion").and_then(Value::as_str), object.get("kind").and_then(Value::as_str))
            && let Some(causes) = self.linter.catalog().validate_custom(
                &GroupVersionKind::from_api_version(api_version, kind),
                object,
                old,
            )
            && !causes.is_empty()
        {
            return Err(causes);
        }
        if let Some(admitted) = self.admit_valid(object) {
            return Ok(admitted);
        }
        self.admit_with_causes(object)
    }

    /// The path most writes take: the decoded object checked as it is, no text printed
    /// and read back. `None` when anything is wrong (or it is not a plain object): the
    /// full path then says exactly what, with the same checks.
    fn admit_valid(&self, object: &Value) -> Option<Admitted> {
        let catalog = self.linter.catalog();
        let node = Node::from_json(object);
        let Classified::Object(info) = classify(&node) else { return None };
        let Lookup::Found(schema) = catalog.lookup(&info.gvk) else { return None };
        if !schema.validator.is_valid(object) {
            return None;
        }
        let (ignored, problems) = rules::ignored_rules(&node);
        if problems.iter().any(Diagnostic::is_error) {
            return None;
        }
        let source = SourceFile::new("request body", String::new()).ok()?;
        let context = ObjectContext::new(&info, &node, &source, catalog);
        // Only the enforced rules run (`enforced_rule_settings` turns the others off).
        let findings = rules::check_object(&context, self.linter.active_rules());
        let findings = rules::to_diagnostics(findings, self.linter.settings(), &ignored);
        if findings.iter().any(Diagnostic::is_error) {
            return None;
        }
        let mut value = object.clone();
        normalize_value(&info, &mut value, catalog);
        Some(Admitted { info, object: value })
    }

    fn admit_with_causes(&self, object: &Value) -> Result<Admitted, Vec<Cause>> {
        // The linter reads text so that its diagnostics carry spans; JSON is YAML.
        let text = serde_json::to_vec(object).map_err(|e| vec![whole(e.to_string())])?;
        let report = self.linter.lint_bytes("request body", text);
        let [object] = report.objects.as_slice() else {
            return Err(vec![whole("the request body must hold exactly one object".into())]);
        };
        let errors: Vec<Cause> = object.diagnostics.iter().filter(|d| d.is_error()).map(cause).collect();
        match (object.verdict, &object.object, &object.tree) {
            (Verdict::Valid, Some(info), Some(tree)) if errors.is_empty() => {
                let normalized = normalize(info, tree, self.linter.catalog());
                Ok(Admitted { info: info.clone(), object: normalized })
            }
            _ if !errors.is_empty() => Err(errors),
            _ => Err(vec![whole(
                object.reason.clone().unwrap_or_else(|| "the object has no schema to validate it against".into()),
            )]),
        }
    }
}

fn whole(message: String) -> Cause {
    Cause { field: String::new(), message, code: "object/not-kubernetes" }
}

fn cause(diagnostic: &Diagnostic) -> Cause {
    let field = diagnostic.path.clone().unwrap_or_default();
    // The Status names the field beside the message; saying it twice reads badly.
    let message = diagnostic
        .message
        .strip_prefix(field.as_str())
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(&diagnostic.message)
        .to_string();
    Cause { field, message, code: diagnostic.code.as_str() }
}

// The tests read their corpus from disk: the no-I/O rule is for the library.
#[allow(clippy::disallowed_methods)]
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn admission() -> Admission {
        Admission::new(CatalogOptions::default()).unwrap()
    }

    #[test]
    fn a_valid_object_comes_back_defaulted() {
        let admitted = admission()
            .admit(&json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
            }))
            .unwrap();
        assert_eq!(admitted.object["spec"]["replicas"], 1);
        assert_eq!(admitted.object["metadata"]["namespace"], "default");
        assert_eq!(admitted.info.gvk.kind, "Deployment");
    }

    #[test]
    fn unsupported_values_are_refused_with_kubernetes_reasons() {
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "always"}]}}}
        });
        let causes = admission().admit(&job).unwrap_err();
        let found: Vec<(&str, &str, &str)> =
            causes.iter().map(|c| (c.field.as_str(), c.reason(), c.message.as_str())).collect();
        assert!(
            found.contains(&(
                "spec.template.spec.containers[0].imagePullPolicy",
                "FieldValueNotSupported",
                "Unsupported value: \"always\": supported values: \"Always\", \"IfNotPresent\", \"Never\""
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "spec.template.spec.restartPolicy",
                "FieldValueRequired",
                "Required value: valid values: \"OnFailure\", \"Never\""
            )),
            "{found:?}"
        );
        // A StatefulSet's template is not validated (its pods are, when created), and a
        // gate a version has off leaves its field unchecked.
        let statefulset = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres", "imagePullPolicy": "always"}]}}}
        });
        assert!(admission().admit(&statefulset).is_ok());
        let mut replacing = job.clone();
        replacing["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        replacing["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        replacing["spec"]["podReplacementPolicy"] = json!("Sometimes");
        let causes = admission().admit(&replacing).unwrap_err();
        assert_eq!(causes[0].field, "spec.podReplacementPolicy", "{causes:?}");
        let old = CatalogOptions { version: "1.28".parse().unwrap(), ..CatalogOptions::default() };
        assert!(Admission::new(old).unwrap().admit(&replacing).is_ok(), "JobPodReplacementPolicy is off in 1.28");
        let mut fixed = job.clone();
        fixed["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        fixed["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        assert!(admission().admit(&fixed).is_ok());
    }

    #[test]
    fn schema_and_rule_errors_are_causes_with_field_paths() {
        let pod = |name: &str, port: Value| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": port}]}]}
            })
        };
        let causes = admission().admit(&pod("web", json!("80"))).unwrap_err();
        assert_eq!(causes[0].field, "spec.containers[0].ports[0].containerPort");
        assert_eq!(causes[0].code, "schema/type");
        assert!(!causes[0].message.starts_with("spec."), "{causes:?}");
        // The rules see only schema-valid objects, as the API server validates types first.
        let causes = admission().admit(&pod("Bad_Name", json!(80))).unwrap_err();
        assert_eq!(causes[0].field, "metadata.name", "{causes:?}");
        assert_eq!(causes[0].code, "metadata/invalid-name");
    }

    /// A custom object, with CEL rules on its kind or not, takes the quick path: only a
    /// refusal goes the slow way (which reads the object as text again).
    #[test]
    fn custom_objects_take_the_quick_path() {
        let admission = admission();
        for (name, rules) in [("plain", json!([])), ("ruled", json!([{"rule": "self.size >= 1"}]))] {
            let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{name}s.bench.example.com")},
                "spec": {"group": "bench.example.com", "scope": "Namespaced",
                    "names": {"plural": format!("{name}s"), "singular": name, "kind": name.to_uppercase()},
                    "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": rules,
                            "properties": {"size": {"type": "integer"}}}}}}}]}});
            admission.register_crd(&crd).unwrap();
            let object = json!({"apiVersion": "bench.example.com/v1", "kind": name.to_uppercase(),
                "metadata": {"name": "g", "namespace": "default"}, "spec": {"size": 3}});
            assert!(admission.admit_valid(&object).is_some(), "{name}: the quick path declined");
        }
    }

    /// Every object of the lint and normalize fixtures: where the quick path admits, the
    /// full path admits the very same object; where it declines, the full path refuses
    /// (it never declines what is valid).
    #[test]
    fn the_quick_path_agrees_with_the_full_one() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (quick, refused) = quick_and_full_paths_agree(&[
            root.join("fixtures/lint"),
            root.join("fixtures/normalize"),
            root.join("fixtures/apps"),
        ]);
        assert!(quick > 50 && refused > 5, "{quick} admitted, {refused} refused");
    }

    /// The same over the real-world corpus (`KUBEYARD_CORPUS`, as the harness's corpus
    /// tests read it).
    #[test]
    #[ignore = "needs the real-world corpus: KUBEYARD_CORPUS=../shared/corpus cargo test -- --ignored"]
    fn the_quick_path_agrees_with_the_full_one_over_the_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let named = std::env::var_os("KUBEYARD_CORPUS").expect("KUBEYARD_CORPUS names the corpus folder");
        let corpus = root.join(named);
        assert!(corpus.is_dir(), "{} is not a folder", corpus.display());
        let (quick, refused) = quick_and_full_paths_agree(&[corpus]);
        assert!(quick > 250 && refused > 5, "{quick} admitted, {refused} refused");
    }

    fn quick_and_full_paths_agree(folders: &[std::path::PathBuf]) -> (usize, usize) {
        let admission = admission();
        let (mut quick, mut refused) = (0, 0);
        for folder in folders {
            assert!(folder.is_dir(), "{} is missing", folder.display());
            for entry in walkdir::WalkDir::new(folder).into_iter().flatten() {
                let path = entry.path();
                if !matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(path) else { continue };
                let Ok(source) = SourceFile::new(path.display().to_string(), text) else { continue };
                for document in crate::yaml::Documents::new(&source).flatten() {
                    let Some(root) = document.root else { continue };
                    let object = root.to_json();
                    match (admission.admit_valid(&object), admission.admit_with_causes(&object)) {
                        (Some(fast), Ok(full)) => {
                            assert_eq!(fast.object, full.object, "{}", path.display());
                            quick += 1;
                        }
                        (Some(_), Err(causes)) => {
                            panic!("{}: admitted quickly, refused fully: {causes:?}", path.display())
                        }
                        (None, Ok(_)) => panic!("{}: declined quickly though valid", path.display()),
                        (None, Err(_)) => refused += 1,
                    }
                }
            }
        }
        (quick, refused)
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let causes =
            admission().admit(&json!({"apiVersion": "v1", "kind": "Nope", "metadata": {"name": "x"}})).unwrap_err();
        assert_eq!(causes.len(), 1, "{causes:?}");
    }
}
