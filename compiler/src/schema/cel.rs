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

/// The compiled rules of one CRD version's schema: one `Site` per schema node that has
/// rules. kube-cel walks an object's every node, turning each into CEL values again and
/// binding it as `self`; most nodes have no rules, so only the nodes that do are visited
/// and converted here, each through kube-cel with a schema of its own in which the
/// descendants' rules are gone (they are sites of their own) and descendants that
/// change nothing in the conversion (no `format`, map, embedded resource or default)
/// are left out.
pub struct Rules {
    sites: Vec<Site>,
    root: RootContext,
    /// The schema has `default`s: they are filled before the sites are looked for, as
    /// kube-cel fills them before it walks.
    defaults: bool,
}

/// A schema node with rules, and how to reach its values from the object's root.
struct Site {
    steps: Vec<Step>,
    compiled: CompiledSchema,
}

/// One step from a node to its children.
#[derive(Clone, Debug)]
enum Step {
    Property(String),
    Items,
    /// `additionalProperties`: every key but the declared ones.
    Additional(Vec<String>),
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
        let mut sites = Vec::new();
        find_sites(schema, &mut Vec::new(), &mut sites, 0);
        Some(Rules {
            sites,
            defaults: has_defaults(schema),
            root: RootContext { api_version: api_version.into(), api_group: group.into(), kind: kind.into() },
        })
    }

    /// Checks an object (and, on an update, the object it replaces) against the rules;
    /// `earlier` are the schema's own findings, which may block them.
    pub fn check(&self, schema: &Value, object: &Value, old: Option<&Value>, earlier: &[Cause]) -> Vec<Cause> {
        if earlier.iter().any(|c| matches!(c.reason(), "FieldValueTypeInvalid" | "FieldValueNotSupported")) {
            return vec![field_error::invalid("<nil>", &Value::Null, NOT_CHECKED)];
        }
        let errors = self.sites_errors(object, old, schema);
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

impl Rules {
    /// What kube-cel says at each site, paths from the object's root.
    fn sites_errors(&self, object: &Value, old: Option<&Value>, schema: &Value) -> Vec<kube_cel::ValidationError> {
        let (defaulted, defaulted_old);
        let (object, old) = if self.defaults {
            defaulted = kube_cel::apply_defaults(schema, object);
            defaulted_old = old.map(|old| kube_cel::apply_defaults(schema, old));
            (&defaulted, defaulted_old.as_ref())
        } else {
            (object, old)
        };
        let mut errors = Vec::new();
        VALIDATOR.with(|validator| {
            for site in &self.sites {
                let root = site.steps.is_empty().then_some(&self.root);
                visit(&site.steps, object, old, String::new(), &mut |value, old, at| {
                    if let Err(found) = validator.validate_compiled_with_context(&site.compiled, value, old, root) {
                        for mut error in found.into_vec() {
                            error.field_path = join(&at, &error.field_path);
                            errors.push(error);
                        }
                    }
                });
            }
        });
        errors
    }
}

/// A path below an instance's path, as kube-cel joins them.
fn join(base: &str, below: &str) -> String {
    match (base.is_empty(), below.is_empty()) {
        (true, _) => below.to_string(),
        (false, true) => base.to_string(),
        (false, false) if below.starts_with('.') || below.starts_with('[') => format!("{base}{below}"),
        (false, false) => format!("{base}.{below}"),
    }
}

/// Every value (with its old value, paired by name and index as kube-cel pairs them, and
/// its path) that `steps` reach from `value`.
fn visit(
    steps: &[Step],
    value: &Value,
    old: Option<&Value>,
    at: String,
    found: &mut dyn FnMut(&Value, Option<&Value>, String),
) {
    let Some((step, rest)) = steps.split_first() else {
        found(value, old, at);
        return;
    };
    let child_path = |segment: &str| if at.is_empty() { segment.to_string() } else { format!("{at}.{segment}") };
    match step {
        Step::Property(name) => {
            if let Some(child) = value.get(name) {
                visit(rest, child, old.and_then(|o| o.get(name)), child_path(name), found);
            }
        }
        Step::Items => {
            for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                let old_item = old.and_then(Value::as_array).and_then(|items| items.get(index));
                visit(rest, item, old_item, format!("{at}[{index}]"), found);
            }
        }
        Step::Additional(declared) => {
            for (key, child) in value.as_object().into_iter().flatten() {
                if !declared.contains(key) {
                    visit(rest, child, old.and_then(|o| o.get(key)), child_path(key), found);
                }
            }
        }
    }
}

/// The schema nodes that have rules, each compiled with its descendants' rules left to
/// their own sites. kube-cel walks at most `MAX_DEPTH` levels; so does this.
fn find_sites(schema: &Value, steps: &mut Vec<Step>, sites: &mut Vec<Site>, depth: usize) {
    const MAX_DEPTH: usize = 64;
    let Some(map) = schema.as_object() else { return };
    if depth > MAX_DEPTH {
        return;
    }
    if map.get("x-kubernetes-validations").and_then(Value::as_array).is_some_and(|rules| !rules.is_empty()) {
        sites.push(Site { steps: steps.clone(), compiled: kube_cel::compile_schema(&site_schema(schema)) });
    }
    let declared: Vec<String> =
        map.get("properties").and_then(Value::as_object).map_or(Vec::new(), |p| p.keys().cloned().collect());
    for (name, child) in map.get("properties").and_then(Value::as_object).into_iter().flatten() {
        steps.push(Step::Property(name.clone()));
        find_sites(child, steps, sites, depth + 1);
        steps.pop();
    }
    if let Some(items) = map.get("items") {
        steps.push(Step::Items);
        find_sites(items, steps, sites, depth + 1);
        steps.pop();
    }
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if let Some(additional) = map.get("additionalProperties").filter(|a| a.is_object() && !preserve) {
        steps.push(Step::Additional(declared));
        find_sites(additional, steps, sites, depth + 1);
        steps.pop();
    }
    // A branch's rules apply to the same value.
    for key in ["allOf", "oneOf", "anyOf"] {
        for branch in map.get(key).and_then(Value::as_array).into_iter().flatten() {
            find_sites(branch, steps, sites, depth + 1);
        }
    }
}

/// A site's node as its own schema: its rules, and of its descendants only what the
/// conversion to CEL values or the defaults read.
fn site_schema(schema: &Value) -> Value {
    let mut own = schema.clone();
    strip(&mut own, true);
    own
}

/// Drops descendants' rules, and descendants that matter neither to conversion nor to
/// defaults; `keep_rules` for the site itself.
fn strip(node: &mut Value, keep_rules: bool) {
    let Some(map) = node.as_object_mut() else { return };
    if !keep_rules {
        map.remove("x-kubernetes-validations");
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.retain(|_, child| matters(child));
        for child in properties.values_mut() {
            strip(child, false);
        }
    }
    for key in ["items", "additionalProperties"] {
        if map.get(key).is_some_and(|child| child.is_object() && !matters(child)) {
            // An absent `additionalProperties` would not be a map: keep it, empty.
            if key == "items" {
                map.remove(key);
            } else {
                map.insert(key.into(), json!({}));
            }
        } else if let Some(child) = map.get_mut(key) {
            strip(child, false);
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(branches)) = map.get_mut(key) {
            for branch in branches.iter_mut() {
                strip(branch, false);
            }
        }
    }
}

/// Whether a subtree changes how a value converts to CEL (a `format` kube-cel types, a
/// map whose keys are not escaped, an embedded resource) or gets defaults.
fn matters(schema: &Value) -> bool {
    let Some(map) = schema.as_object() else { return false };
    let typed_format = matches!(map.get("format").and_then(Value::as_str), Some("date-time" | "duration" | "byte"));
    if typed_format
        || map.contains_key("default")
        || map.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
        || map.get("additionalProperties").is_some_and(|a| a.is_object() || a == &Value::Bool(true))
        || map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
    {
        return true;
    }
    map.get("properties").and_then(Value::as_object).is_some_and(|p| p.values().any(matters))
        || map.get("items").is_some_and(matters)
        || ["allOf", "oneOf", "anyOf"]
            .iter()
            .any(|key| map.get(*key).and_then(Value::as_array).is_some_and(|b| b.iter().any(matters)))
}

/// Whether any node of a schema has a `default`.
fn has_defaults(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            map.contains_key("default")
                || map.iter().any(|(key, child)| key != "enum" && key != "example" && has_defaults(child))
        }
        Value::Array(items) => items.iter().any(has_defaults),
        _ => false,
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

    /// The site-by-site evaluation finds what kube-cel's walk of every node finds, over
    /// the CEL and Gateway API fixtures and a schema with formats, maps, defaults, nested
    /// lists and a transition rule.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn sites_find_what_a_walk_of_every_node_finds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/crds");
        let documents = |path: &str| -> Vec<Value> {
            let text = std::fs::read_to_string(root.join(path)).unwrap();
            let source = crate::SourceFile::new(path, text).unwrap();
            crate::yaml::Documents::new(&source).map(|d| d.unwrap().root.unwrap().to_json()).collect()
        };
        let mut cases: Vec<(Value, Vec<Value>)> = Vec::new();
        let schema_of = |crd: &Value| crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        let cel = schema_of(&documents("cel/crd.yaml")[0]);
        let mut objects = documents("cel/valid.yaml");
        objects.extend(documents("cel/invalid.yaml"));
        cases.push((cel, objects));
        let gateway_objects: Vec<Value> =
            documents("gateway-api/gateway.yaml").into_iter().chain(documents("gateway-api/invalid.yaml")).collect();
        for crd in documents("gateway-api/crds.yaml") {
            let kind = crd["spec"]["names"]["kind"].clone();
            cases.push((schema_of(&crd), gateway_objects.iter().filter(|o| o["kind"] == kind).cloned().collect()));
        }
        let mixed = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.until > self.since", "message": "until after since"},
                                         {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"}],
            "properties": {
                "since": {"type": "string", "format": "date-time"},
                "until": {"type": "string", "format": "date-time"},
                "mode": {"type": "string", "default": "fast"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"},
                    "x-kubernetes-validations": [{"rule": "self.all(k, !k.startsWith('x-'))", "message": "no x- keys"}]},
                "rows": {"type": "array", "items": {"type": "array", "items": {"type": "integer",
                    "x-kubernetes-validations": [{"rule": "self >= 0", "message": "negative"}]}}}}}}});
        let objects = vec![
            json!({"spec": {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z", "labels": {"a-b": "1"}, "rows": [[1, 2], [3]]}}),
            json!({"spec": {"since": "2026-03-01T00:00:00Z", "until": "2026-02-01T00:00:00Z", "labels": {"x-y": "1"}, "rows": [[1, -2], [-3]], "mode": "slow"}}),
        ];
        cases.push((mixed, objects));
        let mut found = 0;
        for (schema, objects) in cases {
            assert!(!objects.is_empty());
            let rules = Rules::compile(&schema, "example.com/v1", "Thing").unwrap();
            let whole = kube_cel::compile_schema(&schema);
            for object in &objects {
                for old in [None, Some(&objects[0])] {
                    let walked =
                        VALIDATOR.with(|v| v.validate_compiled_with_context(&whole, object, old, Some(&rules.root)));
                    let mut theirs: Vec<String> = match walked {
                        Ok(()) => Vec::new(),
                        Err(errors) => errors
                            .into_vec()
                            .into_iter()
                            .map(|e| format!("{}|{}", e.field_path.trim_start_matches('.'), e.message.trim()))
                            .collect(),
                    };
                    let mut ours_plain: Vec<String> = rules
                        .sites_errors(object, old, &schema)
                        .into_iter()
                        .map(|e| format!("{}|{}", e.field_path.trim_start_matches('.'), e.message.trim()))
                        .collect();
                    ours_plain.sort();
                    theirs.sort();
                    assert_eq!(ours_plain, theirs, "{object}");
                    found += theirs.len();
                }
            }
        }
        assert!(found >= 10, "the cases find too little to compare: {found}");
    }
}
