use crate::diagnostic::Severity;
use crate::rules::{Check, Finding, Rule, SetContext};
use rustc_hash::FxHashMap as HashMap;

pub static RULE: Rule = Rule {
    id: "object/duplicate",
    name: "The same object defined twice",
    severity: Severity::Error,
    rationale: "Two documents with the same group, kind, namespace and name are one object: the second apply silently overwrites the first, so the result depends on file order. Namespace-less objects of namespaced kinds land in `default`, so they collide with objects written for it.",
    fix: "Remove one of them, or give them different names or namespaces.",
    check: Check::Set(check),
};

fn check(context: &SetContext<'_>, out: &mut Vec<(usize, Finding)>) {
    let mut first: HashMap<(&str, &str, Option<&str>, &str), usize> = HashMap::default();
    for (index, member) in context.members.iter().enumerate() {
        let Some(name) = member.info.name.as_deref() else { continue };
        let key = (member.info.gvk.group.as_str(), member.info.gvk.kind.as_str(), member.namespace.as_deref(), name);
        match first.get(&key) {
            None => {
                first.insert(key, index);
            }
            Some(&earlier) => {
                let other = &context.members[earlier];
                let at = other.source.line_col(other.span.start);
                let place = key.2.map_or(String::new(), |ns| format!(" in namespace {ns}"));
                out.push((
                    index,
                    Finding::new(
                        &RULE,
                        member.info.kind_span,
                        format!("{} \"{name}\"{place} is defined twice", member.info.gvk.kind),
                    )
                    .label("defined again here")
                    .help(format!(
                        "the first is at {}:{}:{}",
                        other.source.name(),
                        at.line,
                        at.column
                    )),
                ));
            }
        }
    }
}
