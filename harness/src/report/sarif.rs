//! `--output sarif`: SARIF 2.1.0, the format code-scanning dashboards read (GitHub code
//! scanning, GitLab, Azure DevOps, the SARIF viewers). One run; its driver lists every
//! diagnostic code and every rule with a help URI into the docs, and each finding is a
//! result with its file, region (1-based lines, columns in characters, end exclusive, as
//! kubeyard's own JSON counts them) and the Kubernetes object it is about.

use super::Summary;
use kubeyard_compiler::diagnostic::Code;
use kubeyard_compiler::rules::{self, RULES};
use kubeyard_compiler::{Diagnostic, FileReport, ObjectReport, Severity, SourceFile};
use serde_json::{Value, json};
use std::collections::HashMap;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// Where a code's or rule's documentation lives, on the repository's default branch.
pub fn help_uri(code: Code) -> String {
    match code {
        Code::Rule(id) => format!("{REPOSITORY}/blob/main/docs/rules.md#{}", rules::anchor(id)),
        _ => format!("{REPOSITORY}/blob/main/docs/diagnostics.md"),
    }
}

/// SARIF's level for a severity (`note` is its word for information).
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// The driver's rule descriptors: every diagnostic code, then every semantic rule, so a
/// dashboard knows what was checked even where nothing was found.
fn descriptors() -> (Vec<Value>, HashMap<&'static str, usize>) {
    let mut list = Vec::new();
    let mut index = HashMap::new();
    for &code in Code::ALL {
        index.insert(code.as_str(), list.len());
        list.push(json!({
            "id": code.as_str(),
            "shortDescription": {"text": code.summary()},
            "helpUri": help_uri(code),
            "properties": {"tags": [code.as_str().split('/').next().unwrap_or_default()]},
        }));
    }
    for rule in RULES {
        let code = Code::Rule(rule.id);
        index.insert(rule.id, list.len());
        let mut configuration = json!({"level": level(rule.severity)});
        if !rule.on_by_default {
            configuration["enabled"] = json!(false);
        }
        list.push(json!({
            "id": rule.id,
            "name": rule.name(),
            "shortDescription": {"text": rule.name()},
            "fullDescription": {"text": rule.rationale()},
            "help": {
                "text": format!("{}\n\nFix: {}", rule.rationale(), rule.fix()),
                "markdown": format!("{}\n\n**Fix:** {}", rule.rationale(), rule.fix()),
            },
            "helpUri": help_uri(code),
            "defaultConfiguration": configuration,
            "properties": {"tags": ["kubernetes", rule.id.split('/').next().unwrap_or_default()]},
        }));
    }
    (list, index)
}

/// A path as a URI reference: relative paths stay relative (to the directory kubeyard ran
/// in, the repository's root in CI), absolute ones become `file://` URIs; characters a URI
/// cannot hold are percent-encoded.
pub fn uri(path: &str) -> String {
    let path = path.strip_prefix("./").unwrap_or(path);
    // RFC 3986's unreserved characters and the path's slashes stay as they are.
    const KEPT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
    let encoded = percent_encoding::utf8_percent_encode(path, KEPT);
    if path.starts_with('/') { format!("file://{encoded}") } else { encoded.to_string() }
}

/// Where a diagnostic is: the file, and the region when the file was read. Standard
/// input and rendered text (a chart's template, a kustomization's build) are described,
/// not pointed at: no file holds those lines.
fn location(file: &str, source: Option<&SourceFile>, d: &Diagnostic, object: &ObjectReport) -> Value {
    let real = crate::discover::real_file(file);
    let artifact = match real {
        Some(file) => json!({"uri": uri(file)}),
        None if file == "<stdin>" => json!({"description": {"text": "standard input"}}),
        None => json!({"description": {"text": file}}),
    };
    let mut physical = json!({"artifactLocation": artifact});
    if let Some(source) = source.filter(|_| real.is_some() || file == "<stdin>") {
        let (start, end) = (source.line_col(d.span.start), source.line_col(d.span.end));
        physical["region"] = json!({
            "startLine": start.line,
            "startColumn": start.column,
            "endLine": end.line,
            "endColumn": end.column,
            "byteOffset": d.span.start,
            "byteLength": d.span.len(),
        });
    }
    let mut location = json!({"physicalLocation": physical});
    if let Some(info) = &object.object {
        let name = info.name.as_deref().unwrap_or_default();
        let qualified = match &info.namespace {
            Some(namespace) => format!("{} {}/{namespace}/{name}", info.gvk.api_version(), info.gvk.kind),
            None => format!("{} {}/{name}", info.gvk.api_version(), info.gvk.kind),
        };
        location["logicalLocations"] = json!([{"name": name, "fullyQualifiedName": qualified, "kind": "resource"}]);
    }
    location
}

pub fn render(reports: &[FileReport], summary: &Summary, kubernetes_version: &str, strict: bool) -> String {
    let (rules, index) = descriptors();
    let mut results = Vec::new();
    for report in reports {
        let source = report.source.as_ref();
        for object in &report.objects {
            for d in &object.diagnostics {
                let code = d.code.as_str();
                let mut text = crate::report::message_with_help(d);
                if crate::discover::real_file(&report.name).is_none()
                    && report.name != "<stdin>"
                    && let Some(source) = source
                {
                    let at = source.line_col(d.span.start);
                    text.push_str(&format!("\nat {}:{}:{}", report.name, at.line, at.column));
                }
                let mut result = json!({
                    "ruleId": code,
                    "level": level(d.severity),
                    "message": {"text": text},
                    "locations": [location(&report.name, source, d, object)],
                });
                if let Some(&i) = index.get(code) {
                    result["ruleIndex"] = json!(i);
                }
                // The same finding keeps its fingerprint when lines move around it: the
                // object it is about and the field, not the line.
                if let Some(info) = &object.object {
                    let identity = format!(
                        "{code}|{}|{}|{}|{}",
                        info.gvk.api_version(),
                        info.gvk.kind,
                        info.namespace.as_deref().unwrap_or_default(),
                        info.name.as_deref().unwrap_or_default()
                    );
                    let field = d.path.as_deref().unwrap_or_default();
                    result["partialFingerprints"] = json!({"kubeyardFinding/v1": format!("{identity}|{field}")});
                }
                if let Some(path) = &d.path {
                    result["properties"] = json!({"path": path});
                }
                results.push(result);
            }
        }
    }
    let sarif = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kubeyard",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": REPOSITORY,
                "rules": rules,
            }},
            "invocations": [{"executionSuccessful": summary.unreadable == 0}],
            "columnKind": "unicodeCodePoints",
            "results": results,
            "properties": {"kubernetesVersion": kubernetes_version, "strict": strict},
        }],
    });
    let mut text = serde_json::to_string_pretty(&sarif).expect("plain data always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri("./manifests/web app.yaml"), "manifests/web%20app.yaml");
        assert_eq!(uri("/src/k8s/a#b.yaml"), "file:///src/k8s/a%23b.yaml");
        assert_eq!(uri("déjà.yaml"), "d%C3%A9j%C3%A0.yaml");
    }

    #[test]
    fn every_rule_and_code_has_a_descriptor_and_a_help_uri() {
        let (rules, index) = descriptors();
        assert_eq!(rules.len(), Code::ALL.len() + RULES.len());
        for (id, &i) in &index {
            assert_eq!(rules[i]["id"], *id);
            assert!(rules[i]["helpUri"].as_str().is_some_and(|u| u.starts_with("https://")), "{id}");
        }
        let latest = &rules[index["image/latest-tag"]];
        assert_eq!(latest["helpUri"], format!("{REPOSITORY}/blob/main/docs/rules.md#imagelatest-tag"));
    }
}
