use crate::rules::{Finding, SetContext};
use rustc_hash::FxHashMap as HashMap;

rule! {
    /// The same object defined twice
    ///
    /// Two documents with the same group, kind, namespace and name are one object: the second apply silently
    /// overwrites the first, so the result depends on file order. Namespace-less objects of namespaced kinds land in
    /// `default`, so they collide with objects written for it.
    ///
    /// Fix: Remove one of them, or give them different names or namespaces.
    "object/duplicate", Error, Set(check)
}

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
