//! `kubeyard lsp`: a language server on standard input and output. It gives an editor the
//! diagnostics `kubeyard lint` gives (schema, strictness, the rules, the rules across the
//! open documents), as the user types; hover with a field's type and description from the
//! schemas of the chosen Kubernetes version; completion of field names and enum values;
//! and code actions for the did-you-mean fixes.
//!
//! A change re-lints the changed document alone; the set rules then run again over the
//! kept reports of every open document, and only documents whose diagnostics changed are
//! sent again. The protocol is rust-analyzer's `lsp-server` with `lsp-types`.

pub mod analysis;

use crate::cli::inputs::Inputs;
use analysis::Encoding;
use kubeyard_compiler::diagnostic::{Code, Severity};
use kubeyard_compiler::{FileReport, LintOptions, Linter, SourceFile};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types as lsp;
use serde_json::{Value, json};
use std::collections::HashMap;

/// An open document: its text, and its report before the set rules.
struct Document {
    text: String,
    version: i32,
    report: FileReport,
    /// What was last published for it.
    published: Vec<lsp::Diagnostic>,
    /// The CustomResourceDefinitions (by name) it defines, registered while it is open.
    crds: Vec<String>,
}

/// The server's state: the linter, the open documents, the client's position encoding.
pub struct Server {
    linter: Linter,
    documents: HashMap<String, Document>,
    encoding: Encoding,
}

/// The settings the linter is made with: the workspace's `.kubeyard.yaml` (its Kubernetes
/// version, strictness, rules, cluster shape), as `kubeyard lint` reads them.
fn options(root: Option<&str>) -> Result<LintOptions, String> {
    let inputs = Inputs { paths: root.map(|r| vec![r.to_string()]).unwrap_or_default(), ..Inputs::default() };
    let paths = inputs.paths();
    let config = inputs.load_config(&paths).map_err(|_| "the workspace's .kubeyard.yaml is invalid".to_string())?;
    let catalog = inputs.catalog_options(&config)?;
    Ok(LintOptions {
        catalog,
        ignore_missing_schemas: config.ignore_missing_schemas.unwrap_or(false),
        rules: config.rules,
        cluster: config.cluster,
        keep_trees: false,
        values: None,
    })
}

/// A `file://` URI's path, or the URI itself: what reports and diagnostics name.
fn path_of(uri: &str) -> String {
    match uri.strip_prefix("file://") {
        Some(path) => percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned(),
        None => uri.to_string(),
    }
}

impl Server {
    pub fn new(root: Option<&str>, encoding: Encoding) -> Result<Server, String> {
        // A broken .kubeyard.yaml must not take the editor's server down: the defaults
        // serve, and the log says why.
        let options = options(root).unwrap_or_else(|message| {
            eprintln!("kubeyard lsp: {message}; linting with the defaults");
            LintOptions::default()
        });
        let linter = Linter::new(options).map_err(|e| e.to_string())?;
        Ok(Server { linter, documents: HashMap::new(), encoding })
    }

    /// The CustomResourceDefinitions a document's text defines, registered (by name).
    fn register(&mut self, uri: &str, text: &str) -> Vec<String> {
        let Ok(source) = SourceFile::new(path_of(uri), text.to_string()) else { return Vec::new() };
        let mut names: Vec<String> =
            self.linter.register_crds(&source).iter().filter_map(|gvk| self.linter.catalog().crd_name(gvk)).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Lints a document's text; the CustomResourceDefinitions in it are registered first,
    /// so custom resources in it and in the other open documents validate against them.
    fn lint(&mut self, uri: &str, text: &str) -> (FileReport, Vec<String>) {
        let crds = self.register(uri, text);
        match SourceFile::new(path_of(uri), text.to_string()) {
            Ok(source) => (self.linter.lint_source_each(source, &mut |_| {}), crds),
            Err(error) => {
                // Binary or too large: said on the file, as `kubeyard lint` says it.
                let diagnostic = kubeyard_compiler::lint::source_diagnostic(&error);
                let report = FileReport {
                    name: path_of(uri),
                    source: None,
                    objects: vec![kubeyard_compiler::ObjectReport::whole_file(vec![diagnostic])],
                };
                (report, crds)
            }
        }
    }

    /// Forgets the CustomResourceDefinitions a document defined (it changed or closed), and
    /// registers again those the other open documents define, the same ones among them.
    fn forget(&mut self, uri: &str, crds: &[String]) {
        if crds.is_empty() {
            return;
        }
        for name in crds {
            self.linter.catalog().unregister_crd(name);
        }
        let mut others: Vec<(String, String)> = self
            .documents
            .iter()
            .filter(|(u, d)| u.as_str() != uri && !d.crds.is_empty())
            .map(|(u, d)| (u.clone(), d.text.clone()))
            .collect();
        // The same CRD in two documents: the last by URI wins, whatever the map's order.
        others.sort();
        for (other, text) in others {
            self.register(&other, &text);
        }
    }

    /// Lints every open document but `except` again (the CRDs changed their verdicts).
    fn relint_others(&mut self, except: &str) {
        let mut others: Vec<(String, String)> = self
            .documents
            .iter()
            .filter(|(u, _)| u.as_str() != except)
            .map(|(u, d)| (u.clone(), d.text.clone()))
            .collect();
        others.sort();
        for (uri, text) in others {
            let (report, crds) = self.lint(&uri, &text);
            if let Some(document) = self.documents.get_mut(&uri) {
                document.report = report;
                document.crds = crds;
            }
        }
    }

    /// Opens or replaces a document; the diagnostics to publish.
    pub fn open(&mut self, uri: &str, version: i32, text: String) -> Vec<(String, Option<i32>, Vec<lsp::Diagnostic>)> {
        let before = self.documents.get(uri).map(|d| d.crds.clone()).unwrap_or_default();
        self.forget(uri, &before);
        let (report, crds) = self.lint(uri, &text);
        let relint = !before.is_empty() || !crds.is_empty();
        self.documents.insert(uri.to_string(), Document { text, version, report, published: Vec::new(), crds });
        if relint {
            self.relint_others(uri);
        }
        self.publishable(Some(uri))
    }

    /// Applies edits to a document (each a range and its new text, or the whole text).
    pub fn change(
        &mut self,
        uri: &str,
        version: i32,
        changes: Vec<lsp::TextDocumentContentChangeEvent>,
    ) -> Vec<(String, Option<i32>, Vec<lsp::Diagnostic>)> {
        let Some(document) = self.documents.get_mut(uri) else { return Vec::new() };
        for change in changes {
            match change.range {
                Some(range) => {
                    let starts = analysis::line_starts(&document.text);
                    let at = |p: lsp::Position| analysis::Position { line: p.line, character: p.character };
                    let start = analysis::offset(&document.text, &starts, at(range.start), self.encoding);
                    let end = analysis::offset(&document.text, &starts, at(range.end), self.encoding).max(start);
                    document.text.replace_range(start..end, &change.text);
                }
                None => document.text = change.text,
            }
        }
        document.version = version;
        let text = document.text.clone();
        let before = std::mem::take(&mut document.crds);
        // A CRD edited away (or renamed) no longer defines its kinds.
        self.forget(uri, &before);
        let (report, crds) = self.lint(uri, &text);
        let relint = !before.is_empty() || !crds.is_empty();
        if let Some(document) = self.documents.get_mut(uri) {
            document.report = report;
            document.crds = crds;
        }
        if relint {
            self.relint_others(uri);
        }
        self.publishable(Some(uri))
    }

    /// Closes a document: its diagnostics are cleared, the CRDs it defined forgotten, the
    /// others' set rules run again.
    pub fn close(&mut self, uri: &str) -> Vec<(String, Option<i32>, Vec<lsp::Diagnostic>)> {
        let mut out = Vec::new();
        if let Some(document) = self.documents.remove(uri) {
            out.push((uri.to_string(), None, Vec::new()));
            if !document.crds.is_empty() {
                self.forget(uri, &document.crds);
                self.relint_others(uri);
            }
        }
        out.extend(self.publishable(None));
        out
    }

    /// The set rules over every open document's report; the documents whose diagnostics
    /// changed, with them, and always the one just edited (its new version's).
    fn publishable(&mut self, edited: Option<&str>) -> Vec<(String, Option<i32>, Vec<lsp::Diagnostic>)> {
        let mut uris: Vec<String> = self.documents.keys().cloned().collect();
        uris.sort();
        let mut reports: Vec<FileReport> = uris.iter().map(|u| self.documents[u].report.clone()).collect();
        self.linter.check_set(&mut reports);
        let mut out = Vec::new();
        for (uri, report) in uris.into_iter().zip(reports) {
            let encoding = self.encoding;
            let Some(document) = self.documents.get_mut(&uri) else { continue };
            let diagnostics = diagnostics(&report, &document.text, encoding);
            if diagnostics != document.published || edited == Some(uri.as_str()) {
                document.published = diagnostics.clone();
                out.push((uri, Some(document.version), diagnostics));
            }
        }
        out
    }

    fn offset(&self, uri: &str, at: lsp::Position) -> Option<(&Document, usize)> {
        let document = self.documents.get(uri)?;
        let starts = analysis::line_starts(&document.text);
        let position = analysis::Position { line: at.line, character: at.character };
        Some((document, analysis::offset(&document.text, &starts, position, self.encoding)))
    }

    pub fn hover(&self, uri: &str, at: lsp::Position) -> Option<lsp::Hover> {
        let (document, offset) = self.offset(uri, at)?;
        let text = analysis::hover(self.linter.catalog(), &document.text, offset)?;
        Some(lsp::Hover {
            contents: lsp::HoverContents::Markup(lsp::MarkupContent { kind: lsp::MarkupKind::Markdown, value: text }),
            range: None,
        })
    }

    pub fn complete(&self, uri: &str, at: lsp::Position) -> Vec<lsp::CompletionItem> {
        let Some((document, offset)) = self.offset(uri, at) else { return Vec::new() };
        analysis::complete(self.linter.catalog(), &document.text, offset)
            .into_iter()
            .map(|c| lsp::CompletionItem {
                insert_text: Some(if c.is_field { format!("{}: ", c.label) } else { c.label.clone() }),
                kind: Some(if c.is_field {
                    lsp::CompletionItemKind::FIELD
                } else {
                    lsp::CompletionItemKind::ENUM_MEMBER
                }),
                detail: Some(c.detail),
                documentation: c.documentation.map(|d| {
                    lsp::Documentation::MarkupContent(lsp::MarkupContent { kind: lsp::MarkupKind::Markdown, value: d })
                }),
                label: c.label,
                ..lsp::CompletionItem::default()
            })
            .collect()
    }

    /// The quick fixes of the diagnostics the client sends back: each did-you-mean
    /// replaces the span it is about with the suggestion.
    // `WorkspaceEdit::changes` is lsp-types' map keyed by `Uri`, whose parsed parts are
    // cached inside it: the key is never changed while in the map.
    #[allow(clippy::mutable_key_type)]
    pub fn code_actions(&self, params: &lsp::CodeActionParams) -> Vec<lsp::CodeActionOrCommand> {
        let mut actions = Vec::new();
        for diagnostic in &params.context.diagnostics {
            let Some(replacement) = diagnostic.data.as_ref().and_then(|d| d.get("replacement")).and_then(Value::as_str)
            else {
                continue;
            };
            let edit = lsp::TextEdit { range: diagnostic.range, new_text: replacement.to_string() };
            let changes = HashMap::from([(params.text_document.uri.clone(), vec![edit])]);
            actions.push(lsp::CodeActionOrCommand::CodeAction(lsp::CodeAction {
                title: format!("Change to \"{replacement}\""),
                kind: Some(lsp::CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![diagnostic.clone()]),
                edit: Some(lsp::WorkspaceEdit { changes: Some(changes), ..lsp::WorkspaceEdit::default() }),
                is_preferred: Some(true),
                ..lsp::CodeAction::default()
            }));
        }
        actions
    }
}

/// The suggestion of a did-you-mean help: `did you mean "containers"?` is `containers`.
fn suggestion(help: &str) -> Option<&str> {
    let rest = help.strip_prefix("did you mean \"")?;
    let end = rest.find('"')?;
    rest[end..].starts_with("\"?").then(|| &rest[..end])
}

/// A report's diagnostics as the protocol's.
fn diagnostics(report: &FileReport, text: &str, encoding: Encoding) -> Vec<lsp::Diagnostic> {
    let starts = analysis::line_starts(text);
    let position = |offset: u32| {
        let at = analysis::position(text, &starts, offset as usize);
        let at = analysis::encode(text, &starts, at, encoding);
        lsp::Position { line: at.line, character: at.character }
    };
    let mut out = Vec::new();
    for object in &report.objects {
        for d in &object.diagnostics {
            let severity = match d.severity {
                Severity::Error => lsp::DiagnosticSeverity::ERROR,
                Severity::Warning => lsp::DiagnosticSeverity::WARNING,
                Severity::Info => lsp::DiagnosticSeverity::INFORMATION,
            };
            let message = crate::report::message_with_help(d);
            let replacement = (d.code == Code::UnknownField).then(|| d.help.as_deref().and_then(suggestion)).flatten();
            let href = crate::report::sarif::help_uri(d.code).parse::<lsp::Uri>().ok();
            out.push(lsp::Diagnostic {
                range: lsp::Range { start: position(d.span.start), end: position(d.span.end) },
                severity: Some(severity),
                code: Some(lsp::NumberOrString::String(d.code.as_str().to_string())),
                code_description: href.map(|href| lsp::CodeDescription { href }),
                source: Some("kubeyard".into()),
                message,
                data: replacement.map(|r| json!({"replacement": r})),
                ..lsp::Diagnostic::default()
            });
        }
    }
    out
}

fn publish(connection: &Connection, published: Vec<(String, Option<i32>, Vec<lsp::Diagnostic>)>) {
    for (uri, version, diagnostics) in published {
        let mut params = json!({"uri": uri, "diagnostics": diagnostics});
        if let Some(version) = version {
            params["version"] = json!(version);
        }
        let _ = connection
            .sender
            .send(Message::Notification(Notification::new("textDocument/publishDiagnostics".into(), params)));
    }
}

fn respond(connection: &Connection, id: RequestId, result: Result<Value, String>) {
    let response = match result {
        Ok(value) => Response::new_ok(id, value),
        Err(message) => Response::new_err(id, ErrorCode::InvalidParams as i32, message),
    };
    let _ = connection.sender.send(Message::Response(response));
}

/// Serves one client on standard input and output until it says `exit`. Whether it asked
/// for `shutdown` first: the protocol has a server told to exit without it end with code 1.
pub fn run() -> Result<bool, String> {
    let (connection, io) = Connection::stdio();
    let (id, params) = connection.initialize_start().map_err(|e| e.to_string())?;
    let params: lsp::InitializeParams = serde_json::from_value(params).map_err(|e| e.to_string())?;
    // UTF-8 columns when the client offers them (LSP 3.17), else the protocol's UTF-16.
    let utf8 = params
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref())
        .is_some_and(|e| e.contains(&lsp::PositionEncodingKind::UTF8));
    let encoding = if utf8 { Encoding::Utf8 } else { Encoding::Utf16 };
    #[allow(deprecated)] // `root_uri`: what most clients still send, beside the folders.
    let root = params
        .workspace_folders
        .as_ref()
        .and_then(|f| f.first())
        .map(|f| path_of(f.uri.as_str()))
        .or_else(|| params.root_uri.as_ref().map(|u| path_of(u.as_str())));
    let mut server = Server::new(root.as_deref(), encoding)?;
    let capabilities = lsp::ServerCapabilities {
        position_encoding: Some(if utf8 { lsp::PositionEncodingKind::UTF8 } else { lsp::PositionEncodingKind::UTF16 }),
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Kind(lsp::TextDocumentSyncKind::INCREMENTAL)),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec![":".into()]),
            ..lsp::CompletionOptions::default()
        }),
        code_action_provider: Some(lsp::CodeActionProviderCapability::Simple(true)),
        ..lsp::ServerCapabilities::default()
    };
    let result = json!({
        "capabilities": capabilities,
        "serverInfo": {"name": "kubeyard", "version": env!("CARGO_PKG_VERSION")},
    });
    connection.initialize_finish(id, result).map_err(|e| e.to_string())?;

    // Standard input closing without `shutdown` and `exit` is the client gone: not clean.
    let mut shut_down = false;
    for message in &connection.receiver {
        match message {
            Message::Request(request) => {
                if connection.handle_shutdown(&request).map_err(|e| e.to_string())? {
                    shut_down = true;
                    break;
                }
                handle(&connection, &server, request);
            }
            Message::Notification(notification) if notification.method == "exit" => break,
            Message::Notification(notification) => {
                let published = notify(&mut server, notification);
                publish(&connection, published);
            }
            Message::Response(_) => {}
        }
    }
    drop(connection);
    // The reader thread ends after `exit` or at the end of standard input.
    io.join().map_err(|e| e.to_string())?;
    Ok(shut_down)
}

fn handle(connection: &Connection, server: &Server, request: Request) {
    let Request { id, method, params } = request;
    let result = match method.as_str() {
        "textDocument/hover" => {
            serde_json::from_value::<lsp::HoverParams>(params).map_err(|e| e.to_string()).map(|p| {
                let at = p.text_document_position_params;
                json!(server.hover(at.text_document.uri.as_str(), at.position))
            })
        }
        "textDocument/completion" => {
            serde_json::from_value::<lsp::CompletionParams>(params).map_err(|e| e.to_string()).map(|p| {
                let at = p.text_document_position;
                json!(server.complete(at.text_document.uri.as_str(), at.position))
            })
        }
        "textDocument/codeAction" => serde_json::from_value::<lsp::CodeActionParams>(params)
            .map_err(|e| e.to_string())
            .map(|p| json!(server.code_actions(&p))),
        other => {
            let response =
                Response::new_err(id, ErrorCode::MethodNotFound as i32, format!("kubeyard does not serve {other}"));
            let _ = connection.sender.send(Message::Response(response));
            return;
        }
    };
    respond(connection, id, result);
}

fn notify(server: &mut Server, notification: Notification) -> Vec<(String, Option<i32>, Vec<lsp::Diagnostic>)> {
    let Notification { method, params } = notification;
    match method.as_str() {
        "textDocument/didOpen" => match serde_json::from_value::<lsp::DidOpenTextDocumentParams>(params) {
            Ok(p) => server.open(p.text_document.uri.as_str(), p.text_document.version, p.text_document.text),
            Err(_) => Vec::new(),
        },
        "textDocument/didChange" => match serde_json::from_value::<lsp::DidChangeTextDocumentParams>(params) {
            Ok(p) => server.change(p.text_document.uri.as_str(), p.text_document.version, p.content_changes),
            Err(_) => Vec::new(),
        },
        "textDocument/didClose" => match serde_json::from_value::<lsp::DidCloseTextDocumentParams>(params) {
            Ok(p) => server.close(p.text_document.uri.as_str()),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec: {type: object, properties: {size: {type: integer, description: How big.}, shape: {type: string}}}\n";
    const WIDGET: &str = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec:\n  size: big\n  \n";

    fn codes(published: &[(String, Option<i32>, Vec<lsp::Diagnostic>)], uri: &str) -> Vec<String> {
        let (_, _, diagnostics) = published.iter().find(|(u, _, _)| u == uri).expect("published");
        diagnostics
            .iter()
            .filter_map(|d| match &d.code {
                Some(lsp::NumberOrString::String(code)) => Some(code.clone()),
                _ => None,
            })
            .collect()
    }

    fn whole(text: &str) -> Vec<lsp::TextDocumentContentChangeEvent> {
        vec![lsp::TextDocumentContentChangeEvent { range: None, range_length: None, text: text.into() }]
    }

    #[test]
    fn a_crd_counts_while_its_document_is_open_and_defines_it() {
        let mut server = Server::new(None, Encoding::Utf16).unwrap();
        let (crd, widget) = ("file:///w/crd.yaml", "file:///w/widget.yaml");
        let published = server.open(widget, 1, WIDGET.into());
        assert_eq!(codes(&published, widget), ["schema/unknown-kind"]);
        let published = server.open(crd, 1, CRD.into());
        assert_eq!(codes(&published, widget), ["schema/type"], "size is an integer");

        // Hover and completion read the CRD's schema.
        let hover = server.hover(widget, lsp::Position { line: 4, character: 3 }).expect("hover");
        let lsp::HoverContents::Markup(hover) = hover.contents else { panic!("markdown") };
        assert!(hover.value.starts_with("**spec.size** `integer`") && hover.value.ends_with("How big."), "{hover:?}");
        let labels: Vec<String> =
            server.complete(widget, lsp::Position { line: 5, character: 2 }).into_iter().map(|c| c.label).collect();
        assert_eq!(labels, ["shape"], "the field not written yet");
        let other = "file:///w/other.yaml";
        server.open(other, 1, "apiVersion: example.com/v1\nkind: \n".into());
        let kinds: Vec<String> =
            server.complete(other, lsp::Position { line: 1, character: 6 }).into_iter().map(|c| c.label).collect();
        assert_eq!(kinds, ["Widget"], "the CRD's kind, of the apiVersion written");
        server.close(other);

        // Edited so it no longer defines Widget: the kind is unknown again.
        let published = server.change(crd, 2, whole(&CRD.replace("kind: Widget", "kind: Gadget")));
        assert_eq!(codes(&published, widget), ["schema/unknown-kind"]);
        let published = server.change(crd, 3, whole(CRD));
        assert_eq!(codes(&published, widget), ["schema/type"]);
        // Closed: forgotten.
        let published = server.close(crd);
        assert_eq!(codes(&published, widget), ["schema/unknown-kind"]);
    }

    #[test]
    fn a_did_you_mean_is_a_replacement() {
        assert_eq!(suggestion("did you mean \"containers\"?"), Some("containers"));
        assert_eq!(suggestion("add `containers:` under spec"), None);
    }
}
