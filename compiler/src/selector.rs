//! Label selectors: the string form (`env in (a,b),!canary,tier=web`) parsed with the
//! API server's grammar, the structured forms (a Service's map, a `LabelSelector` with
//! `matchLabels` and `matchExpressions`), matching, and canonical printing.

use crate::names;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{char, multispace0};
use nom::combinator::{all_consuming, map, opt, value};
use nom::multi::separated_list1;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    Exists,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    GreaterThan,
    LessThan,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and without duplicates for `in` and `notin`; one value for the comparisons.
    pub values: Vec<String>,
}

/// A conjunction of requirements. No requirements selects everything; `Selector::nothing`
/// selects nothing (a null selector, or a Service without one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("\"{text}\" is not a label selector: {reason}")]
    Syntax { text: String, reason: String },
    #[error("invalid label key \"{key}\": {problem}")]
    Key { key: String, problem: String },
    #[error("invalid label value \"{value}\" for key \"{key}\": {problem}")]
    Value { key: String, value: String, problem: String },
    #[error("operator {operator:?} on \"{key}\" {problem}")]
    Operator { key: String, operator: String, problem: String },
}

impl Requirement {
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, SelectorError> {
        if let Some(problem) = names::qualified_name(key).into_iter().next() {
            return Err(SelectorError::Key { key: key.into(), problem });
        }
        let operator_error = |problem: &str| SelectorError::Operator {
            key: key.into(),
            operator: format!("{operator:?}"),
            problem: problem.into(),
        };
        let mut values = values;
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    return Err(operator_error("needs at least one value"));
                }
                values.sort();
                values.dedup();
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    return Err(operator_error("needs exactly one value"));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(operator_error("takes no values"));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 || values[0].parse::<i64>().is_err() {
                    return Err(operator_error("needs exactly one integer value"));
                }
            }
        }
        if !matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for value in &values {
                if let Some(problem) = names::label_value(value).into_iter().next() {
                    return Err(SelectorError::Value { key: key.into(), value: value.clone(), problem });
                }
            }
        }
        Ok(Requirement { key: key.into(), operator, values })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Ok(want)) = (value.and_then(|v| v.parse::<i64>().ok()), self.values[0].parse::<i64>())
                else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { have > want } else { have < want }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = || self.values.first().map_or("", String::as_str);
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={}", self.key, one()),
            Operator::DoubleEquals => write!(f, "{}=={}", self.key, one()),
            Operator::NotEquals => write!(f, "{}!={}", self.key, one()),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, one()),
            Operator::LessThan => write!(f, "{}<{}", self.key, one()),
        }
    }
}

impl Selector {
    pub fn everything() -> Selector {
        Selector { requirements: Vec::new(), nothing: false }
    }

    pub fn nothing() -> Selector {
        Selector { requirements: Vec::new(), nothing: true }
    }

    /// Requirements are kept sorted by key, as the API server prints them.
    pub fn new(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort();
        requirements.dedup();
        Selector { requirements, nothing: false }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// A Service's (or ReplicationController's) `selector`: a map of equalities. An empty or
    /// missing map selects nothing, as a Service without a selector has no endpoints.
    pub fn from_map(map: Option<&Json>) -> Result<Selector, SelectorError> {
        let Some(Json::Object(entries)) = map else {
            return Ok(Selector::nothing());
        };
        if entries.is_empty() {
            return Ok(Selector::nothing());
        }
        let requirements = entries
            .iter()
            .map(|(k, v)| Requirement::new(k, Operator::Equals, vec![json_text(v)]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector::new(requirements))
    }

    /// A `LabelSelector` (`matchLabels` and `matchExpressions`). A null selector selects
    /// nothing; an empty one selects everything.
    pub fn from_label_selector(selector: Option<&Json>) -> Result<Selector, SelectorError> {
        let Some(Json::Object(selector)) = selector else {
            return Ok(Selector::nothing());
        };
        let mut requirements = Vec::new();
        if let Some(Json::Object(labels)) = selector.get("matchLabels") {
            for (k, v) in labels {
                requirements.push(Requirement::new(k, Operator::Equals, vec![json_text(v)])?);
            }
        }
        if let Some(Json::Array(expressions)) = selector.get("matchExpressions") {
            for expression in expressions {
                let key = expression.get("key").and_then(Json::as_str).unwrap_or_default();
                let operator = match expression.get("operator").and_then(Json::as_str).unwrap_or_default() {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError::Operator {
                            key: key.into(),
                            operator: other.into(),
                            problem: "is not a valid operator: use In, NotIn, Exists or DoesNotExist".into(),
                        });
                    }
                };
                let values = expression
                    .get("values")
                    .and_then(Json::as_array)
                    .map(|v| v.iter().map(json_text).collect())
                    .unwrap_or_default();
                requirements.push(Requirement::new(key, operator, values)?);
            }
        }
        Ok(Selector::new(requirements))
    }
}

fn json_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The API server's lexer: an identifier is a run of anything but white space and the
/// selector's own punctuation.
fn identifier(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| !c.is_whitespace() && !matches!(c, ',' | '=' | '!' | '(' | ')' | '<' | '>')).parse(input)
}

/// A key: an identifier that is not one of the keywords `in` and `notin`.
fn key(input: &str) -> IResult<&str, &str> {
    nom::combinator::verify(identifier, |word: &str| word != "in" && word != "notin").parse(input)
}

fn spaced<'a, O>(
    inner: impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>,
) -> impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>> {
    delimited(multispace0, inner, multispace0)
}

/// One requirement, before key and value syntax are checked.
fn raw_requirement(input: &str) -> IResult<&str, (String, Operator, Vec<String>)> {
    let does_not_exist = map(preceded(spaced(char('!')), spaced(key)), |key: &str| {
        (key.to_string(), Operator::DoesNotExist, Vec::new())
    });
    let set = |word: &'static str, operator: Operator| {
        map(
            (
                spaced(key),
                spaced(tag(word)),
                delimited(
                    spaced(char('(')),
                    separated_list1(
                        spaced(char(',')),
                        map(opt(identifier), |v: Option<&str>| v.unwrap_or("").to_string()),
                    ),
                    spaced(char(')')),
                ),
            ),
            // `()` reads as one empty value; the API server calls it an empty set.
            move |(key, _, values): (&str, &str, Vec<String>)| {
                let values = if values.len() == 1 && values[0].is_empty() { Vec::new() } else { values };
                (key.to_string(), operator, values)
            },
        )
    };
    let comparison = map(
        (
            spaced(key),
            alt((
                value(Operator::DoubleEquals, tag("==")),
                value(Operator::NotEquals, tag("!=")),
                value(Operator::Equals, tag("=")),
                value(Operator::GreaterThan, tag(">")),
                value(Operator::LessThan, tag("<")),
            )),
            spaced(opt(identifier)),
        ),
        |(key, operator, value): (&str, Operator, Option<&str>)| {
            (key.to_string(), operator, vec![value.unwrap_or("").to_string()])
        },
    );
    let exists = map(spaced(key), |key: &str| (key.to_string(), Operator::Exists, Vec::new()));
    alt((does_not_exist, set("notin", Operator::NotIn), set("in", Operator::In), comparison, exists)).parse(input)
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Selector, SelectorError> {
        if text.trim().is_empty() {
            return Ok(Selector::everything());
        }
        let (_, raw) = all_consuming(separated_list1(char(','), raw_requirement)).parse(text).map_err(|e| {
            let at = match &e {
                nom::Err::Error(e) | nom::Err::Failure(e) => text.len() - e.input.len(),
                nom::Err::Incomplete(_) => text.len(),
            };
            SelectorError::Syntax { text: text.into(), reason: format!("unexpected input at character {}", at + 1) }
        })?;
        let requirements = raw
            .into_iter()
            .map(|(key, op, values)| Requirement::new(&key, op, values))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector::new(requirements))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_and_prints_canonically() {
        let cases = [
            ("env in (b, a),!canary,tier=web", "!canary,env in (a,b),tier=web"),
            ("  app = web ", "app=web"),
            ("app!=db,app==web", "app==web,app!=db"),
            ("x notin (1),y", "x notin (1),y"),
            ("replicas<10,replicas>3", "replicas>3,replicas<10"),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
            ("key=", "key="),
        ];
        for (input, expected) in cases {
            let selector: Selector = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(selector.to_string(), expected, "{input}");
        }
        for bad in ["=web", "app in ()", "app in (a", "a b", "app=has space", "in", "a,,b", "app>x", "-bad=x"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn matches_like_the_api_server() {
        let s: Selector = "env in (prod,staging),!canary,tier=web".parse().unwrap();
        assert!(s.matches(&labels(&[("env", "prod"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "web"), ("canary", "true")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("tier", "web")])));
        assert!("x notin (a)".parse::<Selector>().unwrap().matches(&labels(&[])));
        assert!(Selector::everything().matches(&labels(&[])));
        assert!(!Selector::nothing().matches(&labels(&[])));
    }

    #[test]
    fn reads_structured_selectors() {
        let s = Selector::from_label_selector(Some(&serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]
        })))
        .unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (a,b)");
        assert!(Selector::from_label_selector(Some(&serde_json::json!({}))).unwrap().is_everything());
        assert!(Selector::from_label_selector(None).unwrap().is_nothing());
        assert!(Selector::from_map(Some(&serde_json::json!({}))).unwrap().is_nothing());
        let bad = Selector::from_label_selector(Some(
            &serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
        ));
        assert!(bad.is_err());
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let key = "[a-z]([a-z0-9.-]{0,8}[a-z0-9])?(/[A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?)?";
        let value = "([A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?)?";
        (
            key,
            prop::sample::select(vec![
                Operator::Exists,
                Operator::DoesNotExist,
                Operator::Equals,
                Operator::DoubleEquals,
                Operator::NotEquals,
                Operator::In,
                Operator::NotIn,
                Operator::GreaterThan,
                Operator::LessThan,
            ]),
            prop::collection::vec(value, 1..4),
            any::<i32>(),
        )
            // `in` and `notin` are keywords of the string form: valid keys it cannot write.
            .prop_filter("keys that are keywords", |(key, _, _, _)| key != "in" && key != "notin")
            .prop_filter_map("valid requirement", |(key, operator, values, number)| {
                let values = match operator {
                    Operator::Exists | Operator::DoesNotExist => Vec::new(),
                    // An empty value in a set has no string form (`in ()` is the empty set).
                    Operator::In | Operator::NotIn => values.into_iter().filter(|v| !v.is_empty()).collect(),
                    Operator::GreaterThan | Operator::LessThan => vec![number.to_string()],
                    _ => vec![values[0].clone()],
                };
                Requirement::new(&key, operator, values).ok()
            })
    }

    proptest! {
        /// Printing a selector and parsing the text gives the same selector.
        #[test]
        fn printed_selectors_parse_back(requirements in prop::collection::vec(requirement(), 1..5)) {
            let selector = Selector::new(requirements);
            let text = selector.to_string();
            let again: Selector = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(again, selector);
        }
    }
}
