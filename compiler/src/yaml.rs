//! YAML text to a tree of spanned nodes, one document at a time.
//!
//! Scalars are resolved the way Kubernetes resolves them (go-yaml v2 through
//! `sigs.k8s.io/yaml`, i.e. YAML 1.1): `yes`, `on` and `y` are booleans, `0777` is
//! octal, `1_000` is an integer, timestamps stay strings. Every node and every
//! mapping key keeps its byte span so later stages can point at it.
//!
//! Hostile input is bounded: alias expansion has a budget (no "billion laughs"),
//! nesting has a depth limit, and a document larger than the API server accepts is
//! reported without building its tree.

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{SourceFile, Span};
use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, StrInput, Tag};
use std::collections::{HashMap, HashSet};

/// Nesting deeper than this is refused; real manifests stay far below it, and the
/// validator and printers recurse over the tree.
pub const MAX_DEPTH: usize = 200;
/// The API server refuses request bodies over 3 MiB, so a larger document cannot be applied.
pub const MAX_DOCUMENT_BYTES: u32 = 3 * 1024 * 1024;
/// Nodes that aliases may add to one document, on top of ten times its own size.
const ALIAS_BUDGET: u64 = 100_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: Key,
    pub value: Node,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The entry for `key` in a mapping; with duplicate keys the last one wins, as in
    /// the JSON the API server decodes.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().rev().find(|e| e.key.name == key)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The JSON type name of this node, as schema messages use it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::UInt(_) => "integer",
            Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }

    /// The tree of a JSON value that no text stands behind (every span is empty): what
    /// the API server's admission checks when the body is already decoded.
    pub fn from_json(value: &serde_json::Value) -> Node {
        use serde_json::Value as J;
        let value = match value {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Value::Int(i),
                (None, Some(u), _) => Value::UInt(u),
                (_, _, f) => Value::Float(f.unwrap_or_default()),
            },
            J::String(s) => Value::String(s.clone()),
            J::Array(items) => Value::Seq(items.iter().map(Node::from_json).collect()),
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| Entry {
                        key: Key { name: k.clone(), span: Span::default() },
                        value: Node::from_json(v),
                    })
                    .collect(),
            ),
        };
        Node { value, span: Span::default() }
    }

    /// The JSON value the API server would decode from this node.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            // Non-finite floats are rejected while parsing, so this never yields null.
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for entry in entries {
                    map.insert(entry.key.name.clone(), entry.value.to_json());
                }
                J::Object(map)
            }
        }
    }
}

/// One YAML document of a stream.
#[derive(Debug)]
pub struct Document {
    /// 0-based position in the file.
    pub index: usize,
    /// From the document's first token to its last.
    pub span: Span,
    /// `None` when the document could not be built (see `diagnostics`).
    pub root: Option<Node>,
    /// Problems found while building the tree (duplicate keys, limits).
    pub diagnostics: Vec<Diagnostic>,
}

impl Document {
    /// A document with nothing in it: `---` alone, or only comments.
    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty() && self.root.as_ref().is_none_or(Node::is_null)
    }
}

/// Splits a source into documents and builds each one's tree.
///
/// Yields `Err` once (boxed: it is rare and large), for a syntax error, and then stops: YAML cannot be resynchronised
/// after a scanner error.
pub struct Documents<'a> {
    parser: Parser<'a, StrInput<'a>>,
    offsets: Offsets<'a>,
    index: usize,
    done: bool,
    max_document_bytes: u32,
}

impl<'a> Documents<'a> {
    pub fn new(source: &'a SourceFile) -> Documents<'a> {
        Documents {
            parser: Parser::new_from_str(source.text()),
            offsets: Offsets::new(source.text()),
            index: 0,
            done: false,
            max_document_bytes: MAX_DOCUMENT_BYTES,
        }
    }

    /// Documents of any size: for files that are not objects to apply (a state file of
    /// ten thousand objects is one document), where the API server's limit does not hold.
    pub fn unlimited(source: &'a SourceFile) -> Documents<'a> {
        Documents { max_document_bytes: u32::MAX, ..Documents::new(source) }
    }

    fn syntax_error(&mut self, error: ScanError) -> Box<Diagnostic> {
        self.done = true;
        let at = self.offsets.byte(error.marker().index());
        let info = error.info();
        if info.contains("recursion limit") {
            return Box::new(
                Diagnostic::error(Code::TooDeep, Span::empty(at), "document nests deeper than kubeyard follows")
                    .with_label("too deep here")
                    .with_help("no Kubernetes object nests this deep; check for runaway brackets or generated input"),
            );
        }
        let mut diagnostic = Diagnostic::error(Code::YamlSyntax, Span::empty(at), format!("invalid YAML: {info}"))
            .with_label(info.to_string());
        if let Some(help) = syntax_help(info, self.offsets.text, at) {
            diagnostic = diagnostic.with_help(help);
        }
        Box::new(diagnostic)
    }

    fn next_event(&mut self) -> Result<Option<(Event<'a>, Span)>, Box<Diagnostic>> {
        match self.parser.next() {
            None => Ok(None),
            Some(Ok((event, span))) => {
                let start = self.offsets.byte(span.start.index());
                let end = self.offsets.byte(span.end.index()).max(start);
                Ok(Some((event, Span::new(start, end))))
            }
            Some(Err(error)) => Err(self.syntax_error(error)),
        }
    }

    fn build_document(&mut self, doc_start: Span) -> Result<Document, Box<Diagnostic>> {
        let mut builder = Builder::new(doc_start.start, self.offsets.text, self.max_document_bytes);
        loop {
            let Some((event, span)) = self.next_event()? else {
                self.done = true;
                break;
            };
            match event {
                Event::DocumentEnd => {
                    builder.end = builder.end.max(span.start);
                    break;
                }
                Event::StreamEnd => {
                    self.done = true;
                    break;
                }
                event => builder.event(event, span),
            }
        }
        let index = self.index;
        self.index += 1;
        let (root, diagnostics) = builder.finish();
        let span = Span::new(doc_start.start, root.as_ref().map_or(doc_start.end, |r| r.span.end).max(doc_start.end));
        Ok(Document { index, span, root, diagnostics })
    }
}

impl Iterator for Documents<'_> {
    type Item = Result<Document, Box<Diagnostic>>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.next_event() {
                Err(diagnostic) => return Some(Err(diagnostic)),
                Ok(None) | Ok(Some((Event::StreamEnd, _))) => self.done = true,
                Ok(Some((Event::DocumentStart(_), span))) => {
                    return Some(self.build_document(span));
                }
                Ok(Some(_)) => {}
            }
        }
        None
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: u32,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        /// Keys seen so far; built only once a mapping is large enough for it to pay.
        index: Option<HashSet<String>>,
        key: Option<Key>,
        /// The pending key is a plain `<<`: a YAML merge key.
        key_is_merge: bool,
        /// Merge values with the number of explicit entries written before each.
        merges: Vec<(usize, Node)>,
        start: u32,
        anchor: usize,
        /// Written `{...}` rather than as an indented block.
        flow: bool,
    },
}

/// What an anchored node costs to copy: its weight (nodes, plus a node per 32 bytes
/// of text) and its depth.
#[derive(Clone, Copy)]
struct Weight {
    cost: u64,
    depth: usize,
}

fn weigh(node: &Node) -> Weight {
    match &node.value {
        Value::String(s) => Weight { cost: 1 + s.len() as u64 / 32, depth: 1 },
        Value::Seq(items) => items.iter().map(weigh).fold(Weight { cost: 1, depth: 1 }, |acc, w| Weight {
            cost: acc.cost + w.cost,
            depth: acc.depth.max(w.depth + 1),
        }),
        Value::Map(entries) => entries.iter().fold(Weight { cost: 1, depth: 1 }, |acc, e| {
            let w = weigh(&e.value);
            Weight { cost: acc.cost + 1 + e.key.name.len() as u64 / 32 + w.cost, depth: acc.depth.max(w.depth + 1) }
        }),
        _ => Weight { cost: 1, depth: 1 },
    }
}

/// Turns one document's events into a tree.
struct Builder<'t> {
    text: &'t str,
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, (Node, Weight)>,
    diagnostics: Vec<Diagnostic>,
    start: u32,
    end: u32,
    /// Set by a fatal problem: the rest of the document's events are read and dropped.
    abandoned: bool,
    /// The weight of what the text itself spells out.
    written: u64,
    /// The weight that aliases added by copying anchored nodes.
    aliased: u64,
    /// The scalar being completed is a plain, untagged `<<`.
    plain_merge: bool,
    max_bytes: u32,
}

impl<'t> Builder<'t> {
    fn new(start: u32, text: &'t str, max_bytes: u32) -> Builder<'t> {
        Builder {
            max_bytes,
            text,
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            diagnostics: Vec::new(),
            start,
            end: start,
            abandoned: false,
            written: 0,
            aliased: 0,
            plain_merge: false,
        }
    }

    fn abandon(&mut self, diagnostic: Diagnostic) {
        self.abandoned = true;
        self.stack.clear();
        self.anchors.clear();
        self.root = None;
        self.diagnostics.push(diagnostic);
    }

    fn event(&mut self, event: Event<'_>, span: Span) {
        if self.abandoned {
            return;
        }
        self.end = self.end.max(span.end);
        if self.end - self.start > self.max_bytes {
            let size = self.end - self.start;
            self.abandon(
                Diagnostic::error(
                    Code::TooLarge,
                    Span::new(self.start, self.start),
                    format!("document is larger than {} MiB", MAX_DOCUMENT_BYTES >> 20),
                )
                .with_label(format!("this document runs past {size} bytes"))
                .with_help("the API server refuses objects this large (3 MiB request limit, 1.5 MiB in etcd); split the data, for example across several ConfigMaps"),
            );
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.written += 1 + text.len() as u64 / 32;
                let node = match resolve_scalar(&text, style, tag.as_deref()) {
                    Ok(value) => Node { value, span },
                    Err(message) => {
                        self.diagnostics.push(
                            Diagnostic::error(Code::UnsupportedValue, span, message)
                                .with_help("the API server decodes YAML into JSON, which cannot hold this value; quote it to keep it as a string"),
                        );
                        Node { value: Value::Null, span }
                    }
                };
                self.plain_merge = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                self.complete(node, anchor);
                self.plain_merge = false;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(Frame::Seq { items: Vec::new(), start: span.start, anchor }, span)
            }
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    entries: Vec::new(),
                    index: None,
                    key: None,
                    key_is_merge: false,
                    merges: Vec::new(),
                    start: span.start,
                    anchor,
                    flow: !span.is_empty(),
                },
                span,
            ),
            Event::SequenceEnd | Event::MappingEnd => self.close(span),
            Event::Alias(id) => self.alias(id, span),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::DocumentEnd => {}
        }
    }

    fn too_deep(&mut self, span: Span) {
        self.abandon(
            Diagnostic::error(Code::TooDeep, span, format!("document nests deeper than {MAX_DEPTH} levels"))
                .with_label("too deep here")
                .with_help(
                    "no Kubernetes object nests this deep; check for runaway indentation, aliases or generated input",
                ),
        );
    }

    fn open(&mut self, frame: Frame, span: Span) {
        self.written += 1;
        if self.stack.len() >= MAX_DEPTH {
            self.too_deep(span);
            return;
        }
        self.stack.push(frame);
    }

    fn close(&mut self, span: Span) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let (node, anchor) = match frame {
            Frame::Seq { items, start, anchor } => {
                let end = collection_end(span, items.last().map(|n| n.span.end), start);
                let node = Node { value: Value::Seq(items), span: Span::new(start, end) };
                (node, anchor)
            }
            Frame::Map { entries, merges, start, anchor, flow, .. } => {
                if flow && let Some(node) = self.template_placeholder(start) {
                    self.complete(node, anchor);
                    return;
                }
                let end = collection_end(span, entries.last().map(|e| e.value.span.end), start);
                let entries =
                    if merges.is_empty() { entries } else { apply_merges(entries, merges, &mut self.diagnostics) };
                let node = Node { value: Value::Map(entries), span: Span::new(start, end) };
                (node, anchor)
            }
        };
        self.complete(node, anchor);
    }

    /// `{{ name }}` is template syntax that YAML happens to read as a mapping inside a
    /// mapping. Report it once, as what it is, and keep its text as a string.
    fn template_placeholder(&mut self, start: u32) -> Option<Node> {
        let rest = self.text.get(start as usize..)?;
        if !rest.starts_with("{{") {
            return None;
        }
        let end = start + rest.find("}}")? as u32 + 2;
        let span = Span::new(start, end);
        let placeholder = &self.text[start as usize..end as usize];
        self.diagnostics.push(
            Diagnostic::error(Code::Template, span, format!("unrendered template placeholder `{placeholder}`"))
                .with_label("template syntax, not YAML")
                .with_help("render the template first (for example with `helm template` or your templating tool) and lint its output"),
        );
        Some(Node { value: Value::String(placeholder.to_string()), span })
    }

    /// Whether a mapping key that starts at `at` is the inner half of `{{ ... }}`.
    fn inside_placeholder(&self, at: u32) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { start, flow: true, .. }) if *start + 1 == at)
            && self.text.as_bytes().get(at as usize - 1..at as usize + 1) == Some(b"{{")
    }

    fn alias(&mut self, id: usize, span: Span) {
        let Some((node, weight)) = self.anchors.get(&id) else {
            // The parser rejects a name it has never seen, but its anchors outlive their
            // document: an alias to an earlier document's anchor arrives here. kubectl
            // reads each document on its own and refuses it ("unknown anchor"); resolving
            // it to nothing would apply an object without the aliased fields.
            self.diagnostics.push(
                Diagnostic::error(Code::YamlSyntax, span, "unknown anchor: this alias names an anchor of another document")
                    .with_label("no such anchor in this document")
                    .with_help("an alias (`*name`) must come after its anchor (`&name`) in the same document: anchors do not cross `---`"),
            );
            self.complete(Node { value: Value::Null, span }, 0);
            return;
        };
        let weight = *weight;
        if self.stack.len() + weight.depth > MAX_DEPTH {
            self.too_deep(span);
            return;
        }
        self.aliased += weight.cost;
        let budget = ALIAS_BUDGET + 10 * self.written;
        if self.aliased > budget {
            self.abandon(
                Diagnostic::error(Code::AliasLimit, span, "YAML aliases expand to too much data")
                    .with_label("expanding this alias passes the limit")
                    .with_help(format!(
                        "aliases in this document copy more than ten times what it spells out (over {budget} nodes), the shape of a \"billion laughs\" attack; write the data out or use fewer nested aliases",
                    )),
            );
            return;
        }
        let mut node = node.clone();
        // The copy is reported where the alias is written, not where the anchor is.
        node.span = span;
        self.complete(node, 0);
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            let weight = weigh(&node);
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        let inside_placeholder = matches!(node.value, Value::Map(_)) && self.inside_placeholder(node.span.start);
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, index, key, key_is_merge, merges, .. }) => match key.take() {
                None => match key_name(&node) {
                    Ok(name) => {
                        *key = Some(Key { name, span: node.span });
                        *key_is_merge = self.plain_merge;
                    }
                    Err(message) => {
                        if !inside_placeholder {
                            self.diagnostics.push(
                                Diagnostic::error(Code::UnsupportedValue, node.span, message)
                                    .with_help("Kubernetes objects are JSON: mapping keys must be strings"),
                            );
                        }
                        // Keep the mapping in step: the value that follows is dropped.
                        *key = Some(Key { name: String::new(), span: Span::empty(u32::MAX) });
                    }
                },
                Some(k) if k.span.start == u32::MAX => {}
                Some(_) if *key_is_merge => merges.push((entries.len(), node)),
                Some(k) => {
                    let duplicate = match index {
                        Some(set) => !set.insert(k.name.clone()),
                        None => {
                            let seen = entries.iter().any(|e| e.key.name == k.name);
                            if entries.len() >= 16 {
                                *index =
                                    Some(entries.iter().map(|e| e.key.name.clone()).chain([k.name.clone()]).collect());
                            }
                            seen
                        }
                    };
                    if duplicate {
                        let first = entries.iter().find(|e| e.key.name == k.name).map(|e| e.key.span);
                        let mut d = Diagnostic::error(Code::DuplicateKey, k.span, format!("duplicate key \"{}\"", k.name))
                            .with_label("defined again here")
                            .with_help("the API server rejects duplicate fields in strict mode, and otherwise keeps only the last one; remove one of them");
                        if let Some(first) = first {
                            d = d.with_related(first, "first defined here");
                        }
                        self.diagnostics.push(d);
                    }
                    entries.push(Entry { key: k, value: node });
                }
            },
        }
    }

    fn finish(mut self) -> (Option<Node>, Vec<Diagnostic>) {
        // An unterminated stream still closes its open collections.
        while !self.stack.is_empty() && !self.abandoned {
            let end = self.end;
            self.close(Span::empty(end));
        }
        (self.root, self.diagnostics)
    }
}

/// Where a collection ends: after its closing bracket when it is written in flow style
/// (the end event then spans the bracket), else after its last child.
fn collection_end(end_event: Span, last_child: Option<u32>, start: u32) -> u32 {
    if !end_event.is_empty() { end_event.end } else { last_child.unwrap_or(end_event.end).max(start) }
}

/// Builds a mapping's entries in order, a later key replacing an earlier one in place.
#[derive(Default)]
struct Merged {
    entries: Vec<Entry>,
    position: HashMap<String, usize>,
}

impl Merged {
    fn set(&mut self, entry: Entry) {
        match self.position.get(&entry.key.name) {
            Some(&at) => self.entries[at] = entry,
            None => {
                self.position.insert(entry.key.name.clone(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    fn merge(&mut self, value: Node, diagnostics: &mut Vec<Diagnostic>) {
        let span = value.span;
        match value.value {
            Value::Map(entries) => entries.into_iter().for_each(|e| self.set(e)),
            // Earlier mappings in the list take precedence, so they are applied last.
            Value::Seq(items) => {
                for item in items.into_iter().rev() {
                    match item.value {
                        Value::Map(entries) => entries.into_iter().for_each(|e| self.set(e)),
                        _ => diagnostics.push(merge_error(item.span)),
                    }
                }
            }
            _ => diagnostics.push(merge_error(span)),
        }
    }
}

fn merge_error(span: Span) -> Diagnostic {
    Diagnostic::error(Code::UnsupportedValue, span, "a merge key `<<` takes a mapping or a list of mappings")
        .with_help("merge an anchored mapping (`<<: *defaults`), or quote \"<<\" to use it as an ordinary key")
}

/// YAML merge keys as go-yaml v2 (and so Kubernetes) applies them: where `<<` is written,
/// its keys replace the keys before it, and keys after it replace its own.
fn apply_merges(explicit: Vec<Entry>, merges: Vec<(usize, Node)>, diagnostics: &mut Vec<Diagnostic>) -> Vec<Entry> {
    let mut merged = Merged::default();
    let mut merges = merges.into_iter().peekable();
    for (i, entry) in explicit.into_iter().enumerate() {
        while let Some((_, value)) = merges.next_if(|(at, _)| *at == i) {
            merged.merge(value, diagnostics);
        }
        merged.set(entry);
    }
    for (_, value) in merges {
        merged.merge(value, diagnostics);
    }
    merged.entries
}

fn key_name(node: &Node) -> Result<String, String> {
    Ok(match &node.value {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Seq(_) => return Err("a list cannot be a mapping key".into()),
        Value::Map(_) => return Err("a mapping cannot be a mapping key".into()),
    })
}

fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let Some(tag) = tag else {
        return plain_or_string(text, style);
    };
    // go-yaml leaves a scalar with a tag it cannot resolve (`!foo 3`) as the string written.
    if !tag.is_yaml_core_schema() {
        return Ok(Value::String(text.to_string()));
    }
    match tag.suffix.as_str() {
        "str" | "timestamp" => Ok(Value::String(text.to_string())),
        "binary" => decode_binary(text).map(Value::String),
        "null" => Ok(Value::Null),
        "bool" => match resolve_plain(text) {
            Value::Bool(b) => Ok(Value::Bool(b)),
            _ => Err(format!("!!bool value \"{text}\" is not a boolean")),
        },
        "int" => match resolve_plain(text) {
            v @ (Value::Int(_) | Value::UInt(_)) => Ok(v),
            _ => Err(format!("!!int value \"{text}\" is not an integer")),
        },
        "float" => match resolve_plain(text) {
            Value::Int(i) => Ok(Value::Float(i as f64)),
            Value::UInt(u) => Ok(Value::Float(u as f64)),
            Value::Float(f) => finite(f, text),
            _ => Err(format!("!!float value \"{text}\" is not a number")),
        },
        _ => plain_or_string(text, style),
    }
}

/// A `!!binary` scalar as kubectl reads it: go-yaml v2 decodes the base64 (Go's
/// decoder skips line breaks, so folded and literal blocks work) into a Go string, and
/// JSON encoding then replaces each byte that is not UTF-8 with U+FFFD.
fn decode_binary(text: &str) -> Result<String, String> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| "!!binary value contains invalid base64 data".to_string())?;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        // Go's encoder replaces byte by byte, not by maximal invalid sequence.
        out.extend(std::iter::repeat_n('\u{FFFD}', chunk.invalid().len()));
    }
    Ok(out)
}

fn plain_or_string(text: &str, style: ScalarStyle) -> Result<Value, String> {
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    match resolve_plain(text) {
        Value::Float(f) => finite(f, text),
        value => Ok(value),
    }
}

fn finite(f: f64, text: &str) -> Result<Value, String> {
    if f.is_finite() {
        Ok(Value::Float(f))
    } else {
        Err(format!("\"{text}\" is not a finite number, and JSON has no form for it"))
    }
}

/// Resolves a plain scalar as go-yaml v2 does (YAML 1.1 booleans, base prefixes,
/// underscores in numbers).
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Value::Bool(false);
        }
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Value::String(text.to_string());
    }
    let plain: std::borrow::Cow<'_, str> = if text.contains('_') { text.replace('_', "").into() } else { text.into() };
    if first == b'.' {
        // go-yaml tries a leading dot as a float as written, underscores and all.
        return match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Float(f),
            _ => Value::String(text.to_string()),
        };
    }
    if let Some(value) = parse_go_int(&plain) {
        return value;
    }
    // A float out of range (`1e400`) fails Go's ParseFloat, so it stays a string.
    if is_yaml_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
        && f.is_finite()
    {
        return Value::Float(f);
    }
    Value::String(text.to_string())
}

/// `strconv.ParseInt(s, 0, 64)`, then `ParseUint`: an optional sign, then `0x`, `0o`,
/// `0b` or a leading `0` (octal) prefix, or decimal.
fn parse_go_int(s: &str) -> Option<Value> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body) = if let Some(rest) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        (16, rest)
    } else if let Some(rest) = digits.strip_prefix("0o").or_else(|| digits.strip_prefix("0O")) {
        (8, rest)
    } else if let Some(rest) = digits.strip_prefix("0b").or_else(|| digits.strip_prefix("0B")) {
        (2, rest)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some(Value::Int((magnitude as i128).wrapping_neg() as i64))
        } else {
            None
        }
    } else if magnitude <= i64::MAX as u64 {
        Some(Value::Int(magnitude as i64))
    } else {
        Some(Value::UInt(magnitude))
    }
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && matches!(b[i], b'-' | b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if i < b.len() && matches!(b[i], b'-' | b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Help for the scanner's terse messages, keyed on what they say and what is at the spot.
fn syntax_help(info: &str, text: &str, at: u32) -> Option<String> {
    let line_start = text[..(at as usize).min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    if line.contains("{{") || line.contains("{%") {
        return Some("this line holds template syntax (`{{ ... }}`); render the template first (for example with `helm template`) and lint its output".into());
    }
    if info.contains("tab") || line.trim_start_matches(' ').starts_with('\t') {
        return Some("YAML does not allow tabs for indentation; indent with spaces".into());
    }
    if info.contains("mapping values are not allowed") {
        return Some("a `key: value` appears where a plain value was expected: quote a value that contains \": \", or check this line's indentation".into());
    }
    if info.contains("did not find expected key") || info.contains("block mapping") || info.contains("block sequence") {
        return Some("check the indentation: this line does not line up with the keys or items around it".into());
    }
    if info.contains("unknown anchor") {
        return Some("an alias (`*name`) must come after its anchor (`&name`) in the same document".into());
    }
    None
}

/// Converts the parser's character indices to byte offsets. Events arrive nearly in
/// order, so a cursor that walks from the last answer costs O(n) over a document.
struct Offsets<'a> {
    text: &'a str,
    ascii: bool,
    chars: usize,
    bytes: usize,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str) -> Offsets<'a> {
        Offsets { text, ascii: text.is_ascii(), chars: 0, bytes: 0 }
    }

    fn byte(&mut self, char_index: usize) -> u32 {
        if self.ascii {
            return char_index.min(self.text.len()) as u32;
        }
        if char_index < self.chars / 2 {
            self.chars = 0;
            self.bytes = 0;
        }
        let bytes = self.text.as_bytes();
        while self.chars > char_index {
            self.bytes -= 1;
            while self.bytes > 0 && (bytes[self.bytes] & 0xC0) == 0x80 {
                self.bytes -= 1;
            }
            self.chars -= 1;
        }
        while self.chars < char_index && self.bytes < bytes.len() {
            self.bytes += 1;
            while self.bytes < bytes.len() && (bytes[self.bytes] & 0xC0) == 0x80 {
                self.bytes += 1;
            }
            self.chars += 1;
        }
        self.bytes as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str) -> Vec<Result<Document, Box<Diagnostic>>> {
        let source = SourceFile::new("t.yaml", text).unwrap();
        Documents::new(&source).collect()
    }

    fn root(text: &str) -> serde_json::Value {
        let mut all = docs(text);
        all.remove(0).unwrap().root.unwrap().to_json()
    }

    #[test]
    fn resolves_scalars_like_go_yaml_v2() {
        assert_eq!(
            root(
                "a: yes\nb: off\nc: y\nd: 0777\ne: 0x1F\nf: 1_000\ng: 1e3\nh: 08\ni: '1'\nj: 2020-01-01\nk: ~\nl: -12\nm: 18446744073709551615\n"
            ),
            serde_json::json!({"a": true, "b": false, "c": true, "d": 511, "e": 31, "f": 1000, "g": 1000.0,
                "h": 8.0, "i": "1", "j": "2020-01-01", "k": null, "l": -12, "m": 18446744073709551615u64})
        );
        assert_eq!(root("a: !!str 12\nb: !!int '7'\nc: \"yes\"\n"), serde_json::json!({"a": "12", "b": 7, "c": "yes"}));
        // !!binary is decoded as kubectl decodes it, line breaks in blocks skipped.
        assert_eq!(
            root("a: !!binary aGVsbG8=\nb: !!binary |\n  aGVs\n  bG8=\nc: !!binary /w==\n"),
            serde_json::json!({"a": "hello", "b": "hello", "c": "\u{FFFD}"})
        );
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "kind: Pod\nmetadata:\n  name: é-web\n  labels: {app: web}\n";
        let source = SourceFile::new("t.yaml", text).unwrap();
        let doc = Documents::new(&source).next().unwrap().unwrap();
        let root = doc.root.unwrap();
        let meta = root.entry("metadata").unwrap();
        assert_eq!(source.slice(meta.key.span), "metadata");
        let name = meta.value.get("name").unwrap();
        assert_eq!(source.slice(name.span), "é-web");
        let labels = meta.value.entry("labels").unwrap();
        assert_eq!(source.slice(labels.value.get("app").unwrap().span), "web");
        assert_eq!(source.line_col(labels.key.span.start).line, 4);
        assert_eq!(source.slice(labels.value.span), "{app: web}");
        assert_eq!(source.slice(root.span), text.trim_end());
    }

    #[test]
    fn splits_documents_and_keeps_empty_ones() {
        let all = docs("a: 1\n---\n# only a comment\n---\nb: 2\n...\n");
        assert_eq!(all.len(), 3);
        assert!(all[1].as_ref().unwrap().is_empty());
        assert_eq!(all[2].as_ref().unwrap().index, 2);
    }

    /// Anchors belong to their document, as kubectl reads documents one at a time.
    #[test]
    fn an_alias_to_another_documents_anchor_is_an_error() {
        let all = docs("a: &shared {k: v}\n---\nb: *shared\n");
        assert!(all[0].as_ref().unwrap().diagnostics.is_empty());
        let second = all[1].as_ref().unwrap();
        assert_eq!(second.diagnostics.len(), 1, "{:?}", second.diagnostics);
        assert_eq!(second.diagnostics[0].code, Code::YamlSyntax);
        assert!(second.diagnostics[0].message.contains("unknown anchor"), "{}", second.diagnostics[0].message);
    }

    #[test]
    fn reports_duplicate_keys_and_keeps_the_last() {
        let all = docs("a: 1\nb: 2\na: 3\n");
        let doc = all[0].as_ref().unwrap();
        assert_eq!(doc.diagnostics.len(), 1);
        assert_eq!(doc.diagnostics[0].code, Code::DuplicateKey);
        assert_eq!(doc.root.as_ref().unwrap().to_json(), serde_json::json!({"a": 3, "b": 2}));
    }

    #[test]
    fn merges_keys_where_they_are_written_like_go_yaml_v2() {
        let value = root("base: &b {p: 1, q: 2}\nthing:\n  <<: *b\n  q: 3\n  \"<<\": literal\n");
        assert_eq!(value["thing"], serde_json::json!({"p": 1, "q": 3, "<<": "literal"}));
        // A merge after a key overrides it; in a list of merges, earlier mappings win.
        let value = root("x: &x {p: 1}\ny: &y {p: 2, r: 2}\nb: {p: 0, <<: [*x, *y]}\n");
        assert_eq!(value["b"], serde_json::json!({"p": 1, "r": 2}));
        let doc = docs("a: {<<: 3}\n").remove(0).unwrap();
        assert_eq!(doc.diagnostics[0].code, Code::UnsupportedValue);
    }

    #[test]
    fn unresolvable_tags_and_odd_numbers_stay_strings() {
        assert_eq!(
            root("a: !foo 3\nb: 1e400\nc: .5_0\nd: .5\n"),
            serde_json::json!({"a": "3", "b": "1e400", "c": ".5_0", "d": 0.5})
        );
    }

    #[test]
    fn templates_in_block_keys_are_one_diagnostic() {
        let doc = docs("{{ .Values.key }}: 1\nkind: Pod\n").remove(0).unwrap();
        let codes: Vec<_> = doc.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec![Code::Template]);
        assert_eq!(doc.root.unwrap().to_json(), serde_json::json!({"{{ .Values.key }}": 1, "kind": "Pod"}));
    }

    #[test]
    fn aliases_cannot_copy_big_strings_or_nest_too_deep() {
        let big = "x".repeat(100_000);
        let text = format!("a: &a \"{big}\"\nb: [{}]\n", vec!["*a"; 200].join(", "));
        let doc = docs(&text).remove(0).unwrap();
        assert_eq!(doc.diagnostics[0].code, Code::AliasLimit);
        let mut text = String::new();
        let mut previous = String::from("x");
        for i in 0..4 {
            let open = "[".repeat(60);
            let close = "]".repeat(60);
            text.push_str(&format!("a{i}: &a{i} {open}{previous}{close}\n"));
            previous = format!("*a{i}");
        }
        let doc = docs(&text).remove(0).unwrap();
        assert_eq!(doc.diagnostics[0].code, Code::TooDeep);
    }

    #[test]
    fn stops_at_a_syntax_error_with_its_position() {
        let all = docs("a: 1\n---\nb: [1, 2\n");
        assert!(all[0].is_ok());
        let err = all[1].as_ref().unwrap_err();
        assert_eq!(err.code, Code::YamlSyntax);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn refuses_a_billion_laughs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 10].join(", ")));
        }
        let all = docs(&text);
        let doc = all[0].as_ref().unwrap();
        assert!(doc.root.is_none());
        assert_eq!(doc.diagnostics[0].code, Code::AliasLimit);
    }

    #[test]
    fn refuses_deep_nesting() {
        let text = "[".repeat(5000) + &"]".repeat(5000);
        let all = docs(&text);
        match &all[0] {
            Ok(doc) => assert_eq!(doc.diagnostics[0].code, Code::TooDeep),
            Err(diagnostic) => assert_eq!(diagnostic.code, Code::TooDeep),
        }
        let block: String = (0..400).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        let doc = docs(&block).remove(0).unwrap();
        assert_eq!(doc.diagnostics[0].code, Code::TooDeep);
    }

    #[test]
    fn rejects_non_finite_numbers_and_complex_keys() {
        let doc = docs("a: .inf\n? [1, 2]\n: x\nb: 1\n").remove(0).unwrap();
        let codes: Vec<_> = doc.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec![Code::UnsupportedValue, Code::UnsupportedValue]);
        assert_eq!(doc.root.unwrap().to_json(), serde_json::json!({"a": null, "b": 1}));
    }
}
