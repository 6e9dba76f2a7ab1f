use crate::diagnostic::Code;
use crate::object::GroupVersionKind;
use crate::rules::{Finding, ObjectContext};
use crate::yaml::Node;

rule! {
    /// Reference to an API version the cluster does not serve
    ///
    /// An object can name another by apiVersion and kind: an HorizontalPodAutoscaler's scaleTargetRef and the
    /// objects its metrics describe, owner references, any custom resource's target. The API server stores such a
    /// reference without checking it, and the controller that follows it fails at run time: an autoscaler whose
    /// target is apps/v1beta1 Deployment never scales ("no matches for kind Deployment in version apps/v1beta1").
    /// Built-in API versions only; references to custom resources defined elsewhere are left alone.
    ///
    /// Fix: Name the version the cluster serves (apps/v1 for Deployments, StatefulSets and ReplicaSets).
    "api/removed-reference", Error, Object(check)
}

/// Every mapping below the root that holds both `apiVersion` and `kind` is a reference to
/// an object of that kind (or an object embedded whole): either way the version must be
/// one the cluster serves.
fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for (key, child) in context.node.as_map().unwrap_or_default().iter().map(|e| (e.key.name.as_str(), &e.value)) {
        if !matches!(key, "apiVersion" | "kind") {
            walk(context, child, key.to_string(), out);
        }
    }
}

fn walk(context: &ObjectContext<'_>, node: &Node, path: String, out: &mut Vec<Finding>) {
    if let Some(seq) = node.as_seq() {
        for (i, item) in seq.iter().enumerate() {
            walk(context, item, format!("{path}[{i}]"), out);
        }
        return;
    }
    let Some(map) = node.as_map() else { return };
    let api_version = node.entry("apiVersion").and_then(|e| Some((e.value.as_str()?, e.value.span)));
    let kind = node.get("kind").and_then(Node::as_str);
    if let (Some((api_version, span)), Some(kind)) = (api_version, kind) {
        check_reference(context, GroupVersionKind::from_api_version(api_version, kind), span, &path, out);
    }
    for entry in map {
        walk(context, &entry.value, format!("{path}.{}", entry.key.name), out);
    }
}

fn check_reference(
    context: &ObjectContext<'_>,
    gvk: GroupVersionKind,
    span: crate::source::Span,
    path: &str,
    out: &mut Vec<Finding>,
) {
    if gvk.version.is_empty() || gvk.kind.is_empty() || !gvk.is_builtin_group() {
        return;
    }
    if !matches!(context.catalog.lookup(&gvk), crate::schema::Lookup::Missing) {
        return;
    }
    let missing = context.catalog.explain_missing(&gvk);
    // Only what is known not to be served: a removed version, or a built-in kind under
    // a version of its group that never served it. An unknown kind may be anyone's.
    if missing.custom || missing.blames_kind || !matches!(missing.code, Code::RemovedApi | Code::UnknownKind) {
        return;
    }
    if missing.code == Code::UnknownKind && context.catalog.api_versions_for(&gvk.kind).is_empty() {
        return;
    }
    out.push(
        Finding::new(&RULE, span, format!("{path}: {}", missing.message))
            .label("not served")
            .help(missing.help)
            .path(format!("{path}.apiVersion")),
    );
}
