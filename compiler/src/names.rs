//! The name and label syntaxes the API server enforces (apimachinery's
//! `validation.IsDNS1123Label` and friends). Each check returns the problems, phrased as
//! the API server phrases them, so rules can quote them.

/// A DNS-1123 label: at most 63 characters, lower-case alphanumerics and `-`, starting
/// and ending alphanumeric. Names of Namespaces, Services and most named objects' ports.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(format!("must be no more than 63 characters (is {})", value.len()));
    }
    if !is_dns1123_label(value) {
        problems.push(
            "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character".into(),
        );
    }
    problems
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels. Names of
/// Deployments, ConfigMaps, Secrets and most objects.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 253 {
        problems.push(format!("must be no more than 253 characters (is {})", value.len()));
    }
    if value.is_empty() || !value.split('.').all(|part| is_dns1123_label(part) && part.len() <= 63) {
        problems.push(
            "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into(),
        );
    }
    problems
}

/// A DNS-1035 label: like a DNS-1123 label but starting with a letter. Service names.
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(format!("must be no more than 63 characters (is {})", value.len()));
    }
    if !is_dns1123_label(value) || !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.push(
            "must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character".into(),
        );
    }
    problems
}

/// A path segment: anything but `.`, `..`, or a name with `/` or `%`. RBAC objects and
/// custom resources are named this way.
pub fn path_segment(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    [('/', "'/'"), ('%', "'%'")]
        .iter()
        .filter(|(c, _)| value.contains(*c))
        .map(|(_, shown)| format!("may not contain {shown}"))
        .collect()
}

fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A qualified name: `name` or `prefix/name`, where the prefix is a DNS-1123 subdomain
/// and the name at most 63 characters of alphanumerics, `-`, `_` and `.`, starting and
/// ending alphanumeric. Label and annotation keys.
pub fn qualified_name(value: &str) -> Vec<String> {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    let mut problems = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            problems.push("prefix part must be non-empty".into());
        } else {
            problems.extend(dns1123_subdomain(prefix).into_iter().map(|p| format!("prefix part {p}")));
        }
    }
    if name.is_empty() {
        problems.push("name part must be non-empty".into());
    } else {
        if name.len() > 63 {
            problems.push(format!("name part must be no more than 63 characters (is {})", name.len()));
        }
        if !is_label_token(name) {
            problems.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into());
        }
    }
    problems
}

/// A label value: empty, or at most 63 characters of alphanumerics, `-`, `_` and `.`,
/// starting and ending alphanumeric.
pub fn label_value(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(format!("must be no more than 63 characters (is {})", value.len()));
    }
    if !value.is_empty() && !is_label_token(value) {
        problems.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into());
    }
    problems
}

fn is_label_token(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// An IANA service name, as container port names must be: at most 15 characters of
/// lower-case alphanumerics and `-`, with a letter, no `--`, no `-` at either end.
pub fn port_name(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 15 {
        problems.push(format!("must be no more than 15 characters (is {})", value.len()));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
        problems.push("must contain only lower-case alphanumeric characters (a-z, 0-9) and '-'".into());
    }
    if !bytes.iter().any(u8::is_ascii_lowercase) {
        problems.push("must contain at least one letter (a-z)".into());
    }
    if value.contains("--") {
        problems.push("must not contain consecutive hyphens".into());
    }
    if value.starts_with('-') || value.ends_with('-') {
        problems.push("must not begin or end with a hyphen".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_names_like_the_api_server() {
        assert!(dns1123_label("web-1").is_empty());
        assert!(!dns1123_label("Web").is_empty());
        assert!(!dns1123_label("-web").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(dns1123_subdomain("web.example.com").is_empty());
        assert!(!dns1123_subdomain("web..example").is_empty());
        assert!(!dns1123_subdomain("web_1").is_empty());
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(qualified_name("App_Name.x").is_empty());
        assert!(!qualified_name("/name").is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_3").is_empty());
        assert!(!label_value("has space").is_empty());
        assert!(!label_value("-start").is_empty());
        assert!(port_name("http").is_empty());
        assert!(!port_name("8080").is_empty());
        assert!(!port_name("http--alt").is_empty());
        assert!(!port_name("very-long-port-name").is_empty());
    }
}
