//! Container image references (`registry:5000/team/app:1.2@sha256:...`), with the
//! grammar of the distribution project that container runtimes use. Kubernetes passes
//! the text through unchanged; what matters to it is whether there is a tag or digest,
//! because that decides the default `imagePullPolicy`.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while_m_n, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{all_consuming, opt, recognize, verify};
use nom::multi::many0;
use nom::sequence::preceded;
use nom::{IResult, Parser};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// `registry.example.com:5000`, when the first component names a registry.
    pub registry: Option<String>,
    /// `team/app`
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:...`
    pub digest: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "\"{0}\" is not a valid image reference: expected [registry[:port]/]name[:tag][@digest] with a lower-case name"
)]
pub struct ImageError(pub String);

impl ImageReference {
    /// No tag and no digest: the runtime pulls `:latest`.
    pub fn is_untagged(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// `:latest`, written or implied, and not pinned by a digest.
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|t| t == "latest")
    }

    /// The API server's default `imagePullPolicy`: `Always` for a `:latest` tag (even
    /// with a digest, as Kubernetes reads the tag) or for no tag and no digest, else
    /// `IfNotPresent`.
    pub fn default_pull_policy(&self) -> &'static str {
        let latest = match &self.tag {
            Some(tag) => tag == "latest",
            None => self.digest.is_none(),
        };
        if latest { "Always" } else { "IfNotPresent" }
    }
}

fn alphanumeric(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()).parse(input)
}

/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`
fn path_component(input: &str) -> IResult<&str, &str> {
    let separator = alt((tag("__"), tag("_"), tag("."), take_while1(|c| c == '-')));
    recognize((alphanumeric, many0((separator, alphanumeric)))).parse(input)
}

/// A host (`example.com`, `localhost`, `[::1]`) with an optional port.
fn registry(input: &str) -> IResult<&str, &str> {
    let label = verify(take_while1(|c: char| c.is_ascii_alphanumeric() || c == '-'), |s: &str| {
        !s.starts_with('-') && !s.ends_with('-')
    });
    let name = recognize((
        label,
        many0(preceded(
            char('.'),
            verify(take_while1(|c: char| c.is_ascii_alphanumeric() || c == '-'), |s: &str| {
                !s.starts_with('-') && !s.ends_with('-')
            }),
        )),
    ));
    let ipv6 = recognize((char('['), take_while1(|c: char| c.is_ascii_hexdigit() || c == ':' || c == '.'), char(']')));
    recognize((alt((ipv6, name)), opt((char(':'), digit1)))).parse(input)
}

fn tag_part(input: &str) -> IResult<&str, &str> {
    recognize((
        take_while_m_n(1, 1, |c: char| c.is_ascii_alphanumeric() || c == '_'),
        take_while_m_n(0, 127, |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')),
    ))
    .parse(input)
}

/// `algorithm:hex`, the hex part at least 32 digits.
fn digest(input: &str) -> IResult<&str, &str> {
    let component =
        recognize((take_while1(|c: char| c.is_ascii_alphabetic()), take_while(|c: char| c.is_ascii_alphanumeric())));
    let algorithm = recognize((
        component,
        many0((alt((char('-'), char('_'), char('+'), char('.'))), take_while1(|c: char| c.is_ascii_alphanumeric()))),
    ));
    recognize((algorithm, char(':'), verify(take_while1(|c: char| c.is_ascii_hexdigit()), |h: &str| h.len() >= 32)))
        .parse(input)
}

/// Whether the first path component names a registry rather than a repository, as the
/// runtimes decide it: it has a `.` or a `:`, is `localhost`, or has capitals.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase())
}

impl FromStr for ImageReference {
    type Err = ImageError;

    fn from_str(text: &str) -> Result<ImageReference, ImageError> {
        let error = || ImageError(text.to_string());
        if text.len() > 4096 {
            return Err(error());
        }
        let (name, digest_part) = match text.split_once('@') {
            Some((name, digest_text)) => {
                all_consuming(digest).parse(digest_text).map_err(|_| error())?;
                (name, Some(digest_text.to_string()))
            }
            None => (text, None),
        };
        // The tag is after the last `:` that follows the last `/` (a registry port comes before it).
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag_text) = match name[slash..].rfind(':') {
            Some(colon) => (&name[..slash + colon], Some(&name[slash + colon + 1..])),
            None => (name, None),
        };
        if let Some(tag_text) = tag_text {
            all_consuming(tag_part).parse(tag_text).map_err(|_| error())?;
        }
        let (registry_part, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => {
                all_consuming(registry).parse(first).map_err(|_| error())?;
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        all_consuming(recognize((path_component, many0(preceded(char('/'), path_component)))))
            .parse(repository)
            .map_err(|_| error())?;
        Ok(ImageReference {
            registry: registry_part,
            repository: repository.to_string(),
            tag: tag_text.map(str::to_string),
            digest: digest_part,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(f, "{registry}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_references() {
        let r: ImageReference = "nginx".parse().unwrap();
        assert_eq!((r.registry.as_deref(), r.repository.as_str(), r.tag.as_deref()), (None, "nginx", None));
        assert!(r.is_untagged() && r.is_latest());
        assert_eq!(r.default_pull_policy(), "Always");

        let r: ImageReference = "registry.example.com:5000/team/app:1.2.3".parse().unwrap();
        assert_eq!(r.registry.as_deref(), Some("registry.example.com:5000"));
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("1.2.3"));
        assert_eq!(r.default_pull_policy(), "IfNotPresent");

        let r: ImageReference = format!("localhost:5000/app@{DIGEST}").parse().unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert!(!r.is_latest());
        assert_eq!(r.default_pull_policy(), "IfNotPresent");
        let pinned_latest: ImageReference = format!("app:latest@{DIGEST}").parse().unwrap();
        assert_eq!(pinned_latest.default_pull_policy(), "Always");

        let r: ImageReference = "gcr.io/google-samples/microservices-demo/frontend:v0.10.2".parse().unwrap();
        assert_eq!(r.repository, "google-samples/microservices-demo/frontend");
        assert!("app:latest".parse::<ImageReference>().unwrap().is_latest());
        assert!("library/ubuntu".parse::<ImageReference>().unwrap().registry.is_none());
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in
            ["", "Nginx", "nginx:", "nginx:-bad", "app@sha256:short", "a//b", "app:1:2", "-app", "app/", "with space"]
        {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad:?} should not parse");
        }
    }

    proptest! {
        #[test]
        fn printed_references_parse_back(
            registry in prop::option::of("[a-z][a-z0-9-]{0,6}[a-z0-9]\\.[a-z]{2,4}(:[0-9]{2,5})?"),
            // A first component with a `.` would read as a registry, as it does for docker.
            repository in "[a-z0-9]{1,6}([_-][a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?){0,2}",
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            digest in prop::option::of(Just(DIGEST.to_string())),
        ) {
            let reference = ImageReference { registry, repository, tag, digest };
            let text = reference.to_string();
            let again: ImageReference = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(again, reference);
        }
    }
}
