//! RBAC's escalation check (`pkg/registry/rbac/validation`): a user may write a role, or
//! bind one, only with every permission it grants already held, unless allowed to
//! `escalate` (roles) or `bind` (bindings). The rules are broken into one verb, group and
//! resource (or URL) each, every piece must be covered by a rule the user holds, and the
//! pieces that are not are named in Kubernetes' words.

use super::{User, strings};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A rule broken into pieces of one group, resource and verb (and one name when it names
/// resources), or one URL and verb (`BreakdownRule`).
fn breakdown(rule: &Value) -> Vec<Value> {
    let (groups, resources, verbs) = (strings(rule, "apiGroups"), strings(rule, "resources"), strings(rule, "verbs"));
    let names = strings(rule, "resourceNames");
    let mut pieces = Vec::new();
    for group in &groups {
        for resource in &resources {
            for verb in &verbs {
                if names.is_empty() {
                    pieces.push(json!({"apiGroups": [group], "resources": [resource], "verbs": [verb]}));
                }
                for name in &names {
                    pieces.push(
                        json!({"apiGroups": [group], "resources": [resource], "resourceNames": [name], "verbs": [verb]}),
                    );
                }
            }
        }
    }
    for url in strings(rule, "nonResourceURLs") {
        for verb in &verbs {
            pieces.push(json!({"nonResourceURLs": [url], "verbs": [verb]}));
        }
    }
    pieces
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| set.contains(w))
}

/// `resourceCoversAll`: `*`, the resource itself, or `*/<subresource>`.
fn resources_cover(set: &[String], wanted: &[String]) -> bool {
    if set.iter().any(|r| r == "*") || has_all(set, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        set.contains(path) || path.split_once('/').is_some_and(|(_, sub)| set.contains(&format!("*/{sub}")))
    })
}

/// `nonResourceURLsCoversAll`: the URL itself, or a prefix ending in `*` (every trailing
/// `*` trimmed, as `TrimRight` does).
fn urls_cover(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|path| {
        set.iter().any(|owner| owner == path || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*'))))
    })
}

/// `ruleCovers`.
fn covers(owner: &Value, piece: &Value) -> bool {
    let owner_verbs = strings(owner, "verbs");
    let owner_groups = strings(owner, "apiGroups");
    let (owner_names, names) = (strings(owner, "resourceNames"), strings(piece, "resourceNames"));
    let names_match = owner_names.is_empty() || (!names.is_empty() && has_all(&owner_names, &names));
    (owner_verbs.iter().any(|v| v == "*") || has_all(&owner_verbs, &strings(piece, "verbs")))
        && (owner_groups.iter().any(|g| g == "*") || has_all(&owner_groups, &strings(piece, "apiGroups")))
        && resources_cover(&strings(owner, "resources"), &strings(piece, "resources"))
        && urls_cover(&strings(owner, "nonResourceURLs"), &strings(piece, "nonResourceURLs"))
        && names_match
}

/// The pieces of `granted` that no rule of `held` covers, compacted as Kubernetes prints
/// them: one rule per group, resource and name with all its verbs (`CompactRules`).
pub fn not_held(held: &[Value], granted: &[Value]) -> Vec<Value> {
    let mut missing: Vec<Value> = Vec::new();
    for piece in granted.iter().flat_map(breakdown) {
        if held.iter().any(|owner| covers(owner, &piece)) {
            continue;
        }
        let simple = strings(&piece, "nonResourceURLs").is_empty();
        let same = missing.iter_mut().find(|m| {
            simple
                && m["apiGroups"] == piece["apiGroups"]
                && m["resources"] == piece["resources"]
                && m.get("resourceNames") == piece.get("resourceNames")
        });
        match (same, piece["verbs"][0].clone()) {
            (Some(rule), verb) => {
                if let Some(verbs) = rule["verbs"].as_array_mut() {
                    verbs.push(verb);
                }
            }
            (None, _) => missing.push(piece),
        }
    }
    missing
}

/// `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}`.
pub fn compact_string(rule: &Value) -> String {
    let quoted = |key: &str| {
        let items: Vec<String> = strings(rule, key).iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", items.join(" "))
    };
    let mut parts = Vec::new();
    for (key, shown) in [
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ] {
        if !strings(rule, key).is_empty() {
            parts.push(format!("{shown}:{}", quoted(key)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Why a write that would grant `missing` is refused (`ConfirmNoEscalation`), after
/// `<resource> "<name>" is forbidden: `.
pub fn escalation_message(user: &User, missing: &[Value]) -> String {
    let described: BTreeSet<String> = missing.iter().map(compact_string).collect();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        described.into_iter().collect::<Vec<_>>().join("\n")
    )
}

/// Everything, which only a cluster administrator holds: what an aggregated ClusterRole
/// may come to grant.
pub fn full_authority() -> Vec<Value> {
    vec![
        json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
        json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
    ]
}

/// The refusal of an aggregated ClusterRole written by someone short of that.
pub const AGGREGATION_NEEDS_ADMIN: &str = "must have cluster-admin privileges to use the aggregationRule";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_rules_cover_what_they_grant_and_no_more() {
        let held = vec![
            json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}),
            json!({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}),
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]}),
            json!({"apiGroups": ["batch"], "resources": ["*/status"], "verbs": ["get"]}),
            json!({"nonResourceURLs": ["/healthz*"], "verbs": ["get"]}),
        ];
        let granted = |rule: Value| not_held(&held, &[rule]);
        assert!(granted(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})).is_empty());
        assert!(
            granted(json!({"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]})).is_empty()
        );
        assert!(granted(json!({"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]})).is_empty());
        assert!(granted(json!({"nonResourceURLs": ["/healthz/ready"], "verbs": ["get"]})).is_empty());
        assert!(
            granted(
                json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]})
            )
            .is_empty()
        );
        // A rule naming one ConfigMap does not cover them all.
        let all = granted(json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}));
        assert_eq!(all.len(), 1);
        let missing =
            granted(json!({"apiGroups": ["", "apps"], "resources": ["pods", "secrets"], "verbs": ["get", "delete"]}));
        let shown: Vec<String> = missing.iter().map(compact_string).collect();
        assert_eq!(
            shown,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}"#,
            ]
        );
    }

    #[test]
    fn the_refusal_reads_as_kubernetes_words_it() {
        let user = User {
            name: "system:serviceaccount:shop:ci".into(),
            uid: String::new(),
            groups: vec!["system:serviceaccounts".into(), "system:authenticated".into()],
        };
        let missing = not_held(&[], &[json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]})]);
        assert_eq!(
            escalation_message(&user, &missing),
            "user \"system:serviceaccount:shop:ci\" (groups=[\"system:serviceaccounts\" \"system:authenticated\"]) is \
             attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
        );
        assert!(not_held(&full_authority(), &full_authority()).is_empty());
    }
}
