//! Expressions on an object's fields, as tests state them: `status.readyReplicas >=
//! spec.replicas`, `len(status.conditions) == 2 && status.phase != "Failed"`. Parsed with
//! nom; evaluated against the object as the API server returns it.
//!
//! ```text
//! or      := and ( '||' and )*
//! and     := unary ( '&&' unary )*
//! unary   := '!' unary | compare
//! compare := sum ( ('==' | '!=' | '<=' | '>=' | '<' | '>') sum )?
//! sum     := primary ( ('+' | '-') primary )*
//! primary := number | string | true | false | null | name '(' args ')' | path | '(' or ')'
//! path    := name ( '.' key | '[' number ']' | '[' string ']' )*
//! ```
//!
//! A path that leads nowhere is `null`, so `status.readyReplicas >= 1` is simply false
//! before the status is written. Comparing numbers compares values (`1 == 1.0`); `<` and
//! friends compare numbers with numbers and text with text, and are false otherwise.

use crate::tokens::{identifier, key, number};
use nom::branch::alt;
use nom::bytes::complete::tag;
use nom::character::complete::{char, digit1, multispace0};
use nom::combinator::{cut, map, opt};
use nom::multi::many0;
use nom::sequence::{delimited, pair, preceded};
use nom::{IResult, Parser};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Literal(Value),
    Path(Vec<Segment>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Op, Box<Expr>),
    Sum(Box<Expr>, char, Box<Expr>),
    Call(String, Vec<Expr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The functions there are: name, arguments, what it gives.
pub const FUNCTIONS: &[(&str, usize, &str)] = &[
    ("len", 1, "the number of items of a list, keys of a map or characters of text; 0 for null"),
    ("exists", 1, "whether the path leads to a value (not null)"),
];

/// Where and why an expression does not parse (a byte offset into its text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at character {})", self.message, self.at + 1)
    }
}

const MAX_DEPTH: usize = 32;

pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    // Nesting is recursion: bounded before parsing.
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '(' | '[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(SyntaxError { at, message: format!("nested more than {MAX_DEPTH} levels deep") });
                }
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    match delimited(multispace0, or, multispace0).parse(text) {
        Ok(("", expr)) => check_calls(&expr).map(|()| expr).map_err(|message| SyntaxError { at: 0, message }),
        Ok((rest, _)) => Err(SyntaxError {
            at: text.len() - rest.len(),
            message: format!("unexpected `{}`", rest.chars().next().unwrap_or(' ')),
        }),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            let at = text.len() - e.input.len();
            let message = match e.input.chars().next() {
                None => "the expression ends here: a value is missing".to_string(),
                Some(c) => format!("unexpected `{c}`"),
            };
            Err(SyntaxError { at, message })
        }
        Err(nom::Err::Incomplete(_)) => Err(SyntaxError { at: text.len(), message: "unfinished expression".into() }),
    }
}

fn check_calls(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::Call(name, args) => {
            let Some((_, arity, _)) = FUNCTIONS.iter().find(|(n, _, _)| n == name) else {
                let known: Vec<&str> = FUNCTIONS.iter().map(|(n, _, _)| *n).collect();
                return Err(format!("unknown function `{name}` (there are: {})", known.join(", ")));
            };
            if args.len() != *arity {
                return Err(format!("`{name}` takes {arity} argument(s), not {}", args.len()));
            }
            args.iter().try_for_each(check_calls)
        }
        Expr::Not(inner) => check_calls(inner),
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(a, _, b) | Expr::Sum(a, _, b) => {
            check_calls(a)?;
            check_calls(b)
        }
        Expr::Literal(_) | Expr::Path(_) => Ok(()),
    }
}

type Res<'a, T> = IResult<&'a str, T>;

fn ws<'a, T>(
    inner: impl Parser<&'a str, Output = T, Error = nom::error::Error<&'a str>>,
) -> impl Parser<&'a str, Output = T, Error = nom::error::Error<&'a str>> {
    delimited(multispace0, inner, multispace0)
}

fn or(input: &str) -> Res<'_, Expr> {
    let (rest, (first, more)) = pair(and, many0(preceded(ws(tag("||")), cut(and)))).parse(input)?;
    Ok((rest, more.into_iter().fold(first, |a, b| Expr::Or(Box::new(a), Box::new(b)))))
}

fn and(input: &str) -> Res<'_, Expr> {
    let (rest, (first, more)) = pair(unary, many0(preceded(ws(tag("&&")), cut(unary)))).parse(input)?;
    Ok((rest, more.into_iter().fold(first, |a, b| Expr::And(Box::new(a), Box::new(b)))))
}

fn unary(input: &str) -> Res<'_, Expr> {
    alt((map(preceded(pair(char('!'), multispace0), cut(unary)), |e| Expr::Not(Box::new(e))), compare)).parse(input)
}

fn op(input: &str) -> Res<'_, Op> {
    alt((
        map(tag("=="), |_| Op::Eq),
        map(tag("!="), |_| Op::Ne),
        map(tag("<="), |_| Op::Le),
        map(tag(">="), |_| Op::Ge),
        map(tag("<"), |_| Op::Lt),
        map(tag(">"), |_| Op::Gt),
    ))
    .parse(input)
}

fn compare(input: &str) -> Res<'_, Expr> {
    let (rest, left) = sum(input)?;
    match pair(ws(op), cut(sum)).parse(rest) {
        Ok((rest, (op, right))) => Ok((rest, Expr::Compare(Box::new(left), op, Box::new(right)))),
        Err(nom::Err::Error(_)) => Ok((rest, left)),
        Err(e) => Err(e),
    }
}

fn sum(input: &str) -> Res<'_, Expr> {
    let (rest, (first, more)) =
        pair(primary, many0(pair(ws(alt((char('+'), char('-')))), cut(primary)))).parse(input)?;
    Ok((rest, more.into_iter().fold(first, |a, (sign, b)| Expr::Sum(Box::new(a), sign, Box::new(b)))))
}

fn primary(input: &str) -> Res<'_, Expr> {
    alt((
        map(string, |s| Expr::Literal(Value::String(s))),
        map(number, Expr::Literal),
        name_or_path,
        delimited(pair(char('('), multispace0), or, cut(pair(multispace0, char(')')))),
    ))
    .parse(input)
}

fn name_or_path(input: &str) -> Res<'_, Expr> {
    let (rest, name) = identifier(input)?;
    if let Ok((rest, _)) = pair(multispace0::<&str, nom::error::Error<&str>>, char('(')).parse(rest) {
        let (rest, args) = arguments(rest)?;
        return Ok((rest, Expr::Call(name.to_string(), args)));
    }
    match name {
        "true" => return Ok((rest, Expr::Literal(Value::Bool(true)))),
        "false" => return Ok((rest, Expr::Literal(Value::Bool(false)))),
        "null" => return Ok((rest, Expr::Literal(Value::Null))),
        _ => {}
    }
    let (rest, more) = many0(alt((
        map(preceded(char('.'), cut(key)), |k: &str| Segment::Key(k.to_string())),
        map(delimited(pair(char('['), multispace0), digit1, cut(pair(multispace0, char(']')))), |d: &str| {
            Segment::Index(d.parse().unwrap_or(usize::MAX))
        }),
        map(delimited(pair(char('['), multispace0), string, cut(pair(multispace0, char(']')))), Segment::Key),
    )))
    .parse(rest)?;
    let mut segments = vec![Segment::Key(name.to_string())];
    segments.extend(more);
    Ok((rest, Expr::Path(segments)))
}

fn arguments(input: &str) -> Res<'_, Vec<Expr>> {
    let (input, first) = opt(ws(or)).parse(input)?;
    let mut args = Vec::new();
    let mut input = input;
    if let Some(first) = first {
        args.push(first);
        let (rest, more) = many0(preceded(pair(char(','), multispace0), cut(ws(or)))).parse(input)?;
        args.extend(more);
        input = rest;
    }
    let (rest, _) = cut(char(')')).parse(input)?;
    Ok((rest, args))
}

fn string(input: &str) -> Res<'_, String> {
    let (mut rest, quote) = alt((char('"'), char('\''))).parse(input)?;
    let mut text = String::new();
    let mut chars = rest.char_indices();
    loop {
        match chars.next() {
            None => return Err(nom::Err::Failure(nom::error::Error::new("", nom::error::ErrorKind::Char))),
            Some((at, c)) if c == quote => {
                rest = &rest[at + c.len_utf8()..];
                return Ok((rest, text));
            }
            Some((_, '\\')) => match chars.next() {
                Some((_, 'n')) => text.push('\n'),
                Some((_, 't')) => text.push('\t'),
                Some((_, c)) => text.push(c),
                None => return Err(nom::Err::Failure(nom::error::Error::new("", nom::error::ErrorKind::Char))),
            },
            Some((_, c)) => text.push(c),
        }
    }
}

/// Why an expression cannot be judged true or false.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn lookup<'v>(object: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    segments.iter().try_fold(object, |value, segment| match segment {
        Segment::Key(key) => value.get(key),
        Segment::Index(index) => value.get(index),
    })
}

fn number_of(value: &Value) -> Option<f64> {
    value.as_f64()
}

impl Expr {
    pub fn eval(&self, object: &Value) -> Result<Value, EvalError> {
        Ok(match self {
            Expr::Literal(value) => value.clone(),
            Expr::Path(segments) => lookup(object, segments).cloned().unwrap_or(Value::Null),
            Expr::Not(inner) => Value::Bool(!inner.truth(object)?),
            Expr::And(a, b) => Value::Bool(a.truth(object)? && b.truth(object)?),
            Expr::Or(a, b) => Value::Bool(a.truth(object)? || b.truth(object)?),
            Expr::Compare(a, op, b) => Value::Bool(compare_values(&a.eval(object)?, *op, &b.eval(object)?)),
            Expr::Sum(a, sign, b) => {
                let (left, right) = (a.eval(object)?, b.eval(object)?);
                match (&left, &right) {
                    (Value::String(x), Value::String(y)) if *sign == '+' => Value::String(format!("{x}{y}")),
                    (Value::Number(_), Value::Number(_)) => {
                        let (x, y) = (left.as_i64(), right.as_i64());
                        match (x, y) {
                            (Some(x), Some(y)) => {
                                Value::from(if *sign == '+' { x.saturating_add(y) } else { x.saturating_sub(y) })
                            }
                            _ => {
                                let (x, y) = (number_of(&left).unwrap_or(0.0), number_of(&right).unwrap_or(0.0));
                                let n = if *sign == '+' { x + y } else { x - y };
                                serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
                            }
                        }
                    }
                    // A missing number is no number: the sum is null, and comparisons with it false.
                    _ => Value::Null,
                }
            }
            Expr::Call(name, args) => {
                let value = args.first().map(|a| a.eval(object)).transpose()?.unwrap_or(Value::Null);
                match name.as_str() {
                    "len" => Value::from(match &value {
                        Value::Array(items) => items.len(),
                        Value::Object(map) => map.len(),
                        Value::String(text) => text.chars().count(),
                        _ => 0,
                    }),
                    "exists" => Value::Bool(!value.is_null()),
                    other => return Err(EvalError(format!("unknown function `{other}`"))),
                }
            }
        })
    }

    /// The expression as a condition: it must come out `true` or `false`.
    pub fn truth(&self, object: &Value) -> Result<bool, EvalError> {
        match self.eval(object)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError(format!("the expression gives {other}, not true or false"))),
        }
    }
}

fn compare_values(a: &Value, op: Op, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::Number(_), Value::Number(_)) => number_of(a).zip(number_of(b)).and_then(|(x, y)| x.partial_cmp(&y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match op {
        Op::Eq => ordering.map_or(a == b, |o| o == Ordering::Equal),
        Op::Ne => !ordering.map_or(a == b, |o| o == Ordering::Equal),
        Op::Lt => ordering == Some(Ordering::Less),
        Op::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ordering == Some(Ordering::Greater),
        Op::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(text: &str, object: &Value) -> bool {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).truth(object).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn comparisons_read_the_object() {
        let deployment = json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 3, "conditions": [
            {"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
        assert!(holds("status.readyReplicas >= spec.replicas", &deployment));
        assert!(holds("status.readyReplicas == 3.0 && spec.replicas - 1 == 2", &deployment));
        assert!(holds("len(status.conditions) == 2 && status.conditions[0].type == 'Available'", &deployment));
        assert!(holds(r#"metadata.labels["app.kubernetes.io/name"] == "web""#, &deployment));
        assert!(holds("!(status.replicas > 0) || exists(status.unavailableReplicas)", &deployment));
        // What is not there is null: comparisons with it are false, equality with null true.
        assert!(!holds("status.updatedReplicas >= 1", &deployment));
        assert!(holds("status.updatedReplicas == null && !exists(status.nothing.deeper)", &deployment));
        assert!(holds("'a' < 'b' && \"x\" + \"y\" == 'xy'", &deployment));
    }

    #[test]
    fn mistakes_say_where() {
        assert_eq!(parse("status.ready >=").unwrap_err().at, 15);
        assert_eq!(parse("status.ready === 1").unwrap_err().message, "unexpected `=`");
        assert!(parse("size(status)").unwrap_err().message.contains("unknown function `size`"));
        assert!(parse("len(a, b)").unwrap_err().message.contains("takes 1 argument"));
        assert!(parse(&"(".repeat(100)).unwrap_err().message.contains("nested"));
        assert!(parse("'unterminated").is_err());
        assert_eq!(
            parse("spec.replicas").unwrap().truth(&json!({"spec": {"replicas": 1}})),
            Err(EvalError("the expression gives 1, not true or false".into()))
        );
    }
}
