use crate::admission::Cause;
use crate::field_error;
use crate::rules::{Finding, ObjectContext};
use crate::source::Span;
use crate::yaml::Node;
use serde_json::{Value, json};
use std::collections::HashSet;

rule! {
    /// Admission webhook the API server refuses to register
    ///
    /// The API server validates every webhook of a MutatingWebhookConfiguration or
    /// ValidatingWebhookConfiguration: a name of at least three DNS segments, unique in the
    /// configuration; exactly one of `clientConfig.url` (https) or `clientConfig.service`;
    /// `sideEffects` None or NoneOnDryRun; `admissionReviewVersions` naming v1 or v1beta1;
    /// `timeoutSeconds` from 1 to 30; and rules whose operations and scope it knows.
    /// Such a configuration is refused with 422, so none of its webhooks runs.
    ///
    /// Fix: Correct the field the message names, as `admissionregistration.k8s.io/v1` defines it.
    "admission/invalid-webhook", Error, Object(check)
}

const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let gvk = &context.info.gvk;
    if gvk.group != "admissionregistration.k8s.io"
        || !matches!(gvk.kind.as_str(), "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration")
    {
        return;
    }
    let mutating = gvk.kind == "MutatingWebhookConfiguration";
    let Some(webhooks) = context.node.get("webhooks").and_then(Node::as_seq) else { return };
    let mut names = HashSet::new();
    for (index, node) in webhooks.iter().enumerate() {
        let webhook = node.to_json();
        for cause in webhook_causes(&webhook, index, mutating, &mut names) {
            let span = span_of(node, &cause.field, index);
            // Said as Kubernetes says it, the field first (admission's causes name it apart).
            out.push(Finding::new(&RULE, span, format!("{}: {}", cause.field, cause.message)).path(cause.field));
        }
    }
}

/// Where a cause points: the field's value if it is written, else the webhook.
fn span_of(webhook: &Node, field: &str, index: usize) -> Span {
    let prefix = format!("webhooks[{index}].");
    let mut node = webhook;
    for part in field.strip_prefix(&prefix).unwrap_or_default().split('.') {
        let name = part.split('[').next().unwrap_or(part);
        match node.get(name) {
            Some(child) => node = child,
            None => break,
        }
    }
    node.span
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// `validateWebhook` of Kubernetes' `pkg/apis/admissionregistration/validation`, for one webhook.
fn webhook_causes(webhook: &Value, index: usize, mutating: bool, names: &mut HashSet<String>) -> Vec<Cause> {
    let at = |field: &str| format!("webhooks[{index}].{field}");
    let mut causes = Vec::new();
    let name = text(webhook, "name").unwrap_or_default();
    if name.is_empty() {
        causes.push(field_error::required(at("name"), ""));
    } else if let Some(why) = crate::names::dns1123_subdomain(name).first() {
        causes.push(field_error::invalid(at("name"), &json!(name), why));
    } else if name.split('.').count() < 3 {
        let why = "should be a domain with at least three segments separated by dots";
        causes.push(field_error::invalid(at("name"), &json!(name), why));
    } else if !names.insert(name.to_string()) {
        causes.push(field_error::duplicate(at("name"), &json!(name)));
    }
    let config = webhook.get("clientConfig").cloned().unwrap_or(Value::Null);
    match (config.get("url").filter(|u| !u.is_null()), config.get("service").filter(|s| !s.is_null())) {
        (Some(_), Some(_)) | (None, None) => {
            causes.push(field_error::required(at("clientConfig"), "exactly one of url or service is required"));
        }
        (Some(url), None) => {
            let text = url.as_str().unwrap_or_default();
            if !text.starts_with("https://") {
                causes.push(field_error::invalid(
                    at("clientConfig.url"),
                    url,
                    "'https' is the only allowed URL scheme",
                ));
            }
        }
        (None, Some(service)) => {
            if text(service, "name").is_none_or(str::is_empty) {
                causes.push(field_error::required(at("clientConfig.service.name"), "service name is required"));
            }
            if text(service, "namespace").is_none_or(str::is_empty) {
                causes
                    .push(field_error::required(at("clientConfig.service.namespace"), "service namespace is required"));
            }
            if let Some(path) = text(service, "path")
                && !path.is_empty()
                && !path.starts_with('/')
            {
                causes.push(field_error::invalid(
                    at("clientConfig.service.path"),
                    &json!(path),
                    "must start with a '/'",
                ));
            }
            if let Some(port) = service.get("port").and_then(Value::as_i64)
                && !(1..=65535).contains(&port)
            {
                causes.push(field_error::invalid(
                    at("clientConfig.service.port"),
                    &json!(port),
                    "port is not valid: must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
    match webhook.get("sideEffects").filter(|v| !v.is_null()) {
        None => causes.push(field_error::required(at("sideEffects"), "must specify one of None, NoneOnDryRun")),
        Some(value) if !matches!(value.as_str(), Some("None" | "NoneOnDryRun")) => {
            causes.push(field_error::not_supported(at("sideEffects"), value, &["None", "NoneOnDryRun"]));
        }
        Some(_) => {}
    }
    let versions = crate::object::json_strings(webhook, "/admissionReviewVersions");
    if versions.is_empty() {
        causes.push(field_error::required(at("admissionReviewVersions"), "must specify one of v1, v1beta1"));
    } else if !versions.iter().any(|v| matches!(v.as_str(), "v1" | "v1beta1")) {
        causes.push(field_error::invalid(
            at("admissionReviewVersions"),
            &json!(versions),
            "must include at least one of v1, v1beta1",
        ));
    }
    if let Some(seconds) = webhook.get("timeoutSeconds").and_then(Value::as_i64)
        && !(1..=30).contains(&seconds)
    {
        causes.push(field_error::invalid(
            at("timeoutSeconds"),
            &json!(seconds),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    let mut enumerated =
        vec![("failurePolicy", &["Fail", "Ignore"][..]), ("matchPolicy", &["Equivalent", "Exact"][..])];
    if mutating {
        enumerated.push(("reinvocationPolicy", &["IfNeeded", "Never"][..]));
    }
    for (field, supported) in enumerated {
        if let Some(value) = webhook.get(field).filter(|v| !v.is_null())
            && !value.as_str().is_some_and(|v| supported.contains(&v))
        {
            causes.push(field_error::not_supported(at(field), value, supported));
        }
    }
    for (r, rule) in webhook.get("rules").and_then(Value::as_array).into_iter().flatten().enumerate() {
        for field in ["apiGroups", "apiVersions", "resources"] {
            if rule.get(field).and_then(Value::as_array).is_none_or(Vec::is_empty) {
                causes.push(field_error::required(at(&format!("rules[{r}].{field}")), ""));
            }
        }
        let operations = rule.get("operations").and_then(Value::as_array).cloned().unwrap_or_default();
        if operations.is_empty() {
            causes.push(field_error::required(at(&format!("rules[{r}].operations")), ""));
        } else if operations.len() > 1 && operations.iter().any(|o| o == "*") {
            causes.push(field_error::invalid(
                at(&format!("rules[{r}].operations")),
                &json!(operations),
                "if '*' is present, must not specify other operations",
            ));
        }
        for (o, operation) in operations.iter().enumerate() {
            if !operation.as_str().is_some_and(|op| OPERATIONS.contains(&op)) {
                causes.push(field_error::not_supported(
                    at(&format!("rules[{r}].operations[{o}]")),
                    operation,
                    OPERATIONS,
                ));
            }
        }
        if let Some(scope) = rule.get("scope").filter(|v| !v.is_null())
            && !matches!(scope.as_str(), Some("*" | "Cluster" | "Namespaced"))
        {
            causes.push(field_error::not_supported(
                at(&format!("rules[{r}].scope")),
                scope,
                &["*", "Cluster", "Namespaced"],
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(webhook: Value, mutating: bool) -> Vec<String> {
        webhook_causes(&webhook, 0, mutating, &mut HashSet::new())
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn webhooks_are_refused_in_kubernetes_words() {
        let good = json!({"name": "v.example.com", "clientConfig": {"url": "https://h/x"}, "sideEffects": "None",
                          "admissionReviewVersions": ["v1"], "rules": [{"operations": ["CREATE"], "scope": "*",
                          "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]});
        assert!(messages(good, true).is_empty());
        let bad = json!({"name": "guard", "clientConfig": {"url": "http://h/x"}, "sideEffects": "Some",
                         "admissionReviewVersions": ["v2"], "timeoutSeconds": 31, "failurePolicy": "Sometimes",
                         "reinvocationPolicy": "Always", "rules": [{"operations": ["READ"], "scope": "Everywhere",
                         "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]});
        assert_eq!(
            messages(bad, true),
            [
                r#"webhooks[0].name: Invalid value: "guard": should be a domain with at least three segments separated by dots"#,
                r#"webhooks[0].clientConfig.url: Invalid value: "http://h/x": 'https' is the only allowed URL scheme"#,
                r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#,
                r#"webhooks[0].admissionReviewVersions: Invalid value: []interface {}{"v2"}: must include at least one of v1, v1beta1"#,
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
                r#"webhooks[0].failurePolicy: Unsupported value: "Sometimes": supported values: "Fail", "Ignore""#,
                r#"webhooks[0].reinvocationPolicy: Unsupported value: "Always": supported values: "IfNeeded", "Never""#,
                r#"webhooks[0].rules[0].operations[0]: Unsupported value: "READ": supported values: "*", "CONNECT", "CREATE", "DELETE", "UPDATE""#,
                r#"webhooks[0].rules[0].scope: Unsupported value: "Everywhere": supported values: "*", "Cluster", "Namespaced""#,
            ]
        );
        assert_eq!(
            messages(json!({"name": "a.b.c"}), false),
            [
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
                "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
                "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
            ]
        );
    }
}
