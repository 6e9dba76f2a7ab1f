use crate::rules::{Finding, ObjectContext};
use crate::yaml::Node;

rule! {
    /// Secret-looking value written in a plain environment variable
    ///
    /// A variable named like a credential (`*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*_KEY`) with a literal `value` puts
    /// the credential in the manifest, in every copy of it, in the object the API server stores (readable by whoever
    /// may read the workload) and in `kubectl describe`. A Secret keeps it out of all of them.
    ///
    /// Fix: Move the value into a Secret and read it with env[].valueFrom.secretKeyRef (or envFrom.secretRef).
    "pod/env-var-secret", Warning, Object(check)
}

/// Whether a variable's name says it holds a credential: one of its words (split at `_`,
/// `-` and `.`) is a credential word, as kube-linter's `env-var-secret` reads names.
pub(crate) fn looks_secret(name: &str) -> bool {
    name.split(['_', '-', '.']).any(|word| {
        let word = word.to_ascii_uppercase();
        matches!(
            word.as_str(),
            "PASSWORD"
                | "PASSWD"
                | "PASS"
                | "PWD"
                | "SECRET"
                | "TOKEN"
                | "KEY"
                | "APIKEY"
                | "CREDENTIAL"
                | "CREDENTIALS"
        ) || word.ends_with("PASSWORD")
            || word.ends_with("SECRET")
            || word.ends_with("TOKEN")
    })
}

/// Values that are no credential whatever the name: empty, a file path (where a mounted
/// Secret is), or only `$(VAR)` references to other variables.
fn harmless(value: &str) -> bool {
    let trimmed = value.trim();
    trimmed.is_empty()
        || trimmed.starts_with('/')
        || (trimmed.starts_with("$(") && trimmed.ends_with(')') && !trimmed[2..].contains('$'))
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    for container in context.containers() {
        let Some(env) = container.node.get("env").and_then(Node::as_seq) else { continue };
        for (index, variable) in env.iter().enumerate() {
            let (Some(name), Some(entry)) = (variable.get("name").and_then(Node::as_str), variable.entry("value"))
            else {
                continue;
            };
            let Some(value) = entry.value.as_str() else { continue };
            if !looks_secret(name) || harmless(value) {
                continue;
            }
            out.push(
                Finding::new(&RULE, entry.value.span, format!("environment variable {name} holds a literal secret"))
                    .label("written in the manifest")
                    .help(format!(
                        "put it in a Secret and use valueFrom: {{secretKeyRef: {{name: <secret>, key: {}}}}}",
                        name.to_lowercase().replace('_', "-")
                    ))
                    .path(format!("{}.env[{index}].value", container.path)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_words_are_found_in_names_and_harmless_values_pass() {
        for name in ["DB_PASSWORD", "api-key", "GITHUB_TOKEN", "SECRET", "client.secret", "MYSQL_ROOT_PASSWORD"] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["KEYCLOAK_URL", "MONKEY", "PASSAGE", "TOKENIZER_MODEL", "LOG_LEVEL", "PORT"] {
            assert!(!looks_secret(name), "{name}");
        }
        assert!(harmless("") && harmless("/var/run/secrets/token") && harmless("$(DB_PASSWORD_FROM_SECRET)"));
        assert!(!harmless("hunter2") && !harmless("$(A)$(B)x"));
    }
}
