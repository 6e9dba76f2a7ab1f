//! The expression language inside `${ }`, parsed with nom: dotted paths into the values,
//! literals, `+` to join text, and pure functions called directly (`upper(name)`) or in a
//! pipeline (`name | upper`, where the piped value is the first argument).
//!
//! ```text
//! pipeline := concat ( '|' call )*
//! concat   := primary ( '+' primary )*
//! primary  := string | number | true | false | null | name '(' args ')' | path | '(' pipeline ')'
//! call     := name ( '(' args ')' )?
//! path     := name ( '.' key )*        key: letters, digits, '_' and '-'
//! ```

use crate::tokens::{identifier, key, number};
use nom::branch::alt;
use nom::bytes::complete::tag;
use nom::character::complete::{char, multispace0};
use nom::combinator::{consumed, cut, map, opt};
use nom::multi::many0;
use nom::sequence::{delimited, pair, preceded};
use nom::{IResult, Parser};
use serde_json::Value;
use std::ops::Range;

/// A parsed expression; ranges are byte offsets into the expression's text.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Literal(Value),
    Path { segments: Vec<String>, at: Range<usize> },
    Call { name: String, args: Vec<Expr>, at: Range<usize> },
    Concat(Vec<Expr>),
}

/// Where and why an expression does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

/// The functions there are, with the number of arguments each takes (the piped value
/// counts as the first).
pub const FUNCTIONS: &[(&str, usize, &str)] = &[
    ("default", 2, "the value, or the argument when the value is undefined or null"),
    ("upper", 1, "text in upper case"),
    ("lower", 1, "text in lower case"),
    ("quote", 1, "text in double quotes, with `\"` and `\\` escaped"),
    ("b64enc", 1, "text encoded in base64 (for Secret `data`)"),
];

/// Parses `text` (what is between `${` and `}`, or the start of it: parsing stops at the
/// first `}` outside a string). Returns the expression and how many bytes it took.
pub fn parse(text: &str) -> Result<(Expr, usize), SyntaxError> {
    // Nesting is recursion: bounded before parsing, so `${ ((((...` is an error, not a
    // stack overflow.
    if let Some(at) = too_deep(text) {
        return Err(SyntaxError { at, message: format!("nested more than {MAX_DEPTH} levels deep") });
    }
    let parser = Parse { base: text };
    match delimited(multispace0, |i| parser.pipeline(i), multispace0).parse(text) {
        Ok((rest, expr)) => Ok((expr, text.len() - rest.len())),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            let at = text.len() - e.input.len();
            let found = e.input.chars().next();
            let message = match found {
                None => "the expression ends here: a value is missing".to_string(),
                Some(c) => format!("unexpected `{c}`"),
            };
            Err(SyntaxError { at, message })
        }
        Err(nom::Err::Incomplete(_)) => Err(SyntaxError { at: text.len(), message: "unfinished expression".into() }),
    }
}

const MAX_DEPTH: usize = 32;

/// Where parentheses (outside strings) first nest deeper than `MAX_DEPTH`.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(at);
                    }
                }
                ')' => depth = depth.saturating_sub(1),
                '}' if depth == 0 => return None,
                _ => {}
            },
        }
    }
    None
}

struct Parse<'a> {
    base: &'a str,
}

type Res<'a, T> = IResult<&'a str, T>;

impl<'a> Parse<'a> {
    fn offset(&self, slice: &str) -> Range<usize> {
        let start = slice.as_ptr() as usize - self.base.as_ptr() as usize;
        start..start + slice.len()
    }

    fn pipeline(&self, input: &'a str) -> Res<'a, Expr> {
        let (mut input, mut expr) = self.concat(input)?;
        loop {
            // After a `|`, a function must follow: `cut` reports it there instead of backtracking.
            let step = preceded((multispace0, char('|'), multispace0), cut(|i| self.call(i))).parse(input);
            match step {
                Ok((rest, (name, at, extra))) => {
                    let mut args = vec![expr];
                    args.extend(extra);
                    expr = Expr::Call { name: name.to_string(), args, at };
                    input = rest;
                }
                Err(nom::Err::Error(_)) => return Ok((input, expr)),
                Err(e) => return Err(e),
            }
        }
    }

    /// `name` or `name(args)` after a `|`.
    fn call(&self, input: &'a str) -> Res<'a, (&'a str, Range<usize>, Vec<Expr>)> {
        let (rest, (name, args)) = pair(identifier, opt(|i| self.arguments(i))).parse(input)?;
        Ok((rest, (name, self.offset(name), args.unwrap_or_default())))
    }

    fn arguments(&self, input: &'a str) -> Res<'a, Vec<Expr>> {
        let (input, _) = pair(char('('), multispace0).parse(input)?;
        let (mut input, first) = opt(|i| self.pipeline(i)).parse(input)?;
        let mut args = Vec::new();
        if let Some(first) = first {
            args.push(first);
            let (rest, more) =
                many0(preceded((multispace0, char(','), multispace0), cut(|i| self.pipeline(i)))).parse(input)?;
            args.extend(more);
            input = rest;
        }
        let (rest, _) = cut(pair(multispace0, char(')'))).parse(input)?;
        Ok((rest, args))
    }

    fn concat(&self, input: &'a str) -> Res<'a, Expr> {
        let (rest, (first, more)) =
            pair(|i| self.primary(i), many0(preceded((multispace0, char('+'), multispace0), cut(|i| self.primary(i)))))
                .parse(input)?;
        if more.is_empty() {
            return Ok((rest, first));
        }
        let mut parts = vec![first];
        parts.extend(more);
        Ok((rest, Expr::Concat(parts)))
    }

    fn primary(&self, input: &'a str) -> Res<'a, Expr> {
        alt((
            map(string, Expr::Literal),
            map(number, Expr::Literal),
            |i| self.function_or_path(i),
            delimited(pair(char('('), multispace0), |i| self.pipeline(i), pair(multispace0, char(')'))),
        ))
        .parse(input)
    }

    fn function_or_path(&self, input: &'a str) -> Res<'a, Expr> {
        let (rest, name) = identifier(input)?;
        if rest.starts_with('(') {
            let (rest, args) = self.arguments(rest)?;
            return Ok((rest, Expr::Call { name: name.to_string(), args, at: self.offset(name) }));
        }
        match name {
            "true" => return Ok((rest, Expr::Literal(Value::Bool(true)))),
            "false" => return Ok((rest, Expr::Literal(Value::Bool(false)))),
            "null" => return Ok((rest, Expr::Literal(Value::Null))),
            _ => {}
        }
        let (rest, (text, keys)) = consumed(many0(preceded(char('.'), key))).parse(rest)?;
        let mut segments = vec![name.to_string()];
        segments.extend(keys.into_iter().map(str::to_string));
        let start = self.offset(name).start;
        Ok((rest, Expr::Path { segments, at: start..self.offset(text).end }))
    }
}

/// `"text"` with `\"`, `\\`, `\n` and `\t` escapes, or `'text'` with `''` for a quote.
fn string(input: &str) -> Res<'_, Value> {
    alt((double_quoted, single_quoted)).parse(input)
}

fn double_quoted(input: &str) -> Res<'_, Value> {
    let (mut rest, _) = char('"')(input)?;
    let mut out = String::new();
    loop {
        let mut chars = rest.chars();
        match chars.next() {
            None => return Err(nom::Err::Failure(nom::error::Error::new(rest, nom::error::ErrorKind::Char))),
            Some('"') => return Ok((chars.as_str(), Value::String(out))),
            Some('\\') => {
                let escaped = match chars.next() {
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some(c @ ('"' | '\\')) => c,
                    _ => return Err(nom::Err::Failure(nom::error::Error::new(rest, nom::error::ErrorKind::Escaped))),
                };
                out.push(escaped);
            }
            Some(c) => out.push(c),
        }
        rest = chars.as_str();
    }
}

fn single_quoted(input: &str) -> Res<'_, Value> {
    let (mut rest, _) = char('\'')(input)?;
    let mut out = String::new();
    loop {
        if let Ok((after, _)) = tag::<_, _, nom::error::Error<&str>>("''").parse(rest) {
            out.push('\'');
            rest = after;
            continue;
        }
        let mut chars = rest.chars();
        match chars.next() {
            None => return Err(nom::Err::Failure(nom::error::Error::new(rest, nom::error::ErrorKind::Char))),
            Some('\'') => return Ok((chars.as_str(), Value::String(out))),
            Some(c) => out.push(c),
        }
        rest = chars.as_str();
    }
}

impl std::fmt::Display for Expr {
    /// The canonical text of an expression: parsing it again gives the same expression
    /// (ranges aside).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Literal(Value::String(s)) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\t' => f.write_str("\\t")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            Expr::Literal(value) => write!(f, "{value}"),
            Expr::Path { segments, .. } => f.write_str(&segments.join(".")),
            Expr::Call { name, args, .. } => {
                write!(f, "{name}(")?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            Expr::Concat(parts) => {
                f.write_str("(")?;
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" + ")?;
                    }
                    write!(f, "{part}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn path(segments: &[&str]) -> Expr {
        Expr::Path { segments: segments.iter().map(|s| s.to_string()).collect(), at: 0..0 }
    }

    /// Ranges aside, for comparing trees.
    fn strip(expr: Expr) -> Expr {
        match expr {
            Expr::Path { segments, .. } => Expr::Path { segments, at: 0..0 },
            Expr::Call { name, args, .. } => Expr::Call { name, args: args.into_iter().map(strip).collect(), at: 0..0 },
            Expr::Concat(parts) => Expr::Concat(parts.into_iter().map(strip).collect()),
            literal => literal,
        }
    }

    #[test]
    fn parses_paths_pipelines_and_calls() {
        let (expr, used) = parse(" replicas | default(2) } rest").unwrap();
        assert_eq!(used, " replicas | default(2) ".len());
        assert_eq!(
            strip(expr),
            Expr::Call { name: "default".into(), args: vec![path(&["replicas"]), Expr::Literal(json!(2))], at: 0..0 }
        );
        let (expr, _) = parse("\"v\" + image.tag | upper").unwrap();
        assert_eq!(
            strip(expr),
            Expr::Call {
                name: "upper".into(),
                args: vec![Expr::Concat(vec![Expr::Literal(json!("v")), path(&["image", "tag"])])],
                at: 0..0
            }
        );
        let (expr, _) = parse("b64enc(db.my-password)").unwrap();
        assert_eq!(
            strip(expr),
            Expr::Call { name: "b64enc".into(), args: vec![path(&["db", "my-password"])], at: 0..0 }
        );
        let Expr::Path { at, .. } = parse("  a.b-c ").unwrap().0 else { panic!() };
        assert_eq!(at, 2..7);
    }

    #[test]
    fn syntax_errors_say_where() {
        assert_eq!(parse("a +").unwrap_err().at, 3);
        assert_eq!(parse("'open").unwrap_err().at, 5);
        assert_eq!(parse("| upper").unwrap_err().at, 0);
        assert_eq!(parse("f(a,").unwrap_err().at, 4);
        assert_eq!(parse("f(a b)").unwrap_err().at, 4);
        assert!(parse("f()").is_ok());
        let deep = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(parse(&deep).unwrap_err().at, MAX_DEPTH);
        assert!(parse(&format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH))).is_ok());
    }

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            "[a-z_][a-z0-9_]{0,5}(\\.[a-z0-9-]{1,4}){0,2}"
                .prop_filter("not a keyword", |p| !matches!(p.as_str(), "true" | "false" | "null"))
                .prop_map(|p| path(&p.split('.').collect::<Vec<_>>())),
            "\\PC{0,8}".prop_map(|s| Expr::Literal(json!(s))),
            any::<i32>().prop_map(|n| Expr::Literal(json!(n))),
            any::<bool>().prop_map(|b| Expr::Literal(json!(b))),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                ("upper|lower|quote|b64enc|default", prop::collection::vec(inner.clone(), 1..3))
                    .prop_map(|(name, args)| Expr::Call { name, args, at: 0..0 }),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Concat),
            ]
        })
    }

    proptest! {
        /// Printing a parsed expression and parsing it again gives the same expression.
        #[test]
        fn printed_expressions_parse_back(e in expr()) {
            let text = e.to_string();
            let (parsed, used) = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e:?}")))?;
            prop_assert_eq!(used, text.len());
            prop_assert_eq!(strip(parsed), e);
        }
    }
}
