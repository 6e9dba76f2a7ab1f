//! Templates: `${ expr }` in scalar values, filled from values (files, `--set`, an
//! environment). Substitution happens on the parsed tree, never on the text, so a
//! template stays valid YAML and every diagnostic points at the characters of the
//! expression. A scalar that is one whole unquoted `${ }` takes the value's own type
//! (`replicas: ${ replicas }` is a number); anything else is text. `$${` writes a literal
//! `${` (shell scripts in ConfigMaps).

pub mod expr;

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::source::{SourceFile, Span};
use crate::yaml::{self, Documents, Entry, Key, Node};
use expr::{Expr, FUNCTIONS};
use serde_json::{Map, Value};
use std::ops::Range;

/// The values templates read: a tree merged from every source, later sources winning.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values {
    root: Map<String, Value>,
    /// Where the values came from, for messages (`values/prod.yaml, --set`).
    sources: Vec<String>,
}

impl Values {
    /// Merges the first document of a values file (a mapping) over what is there.
    pub fn merge_file(&mut self, source: &SourceFile) -> Result<(), Vec<Diagnostic>> {
        let mut documents = Documents::new(source);
        let document = match documents.next() {
            None => return Ok(()),
            Some(Err(diagnostic)) => return Err(vec![*diagnostic]),
            Some(Ok(document)) => document,
        };
        if document.diagnostics.iter().any(Diagnostic::is_error) {
            return Err(document.diagnostics);
        }
        match document.root.as_ref().map(Node::to_json) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => merge(&mut self.root, map),
            Some(other) => {
                let span = document.root.as_ref().map_or(document.span, |r| r.span);
                return Err(vec![
                    Diagnostic::error(
                        Code::BadValues,
                        span,
                        format!("a values file holds a mapping, not {}", json_type(&other)),
                    )
                    .with_label("expected `key: value` lines here")
                    .with_help("write values as a YAML mapping, e.g. `replicas: 3` and `image: {tag: v1}`"),
                ]);
            }
        }
        self.sources.push(source.name().to_string());
        Ok(())
    }

    /// Applies `--set a.b.c=value`; the value is read as a YAML plain scalar (`3` is a
    /// number, `true` a boolean, `"3"` cannot be written: use a values file for that).
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        self.assign(assignment, false)
    }

    /// Applies `--set-string a.b=value`: the value is text, whatever it looks like
    /// (`1.10` stays `1.10`, `no` stays `no`).
    pub fn set_string(&mut self, assignment: &str) -> Result<(), String> {
        self.assign(assignment, true)
    }

    fn assign(&mut self, assignment: &str, text: bool) -> Result<(), String> {
        let flag = if text { "--set-string" } else { "--set" };
        let (path, raw) = assignment
            .split_once('=')
            .ok_or_else(|| format!("{flag} {assignment}: write key.path=value, e.g. {flag} image.tag=v2"))?;
        let segments: Vec<&str> = path.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("{flag} {assignment}: `{path}` is not a dotted path of keys"));
        }
        let value = if text || raw.is_empty() {
            Value::String(raw.to_string())
        } else {
            match yaml::resolve_plain(raw) {
                yaml::Value::Float(f) if !f.is_finite() => {
                    return Err(format!(
                        "{flag} {assignment}: `{raw}` is not a finite number (use --set-string for text)"
                    ));
                }
                scalar => scalar_json(scalar),
            }
        };
        let mut map = &mut self.root;
        for segment in &segments[..segments.len() - 1] {
            let slot = map.entry(segment.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            map = slot.as_object_mut().expect("just made an object");
        }
        map.insert(segments[segments.len() - 1].to_string(), value);
        if self.sources.last().is_none_or(|s| s != "--set") {
            self.sources.push("--set".into());
        }
        Ok(())
    }

    pub fn as_json(&self) -> &Map<String, Value> {
        &self.root
    }

    /// Looks a path up: `Ok(value)`, or `Err(depth)` with how many segments resolved.
    fn lookup(&self, segments: &[String]) -> Result<&Value, usize> {
        let mut map = &self.root;
        for (depth, segment) in segments.iter().enumerate() {
            let value = map.get(segment).ok_or(depth)?;
            if depth + 1 == segments.len() {
                return Ok(value);
            }
            map = value.as_object().ok_or(depth + 1)?;
        }
        Err(0)
    }

    fn keys_at(&self, segments: &[String]) -> Vec<&str> {
        let mut map = &self.root;
        for segment in segments {
            match map.get(segment).and_then(Value::as_object) {
                Some(inner) => map = inner,
                None => return Vec::new(),
            }
        }
        map.keys().map(String::as_str).collect()
    }
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => merge(existing, incoming),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn scalar_json(value: yaml::Value) -> Value {
    Node { value, span: Span::default() }.to_json()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Whether any scalar of the text might hold a template (a cheap test to skip the walk).
pub fn may_hold_templates(text: &str) -> bool {
    text.contains("${")
}

/// Fills every `${ }` in the scalar values under `node`. Problems are pushed to `out`;
/// a scalar with a problem is left as written.
pub fn render(node: &mut Node, source: &SourceFile, values: &Values, out: &mut Vec<Diagnostic>) {
    match &mut node.value {
        yaml::Value::Map(entries) => {
            for entry in entries {
                render(&mut entry.value, source, values, out);
            }
        }
        yaml::Value::Seq(items) => {
            for item in items {
                render(item, source, values, out);
            }
        }
        yaml::Value::String(text) if text.contains("${") => {
            if let Some(rendered) = render_scalar(text, node.span, source, values, out) {
                *node = rendered;
            }
        }
        _ => {}
    }
}

/// One piece of a scalar: text as it stands, or an expression and where it sits in the
/// scalar's value.
enum Piece {
    Text(String),
    Expr { expr: Expr, text: Range<usize> },
}

fn render_scalar(
    text: &str,
    span: Span,
    source: &SourceFile,
    values: &Values,
    out: &mut Vec<Diagnostic>,
) -> Option<Node> {
    let written = source.slice(span);
    let quoted = written.starts_with(['"', '\'', '|', '>']);
    let locate = Locator { written, text, span };
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = 0;
    while let Some(found) = text[rest..].find("${") {
        let start = rest + found;
        if text[..start].ends_with('$') {
            // `$${` is an escaped `${`.
            literal.push_str(&text[rest..start - 1]);
            literal.push_str("${");
            rest = start + 2;
            continue;
        }
        literal.push_str(&text[rest..start]);
        let inner = &text[start + 2..];
        let (expr, used) = match expr::parse(inner) {
            Ok(parsed) => parsed,
            Err(error) => {
                let at = start + 2 + error.at;
                out.push(
                    Diagnostic::error(Code::TemplateSyntax, locate.span(at..at, start), error.message)
                        .with_label("the expression cannot be read from here")
                        .with_help(
                            "write ${ path.to.value }, ${ value | default(1) }, ${ \"text\" + value } or ${ upper(value) }; $${ writes a literal ${",
                        ),
                );
                return None;
            }
        };
        let close = start + 2 + used;
        if !text[close..].starts_with('}') {
            let (message, at) = match text[close..].chars().next() {
                None => ("`${` is not closed with `}`".to_string(), start..text.len()),
                Some(c) => (format!("expected `}}` to end the expression, found `{c}`"), close..close + c.len_utf8()),
            };
            out.push(
                Diagnostic::error(Code::TemplateSyntax, locate.span(at, start), message)
                    .with_label("here")
                    .with_help("end the expression with `}`; to write a literal ${, write $${"),
            );
            return None;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Expr { expr, text: start..close + 1 });
        rest = close + 1;
    }
    literal.push_str(&text[rest..]);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }

    let whole = !quoted && pieces.len() == 1 && matches!(pieces[0], Piece::Expr { .. });
    let mut joined = String::new();
    let mut failed = false;
    for piece in &pieces {
        match piece {
            Piece::Text(t) => joined.push_str(t),
            Piece::Expr { expr, text: range } => {
                let offset = range.start + 2;
                let value = match evaluate(expr, values) {
                    Ok(value) => value,
                    Err(problem) => {
                        let at = problem.at.start + offset..problem.at.end + offset;
                        out.push(problem.into_diagnostic(locate.span(at, range.start), values));
                        failed = true;
                        continue;
                    }
                };
                if whole {
                    return Some(to_node(value, locate.span(range.clone(), range.start)));
                }
                match value {
                    Value::String(s) => joined.push_str(&s),
                    Value::Number(n) => joined.push_str(&n.to_string()),
                    Value::Bool(b) => joined.push_str(if b { "true" } else { "false" }),
                    Value::Null => {}
                    other => {
                        out.push(
                            Diagnostic::error(
                                Code::TemplateType,
                                locate.span(range.clone(), range.start),
                                format!("{} cannot be part of a text", json_type(&other)),
                            )
                            .with_label(format!("this is {}", json_type(&other)))
                            .with_help("put a list or mapping value on its own, unquoted: `key: ${ value }`"),
                        );
                        failed = true;
                    }
                }
            }
        }
    }
    if failed {
        return None;
    }
    Some(Node { value: yaml::Value::String(joined), span })
}

/// Maps offsets in a scalar's value to the file: exact where the written scalar holds the
/// same characters (plain and most quoted scalars), else the whole scalar.
struct Locator<'a> {
    written: &'a str,
    text: &'a str,
    span: Span,
}

impl Locator<'_> {
    /// The span of `range` (offsets in the value) of the expression starting at `start`.
    fn span(&self, range: Range<usize>, start: usize) -> Span {
        let len = self.text.len();
        let begin = range.start.min(len);
        // At least one character, and never half of one.
        let mut end = range.end.min(len).max(begin);
        if end == begin {
            end = self.text[begin..].chars().next().map_or(begin, |c| begin + c.len_utf8());
        }
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        let expression = &self.text[start..end.max(start)];
        // The same expression text at the same occurrence index in what was written.
        let occurrence = self.text[..start].matches("${").count();
        let Some((at, _)) = self.written.match_indices("${").nth(occurrence) else { return self.span };
        if !self.written[at..].starts_with(expression) {
            return self.span;
        }
        let from = self.span.start + (at + begin - start) as u32;
        let to = self.span.start + (at + end - start) as u32;
        Span::new(from, to.min(self.span.end).max(from))
    }
}

fn to_node(value: Value, span: Span) -> Node {
    let value = match value {
        Value::Null => yaml::Value::Null,
        Value::Bool(b) => yaml::Value::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => yaml::Value::Int(i),
            (None, Some(u), _) => yaml::Value::UInt(u),
            (_, _, f) => yaml::Value::Float(f.unwrap_or_default()),
        },
        Value::String(s) => yaml::Value::String(s),
        Value::Array(items) => yaml::Value::Seq(items.into_iter().map(|v| to_node(v, span)).collect()),
        Value::Object(map) => yaml::Value::Map(
            map.into_iter().map(|(name, v)| Entry { key: Key { name, span }, value: to_node(v, span) }).collect(),
        ),
    };
    Node { value, span }
}

/// Why an expression has no value.
struct Problem {
    at: Range<usize>,
    kind: ProblemKind,
}

enum ProblemKind {
    Undefined { segments: Vec<String>, depth: usize },
    UnknownFunction(String),
    Arity { name: String, expected: usize, found: usize },
    Type { function: String, found: &'static str },
}

impl Problem {
    fn into_diagnostic(self, span: Span, values: &Values) -> Diagnostic {
        match self.kind {
            ProblemKind::Undefined { segments, depth } => {
                let path = segments.join(".");
                let known = values.keys_at(&segments[..depth]);
                let missing = &segments[depth.min(segments.len() - 1)];
                let mut help = match did_you_mean(missing, known.iter().copied()) {
                    Some(close) => {
                        let mut fixed = segments[..depth].to_vec();
                        fixed.push(close.to_string());
                        format!("did you mean `{}`? ", fixed.join("."))
                    }
                    None => String::new(),
                };
                let level = if depth == 0 {
                    "the values define".to_string()
                } else {
                    format!("`{}` defines", segments[..depth].join("."))
                };
                if known.is_empty() {
                    help.push_str(&format!("{level} nothing"));
                } else {
                    let mut names: Vec<&str> = known;
                    names.sort_unstable();
                    let shown: Vec<&str> = names.iter().take(8).copied().collect();
                    help.push_str(&format!(
                        "{level} {}{}",
                        shown.join(", "),
                        if names.len() > shown.len() { ", ..." } else { "" }
                    ));
                }
                let from = if values.sources.is_empty() {
                    "; no values were given (--values FILE, --set key=value, --env NAME)".to_string()
                } else {
                    format!(" (from {})", values.sources.join(", "))
                };
                help.push_str(&from);
                help.push_str("; or give a fallback: ${ value | default(...) }");
                Diagnostic::error(Code::TemplateUndefined, span, format!("`{path}` is not defined in the values"))
                    .with_label("undefined value")
                    .with_help(help)
            }
            ProblemKind::UnknownFunction(name) => {
                let names = FUNCTIONS.iter().map(|f| f.0);
                let suggestion =
                    did_you_mean(&name, names.clone()).map(|n| format!("did you mean `{n}`? ")).unwrap_or_default();
                Diagnostic::error(Code::TemplateSyntax, span, format!("there is no function `{name}`"))
                    .with_label("unknown function")
                    .with_help(format!("{suggestion}the functions are {}", names.collect::<Vec<_>>().join(", ")))
            }
            ProblemKind::Arity { name, expected, found } => Diagnostic::error(
                Code::TemplateSyntax,
                span,
                format!("`{name}` takes {expected} argument{}, given {found}", if expected == 1 { "" } else { "s" }),
            )
            .with_label("wrong number of arguments")
            .with_help(format!(
                "a piped value counts as the first argument: `x | {name}{}`",
                if expected == 2 { "(y)" } else { "" }
            )),
            ProblemKind::Type { function, found } => {
                Diagnostic::error(Code::TemplateType, span, format!("`{function}` works on text, not on {found}"))
                    .with_label(format!("this is {found}"))
                    .with_help("pass text (or a number) to text functions")
            }
        }
    }
}

/// The value of an expression. An undefined path is a problem unless `default` catches it.
fn evaluate(expr: &Expr, values: &Values) -> Result<Value, Problem> {
    match expr {
        Expr::Literal(value) => Ok(value.clone()),
        Expr::Path { segments, at } => values.lookup(segments).cloned().map_err(|depth| Problem {
            at: at.clone(),
            kind: ProblemKind::Undefined { segments: segments.clone(), depth },
        }),
        Expr::Concat(parts) => {
            let mut text = String::new();
            for part in parts {
                match evaluate(part, values)? {
                    Value::String(s) => text.push_str(&s),
                    Value::Number(n) => text.push_str(&n.to_string()),
                    Value::Bool(b) => text.push_str(if b { "true" } else { "false" }),
                    Value::Null => {}
                    other => {
                        return Err(Problem {
                            at: range_of(part),
                            kind: ProblemKind::Type { function: "+".into(), found: json_type(&other) },
                        });
                    }
                }
            }
            Ok(Value::String(text))
        }
        Expr::Call { name, args, at } => {
            let Some(&(_, arity, _)) = FUNCTIONS.iter().find(|f| f.0 == name) else {
                return Err(Problem { at: at.clone(), kind: ProblemKind::UnknownFunction(name.clone()) });
            };
            if args.len() != arity {
                return Err(Problem {
                    at: at.clone(),
                    kind: ProblemKind::Arity { name: name.clone(), expected: arity, found: args.len() },
                });
            }
            if name == "default" {
                return match evaluate(&args[0], values) {
                    Ok(Value::Null) => evaluate(&args[1], values),
                    Err(Problem { kind: ProblemKind::Undefined { .. }, .. }) => evaluate(&args[1], values),
                    other => other,
                };
            }
            let text = match evaluate(&args[0], values)? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(Problem {
                        at: at.start..range_of(&args[0]).end.max(at.end),
                        kind: ProblemKind::Type { function: name.clone(), found: json_type(&other) },
                    });
                }
            };
            Ok(Value::String(match name.as_str() {
                "upper" => text.to_uppercase(),
                "lower" => text.to_lowercase(),
                "quote" => Value::String(text).to_string(),
                "b64enc" => base64(text.as_bytes()),
                _ => unreachable!("every function in FUNCTIONS is handled"),
            }))
        }
    }
}

fn range_of(expr: &Expr) -> Range<usize> {
    match expr {
        Expr::Path { at, .. } | Expr::Call { at, .. } => at.clone(),
        Expr::Concat(parts) => {
            let ranges: Vec<Range<usize>> = parts.iter().map(range_of).filter(|r| !r.is_empty()).collect();
            match (ranges.first(), ranges.last()) {
                (Some(first), Some(last)) => first.start..last.end,
                _ => 0..0,
            }
        }
        Expr::Literal(_) => 0..0,
    }
}

/// Standard base64 with padding, as Kubernetes stores Secret data.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use ::base64::Engine;
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(yaml: &str) -> Values {
        let mut values = Values::default();
        values.merge_file(&SourceFile::new("values.yaml", yaml).unwrap()).unwrap();
        values
    }

    fn rendered(manifest: &str, values: &Values) -> (Value, Vec<(String, String)>) {
        let source = SourceFile::new("m.yaml", manifest).unwrap();
        let document = Documents::new(&source).next().unwrap().unwrap();
        let mut root = document.root.unwrap();
        let mut out = Vec::new();
        render(&mut root, &source, values, &mut out);
        let problems = out.iter().map(|d| (d.code.as_str().to_string(), source.slice(d.span).to_string())).collect();
        (root.to_json(), problems)
    }

    #[test]
    fn whole_expressions_keep_their_type_and_text_joins() {
        let v = values("replicas: 3\nimage: {repo: web, tag: v1.2}\nflags: [a, b]\ndebug: true\n");
        let (json, problems) = rendered(
            "replicas: ${ replicas }\nimage: \"${ image.repo }:${image.tag}\"\nargs: ${ flags }\nquoted: '${ replicas }'\nplain: x-${ debug }\nshell: echo $${HOME}\nfallback: ${ missing | default(2) }\n",
            &v,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            json,
            json!({"replicas": 3, "image": "web:v1.2", "args": ["a", "b"], "quoted": "3", "plain": "x-true", "shell": "echo ${HOME}", "fallback": 2})
        );
    }

    #[test]
    fn functions() {
        let v = values("name: Web\npassword: s3cret\n");
        let (json, problems) = rendered(
            "a: ${ name | upper }\nb: ${ lower(name) }\nc: ${ name | quote }\nd: ${ password | b64enc }\ne: ${ \"app-\" + name | lower }\n",
            &v,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(json, json!({"a": "WEB", "b": "web", "c": "\"Web\"", "d": "czNjcmV0", "e": "app-web"}));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn problems_point_at_the_characters() {
        let v = values("image: {tag: v1}\n");
        let (_, problems) = rendered(
            "a: ${ image.tga }\nb: \"x ${ nope | upper } y\"\nc: ${ image | upper }\nd: ${ image.tag +  }\ne: ${ uper(image.tag) }\nf: ${ image.tag\n",
            &v,
        );
        assert_eq!(
            problems,
            vec![
                ("template/undefined".to_string(), "image.tga".to_string()),
                ("template/undefined".to_string(), "nope".to_string()),
                ("template/type".to_string(), "upper".to_string()),
                ("template/syntax".to_string(), "}".to_string()),
                ("template/syntax".to_string(), "uper".to_string()),
                ("template/syntax".to_string(), "${ image.tag".to_string()),
            ]
        );
    }

    proptest::proptest! {
        /// No scalar text makes rendering panic, and every diagnostic's span lies within
        /// the scalar on character boundaries.
        #[test]
        fn any_text_renders_or_is_diagnosed(text in "(\\$\\{|\\$|\\}|[ a-z.|()'\"+,é€0-9]){0,24}") {
            let v = values("a: {b: é}\nn: 3\n");
            let manifest = format!("k: {}\n", serde_json::Value::String(text.clone()));
            let source = SourceFile::new("m.yaml", manifest.clone()).unwrap();
            let document = Documents::new(&source).next().unwrap().unwrap();
            let mut root = document.root.unwrap();
            let scalar = root.get("k").unwrap().span;
            let mut out = Vec::new();
            render(&mut root, &source, &v, &mut out);
            for d in out {
                proptest::prop_assert!(scalar.start <= d.span.start && d.span.end <= scalar.end, "{d:?} in {manifest:?}");
                proptest::prop_assert!(manifest.is_char_boundary(d.span.start as usize) && manifest.is_char_boundary(d.span.end as usize));
            }
        }
    }

    #[test]
    fn set_reads_yaml_scalars_and_merges() {
        let mut v = values("image: {repo: web, tag: v1}\n");
        v.set("image.tag=v2").unwrap();
        v.set("replicas=3").unwrap();
        v.set("debug=on").unwrap();
        assert_eq!(
            Value::Object(v.as_json().clone()),
            json!({"image": {"repo": "web", "tag": "v2"}, "replicas": 3, "debug": true})
        );
        v.set_string("image.tag=1.10").unwrap();
        assert_eq!(v.as_json()["image"]["tag"], "1.10");
        assert!(v.set("x=.nan").is_err());
        assert!(v.set("novalue").is_err());
        assert!(v.set("a..b=1").is_err());
    }
}
