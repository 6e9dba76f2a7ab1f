//! CEL validation rules (`x-kubernetes-validations`) of a CRD version's schema, as the
//! apiextensions server runs them: compiled once when the CRD is registered, checked
//! against each object after the schema's own checks (and not at all when those found a
//! value of the wrong type), transition rules (`oldSelf`) on updates only. Evaluation is
//! kube-rs's `kube-cel` (the `cel` crate with Kubernetes' libraries: strings, lists,
//! sets, regex, URLs, IP and CIDR, quantities, formats). The findings are field errors in
//! Kubernetes' words: the rule's `messageExpression`, `message` or `failed rule: <rule>`,
//! at the rule's node (or its `fieldPath`), with the node's OpenAPI type as the value:
//! `spec: Invalid value: "object": replicas must not exceed maxReplicas`.
//!
//! The same checks run in `kubeyard lint` and in the API server, so both say the same.

use crate::admission::Cause;
use crate::field_error;
use kube_cel::{CompiledSchema, ErrorKind, RootContext, Validator};
use serde_json::{Value, json};

/// The compiled rules of one CRD version's schema.
pub struct Rules {
    compiled: CompiledSchema,
    root: RootContext,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules").field("kind", &self.root.kind).finish()
    }
}

thread_local! {
    // Registering Kubernetes' libraries takes a moment; each thread does it once.
    static VALIDATOR: Validator = Validator::new();
}

/// Why Kubernetes' checks did not all run: a value of the wrong type (or outside its
/// enum) blocks the rules, as `hasBlockingErr` does.
const NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the \
                           existing errors to complete validation";

impl Rules {
    /// The rules of a schema; `None` when it has none.
    pub fn compile(schema: &Value, api_version: &str, kind: &str) -> Option<Rules> {
        if !has_rules(schema) {
            return None;
        }
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Some(Rules {
            compiled: kube_cel::compile_schema(schema),
            root: RootContext { api_version: api_version.into(), api_group: group.into(), kind: kind.into() },
        })
    }

    /// Checks an object (and, on an update, the object it replaces) against the rules;
    /// `earlier` are the schema's own findings, which may block them.
    pub fn check(&self, schema: &Value, object: &Value, old: Option<&Value>, earlier: &[Cause]) -> Vec<Cause> {
        if earlier.iter().any(|c| matches!(c.reason(), "FieldValueTypeInvalid" | "FieldValueNotSupported")) {
            return vec![field_error::invalid("<nil>", &Value::Null, NOT_CHECKED)];
        }
        let outcome = VALIDATOR
            .with(|validator| validator.validate_compiled_with_context(&self.compiled, object, old, Some(&self.root)));
        let Err(errors) = outcome else { return Vec::new() };
        errors
            .iter()
            .map(|error| {
                let path = error.field_path.trim_start_matches('.');
                let field = if path.is_empty() { "<nil>".to_string() } else { path.to_string() };
                let kind = json!(type_at(schema, path));
                let message = match error.kind {
                    ErrorKind::ValidationFailure => error.message.trim().to_string(),
                    _ => error.message.clone(),
                };
                match error.reason.as_deref() {
                    Some("FieldValueForbidden") => field_error::forbidden(field, &message),
                    Some("FieldValueRequired") => field_error::required(field, &message),
                    Some("FieldValueDuplicate") => field_error::duplicate(field, &kind),
                    _ => field_error::invalid(field, &kind, &message),
                }
            })
            .collect()
    }
}

/// Whether any node of a schema carries rules.
pub fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            map.get("x-kubernetes-validations").and_then(Value::as_array).is_some_and(|rules| !rules.is_empty())
                || map.iter().any(|(key, child)| key != "default" && key != "enum" && has_rules(child))
        }
        Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

/// The OpenAPI type of the schema node at a field path (`spec.items[0].name`), which a
/// rule's error shows as its value; `object` where the path leads nowhere typed.
fn type_at(schema: &Value, path: &str) -> String {
    let mut node = schema;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = segment.split_once('[').map_or((segment, ""), |(n, rest)| (n, rest));
        node = match node.pointer(&format!("/properties/{}", name.replace('~', "~0").replace('/', "~1"))) {
            Some(child) => child,
            None => match node.get("additionalProperties") {
                Some(child) if child.is_object() => child,
                _ => return "object".into(),
            },
        };
        // `name[0][1]`: one step into `items` per index; a bare name takes none.
        for _ in indexes.split('[').filter(|index| !index.is_empty()) {
            if let Some(items) = node.get("items") {
                node = items;
            }
        }
    }
    // An untyped node (int-or-string, preserve-unknown) has no type to show: "".
    node.get("type").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Whether each rule of a CRD version's schema compiles, with the path Kubernetes names
/// it by (`spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`).
pub fn check_rules_compile(schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(map) = schema.as_object() else { return };
    for (index, rule) in map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        let at = format!("{path}.x-kubernetes-validations[{index}]");
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        if text.trim().is_empty() {
            causes.push(field_error::required(format!("{at}.rule"), "rule is not specified"));
            continue;
        }
        if let Err(error) = kube_cel::cel::Program::compile(text) {
            let detail = format!("compilation failed: {}", one_line(&error.to_string()));
            causes.push(field_error::invalid(format!("{at}.rule"), &json!(text), &detail));
        }
        if let Some(expression) = rule.get("messageExpression").and_then(Value::as_str) {
            if expression.trim().is_empty() {
                causes.push(field_error::required(
                    format!("{at}.messageExpression"),
                    "messageExpression must be non-empty if specified",
                ));
            } else if let Err(error) = kube_cel::cel::Program::compile(expression) {
                let detail = format!("messageExpression compilation failed: {}", one_line(&error.to_string()));
                causes.push(field_error::invalid(format!("{at}.messageExpression"), &json!(expression), &detail));
            }
        }
        if let Some(message) = rule.get("message").and_then(Value::as_str) {
            if message.trim().is_empty() {
                causes.push(field_error::invalid(
                    format!("{at}.message"),
                    &json!(message),
                    "message must be non-empty if specified",
                ));
            } else if message.contains('\n') {
                causes.push(field_error::invalid(
                    format!("{at}.message"),
                    &json!(message),
                    "message must not contain line breaks",
                ));
            }
        } else if text.contains('\n') && rule.get("messageExpression").is_none() {
            causes.push(field_error::required(
                format!("{at}.message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if let Some(reason) = rule.get("reason").and_then(Value::as_str) {
            const REASONS: [&str; 4] =
                ["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"];
            if !REASONS.contains(&reason) {
                causes.push(field_error::not_supported(format!("{at}.reason"), &json!(reason), &REASONS));
            }
        }
    }
    for (key, child) in map {
        match key.as_str() {
            "properties" => {
                for (name, property) in child.as_object().into_iter().flatten() {
                    check_rules_compile(property, &format!("{path}.properties[{name}]"), causes);
                }
            }
            "items" | "additionalProperties" => check_rules_compile(child, &format!("{path}.{key}"), causes),
            "allOf" | "anyOf" | "oneOf" => {
                for (index, branch) in child.as_array().into_iter().flatten().enumerate() {
                    check_rules_compile(branch, &format!("{path}.{key}[{index}]"), causes);
                }
            }
            _ => {}
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
                        {"rule": "self.name.startsWith('w')", "fieldPath": ".name", "reason": "FieldValueForbidden"},
                        {"rule": "self.replicas >= oldSelf.replicas", "messageExpression": "'may not scale down from ' + string(oldSelf.replicas)"},
                    ],
                    "properties": {
                        "replicas": {"type": "integer"},
                        "maxReplicas": {"type": "integer"},
                        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() <= 5"}]},
                    }
                }
            }
        })
    }

    fn messages(object: Value, old: Option<Value>) -> Vec<String> {
        let rules = Rules::compile(&schema(), "example.com/v1", "Widget").expect("the schema has rules");
        rules
            .check(&schema(), &object, old.as_ref(), &[])
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn rules_that_hold_say_nothing() {
        let object = json!({"spec": {"replicas": 1, "maxReplicas": 3, "name": "web"}});
        assert_eq!(messages(object.clone(), Some(object)), Vec::<String>::new());
    }

    #[test]
    fn broken_rules_speak_as_kubernetes_does() {
        let object = json!({"spec": {"replicas": 5, "maxReplicas": 3, "name": "gadget"}});
        assert_eq!(
            messages(object, None),
            [
                r#"spec: Invalid value: "object": replicas must not exceed maxReplicas"#,
                "spec.name: Forbidden: failed rule: self.name.startsWith('w')",
                r#"spec.name: Invalid value: "string": failed rule: self.size() <= 5"#,
            ]
        );
    }

    #[test]
    fn transition_rules_run_on_updates_only() {
        let smaller = json!({"spec": {"replicas": 1, "maxReplicas": 3, "name": "w"}});
        assert_eq!(messages(smaller.clone(), None), Vec::<String>::new());
        let old = json!({"spec": {"replicas": 2, "maxReplicas": 3, "name": "w"}});
        assert_eq!(messages(smaller, Some(old)), [r#"spec: Invalid value: "object": may not scale down from 2"#]);
    }

    #[test]
    fn a_type_error_blocks_the_rules() {
        let rules = Rules::compile(&schema(), "example.com/v1", "Widget").unwrap();
        let earlier = [field_error::type_invalid("spec.replicas", &json!("string"), "")];
        let causes = rules.check(&schema(), &json!({"spec": {"replicas": "x"}}), None, &earlier);
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.starts_with(r#"Invalid value: "null": some validation rules were not checked"#));
    }

    #[test]
    fn rules_that_do_not_compile_are_named_by_their_path() {
        let mut causes = Vec::new();
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.replicas <"}, {"rule": ""}, {"rule": "true", "reason": "Nope"}]}}});
        check_rules_compile(&schema, "spec.versions[0].schema.openAPIV3Schema", &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[2].reason",
            ]
        );
        assert!(causes[0].message.contains("compilation failed"), "{causes:?}");
    }

    #[test]
    fn a_rules_value_is_the_type_of_its_node() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "listeners": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}});
        assert_eq!(type_at(&schema, "spec.listeners"), "array");
        assert_eq!(type_at(&schema, "spec.listeners[0]"), "object");
        assert_eq!(type_at(&schema, "spec.listeners[0].name"), "string");
        assert_eq!(type_at(&schema, "spec.unknown"), "object");
    }
}
