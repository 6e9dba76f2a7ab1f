//! The lexical pieces the two expression grammars share (templates' `${ ... }` in
//! `template/expr.rs`, assertions in `assertion/expr.rs`): names, keys after a dot and
//! numbers, parsed with nom. Each grammar keeps its own string literals: templates
//! follow YAML's quoting (`''` in single quotes), assertions backslash escapes.

use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{char, digit1, satisfy};
use nom::combinator::{opt, recognize};
use nom::sequence::pair;
use nom::{IResult, Parser};
use serde_json::Value;

type Res<'a, T> = IResult<&'a str, T>;

/// A name: a letter or `_`, then letters, digits and `_` (`values`, `spec`, `len`).
pub fn identifier(input: &str) -> Res<'_, &str> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(input)
}

/// A key after a dot: letters, digits, `_` and `-`, as label-like keys are written
/// (`metadata.labels.app-name`, `ports.8080`).
pub fn key(input: &str) -> Res<'_, &str> {
    take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-').parse(input)
}

/// An integer or a decimal (`-3`, `2.5`), as a JSON number; a key-like continuation
/// (`1abc`) makes it no number at all.
pub fn number(input: &str) -> Res<'_, Value> {
    let (rest, text) = recognize((opt(char('-')), digit1, opt(pair(char('.'), digit1)))).parse(input)?;
    if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Digit)));
    }
    let value = match text.parse::<i64>() {
        Ok(i) => Value::from(i),
        Err(_) => text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number),
    };
    Ok((rest, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_keys_and_numbers() {
        assert_eq!(identifier("spec.replicas"), Ok((".replicas", "spec")));
        assert!(identifier("8080").is_err());
        assert_eq!(key("app-name]"), Ok(("]", "app-name")));
        assert_eq!(key("8080."), Ok((".", "8080")));
        assert_eq!(number("-3 "), Ok((" ", json!(-3))));
        assert_eq!(number("2.5)"), Ok((")", json!(2.5))));
        assert!(number("1abc").is_err(), "a key-like continuation is not a number");
        assert!(number("x").is_err());
    }
}
