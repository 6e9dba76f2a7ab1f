//! An object against its schema: the validator's findings, turned into diagnostics
//! that point at the exact key or value and say what to do.

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::schema::{Catalog, CompiledSchema};
use crate::source::{SourceFile, Span};
use crate::yaml::{Key, Node, Value};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value as Json;

/// Validates one object (a document's root, or one item of a `List`).
pub fn validate_object(
    catalog: &Catalog,
    schema: &CompiledSchema,
    object: &Node,
    source: &SourceFile,
) -> Vec<Diagnostic> {
    let instance = object.to_json();
    let mut diagnostics = Vec::new();
    for error in schema.validator.iter_errors(&instance) {
        let location = error.absolute_keyword_location().map(|uri| uri.as_str().to_string());
        let schema_here = location.as_deref().and_then(|l| catalog.schema_at(schema, l));
        let type_name = location.as_deref().and_then(definition_name);
        let found = locate(object, error.instance_path().as_str());
        let path = field_path(&found.segments);
        let context = Context { found: &found, path: &path, schema: schema_here, type_name, source, object };
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for field in unexpected {
                    diagnostics.push(unknown_field(&context, field));
                }
            }
            ValidationErrorKind::FalseSchema => {
                let field = found.segments.last().map(|s| s.name.clone()).unwrap_or_default();
                diagnostics.push(
                    Diagnostic::error(Code::UnknownField, found.key_span(), format!("field \"{path}\" is not allowed"))
                        .with_label(format!("\"{field}\" is not allowed here"))
                        .with_path(path.clone()),
                );
            }
            ValidationErrorKind::Required { property } => {
                diagnostics.push(missing_field(&context, property.as_str().unwrap_or_default()));
            }
            ValidationErrorKind::Type { kind } => diagnostics.push(wrong_type(&context, expected_types(kind))),
            ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. } => {
                let keyword = if matches!(error.kind(), ValidationErrorKind::AnyOf { .. }) { "anyOf" } else { "oneOf" };
                match alternative_types(schema_here, keyword) {
                    Some(types) => diagnostics.push(wrong_type(&context, types)),
                    None => diagnostics
                        .push(constraint(&context, "does not match any of the forms the schema allows".into())),
                }
            }
            ValidationErrorKind::Enum { options } => diagnostics.push(not_in_enum(&context, options)),
            ValidationErrorKind::Constant { expected_value } => {
                let d = Diagnostic::error(
                    Code::NotInEnum,
                    found.value_span(),
                    format!("{}: must be {expected_value}", display_path(&path)),
                )
                .with_label(format!("must be {expected_value}"))
                .with_path(path.clone());
                diagnostics.push(d);
            }
            _ => {
                let message = error.to_string();
                diagnostics.push(constraint(&context, message));
            }
        }
    }
    diagnostics
}

/// A finding of a CEL rule (as the API server words it: `spec: Invalid value: "object":
/// ...`), anchored at the field it names, or at the object for a rule at its root.
pub fn rule_diagnostic(object: &Node, cause: &crate::admission::Cause) -> Diagnostic {
    let field = if cause.field == "<nil>" { "" } else { cause.field.as_str() };
    let found = locate(object, &pointer_of(field));
    let span = if field.is_empty() { object_anchor(object) } else { found.key_span() };
    let message =
        if cause.field.is_empty() { cause.message.clone() } else { format!("{}: {}", cause.field, cause.message) };
    Diagnostic::error(Code::ValidationRule, span, message)
        .with_label("a validation rule of the CustomResourceDefinition does not hold")
        .with_help(
            "the rule is in the CRD's `x-kubernetes-validations`; the API server refuses the object with this message",
        )
        .with_path(field.to_string())
}

/// Where a field path (`spec.versions[0].schema.openAPIV3Schema.properties[foo]`) is in
/// an object's tree: its key, or the nearest node on the way; the object's `kind` for none.
pub(crate) fn span_of_field(object: &Node, field: &str) -> Span {
    if field.is_empty() {
        return object_anchor(object);
    }
    locate(object, &pointer_of(field)).key_span()
}

/// The node a field path names exactly (`spec.containers[0].image`,
/// `metadata.labels[app.kubernetes.io/name]`), with the span to point at (its key, or the
/// item itself in a list); `None` when the object lacks it. For mapping a finding about a
/// built object back to the file it came from (a kustomization's resources).
pub fn field_node<'a>(object: &'a Node, field: &str) -> Option<(&'a Node, Span)> {
    let (mut node, mut span) = (object, object_anchor(object));
    let mut rest = field;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']')?;
            let key = &inner[..close];
            rest = &inner[close + 1..];
            match &node.value {
                Value::Seq(items) => {
                    node = items.get(key.parse::<usize>().ok()?)?;
                    span = node.span;
                }
                Value::Map(_) => {
                    let entry = node.entry(key)?;
                    (node, span) = (&entry.value, entry.key.span);
                }
                _ => return None,
            }
        } else {
            let rest_start = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_start.find(['.', '[']).unwrap_or(rest_start.len());
            let key = &rest_start[..end];
            rest = &rest_start[end..];
            let entry = node.entry(key)?;
            (node, span) = (&entry.value, entry.key.span);
        }
    }
    Some((node, span))
}

/// A field path (`spec.items[0].name`) as a JSON pointer (`/spec/items/0/name`).
fn pointer_of(path: &str) -> String {
    let mut pointer = String::new();
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let mut parts = segment.split('[');
        if let Some(name) = parts.next().filter(|n| !n.is_empty()) {
            pointer.push('/');
            pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        for index in parts {
            pointer.push('/');
            pointer.push_str(index.trim_end_matches(']'));
        }
    }
    pointer
}

struct Context<'a> {
    found: &'a Found<'a>,
    path: &'a str,
    schema: Option<&'a Json>,
    type_name: Option<&'a str>,
    source: &'a SourceFile,
    object: &'a Node,
}

fn unknown_field(context: &Context<'_>, field: &str) -> Diagnostic {
    let full = join_path(context.path, field);
    let key = context.found.node.and_then(|n| n.entry(field)).map(|e| &e.key);
    let span = key.map_or(context.found.key_span(), |k| k.span);
    let known: Vec<&str> = context
        .schema
        .and_then(|s| s.get("properties"))
        .and_then(Json::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let owner = context.type_name.map_or_else(|| "this object".to_string(), str::to_string);
    let mut d = Diagnostic::error(Code::UnknownField, span, format!("unknown field \"{full}\""))
        .with_label(format!("{owner} has no field \"{field}\""))
        .with_path(full);
    if let Some(suggestion) = did_you_mean(field, known.iter().copied()) {
        d = d.with_help(format!("did you mean \"{suggestion}\"?"));
    } else if !known.is_empty() {
        let mut sorted = known.clone();
        sorted.sort_unstable();
        let listed = if sorted.len() > 12 { format!("{}, …", sorted[..12].join(", ")) } else { sorted.join(", ") };
        let whose = context.type_name.map_or_else(|| "fields allowed here".to_string(), |t| format!("{t} fields"));
        d = d.with_help(format!("{whose}: {listed}"));
    }
    d
}

fn missing_field(context: &Context<'_>, field: &str) -> Diagnostic {
    let owner = context.type_name.map_or_else(|| "this object".to_string(), str::to_string);
    let span = match (context.found.key, context.found.node) {
        (Some(key), _) => key.span,
        // A list item: point at its first line.
        (None, Some(node)) if !context.found.segments.is_empty() => {
            node.as_map().and_then(|m| m.first()).map_or(node.span, |e| e.key.span)
        }
        _ => object_anchor(context.object),
    };
    let full = join_path(context.path, field);
    let place = if context.path.is_empty() {
        "at the top level of the object".to_string()
    } else {
        format!("under {}", context.path)
    };
    Diagnostic::error(Code::MissingField, span, format!("missing required field \"{full}\""))
        .with_label(format!("{owner} requires \"{field}\""))
        .with_help(format!("add `{field}:` {place}"))
        .with_path(full)
}

fn wrong_type(context: &Context<'_>, mut expected: Vec<String>) -> Diagnostic {
    expected.retain(|t| t != "null");
    expected.dedup();
    let Some(node) = context.found.node else {
        return constraint(context, format!("expected {}", expected.join(" or ")));
    };
    let found_type = node.type_name();
    let shown = match &node.value {
        Value::String(s) => format!("string \"{}\"", truncate(s, 40)),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Int(i) => format!("integer {i}"),
        Value::UInt(u) => format!("integer {u}"),
        Value::Float(f) => format!("number {f}"),
        _ => found_type.to_string(),
    };
    let wanted = expected.join(" or ");
    let mut d = Diagnostic::error(
        Code::WrongType,
        node.span,
        format!("{}: expected {wanted}, found {shown}", display_path(context.path)),
    )
    .with_label(format!("expected {wanted}"))
    .with_path(context.path.to_string());
    let written = context.source.slice(node.span).trim();
    let wants = |t: &str| expected.iter().any(|e| e == t);
    let help = match &node.value {
        Value::Bool(_) if wants("string") => {
            Some(if matches!(written, "true" | "false" | "True" | "False" | "TRUE" | "FALSE") {
                format!("quote it to pass the string: \"{written}\"")
            } else {
                format!(
                    "YAML 1.1, which Kubernetes reads, takes an unquoted `{written}` as a boolean; quote it to keep the string: \"{written}\""
                )
            })
        }
        Value::Int(_) | Value::UInt(_) | Value::Float(_) if wants("string") => {
            Some(format!("quote it to pass a string: \"{written}\""))
        }
        Value::String(s)
            if (wants("integer") || wants("number")) && !s.is_empty() && s.trim().parse::<f64>().is_ok() =>
        {
            Some(format!("remove the quotes to pass a number: {}", s.trim()))
        }
        Value::Map(_) if wants("array") => {
            Some("this field takes a list: write each item on its own line starting with `- `".into())
        }
        Value::Seq(_) if wants("object") => {
            Some("this field takes a mapping, not a list: remove the `- ` in front of its keys".into())
        }
        Value::String(_) if wants("object") || wants("array") => {
            Some("check the indentation: the fields meant to be inside this one are not nested under it".into())
        }
        _ => None,
    };
    if let Some(help) = help {
        d = d.with_help(help);
    }
    d
}

fn not_in_enum(context: &Context<'_>, options: &Json) -> Diagnostic {
    let allowed: Vec<String> = options
        .as_array()
        .map(|a| a.iter().filter(|v| !v.is_null()).map(Json::to_string).collect())
        .unwrap_or_default();
    let span = context.found.value_span();
    let value = context.found.node.map(|n| n.to_json().to_string()).unwrap_or_default();
    let mut d = Diagnostic::error(
        Code::NotInEnum,
        span,
        format!("{}: {value} is not one of {}", display_path(context.path), allowed.join(", ")),
    )
    .with_label("not an allowed value")
    .with_path(context.path.to_string());
    let strings: Vec<&str> =
        options.as_array().map(|a| a.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
    if let Some(text) = context.found.node.and_then(Node::as_str)
        && let Some(suggestion) = did_you_mean(text, strings.iter().copied())
    {
        d = d.with_help(format!("did you mean \"{suggestion}\"?"));
    } else {
        d = d.with_help(format!("allowed values: {}", allowed.join(", ")));
    }
    d
}

fn constraint(context: &Context<'_>, message: String) -> Diagnostic {
    Diagnostic::error(
        Code::Constraint,
        context.found.value_span(),
        format!("{}: {message}", display_path(context.path)),
    )
    .with_label("breaks a schema constraint")
    .with_path(context.path.to_string())
}

fn expected_types(kind: &TypeKind) -> Vec<String> {
    match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
    }
}

/// For `oneOf`/`anyOf` whose alternatives differ only in type (IntOrString, Quantity),
/// the types they accept.
fn alternative_types(schema: Option<&Json>, keyword: &str) -> Option<Vec<String>> {
    let alternatives = schema?.get(keyword)?.as_array()?;
    let mut types = Vec::new();
    for alternative in alternatives {
        let object = alternative.as_object()?;
        if object.keys().any(|k| k != "type" && k != "format") {
            return None;
        }
        match object.get("type")? {
            Json::String(t) => types.push(t.clone()),
            Json::Array(list) => types.extend(list.iter().filter_map(Json::as_str).map(str::to_string)),
            _ => return None,
        }
    }
    Some(types)
}

/// `io.k8s.api.core.v1.PodSpec` for a location inside that definition.
fn definition_name(location: &str) -> Option<&str> {
    let (_, fragment) = location.split_once("#/$defs/")?;
    let definition = fragment.split('/').next()?;
    definition.rsplit('.').next()
}

struct Segment {
    name: String,
    index: Option<usize>,
}

/// What an instance path leads to in the tree.
struct Found<'a> {
    node: Option<&'a Node>,
    /// The mapping key whose value is `node`; `None` for the root and list items.
    key: Option<&'a Key>,
    /// The nearest span on the way, for paths the tree does not have (defensive).
    fallback: Span,
    segments: Vec<Segment>,
}

impl Found<'_> {
    fn key_span(&self) -> Span {
        self.key.map_or(self.value_span(), |k| k.span)
    }

    fn value_span(&self) -> Span {
        self.node.map_or(self.fallback, |n| n.span)
    }
}

fn locate<'a>(root: &'a Node, pointer: &str) -> Found<'a> {
    let mut found = Found { node: Some(root), key: None, fallback: root.span, segments: Vec::new() };
    for raw in pointer.split('/').skip(1) {
        let name = raw.replace("~1", "/").replace("~0", "~");
        let Some(node) = found.node else {
            found.segments.push(Segment { name, index: None });
            continue;
        };
        found.fallback = node.span;
        match &node.value {
            Value::Seq(items) => {
                let index = name.parse::<usize>().ok();
                found.node = index.and_then(|i| items.get(i));
                found.key = None;
                found.segments.push(Segment { name, index });
            }
            Value::Map(_) => {
                let entry = node.entry(&name);
                found.node = entry.map(|e| &e.value);
                found.key = entry.map(|e| &e.key);
                found.segments.push(Segment { name, index: None });
            }
            _ => {
                found.node = None;
                found.segments.push(Segment { name, index: None });
            }
        }
    }
    found
}

/// kubectl's field path: `spec.containers[0].image`, `metadata.labels[app.kubernetes.io/name]`.
fn field_path(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment.index {
            Some(i) => path.push_str(&format!("[{i}]")),
            None => path = join_path(&path, &segment.name),
        }
    }
    path
}

fn join_path(path: &str, field: &str) -> String {
    let plain = !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => field.to_string(),
        (false, true) => format!("{path}.{field}"),
        (_, false) => format!("{path}[{field}]"),
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "the object" } else { path }
}

/// Where to point when the whole object is at fault: its `kind`, else its first line.
fn object_anchor(object: &Node) -> Span {
    object
        .entry("kind")
        .map(|e| e.value.span)
        .or_else(|| object.as_map().and_then(|m| m.first()).map(|e| e.key.span))
        .unwrap_or(object.span)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Documents;

    #[test]
    fn a_field_path_names_its_node_exactly_or_nothing() {
        let source = SourceFile::new(
            "t.yaml",
            "kind: Pod\nmetadata:\n  labels: {app.kubernetes.io/name: web}\nspec:\n  containers:\n  - name: a\n    image: x\n",
        )
        .unwrap();
        let document = Documents::new(&source).next().unwrap().unwrap();
        let root = document.root.unwrap();
        let text = |span: Span| &source.text()[span.start as usize..span.end as usize];
        let (node, span) = field_node(&root, "spec.containers[0].image").unwrap();
        assert_eq!((node.as_str(), text(span)), (Some("x"), "image"));
        let (node, span) = field_node(&root, "metadata.labels[app.kubernetes.io/name]").unwrap();
        assert_eq!((node.as_str(), text(span)), (Some("web"), "app.kubernetes.io/name"));
        assert!(text(field_node(&root, "spec.containers[0]").unwrap().1).starts_with("name: a"));
        assert!(field_node(&root, "spec.containers[1].image").is_none());
        assert!(field_node(&root, "spec.replicas").is_none());
        assert_eq!(text(field_node(&root, "").unwrap().1), "Pod");
    }
}
