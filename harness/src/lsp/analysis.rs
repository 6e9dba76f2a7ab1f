//! What the language server knows about a document, as pure functions of its text: where
//! a position is (the field path under the cursor, by indentation, so that a line being
//! typed, which is not YAML yet, still has a place), what to complete there, what to show
//! on hover, and positions in the client's encoding (UTF-16 unless it asks for UTF-8).

use kubeyard_compiler::explain::{self, Explained, Segment};
use kubeyard_compiler::object::GroupVersionKind;
use kubeyard_compiler::schema::Catalog;

/// How the client counts columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
}

/// A position: 0-based line, and column in the encoding's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

/// Where each line starts, in bytes.
pub fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

/// The position of a byte offset.
pub fn position(text: &str, starts: &[usize], offset: usize) -> Position {
    let offset = offset.min(text.len());
    let line = starts.partition_point(|&s| s <= offset).saturating_sub(1);
    let mut end = offset;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[starts[line]..end];
    Position { line: line as u32, character: before.encode_utf16().count() as u32 }
}

/// The byte offset of a position (clamped to its line).
pub fn offset(text: &str, starts: &[usize], at: Position, encoding: Encoding) -> usize {
    let Some(&start) = starts.get(at.line as usize) else { return text.len() };
    let line_end = starts.get(at.line as usize + 1).map_or(text.len(), |&next| next);
    let line = &text[start..line_end];
    let mut units = 0u32;
    for (i, c) in line.char_indices() {
        // A position past the line's end is its end, before `\r\n` as before `\n`.
        if units >= at.character || c == '\n' || (c == '\r' && line[i..].starts_with("\r\n")) {
            return start + i;
        }
        units += match encoding {
            Encoding::Utf8 => c.len_utf8() as u32,
            Encoding::Utf16 => c.len_utf16() as u32,
        };
    }
    line_end
}

/// A column in the client's encoding from one in UTF-16 (what `position` gives).
pub fn encode(text: &str, starts: &[usize], at: Position, encoding: Encoding) -> Position {
    match encoding {
        Encoding::Utf16 => at,
        Encoding::Utf8 => {
            let offset = offset(text, starts, at, Encoding::Utf16);
            Position { line: at.line, character: (offset - starts[at.line as usize]) as u32 }
        }
    }
}

/// One line, read for its place in the tree.
struct Line<'a> {
    /// Where its content starts (after any `- `).
    content: usize,
    /// Where its `- ` is, if it opens a list item.
    dash: Option<usize>,
    /// The key it sets, if it is `key:` or `key: value`.
    key: Option<&'a str>,
}

fn read_line(line: &str) -> Option<Line<'_>> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let indent = line.len() - trimmed.len();
    let (dash, content, rest) = match trimmed.strip_prefix("- ").or_else(|| (trimmed == "-").then_some("")) {
        Some(rest) => {
            let inner = rest.trim_start();
            (Some(indent), indent + 2 + (rest.len() - inner.len()), inner)
        }
        None => (None, indent, trimmed),
    };
    let key = rest
        .split_once(':')
        .filter(|(_, after)| after.is_empty() || after.starts_with(' '))
        .map(|(key, _)| key.trim().trim_matches(['"', '\'']))
        .filter(|key| !key.is_empty() && !key.contains(' '));
    Some(Line { content, dash, key })
}

/// The document around `line` (between `---` separators): its first and last line.
fn document_bounds(lines: &[&str], line: usize) -> (usize, usize) {
    let separator = |l: &&str| l.trim_end() == "---" || l.starts_with("--- ");
    let start = lines[..line.min(lines.len())].iter().rposition(separator).map_or(0, |i| i + 1);
    let end = lines[line.min(lines.len())..].iter().position(separator).map_or(lines.len(), |i| line + i);
    (start, end)
}

/// The apiVersion and kind written at the top of the document holding `line`.
pub fn kind_at(text: &str, line: usize) -> Option<GroupVersionKind> {
    let lines: Vec<&str> = text.lines().collect();
    let (start, end) = document_bounds(&lines, line);
    let top = |name: &str| {
        lines[start..end].iter().find_map(|l| {
            let value = l.strip_prefix(name)?.strip_prefix(':')?.trim();
            Some(value.trim_matches(['"', '\'']).to_string())
        })
    };
    Some(GroupVersionKind::from_api_version(&top("apiVersion")?, &top("kind")?))
}

/// The path of the mapping a line at `column` on `line` belongs to: its ancestors' keys,
/// and an item step for each list item it is in.
fn parents(lines: &[&str], line: usize, column: usize) -> Vec<Segment> {
    let (start, _) = document_bounds(lines, line);
    let mut path = Vec::new();
    // Looking for the key of the mapping the line is in: one left of `limit`...
    let mut limit = column;
    // ...or, inside a list item opened at this column, for its list's key.
    let mut item: Option<usize> = None;
    for text in lines[start..line.min(lines.len())].iter().rev() {
        let Some(read) = read_line(text) else { continue };
        match (item, read.dash) {
            (None, Some(dash)) if dash < limit && read.content <= limit => {
                if read.content < limit {
                    // `- key:` with the line under it: a key of an item.
                    let Some(key) = read.key else { continue };
                    path.push(Segment::Key(key.to_string()));
                }
                path.push(Segment::Item);
                item = Some(dash);
            }
            (None, None) if read.content < limit => {
                if let Some(key) = read.key {
                    path.push(Segment::Key(key.to_string()));
                    limit = read.content;
                }
            }
            (Some(at), Some(dash)) if dash < at => {
                // `- key:` holding the list: its key, in an item of an outer list.
                if let Some(key) = read.key {
                    path.push(Segment::Key(key.to_string()));
                    path.push(Segment::Item);
                    item = Some(dash);
                }
            }
            (Some(at), None) if read.content <= at => {
                if let Some(key) = read.key {
                    path.push(Segment::Key(key.to_string()));
                    limit = read.content;
                    item = None;
                }
            }
            _ => {}
        }
        if limit == 0 && item.is_none() {
            break;
        }
    }
    path.reverse();
    path
}

/// What is under the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Writing a key of the mapping at `path`; `typed` is what is written of it so far.
    Key { path: Vec<Segment>, typed: String },
    /// Writing the value of the field at `path`.
    Value { path: Vec<Segment>, typed: String },
}

/// Where `offset` is in the document.
pub fn place(text: &str, offset: usize) -> Place {
    let starts = line_starts(text);
    let line = starts.partition_point(|&s| s <= offset).saturating_sub(1);
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line).copied().unwrap_or_default();
    let before = &text[starts[line]..offset.min(starts[line] + current.len())];
    let trimmed = before.trim_start();
    let indent = before.len() - trimmed.len();
    let (column, rest) = match trimmed.strip_prefix("- ") {
        Some(rest) => (indent + 2 + (rest.len() - rest.trim_start().len()), rest.trim_start()),
        None => (indent, trimmed),
    };
    let mut path = parents(&lines, line, column);
    if trimmed.starts_with("- ") {
        path.push(Segment::Item);
    }
    match rest.split_once(':') {
        Some((key, value)) => {
            path.push(Segment::Key(key.trim().trim_matches(['"', '\'']).to_string()));
            Place::Value { path, typed: value.trim().trim_matches(['"', '\'']).to_string() }
        }
        None => Place::Key { path, typed: rest.to_string() },
    }
}

/// The key under the cursor and its path, for hover: on `image:` in a container, the
/// path to `image`.
pub fn key_path(text: &str, offset: usize) -> Option<Vec<Segment>> {
    let starts = line_starts(text);
    let line = starts.partition_point(|&s| s <= offset).saturating_sub(1);
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line)?;
    let read = read_line(current)?;
    let key = read.key?;
    let key_start = starts[line] + read.content;
    let key_end = key_start + current[read.content..].find(':')?;
    if offset < key_start || offset > key_end {
        return None;
    }
    let mut path = parents(&lines, line, read.content);
    if read.dash.is_some() {
        path.push(Segment::Item);
    }
    path.push(Segment::Key(key.to_string()));
    Some(path)
}

/// A completion: the text to insert, what it is, and its documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub label: String,
    pub detail: String,
    pub documentation: Option<String>,
    /// A field (inserted as `name: `) or a value.
    pub is_field: bool,
}

/// What may be written at `offset`: the fields of the mapping being written (those not
/// written yet), or the values an enum field allows.
pub fn complete(catalog: &Catalog, text: &str, offset: usize) -> Vec<Completion> {
    let line = text[..offset.min(text.len())].matches('\n').count();
    if let Place::Value { path, typed } = place(text, offset)
        && let [Segment::Key(field)] = path.as_slice()
        && (field == "kind" || field == "apiVersion")
    {
        return identity(catalog, text, line, field, &typed);
    }
    let Some(gvk) = kind_at(text, line) else { return top_level(text, offset) };
    match place(text, offset) {
        Place::Key { path, typed } => {
            let Some(explained) = explain::explain(catalog, &gvk, &path) else { return Vec::new() };
            let written = siblings(text, offset);
            explained
                .fields
                .into_iter()
                .filter(|f| f.name.starts_with(&typed) && !written.contains(&f.name))
                .map(|f| Completion {
                    detail: if f.required { format!("{} (required)", f.type_name) } else { f.type_name },
                    documentation: f.description,
                    label: f.name,
                    is_field: true,
                })
                .collect()
        }
        Place::Value { path, typed } => {
            let Some(explained) = explain::explain(catalog, &gvk, &path) else { return Vec::new() };
            explained
                .values
                .into_iter()
                .filter(|v| v.starts_with(&typed))
                .map(|v| Completion {
                    label: v,
                    detail: explained.type_name.clone(),
                    documentation: None,
                    is_field: false,
                })
                .collect()
        }
    }
}

/// The values of `apiVersion` and `kind`: the built-in kinds of the version linted for and
/// the custom kinds of the CRDs registered (a `kind` those of the `apiVersion` written,
/// when one is).
fn identity(catalog: &Catalog, text: &str, line: usize, field: &str, typed: &str) -> Vec<Completion> {
    let lines: Vec<&str> = text.lines().collect();
    let (start, end) = document_bounds(&lines, line);
    let written = lines[start..end.min(lines.len())]
        .iter()
        .find_map(|l| l.strip_prefix("apiVersion:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string());
    let custom = catalog.custom_kinds();
    // The built-in `...List` kinds are what reads return; a custom kind may end so too.
    let mut values: Vec<String> = catalog
        .builtin_kinds()
        .filter(|gvk| !gvk.kind.ends_with("List"))
        .chain(custom.iter())
        .filter_map(|gvk| match field {
            "kind" if written.as_deref().is_none_or(|v| v == gvk.api_version()) => Some(gvk.kind.clone()),
            "apiVersion" => Some(gvk.api_version()),
            _ => None,
        })
        .filter(|v| v.starts_with(typed))
        .collect();
    values.sort();
    values.dedup();
    values
        .into_iter()
        .map(|v| Completion { label: v, detail: field.to_string(), documentation: None, is_field: false })
        .collect()
}

/// In a document with no kind yet, the two fields every object starts with.
fn top_level(text: &str, offset: usize) -> Vec<Completion> {
    match place(text, offset) {
        Place::Key { path, typed } if path.is_empty() => ["apiVersion", "kind", "metadata"]
            .into_iter()
            .filter(|k| k.starts_with(&typed))
            .map(|k| Completion { label: k.into(), detail: "string".into(), documentation: None, is_field: true })
            .collect(),
        _ => Vec::new(),
    }
}

/// The keys already written in the mapping the cursor's line belongs to (its list item's,
/// when it is in one).
fn siblings(text: &str, offset: usize) -> Vec<String> {
    let starts = line_starts(text);
    let line = starts.partition_point(|&s| s <= offset).saturating_sub(1);
    let lines: Vec<&str> = text.lines().collect();
    let (start, end) = document_bounds(&lines, line);
    let Some(here) = lines.get(line) else { return Vec::new() };
    let trimmed = here.trim_start();
    let column = (here.len() - trimmed.len()) + if trimmed.starts_with("- ") { 2 } else { 0 };
    let mut keys = Vec::new();
    // Upwards to where the mapping (or its item) starts.
    for text in lines[start..line].iter().rev() {
        let Some(read) = read_line(text) else { continue };
        if read.content < column {
            break;
        }
        if read.content == column {
            keys.extend(read.key.map(str::to_string));
            if read.dash.is_some() {
                break;
            }
        }
    }
    // Downwards to where it ends, or the next item starts.
    for text in lines.get(line + 1..end).unwrap_or_default() {
        let Some(read) = read_line(text) else { continue };
        if read.content < column || (read.content == column && read.dash.is_some()) {
            break;
        }
        if read.content == column {
            keys.extend(read.key.map(str::to_string));
        }
    }
    keys
}

/// Hover text for the key at `offset`: its path, type, allowed values and description.
pub fn hover(catalog: &Catalog, text: &str, offset: usize) -> Option<String> {
    let line = text[..offset.min(text.len())].matches('\n').count();
    let gvk = kind_at(text, line)?;
    let path = key_path(text, offset)?;
    let Explained { type_name, description, values, .. } = explain::explain(catalog, &gvk, &path)?;
    let shown: Vec<String> = path
        .iter()
        .map(|s| match s {
            Segment::Key(k) => k.clone(),
            Segment::Item => "[]".into(),
        })
        .collect();
    let mut out =
        format!("**{}** `{type_name}`\n\n{} {}", shown.join(".").replace(".[]", "[]"), gvk.kind, catalog.version());
    if !values.is_empty() {
        out.push_str(&format!(
            "\n\nOne of: {}",
            values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(description) = description {
        out.push_str("\n\n");
        out.push_str(&description);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: nginx\n          imagePullPolicy: \n          \n";

    fn key(k: &str) -> Segment {
        Segment::Key(k.into())
    }

    fn at(text: &str, line: usize, column: usize) -> usize {
        line_starts(text)[line] + column
    }

    #[test]
    fn a_position_is_placed_in_the_tree_by_indentation() {
        let containers = vec![key("spec"), key("template"), key("spec"), key("containers"), Segment::Item];
        // A new line in a container, nothing typed yet.
        assert_eq!(
            place(DEPLOYMENT, at(DEPLOYMENT, 11, 10)),
            Place::Key { path: containers.clone(), typed: "".into() }
        );
        let mut policy = containers.clone();
        policy.push(key("imagePullPolicy"));
        assert_eq!(place(DEPLOYMENT, at(DEPLOYMENT, 10, 27)), Place::Value { path: policy, typed: "".into() });
        assert_eq!(
            key_path(DEPLOYMENT, at(DEPLOYMENT, 9, 12)),
            Some([containers.clone(), vec![key("image")]].concat())
        );
        assert_eq!(key_path(DEPLOYMENT, at(DEPLOYMENT, 8, 12)), Some([containers, vec![key("name")]].concat()));
        assert_eq!(key_path(DEPLOYMENT, at(DEPLOYMENT, 3, 3)), Some(vec![key("metadata"), key("name")]));
        assert_eq!(key_path(DEPLOYMENT, at(DEPLOYMENT, 3, 9)), None, "on the value, not the key");
        let typed = "kind: Pod\nspec:\n  contai";
        assert_eq!(place(typed, typed.len()), Place::Key { path: vec![key("spec")], typed: "contai".into() });
        let list = "kind: Pod\nspec:\n  containers:\n  - name: a\n    ports:\n    - containerPort: 80\n      ";
        assert_eq!(
            place(list, list.len()),
            Place::Key {
                path: vec![key("spec"), key("containers"), Segment::Item, key("ports"), Segment::Item],
                typed: "".into()
            }
        );
    }

    #[test]
    fn positions_count_utf16_units_or_bytes() {
        let text = "a: é😀x\nb: 1\n";
        let starts = line_starts(text);
        let x = text.find('x').unwrap();
        assert_eq!(position(text, &starts, x), Position { line: 0, character: 6 });
        assert_eq!(offset(text, &starts, Position { line: 0, character: 6 }, Encoding::Utf16), x);
        assert_eq!(offset(text, &starts, Position { line: 0, character: 9 }, Encoding::Utf8), x);
        assert_eq!(encode(text, &starts, Position { line: 0, character: 6 }, Encoding::Utf8).character, 9);
        assert_eq!(offset(text, &starts, Position { line: 1, character: 99 }, Encoding::Utf16), text.len() - 1);
    }

    #[test]
    fn completion_offers_the_fields_not_written_and_enum_values() {
        let catalog = Catalog::new(Default::default()).unwrap();
        let labels: Vec<String> =
            complete(&catalog, DEPLOYMENT, at(DEPLOYMENT, 11, 10)).into_iter().map(|c| c.label).collect();
        assert!(labels.contains(&"ports".to_string()) && labels.contains(&"resources".to_string()), "{labels:?}");
        assert!(!labels.contains(&"image".to_string()) && !labels.contains(&"name".to_string()), "{labels:?}");
        // The values the schema lists: for a built-in kind's `kind`, its name.
        let kind = "apiVersion: apps/v1\nkind: Dep";
        let values: Vec<String> = complete(&catalog, kind, kind.len()).into_iter().map(|c| c.label).collect();
        assert_eq!(values, ["Deployment"]);
        // An enum field's values (`imagePullPolicy: ` on line 10).
        let policies: Vec<String> =
            complete(&catalog, DEPLOYMENT, at(DEPLOYMENT, 10, 27)).into_iter().map(|c| c.label).collect();
        assert_eq!(policies, ["Always", "IfNotPresent", "Never"]);
        let shown = hover(&catalog, DEPLOYMENT, at(DEPLOYMENT, 10, 14)).unwrap();
        assert!(shown.contains("One of: `Always`, `IfNotPresent`, `Never`"), "{shown}");
        let shown = hover(&catalog, DEPLOYMENT, at(DEPLOYMENT, 9, 12)).unwrap();
        assert!(shown.starts_with("**spec.template.spec.containers[].image** `string`"), "{shown}");
        assert!(shown.contains("Container image name."), "{shown}");
    }
}
