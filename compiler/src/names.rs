//! The name and label syntaxes the API server enforces (apimachinery's
//! `validation.IsDNS1123Label` and friends). Each check returns the problems, phrased as
//! the API server phrases them, so rules can quote them.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const QUALIFIED_NAME_MESSAGE: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// apimachinery's `MaxLenError`.
fn max_len(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// apimachinery's `RegexError`: the message, its examples and the expression, word for
/// word, since clients and users match on the API server's text.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{format}')");
    }
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{message} (e.g. {}regex used for validation is '{format}')", examples.join("or "))
}

/// A DNS-1123 label (`IsDNS1123Label`): at most 63 characters, lower-case alphanumerics
/// and `-`, starting and ending alphanumeric. Names of Namespaces, StatefulSets, and
/// container and volume names.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(max_len(63));
    }
    if !is_dns1123_label(value) {
        if is_dns1123_subdomain(value) {
            // A valid subdomain that is no label: the length is checked, so it is the dots.
            problems.push("must not contain dots".into());
        } else {
            problems.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    problems
}

/// A DNS-1123 subdomain (`IsDNS1123Subdomain`): at most 253 characters in all,
/// dot-separated labels of lower-case alphanumerics and `-`. Each label may be as long as
/// the total allows: the expression has no per-label limit, so neither has this. Names of
/// Deployments, ConfigMaps, Secrets and most objects.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 253 {
        problems.push(max_len(253));
    }
    if !is_dns1123_subdomain(value) {
        problems.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    problems
}

/// A DNS-1035 label (`IsDNS1035Label`): like a DNS-1123 label but starting with a letter.
/// Service names.
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(max_len(63));
    }
    if !is_dns1123_label(value) || !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
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

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, with no length limit (callers check lengths).
fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(is_dns1123_label)
}

/// A qualified name (`IsQualifiedName`): `name` or `prefix/name`, where the prefix is a
/// DNS-1123 subdomain and the name at most 63 characters of alphanumerics, `-`, `_` and
/// `.`, starting and ending alphanumeric. Label and annotation keys.
pub fn qualified_name(value: &str) -> Vec<String> {
    let parts: Vec<&str> = value.split('/').collect();
    let mut problems = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".into());
            } else {
                problems.extend(dns1123_subdomain(prefix).into_iter().map(|p| format!("prefix part {p}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )];
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        problems.push(format!("name part {}", max_len(63)));
    }
    if !is_label_token(name) {
        problems.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    problems
}

/// A label value (`IsValidLabelValue`): empty, or at most 63 characters of
/// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn label_value(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push(max_len(63));
    }
    if !value.is_empty() && !is_label_token(value) {
        problems.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
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
        problems.push(max_len(15));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
        problems.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
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

    /// `IsDNS1123Subdomain` limits the whole name to 253 characters and nothing else:
    /// a 100-character label in a subdomain is valid.
    #[test]
    fn subdomain_labels_may_be_as_long_as_the_total_allows() {
        let long = format!("{}.example.com", "a".repeat(100));
        assert!(dns1123_subdomain(&long).is_empty(), "{:?}", dns1123_subdomain(&long));
        assert!(dns1123_subdomain(&"a".repeat(253)).is_empty());
        assert_eq!(dns1123_subdomain(&"a".repeat(254)), ["must be no more than 253 characters"]);
    }

    /// The API server's words, as apimachinery's `validation` package writes them.
    #[test]
    fn problems_are_phrased_as_the_api_server_phrases_them() {
        assert_eq!(
            dns1123_subdomain("Web_1"),
            [
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(dns1123_label("web.example"), ["must not contain dots"]);
        assert_eq!(
            dns1123_label("Web"),
            [
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(
            dns1035_label("1web"),
            [
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(
            label_value("-x"),
            [
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ]
        );
        assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
        assert!(
            qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"),
            "{:?}",
            qualified_name("a/b/c")
        );
        assert_eq!(qualified_name(&"k".repeat(64)), ["name part must be no more than 63 characters"]);
    }

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
        assert_eq!(
            port_name("HTTP"),
            [
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)"
            ]
        );
        assert!(!port_name("8080").is_empty());
        assert!(!port_name("http--alt").is_empty());
        assert!(!port_name("very-long-port-name").is_empty());
    }
}
