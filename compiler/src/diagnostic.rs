//! Diagnostics: what the compiler tells a user about their input.
//!
//! A diagnostic is plain data with a stable `Code`; the harness renders it (miette for
//! terminals, JSON and JUnit for machines). The codes are a public interface: once
//! released, a code keeps its meaning. `docs/diagnostics.md` lists them.

use crate::source::Span;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

macro_rules! codes {
    ($($variant:ident => $id:literal, $doc:literal;)*) => {
        /// Stable diagnostic codes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(#[doc = $doc] $variant,)*
            /// A finding of a semantic rule; the id is the rule's (see `rules::RULES`).
            Rule(&'static str),
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable identifier printed to users, e.g. `schema/unknown-field`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $id,)*
                    Code::Rule(id) => id,
                }
            }

            /// A problem with a template placeholder: the schema's complaints about the same
            /// characters add nothing.
            pub fn is_template(self) -> bool {
                matches!(self, Code::Template | Code::TemplateSyntax | Code::TemplateUndefined | Code::TemplateType)
            }

            /// One line saying what the code means.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $doc,)*
                    Code::Rule(id) => crate::rules::find(id).map_or("A semantic rule.", |rule| rule.name()),
                }
            }
        }
    };
}

codes! {
    Unreadable => "input/unreadable", "A path could not be read (missing, permission denied, not a file).";
    NotUtf8 => "input/not-utf8", "The file is not UTF-8 text.";
    Binary => "input/binary", "The file contains NUL bytes: it is binary, not YAML or JSON.";
    TooLarge => "input/too-large", "A file or one document is larger than kubeyard or the API server accepts.";
    MissingTool => "input/missing-tool", "A program kubeyard runs to read an input is not on the PATH (helm for a chart; kubectl or kustomize for a kustomization): nothing of that input was checked.";
    Helm => "input/helm", "A Helm chart could not be rendered: helm's own error.";
    Kustomize => "input/kustomize", "A kustomization could not be built: kustomize's own error.";
    YamlSyntax => "yaml/syntax", "The text is not valid YAML; parsing stops at the error.";
    DuplicateKey => "yaml/duplicate-key", "A mapping has the same key twice; the API server rejects this in strict mode.";
    AliasLimit => "yaml/alias-limit", "Aliases expand to too many nodes (a \"billion laughs\" document).";
    Template => "yaml/template", "Template syntax (`{{ }}`) is left in the manifest: it was not rendered.";
    TooDeep => "yaml/too-deep", "The document nests deeper than kubeyard follows.";
    UnsupportedValue => "yaml/unsupported-value", "A YAML value that has no JSON form (a complex key, .inf, .nan).";
    NotAnObject => "object/not-kubernetes", "The document is not a Kubernetes object (no apiVersion and kind).";
    MissingApiVersion => "object/missing-api-version", "The object has no apiVersion.";
    MissingKind => "object/missing-kind", "The object has no kind.";
    InvalidTypeMeta => "object/invalid-type-meta", "apiVersion or kind is not a well-formed string.";
    UnknownKind => "schema/unknown-kind", "No schema is known for this apiVersion and kind in the target Kubernetes version.";
    RemovedApi => "schema/removed-api", "The apiVersion of this kind was removed from Kubernetes; the help names what replaces it.";
    UnknownField => "schema/unknown-field", "A field that the schema does not define (strict mode).";
    WrongType => "schema/type", "A value of the wrong type (a string where a number belongs, ...).";
    MissingField => "schema/required", "A required field is missing.";
    NotInEnum => "schema/enum", "A value outside the set the schema allows.";
    Constraint => "schema/constraint", "A value breaks another schema constraint (pattern, length, range, ...).";
    ValidationRule => "schema/validation-rule", "A CEL rule (`x-kubernetes-validations`) of the CustomResourceDefinition does not hold for the object; the message is the API server's.";
    BadSchema => "schema/invalid-schema", "A schema from --schema-dir or a CustomResourceDefinition could not be used.";
    TemplateSyntax => "template/syntax", "A `${ }` expression cannot be read: bad syntax, an unknown function, a wrong number of arguments.";
    TemplateUndefined => "template/undefined", "A `${ }` expression reads a value that no values file, --set or environment defines.";
    TemplateType => "template/type", "A `${ }` expression has a value of the wrong type (a mapping inside text, a list given to `upper`).";
    BadValues => "values/invalid", "A values file is not a YAML mapping, or a --set is malformed.";
    GraphCycle => "graph/cycle", "Objects depend on each other in a circle (owner references, depends-on annotations): no apply order exists.";
    GraphDuplicate => "graph/duplicate", "Two documents define the same object (group, kind, namespace, name): one would overwrite the other.";
    DependsOn => "graph/depends-on", "A config.kubernetes.io/depends-on entry is malformed (an error), or names an object the input does not hold (a warning: it may already exist).";
    BadState => "plan/invalid-state", "The state a plan compares with (a state file, objects from a cluster) cannot be read.";
    BadConfig => "config/invalid", "The configuration file (.kubeyard.yaml) or a kubeyard.dev/ignore annotation is wrong.";
}

/// One finding about the input, anchored to a span of one source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// A short text shown under the span.
    pub label: Option<String>,
    /// What to do about it.
    pub help: Option<String>,
    /// The field path in the object, kubectl style: `spec.template.spec.containers[0].image`.
    pub path: Option<String>,
    /// Other places that explain this one (the first of two duplicate keys, ...).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: None,
            help: None,
            path: None,
            related: Vec::new(),
        }
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Diagnostic {
        let path = path.into();
        self.path = (!path.is_empty()).then_some(path);
        self
    }

    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.related.push((span, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]: {}", self.severity.as_str(), self.code.as_str(), self.message)
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a
/// plausible typo (`contianers` -> `containers`, `matchLabel` -> `matchLabels`).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let other = candidate.to_ascii_lowercase();
        let distance = strsim::damerau_levenshtein(&lower, &other);
        // A typo changes a few letters; a different word changes many. A third of the
        // shorter word (at least one edit) keeps `imageformat` from meaning `image`.
        let allowed = (lower.chars().count().min(other.chars().count()) / 3).max(1);
        if distance <= allowed && best.is_none_or(|(b, _)| distance < b) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut ids: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len());
    }

    #[test]
    fn suggests_close_names_only() {
        let fields = ["containers", "initContainers", "volumes", "nodeSelector"];
        assert_eq!(did_you_mean("contianers", fields), Some("containers"));
        assert_eq!(did_you_mean("Volumes", fields), Some("volumes"));
        assert_eq!(did_you_mean("matchLabel", ["matchLabels", "matchExpressions"]), Some("matchLabels"));
        assert_eq!(did_you_mean("zzz", fields), None);
        assert_eq!(did_you_mean("imageformat", ["image", "pool"]), None);
        assert_eq!(did_you_mean("protectionDoamin", ["protectionDomain", "system"]), Some("protectionDomain"));
    }
}
