//! ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`) as the API server applies
//! it: which requests a policy and its binding match (`matchConstraints`,
//! `matchResources`: resource rules, exclusions, object and namespace selectors), and what
//! its CEL says about one (`matchConditions`, `variables`, `validations`), with
//! Kubernetes' messages. Evaluation is the `cel` crate with Kubernetes' libraries
//! (kube-rs's `kube-cel`), as for CRDs' rules. The API server (`harness/src/apiserver/
//! policies.rs`) finds the policies, looks up params and namespaces, and turns the
//! verdicts into a refusal or warnings per the binding's `validationActions`.

use crate::selector::Selector;
use kube_cel::KubeCelExt;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

/// One request, as a policy sees it.
pub struct Request<'a> {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    /// The resource's group and version (what rules' `apiGroups` and `apiVersions` match).
    pub group: &'a str,
    pub version: &'a str,
    /// The kind of the object sent, which for a subresource need not be the resource's.
    pub kind: Kind<'a>,
    /// The resource's plural (`deployments`), and its subresource if any.
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// The request's namespace, for `namespaceSelector` and `namespaceObject`.
    pub namespace_object: Option<&'a Value>,
    pub username: &'a str,
    pub dry_run: bool,
}

/// A request's `kind`: the resource's own (`apps/v1 Deployment`), or a subresource's
/// where it takes another object (`pods/binding`: `v1 Binding`; `pods/eviction`:
/// `policy/v1 Eviction`), as Kubernetes' admission attributes carry it. A borrowed
/// `object::GroupVersionKind`: one is made for every admitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
}

/// A validation that did not hold, or an expression that could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// `Invalid` (422), `Forbidden` (403), `Unauthorized` (401), `RequestEntityTooLarge`.
    pub reason: String,
    /// An expression failed to compile or run (the policy's `failurePolicy` decides).
    pub error: bool,
}

/// Whether `match_resources` (a policy's `matchConstraints` or a binding's
/// `matchResources`) takes the request. An absent section takes everything.
pub fn matches(match_resources: Option<&Value>, request: &Request<'_>) -> bool {
    let Some(section) = match_resources else { return true };
    if !matches_resource(Some(section), request) {
        return false;
    }
    if let Some(selector) = section.get("objectSelector") {
        // As Kubernetes' `matchObject`: an absent object (the old one of a create, the
        // new one of a delete) matches no selector, not even one that wants no label.
        let selects = |object: Option<&Value>| {
            object.is_some_and(|object| {
                let labels = labels_of(object.pointer("/metadata/labels"));
                Selector::from_label_selector(Some(selector)).is_ok_and(|s| s.matches(&labels))
            })
        };
        if !selects(request.object) && !selects(request.old_object) {
            return false;
        }
    }
    if let Some(selector) = section.get("namespaceSelector") {
        // A Namespace is matched by its own labels (the old one's on a delete); another
        // cluster-scoped object by none, as Kubernetes' namespace matcher has it.
        let namespace =
            if request.group.is_empty() && request.resource == "namespaces" && request.subresource.is_empty() {
                request.object.or(request.old_object)
            } else if !request.namespace.is_empty() {
                request.namespace_object
            } else {
                return true;
            };
        let labels = labels_of(namespace.and_then(|n| n.pointer("/metadata/labels")));
        if !Selector::from_label_selector(Some(selector)).is_ok_and(|s| s.matches(&labels)) {
            return false;
        }
    }
    true
}

/// Whether a section's resource rules take the request, selectors aside: what can be
/// decided before the request's namespace is read.
pub fn matches_resource(match_resources: Option<&Value>, request: &Request<'_>) -> bool {
    let Some(section) = match_resources else { return true };
    let rules = section.get("resourceRules").and_then(Value::as_array);
    if let Some(rules) = rules
        && !rules.iter().any(|rule| rule_matches(rule, request))
    {
        return false;
    }
    let excluded = section.get("excludeResourceRules").and_then(Value::as_array);
    !excluded.into_iter().flatten().any(|r| rule_matches(r, request))
}

fn labels_of(labels: Option<&Value>) -> BTreeMap<String, String> {
    labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect()
}

fn listed(rule: &Value, key: &str, value: &str) -> bool {
    rule.get(key).and_then(Value::as_array).is_some_and(|items| items.iter().any(|i| i == "*" || i == value))
}

fn rule_matches(rule: &Value, request: &Request<'_>) -> bool {
    // As Kubernetes matches them: `pods` is the main resource only, `pods/*` it and its
    // subresources, `*` every main resource, `*/*` everything, `*/status` every status.
    let resources = rule.get("resources").and_then(Value::as_array);
    let resource_listed = resources.is_some_and(|items| {
        items.iter().filter_map(Value::as_str).any(|r| {
            let (main, sub) = r.split_once('/').unwrap_or((r, ""));
            (main == "*" || main == request.resource) && (sub == "*" || sub == request.subresource)
        })
    });
    let named = rule
        .get("resourceNames")
        .and_then(Value::as_array)
        .is_none_or(|names| names.is_empty() || names.iter().any(|n| n.as_str() == Some(request.name)));
    let scope = match rule.get("scope").and_then(Value::as_str) {
        Some("Cluster") => request.namespace.is_empty(),
        Some("Namespaced") => !request.namespace.is_empty(),
        _ => true,
    };
    listed(rule, "apiGroups", request.group)
        && listed(rule, "apiVersions", request.version)
        && listed(rule, "operations", request.operation)
        && resource_listed
        && named
        && scope
}

/// A JSON value as CEL sees it (integers as `int`).
pub fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<Key, Cel> =
                map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            Cel::Map(Map { map: Arc::new(map) })
        }
    }
}

fn map_of(entries: Vec<(&str, Cel)>) -> Cel {
    let map: HashMap<Key, Cel> = entries.into_iter().map(|(k, v)| (Key::String(Arc::new(k.to_string())), v)).collect();
    Cel::Map(Map { map: Arc::new(map) })
}

fn text(value: &str) -> Cel {
    Cel::String(Arc::new(value.to_string()))
}

fn request_value(request: &Request<'_>) -> Cel {
    let kind = &request.kind;
    let gvk = map_of(vec![("group", text(kind.group)), ("version", text(kind.version)), ("kind", text(kind.kind))]);
    let gvr = map_of(vec![
        ("group", text(request.group)),
        ("version", text(request.version)),
        ("resource", text(request.resource)),
    ]);
    map_of(vec![
        ("operation", text(request.operation)),
        ("name", text(request.name)),
        ("namespace", text(request.namespace)),
        ("kind", gvk.clone()),
        ("resource", gvr.clone()),
        ("requestKind", gvk),
        ("requestResource", gvr),
        ("subResource", text(request.subresource)),
        ("dryRun", Cel::Bool(request.dry_run)),
        ("userInfo", map_of(vec![("username", text(request.username))])),
    ])
}

/// Programs compiled on this thread, by their text: a policy's or a webhook's
/// expressions are parsed once, not on every request. Bounded: past `PROGRAMS` texts
/// (policies rewritten many times) it starts again.
const PROGRAMS: usize = 4096;

thread_local! {
    static COMPILED: std::cell::RefCell<HashMap<String, Rc<Program>>> = std::cell::RefCell::new(HashMap::new());
}

fn compiled(text: &str) -> Result<Rc<Program>, String> {
    if let Some(program) = COMPILED.with(|cache| cache.borrow().get(text).cloned()) {
        return Ok(program);
    }
    let program = Rc::new(Program::compile(text).map_err(|e| format!("compilation failed: {e}"))?);
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= PROGRAMS {
            cache.clear();
        }
        cache.insert(text.to_string(), Rc::clone(&program));
    });
    Ok(program)
}

fn run(program: &str, context: &Context<'_>) -> Result<Cel, String> {
    compiled(program)?.execute(context).map_err(|e| e.to_string())
}

/// What a policy says about a request: the validations that did not hold (empty when
/// every one holds, or when a `matchCondition` leaves the request out). `params` is the
/// binding's parameter object, if the policy has `paramKind`.
pub fn evaluate(policy: &Value, request: &Request<'_>, params: Option<&Value>) -> Vec<Failure> {
    BASE.with(|base| evaluate_in(base, policy, request, params))
}

// Kubernetes' libraries are registered once per thread; each request gets a scope.
thread_local! {
    static BASE: Context<'static> = {
        let mut base = Context::default();
        base.register_all();
        base
    };
}

/// The variables every admission expression sees. Deleting, there is no object:
/// `object` is null; creating, `oldObject` is.
fn request_scope<'a>(base: &'a Context<'_>, request: &Request<'_>, params: Option<&Value>) -> Context<'a> {
    let mut context = base.new_inner_scope();
    context.add_variable_from_value("object", request.object.map_or(Cel::Null, to_cel));
    context.add_variable_from_value("oldObject", request.old_object.map_or(Cel::Null, to_cel));
    context.add_variable_from_value("request", request_value(request));
    context.add_variable_from_value("params", params.map_or(Cel::Null, to_cel));
    context.add_variable_from_value("namespaceObject", request.namespace_object.map_or(Cel::Null, to_cel));
    context
}

/// Whether every one of `conditions` (a policy's or an admission webhook's
/// `matchConditions`) holds; why not, when one cannot be evaluated.
pub fn match_conditions(conditions: Option<&Value>, request: &Request<'_>) -> Result<bool, String> {
    BASE.with(|base| conditions_hold(conditions, &request_scope(base, request, None)))
}

fn conditions_hold(conditions: Option<&Value>, context: &Context<'_>) -> Result<bool, String> {
    for condition in conditions.and_then(Value::as_array).into_iter().flatten() {
        let expression = condition.get("expression").and_then(Value::as_str).unwrap_or_default();
        match run(expression, context) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => return Ok(false),
            Ok(_) => return Err(format!("matchCondition {expression}: must evaluate to bool")),
            Err(why) => return Err(format!("matchCondition {expression}: {why}")),
        }
    }
    Ok(true)
}

fn evaluate_in(base: &Context<'_>, policy: &Value, request: &Request<'_>, params: Option<&Value>) -> Vec<Failure> {
    let spec = policy.get("spec").cloned().unwrap_or(Value::Null);
    let mut context = request_scope(base, request, params);
    let error = |message: String| vec![Failure { message, reason: "Invalid".into(), error: true }];
    // Match conditions first: a request they leave out is not looked at further.
    match conditions_hold(spec.get("matchConditions"), &context) {
        Ok(true) => {}
        Ok(false) => return Vec::new(),
        Err(message) => return error(message),
    }
    // Variables, in order: each may read the ones before it. One that fails fails only the
    // validations that read it (Kubernetes evaluates them lazily).
    let mut variables: Vec<(String, Cel)> = Vec::new();
    let mut broken: Vec<(String, String)> = Vec::new();
    let known = |variables: &[(String, Cel)]| map_of(variables.iter().map(|(k, v)| (k.as_str(), v.clone())).collect());
    for variable in spec.get("variables").and_then(Value::as_array).into_iter().flatten() {
        let name = variable.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let expression = variable.get("expression").and_then(Value::as_str).unwrap_or_default();
        let value = {
            let mut scope = context.new_inner_scope();
            scope.add_variable_from_value("variables", known(&variables));
            run(expression, &scope)
        };
        match value {
            Ok(value) => variables.push((name, value)),
            Err(why) => broken.push((name, why)),
        }
    }
    context.add_variable_from_value("variables", known(&variables));
    let mut failures = Vec::new();
    for validation in spec.get("validations").and_then(Value::as_array).into_iter().flatten() {
        let expression = validation.get("expression").and_then(Value::as_str).unwrap_or_default();
        let reason = validation.get("reason").and_then(Value::as_str).unwrap_or("Invalid").to_string();
        // An expression that cannot be evaluated has no reason of its own: 422.
        let failed = |why: String| Failure {
            message: format!("expression '{expression}' resulted in error: {why}"),
            reason: "Invalid".into(),
            error: true,
        };
        if let Some((name, why)) = broken.iter().find(|(name, _)| expression.contains(&format!("variables.{name}"))) {
            failures.push(failed(format!("variable {name}: {why}")));
            continue;
        }
        match run(expression, &context) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => {
                failures.push(Failure { message: message(validation, expression, &context), reason, error: false });
            }
            Ok(_) => failures.push(failed("must evaluate to bool".into())),
            Err(why) => failures.push(failed(why)),
        }
    }
    failures
}

/// `messageExpression`'s result when it is usable (trimmed, one line, at most 5 KiB, not
/// empty), else `message`, else `failed expression: <expression>`.
fn message(validation: &Value, expression: &str, context: &Context<'_>) -> String {
    if let Some(dynamic) = validation.get("messageExpression").and_then(Value::as_str)
        && let Ok(Cel::String(text)) = run(dynamic, context)
    {
        let trimmed = text.trim();
        if !trimmed.is_empty() && !trimmed.contains('\n') && trimmed.len() <= 5 * 1024 {
            return trimmed.to_string();
        }
    }
    match validation.get("message").and_then(Value::as_str) {
        Some(message) if !message.trim().is_empty() => message.to_string(),
        _ => format!("failed expression: {}", expression.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(object: &'a Value, namespace: Option<&'a Value>) -> Request<'a> {
        Request {
            operation: "CREATE",
            group: "apps",
            version: "v1",
            kind: Kind { group: "apps", version: "v1", kind: "Deployment" },
            resource: "deployments",
            subresource: "",
            name: "web",
            namespace: "default",
            object: Some(object),
            old_object: None,
            namespace_object: namespace,
            username: "tester",
            dry_run: false,
        }
    }

    fn policy() -> Value {
        json!({"spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                     "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
            "variables": [{"name": "replicas", "expression": "object.spec.replicas"}],
            "matchConditions": [{"name": "not-system", "expression": "request.namespace != 'kube-system'"}],
            "validations": [
                {"expression": "variables.replicas <= 5", "messageExpression": "'replicas ' + string(variables.replicas) + ' > 5'"},
                {"expression": "has(object.metadata.labels) && 'team' in object.metadata.labels", "reason": "Forbidden"},
            ]
        }})
    }

    #[test]
    fn a_namespace_is_matched_by_its_own_labels() {
        let namespace = json!({"metadata": {"name": "prod", "labels": {"env": "prod"}}});
        let mut request = request(&namespace, None);
        (request.group, request.version, request.kind, request.resource, request.namespace) =
            ("", "v1", Kind { group: "", version: "v1", kind: "Namespace" }, "namespaces", "");
        let prod = json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}});
        let dev = json!({"namespaceSelector": {"matchLabels": {"env": "dev"}}});
        assert!(matches(Some(&prod), &request));
        assert!(!matches(Some(&dev), &request));
        // Other cluster-scoped objects are never left out by a namespace selector.
        request.resource = "nodes";
        assert!(matches(Some(&dev), &request));
    }

    #[test]
    fn rules_selectors_and_exclusions_decide_what_a_policy_sees() {
        let object = json!({"metadata": {"labels": {"tier": "web"}}, "spec": {"replicas": 1}});
        let namespace = json!({"metadata": {"labels": {"env": "prod"}}});
        let constraints = policy()["spec"]["matchConstraints"].clone();
        assert!(matches(Some(&constraints), &request(&object, Some(&namespace))));
        let mut pods = request(&object, Some(&namespace));
        pods.resource = "pods";
        assert!(!matches(Some(&constraints), &pods));
        let selective = json!({"namespaceSelector": {"matchLabels": {"env": "prod"}},
                               "objectSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}});
        assert!(matches(Some(&selective), &request(&object, Some(&namespace))));
        let elsewhere = json!({"metadata": {"labels": {"env": "dev"}}});
        assert!(!matches(Some(&selective), &request(&object, Some(&elsewhere))));
        let excluded = json!({"excludeResourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"],
                                                         "resources": ["deployments"], "resourceNames": ["web"]}]});
        assert!(!matches(Some(&excluded), &request(&object, None)));
        let mut status = request(&object, None);
        status.subresource = "status";
        let rule = |resources: Value| {
            json!({"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"],
                                                                 "operations": ["*"], "resources": resources}]})
        };
        assert!(!matches(Some(&rule(json!(["*"]))), &status), "`*` is main resources only");
        assert!(matches(Some(&rule(json!(["deployments/*"]))), &status));
        assert!(matches(Some(&rule(json!(["deployments/*"]))), &request(&object, None)));
        assert!(matches(Some(&rule(json!(["*/status"]))), &status));
        assert!(!matches(Some(&rule(json!(["deployments"]))), &status));
    }

    #[test]
    fn validations_say_why_in_kubernetes_words() {
        let object = json!({"metadata": {"name": "web"}, "spec": {"replicas": 9}});
        let failures = evaluate(&policy(), &request(&object, None), None);
        assert_eq!(
            failures,
            [
                Failure { message: "replicas 9 > 5".into(), reason: "Invalid".into(), error: false },
                Failure {
                    message: "failed expression: has(object.metadata.labels) && 'team' in object.metadata.labels"
                        .into(),
                    reason: "Forbidden".into(),
                    error: false
                },
            ]
        );
        let fine = json!({"metadata": {"name": "web", "labels": {"team": "a"}}, "spec": {"replicas": 2}});
        assert_eq!(evaluate(&policy(), &request(&fine, None), None), []);
        let mut system = request(&object, None);
        system.namespace = "kube-system";
        assert_eq!(evaluate(&policy(), &system, None), [], "a match condition leaves it out");
        let params = json!({"max": 3});
        let with_params = json!({"spec": {"validations": [{"expression": "object.spec.replicas <= params.max"}]}});
        assert_eq!(evaluate(&with_params, &request(&object, None), Some(&params)).len(), 1);
    }

    #[test]
    fn a_subresource_of_its_own_kind_is_that_kind_on_its_resource() {
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"}});
        let mut request = request(&eviction, None);
        (request.group, request.version, request.resource, request.subresource) = ("", "v1", "pods", "eviction");
        request.kind = Kind { group: "policy", version: "v1", kind: "Eviction" };
        let rule = |resources: Value| {
            json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                      "resources": resources}]})
        };
        // Rules match the resource's group and version, not the kind's.
        assert!(matches_resource(Some(&rule(json!(["pods/eviction"]))), &request));
        assert!(!matches_resource(Some(&rule(json!(["pods"]))), &request));
        let policy = json!({"spec": {"validations": [{
            "expression": "request.kind.group == 'policy' && request.kind.kind == 'Eviction' && \
                           request.resource.group == '' && request.resource.resource == 'pods' && \
                           request.subResource == 'eviction' && object.kind == 'Eviction'"
        }]}});
        assert_eq!(evaluate(&policy, &request, None), []);
    }
}
