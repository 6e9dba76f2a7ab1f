//! JSON values out as YAML the way `kubectl get -o yaml` writes them (block style, keys
//! sorted, list items at their key's indentation), and safe for YAML 1.1 readers: any
//! string that go-yaml would read as something else (`on`, `y`, `0777`, `1_000`, `<<`)
//! is quoted. Parsing the output with `yaml::Documents` gives back the same value.

use crate::yaml::{Value as Scalar, resolve_plain};
use serde_json::Value;
use std::fmt::Write as _;

/// One document, without a `---` marker, ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            // A block scalar's lines indented: unindented, `---` in the text would end the document.
            write_scalar(&mut out, scalar, 1);
            out.push('\n');
        }
    }
    out
}

/// Documents separated by `---`, as a multi-document stream.
/// `value` as `serde_json::to_string_pretty` prints it as an item nested `indent` deep
/// (a list's item, a member's value): every line indented. JSON strings hold no raw line
/// breaks, so every line is the value's own.
pub fn pretty_json_indented(value: &impl serde::Serialize, indent: &str) -> String {
    let text = serde_json::to_string_pretty(value).expect("values kubeyard made serialize");
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (n, line) in text.lines().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(indent);
        out.push_str(line);
    }
    out
}

pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(value));
    }
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize) {
    for (key, value) in map {
        indent(out, level);
        write_key(out, key);
        out.push(':');
        write_value_after_key(out, value, level);
    }
}

fn write_value_after_key(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, level + 1);
        }
        // kubectl's style: list items at the key's own indentation.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, level);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, level + 1);
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key shares the dash's line; the rest line up under it.
                let mut first = true;
                for (key, value) in map {
                    if !first {
                        indent(out, level + 1);
                    }
                    first = false;
                    write_key(out, key);
                    out.push(':');
                    write_value_after_key(out, value, level + 1);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                // A list in a list: start it on the next line, one level in.
                out.push('\n');
                write_seq(out, inner, level + 1);
            }
            scalar => {
                write_scalar(out, scalar, level + 1);
                out.push('\n');
            }
        }
    }
}

fn write_scalar(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s, level),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// A string as a plain scalar when it reads back as the same string, as a literal block
/// for multi-line text, else double-quoted (JSON escapes are valid YAML).
fn write_string(out: &mut String, s: &str, level: usize) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if is_block_safe(s) {
        write_block(out, s, level);
    } else {
        write_double_quoted(out, s);
    }
}

/// A mapping key is never a block scalar: an implicit key must fit on one line.
fn write_key(out: &mut String, key: &str) {
    if is_plain_safe(key) {
        out.push_str(key);
    } else {
        write_double_quoted(out, key);
    }
}

/// Double quotes with YAML's escapes for everything outside its printable set, and for the
/// characters YAML 1.1 reads as line breaks (NEL, LS, PS), which would otherwise be folded.
fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if needs_escape(c) => {
                let code = u32::from(c);
                let _ = if code <= 0xFF {
                    write!(out, "\\x{code:02X}")
                } else if code <= 0xFFFF {
                    write!(out, "\\u{code:04X}")
                } else {
                    write!(out, "\\U{code:08X}")
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Outside YAML's printable set (c-printable), or a byte-order mark, which readers may drop.
fn needs_escape(c: char) -> bool {
    !matches!(c, '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        || c == '\u{FEFF}'
}

fn is_plain_safe(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else { return false };
    if s.len() > 1024 || first == b' ' || last == b' ' || last == b':' {
        return false;
    }
    // Indicators that start something other than a plain scalar (`-x` is fine, `- x` not).
    if b"-?:,[]{}#&*!|>'\"%@`".contains(&first) && !(first == b'-' && bytes.len() > 1 && bytes[1] != b' ') {
        return false;
    }
    // One pass for what may not appear inside: `: `, ` #`, tabs, control characters.
    let mut previous = 0u8;
    for &b in bytes {
        if b < 0x20 || b == 0x7F || (previous == b':' && b == b' ') || (previous == b' ' && b == b'#') {
            return false;
        }
        previous = b;
    }
    if !s.is_ascii()
        && s.chars().any(|c| c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}'))
    {
        return false;
    }
    // `<<` and anything YAML 1.1 resolves to a non-string (bools, numbers, null) are not
    // plain strings; nor are document markers.
    if s == "<<" || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    reads_as_string(s)
}

/// Whether go-yaml reads the plain scalar `s` as the string itself. Only text that starts
/// like a number, or is one of YAML 1.1's special words, can read as something else.
fn reads_as_string(s: &str) -> bool {
    let first = s.as_bytes()[0];
    if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.' | b'~') || s.len() <= 5 {
        return matches!(resolve_plain(s), Scalar::String(_));
    }
    true
}

/// Multi-line text without trailing spaces or tabs on its lines can be a `|` block.
fn is_block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with(' ')
        && !s.starts_with('\n')
        && s.lines().all(|line| !line.ends_with(' ') && !line.contains('\t') && !line.contains('\r'))
        && !s.chars().any(|c| c != '\n' && (needs_escape(c) || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')))
        && !s.ends_with("\n\n")
}

fn write_block(out: &mut String, s: &str, level: usize) {
    out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
    for line in s.trim_end_matches('\n').split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, level);
            out.push_str(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::yaml::Documents;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_document_that_is_multi_line_text_keeps_its_markers_inside() {
        let value = json!("---\n#");
        assert_eq!(to_yaml(&value), "|-\n  ---\n  #\n");
        assert_eq!(parse(&to_yaml(&value)), value);
    }

    fn parse(text: &str) -> Value {
        let source = SourceFile::new("p.yaml", text).unwrap();
        let document = Documents::new(&source).next().expect("one document").expect("valid YAML");
        assert!(document.diagnostics.is_empty(), "{:?}\n{text}", document.diagnostics);
        document.root.map_or(Value::Null, |r| r.to_json())
    }

    #[test]
    fn prints_like_kubectl() {
        let value = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "on": "yes"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "web", "args": ["--port", "8080"], "ports": [{"containerPort": 8080}]}
            ]}}, "empty": {}, "none": []},
            "data": {"config.yaml": "a: 1\nb: 2\n", "octal": "0777", "note": "x: y", "blank": ""},
        });
        let text = to_yaml(&value);
        assert_eq!(
            text,
            "apiVersion: apps/v1\ndata:\n  blank: \"\"\n  config.yaml: |\n    a: 1\n    b: 2\n  note: \"x: y\"\n  octal: \"0777\"\nkind: Deployment\nmetadata:\n  labels:\n    app: web\n    \"on\": \"yes\"\n  name: web\nspec:\n  empty: {}\n  none: []\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - args:\n        - --port\n        - \"8080\"\n        name: web\n        ports:\n        - containerPort: 8080\n"
        );
        assert_eq!(parse(&text), value);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1.0e9f64..1.0e9).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            "[a-z \\n:#-]{0,20}".prop_map(Value::String),
            prop::collection::vec(any::<char>(), 0..8).prop_map(|chars| Value::String(chars.into_iter().collect())),
            prop_oneof![
                Just("on"),
                Just("N"),
                Just("0x1F"),
                Just("1_0"),
                Just("<<"),
                Just("- x"),
                Just("-"),
                Just("a\n\nb\n"),
                Just(" lead"),
                Just("del\u{7f}"),
                Just("nel\u{85}x\n"),
                Just("ls\u{2028}ps\u{2029}\n"),
                Just("\u{feff}bom"),
                Just("c1\u{9b}\u{fffe}")
            ]
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{1,8}|on|y|<<|a: b|a\nb\n|\u{2028}|\u{7f}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// parse ∘ print is the identity on JSON values.
        #[test]
        fn printed_yaml_parses_back(value in json_value()) {
            let text = to_yaml(&value);
            let source = SourceFile::new("p.yaml", text.clone()).unwrap();
            let document = Documents::new(&source).next().expect("one document").map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            prop_assert!(document.diagnostics.is_empty(), "{:?}\n{}", document.diagnostics, text);
            prop_assert_eq!(document.root.map_or(Value::Null, |r| r.to_json()), value, "{}", text);
        }
    }
}
