use crate::field_error::{self, go_quote};
use crate::normalize::resolve;
use crate::rules::{Finding, ObjectContext, join};
use crate::schema::enums;
use crate::source::Span;
use crate::yaml::{Node, Value};
use serde_json::Value as Json;

rule! {
    /// A value the API server does not support
    ///
    /// Many string fields take one of a fixed set of values (`imagePullPolicy`, a Service's `type`, a Deployment's
    /// `strategy.type`, a Job's `restartPolicy`). The published schemas list none of them, so schema validators
    /// (kubeconform among them) pass `imagePullPolicy: Allways`, and the API server refuses the object when it is
    /// applied, with the message this rule gives.
    ///
    /// Fix: Use one of the supported values the message lists (they are case-sensitive).
    "object/unsupported-value", Error, Object(check)
}

/// The workloads whose pods must restart always (Kubernetes' `ValidatePodTemplateSpecForReplicaSet` and kin).
const ALWAYS_RESTARTING: &[&str] = &["Deployment", "ReplicaSet", "ReplicationController", "DaemonSet", "StatefulSet"];

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let gvk = &context.info.gvk;
    let Some((root, definitions)) = context.catalog.builtin_definition(gvk) else { return };
    // Kubernetes does not validate a StatefulSet's pod template or claim templates (a TODO
    // in `ValidatePodTemplateSpecForStatefulSet`): their pods and claims are refused when
    // the controller creates them, not the StatefulSet.
    let stateful = gvk.group == "apps" && gvk.kind == "StatefulSet";
    let minor = context.catalog.version().minor;
    let mut walk = Walk { definitions, out, stateful, minor, path: Vec::new() };
    walk.node(root, context.catalog.builtin_name(gvk), context.node);
    workload(context, walk.out);
}

/// A step of a field path. Paths are kept as steps and written out only for a finding:
/// every object admitted is walked, most with nothing to say.
#[derive(Clone, Copy)]
enum Step<'n> {
    Key(&'n str),
    Index(usize),
}

/// A path kubectl style (`spec.containers[0].image`); `skip_last_index` leaves out the
/// index right before the last key, as some of Kubernetes' messages do
/// (`volumeMounts.mountPropagation`).
fn render(steps: &[Step<'_>], skip_last_index: bool) -> String {
    let mut out = String::new();
    let skipped = if skip_last_index && steps.len() >= 2 { Some(steps.len() - 2) } else { None };
    for (at, step) in steps.iter().enumerate() {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(_) if Some(at) == skipped => {}
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

struct Walk<'a, 'o, 'n> {
    definitions: &'a rustc_hash::FxHashMap<String, Json>,
    out: &'o mut Vec<Finding>,
    /// A StatefulSet: its templates are not looked under.
    stateful: bool,
    /// The Kubernetes version's minor: fields behind a gate it has off are not checked.
    minor: u32,
    /// Where the walk is.
    path: Vec<Step<'n>>,
}

impl<'a, 'n> Walk<'a, '_, 'n> {
    /// Walks `node` alongside its schema.
    fn node(&mut self, schema: &'a Json, definition: Option<&'a str>, node: &'n Node) {
        match &node.value {
            Value::Map(entries) => {
                let (resolved, name) = resolve(self.definitions, schema);
                let definition = name.or(definition);
                // Labels, annotations, data: maps of free values hold no enum.
                let Some(properties) = resolved.get("properties").and_then(Json::as_object) else { return };
                let top = self.path.is_empty();
                let in_spec = self.stateful && matches!(self.path.as_slice(), [Step::Key("spec")]);
                for entry in entries {
                    let key = entry.key.name.as_str();
                    // What the API server keeps of these is its own (status), or free text.
                    if (top && (key == "metadata" || key == "status"))
                        || (in_spec && (key == "template" || key == "volumeClaimTemplates"))
                    {
                        continue;
                    }
                    let Some(child) = properties.get(key) else { continue };
                    self.path.push(Step::Key(key));
                    if let Some(validated) = definition.and_then(|d| enums::validated_field(d, key))
                        && self.minor >= validated.since
                    {
                        self.field(validated, &entry.value);
                    }
                    self.node(child, None, &entry.value);
                    self.path.pop();
                }
            }
            Value::Seq(items) => {
                let (resolved, _) = resolve(self.definitions, schema);
                let Some(item) = resolved.get("items") else { return };
                for (index, node) in items.iter().enumerate() {
                    self.path.push(Step::Index(index));
                    self.node(item, None, node);
                    self.path.pop();
                }
            }
            _ => {}
        }
    }

    /// A checked field's value, or each item of a list of them (the walk is at the field).
    fn field(&mut self, validated: &enums::Validated, node: &Node) {
        let supported = validated.supported;
        match &node.value {
            Value::String(value) if !value.is_empty() && !supported.contains(&value.as_str()) => {
                let path = render(&self.path, validated.path_without_index);
                self.value(supported, value, node.span, &path);
            }
            Value::Seq(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let Value::String(value) = &item.value
                        && !value.is_empty()
                        && !supported.contains(&value.as_str())
                    {
                        let mut path = render(&self.path, false);
                        if !validated.path_without_index {
                            path.push_str(&format!("[{index}]"));
                        }
                        self.value(supported, value, item.span, &path);
                    }
                }
            }
            _ => {}
        }
    }

    fn value(&mut self, supported: &[&str], value: &str, span: Span, path: &str) {
        // Defaulting replaces the empty string first, or the field accepts it.
        if value.is_empty() || supported.contains(&value) {
            return;
        }
        self.out.push(unsupported(path, value, supported, span));
    }
}

fn unsupported(path: &str, value: &str, supported: &[&str], span: Span) -> Finding {
    let cause = field_error::not_supported(path, &Json::String(value.to_string()), supported);
    finding(path, &cause.message, span).help(did_you_mean(value, supported))
}

fn finding(path: &str, message: &str, span: Span) -> Finding {
    Finding::new(&RULE, span, format!("{path}: {message}")).label("not a supported value").path(path)
}

/// Where an absent `restartPolicy` would be written: the pod spec's first key.
fn pod_spec_start(spec: &Node) -> Span {
    match &spec.value {
        Value::Map(entries) => entries.first().map_or(spec.span, |e| e.key.span),
        _ => spec.span,
    }
}

/// `imagepullpolicy: always` is `Always`: the values are case-sensitive.
fn did_you_mean(value: &str, supported: &[&str]) -> String {
    match supported.iter().find(|s| s.eq_ignore_ascii_case(value)) {
        Some(close) => format!("did you mean \"{close}\"? The values are case-sensitive"),
        None => format!("use one of {}", supported.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")),
    }
}

/// A field of the object, by path from its root; `None` when absent or null.
fn node_at<'n>(node: &'n Node, path: &[&str]) -> Option<&'n Node> {
    path.iter().try_fold(node, |here, key| here.get(key)).filter(|n| !n.is_null())
}

/// A string field of the object, by path from its root, with its span.
fn string_at<'n>(node: &'n Node, path: &[&str]) -> Option<(&'n str, Span)> {
    let here = node_at(node, path)?;
    here.as_str().map(|s| (s, here.span))
}

/// The checks whose words or conditions are a kind's own.
fn workload(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let node = context.node;
    let kind = context.info.gvk.kind.as_str();
    let group = context.info.gvk.group.as_str();
    if let Some(template) = &context.template {
        let path = join(template.spec_path, "restartPolicy");
        let written = template.spec.get("restartPolicy");
        // Defaulting makes an absent or empty policy `Always`.
        let policy = written.and_then(Node::as_str).filter(|p| !p.is_empty()).unwrap_or("Always");
        let span = written.map_or_else(|| pod_spec_start(template.spec), |n| n.span);
        if ALWAYS_RESTARTING.contains(&kind) && policy != "Always" {
            let help = format!("a {kind}'s pods always restart: remove restartPolicy (or run the work as a Job)");
            out.push(unsupported(&path, policy, &["Always"], span).help(help));
        }
        if group == "batch" && (kind == "Job" || kind == "CronJob") {
            let valid = ["OnFailure", "Never"];
            if policy == "Always" {
                let cause = field_error::required(&path, "valid values: \"OnFailure\", \"Never\"");
                let label =
                    if written.is_some() { "not a supported value" } else { "no restartPolicy: it defaults to Always" };
                out.push(
                    finding(&path, &cause.message, span)
                        .label(label)
                        .help("a Job's pods must not restart always: set restartPolicy: OnFailure or Never"),
                );
            } else if !valid.contains(&policy) {
                out.push(unsupported(&path, policy, &valid, span));
            }
        }
    }
    match (group, kind) {
        ("apps", "Deployment") => strategy(node, "strategy", "DeploymentStrategy", "RollingUpdateDeployment", out),
        ("apps", "DaemonSet") => {
            strategy(node, "updateStrategy", "DaemonSetUpdateStrategy", "RollingUpdateDaemonSet", out)
        }
        ("apps", "StatefulSet") => {
            if let Some((policy, span)) = string_at(node, &["spec", "podManagementPolicy"])
                && !policy.is_empty()
                && policy != "OrderedReady"
                && policy != "Parallel"
            {
                let path = "spec.podManagementPolicy";
                let cause =
                    field_error::invalid(path, &Json::String(policy.into()), "must be 'OrderedReady' or 'Parallel'");
                out.push(finding(path, &cause.message, span).help(did_you_mean(policy, &["OrderedReady", "Parallel"])));
            }
            if let Some((kind, span)) = string_at(node, &["spec", "updateStrategy", "type"])
                && !kind.is_empty()
                && kind != "RollingUpdate"
                && kind != "OnDelete"
            {
                let path = "spec.updateStrategy";
                let value = go_struct(
                    node,
                    "updateStrategy",
                    "StatefulSetUpdateStrategy",
                    "RollingUpdateStatefulSetStrategy",
                    kind,
                );
                let message = format!("Invalid value: {value}: must be 'RollingUpdate' or 'OnDelete'");
                out.push(finding(path, &message, span).help(did_you_mean(kind, &["RollingUpdate", "OnDelete"])));
            }
        }
        // JobPodReplacementPolicy is on by default from 1.29.
        ("batch", "Job") | ("batch", "CronJob") if context.catalog.version().minor >= 29 => {
            let spec: &[&str] = if kind == "Job" { &["spec"] } else { &["spec", "jobTemplate", "spec"] };
            let mut at = spec.to_vec();
            at.push("podReplacementPolicy");
            if let Some((policy, span)) = string_at(node, &at) {
                let mut failure = spec.to_vec();
                failure.push("podFailurePolicy");
                // With a pod failure policy, a Job replaces failed pods only.
                let supported: &[&str] =
                    if node_at(node, &failure).is_some() { &["Failed"] } else { &["Failed", "TerminatingOrFailed"] };
                if !policy.is_empty() && !supported.contains(&policy) {
                    out.push(unsupported(&at.join("."), policy, supported, span));
                }
            }
        }
        ("", "Service") => {
            // An ExternalName Service may not set it at all (refused in other words).
            let external = string_at(node, &["spec", "type"]).is_some_and(|(t, _)| t == "ExternalName");
            let supported = ["PreferDualStack", "RequireDualStack", "SingleStack"];
            if let Some((policy, span)) = string_at(node, &["spec", "ipFamilyPolicy"])
                && !external
                && !policy.is_empty()
                && !supported.contains(&policy)
            {
                out.push(unsupported("spec.ipFamilyPolicy", policy, &supported, span));
            }
        }
        _ => {}
    }
}

/// A Deployment's or DaemonSet's strategy of an unknown type: refused as the whole
/// struct, as Go prints it (`apps.DeploymentStrategy{Type:"X", RollingUpdate:...}`).
fn strategy(node: &Node, field: &str, type_name: &str, rolling: &str, out: &mut Vec<Finding>) {
    let Some((kind, span)) = string_at(node, &["spec", field, "type"]) else { return };
    let supported: &[&str] =
        if type_name == "DeploymentStrategy" { &["Recreate", "RollingUpdate"] } else { &["RollingUpdate", "OnDelete"] };
    if kind.is_empty() || supported.contains(&kind) {
        return;
    }
    let path = format!("spec.{field}");
    let value = go_struct(node, field, type_name, rolling, kind);
    let listed: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    let message = format!("Unsupported value: {value}: supported values: {}", listed.join(", "));
    out.push(finding(&path, &message, span).help(did_you_mean(kind, supported)));
}

/// `apps.<Type>{Type:"X", RollingUpdate:(*apps.<Rolling>)(nil)}`: Go's `%#v` of the
/// strategy. A written `rollingUpdate` is a pointer, which Go prints as its address in
/// the server's memory: no client can know it, so a placeholder address stands in.
fn go_struct(node: &Node, field: &str, type_name: &str, rolling: &str, kind: &str) -> String {
    let written = node.get("spec").and_then(|s| s.get(field)).and_then(|s| s.get("rollingUpdate"));
    let pointer = if written.is_some_and(|n| !n.is_null()) { "0xc000000000" } else { "nil" };
    format!("apps.{type_name}{{Type:{}, RollingUpdate:(*apps.{rolling})({pointer})}}", go_quote(kind))
}
