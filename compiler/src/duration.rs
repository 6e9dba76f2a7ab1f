//! Durations in Go's syntax (`300ms`, `1h30m`, `-1.5h`), as Kubernetes objects and kubectl
//! write them (`--timeout`, `activeDeadlineSeconds` aside): parsing as `time.ParseDuration`
//! does, and printing as `Duration.String` does.

use nom::bytes::complete::take_while1;
use nom::character::complete::{char, digit0, one_of};
use nom::combinator::{all_consuming, opt, recognize};
use nom::multi::many1;
use nom::{IResult, Parser};
use std::fmt;
use std::str::FromStr;

/// A signed duration in nanoseconds, with Go's range (±292 years).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("\"{0}\" is not a duration: write a number and a unit (ns, us, ms, s, m, h), like 300ms or 1h30m")]
    Syntax(String),
    #[error("\"{0}\" is out of range (durations are at most about 292 years)")]
    Overflow(String),
}

const NANOS: &[(&str, i64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// One `number unit` pair: digits with an optional fraction, then the unit's letters.
fn part(input: &str) -> IResult<&str, (&str, &str)> {
    (recognize((digit0, opt((char('.'), digit0)))), take_while1(|c: char| c.is_alphabetic())).parse(input)
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let syntax = || DurationError::Syntax(text.to_string());
        let overflow = || DurationError::Overflow(text.to_string());
        let (sign, rest) = match opt(one_of::<_, _, nom::error::Error<&str>>("+-")).parse(text) {
            Ok((rest, sign)) => (sign, rest),
            Err(_) => return Err(syntax()),
        };
        if rest == "0" {
            return Ok(Duration(0));
        }
        let (_, parts) = all_consuming(many1(part)).parse(rest).map_err(|_| syntax())?;
        let mut total: i128 = 0;
        for (number, unit) in parts {
            let scale = NANOS.iter().find(|(u, _)| *u == unit).map(|(_, n)| *n as i128).ok_or_else(syntax)?;
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            if whole.is_empty() && fraction.is_empty() {
                return Err(syntax());
            }
            let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| overflow())? };
            total = total.checked_add(whole.checked_mul(scale).ok_or_else(overflow)?).ok_or_else(overflow)?;
            // The fraction counts exactly to the nanosecond; finer digits are dropped, as Go does.
            let mut unit_part = scale;
            for digit in fraction.bytes() {
                unit_part /= 10;
                if unit_part == 0 {
                    break;
                }
                total += (digit - b'0') as i128 * unit_part;
            }
            if total > i64::MAX as i128 + 1 {
                return Err(overflow());
            }
        }
        let signed = if sign == Some('-') { -total } else { total };
        i64::try_from(signed).map(Duration).map_err(|_| overflow())
    }
}

impl fmt::Display for Duration {
    /// Go's format: `1h30m0s`, `1.5s`, `300ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.0 < 0;
        let nanos = self.0.unsigned_abs();
        let sign = if negative { "-" } else { "" };
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            // Below a second: the largest unit that keeps an integer part.
            let (unit, size) = if nanos < 1_000 {
                ("ns", 1)
            } else if nanos < 1_000_000 {
                ("µs", 1_000)
            } else {
                ("ms", 1_000_000)
            };
            return write!(f, "{sign}{}{unit}", fraction(nanos, size));
        }
        let hours = nanos / 3_600_000_000_000;
        let minutes = nanos / 60_000_000_000 % 60;
        let seconds = fraction(nanos % 60_000_000_000, 1_000_000_000);
        if hours > 0 {
            write!(f, "{sign}{hours}h{minutes}m{seconds}s")
        } else if minutes > 0 {
            write!(f, "{sign}{minutes}m{seconds}s")
        } else {
            write!(f, "{sign}{seconds}s")
        }
    }
}

/// `value / size` in decimal, without trailing zeros.
fn fraction(value: u64, size: u64) -> String {
    let whole = value / size;
    let rest = value % size;
    if rest == 0 {
        return whole.to_string();
    }
    let width = size.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl Duration {
    pub fn from_secs(seconds: i64) -> Duration {
        Duration(seconds.saturating_mul(1_000_000_000))
    }

    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_like_go() {
        let cases = [
            ("0", "0s"),
            ("0s", "0s"),
            ("300ms", "300ms"),
            ("1.5s", "1.5s"),
            ("1h30m", "1h30m0s"),
            ("-1.5h", "-1h30m0s"),
            ("90m", "1h30m0s"),
            ("1h0.5s", "1h0m0.5s"),
            ("2us", "2µs"),
            ("2µs", "2µs"),
            ("1ns", "1ns"),
            (".5s", "500ms"),
            ("1.000000001s", "1.000000001s"),
            ("+5m", "5m0s"),
        ];
        for (input, expected) in cases {
            let d: Duration = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(d.to_string(), expected, "{input}");
        }
        for bad in ["", "1", "s", "1x", "1.s.", "-", "1h 30m", "10000000000h"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should not parse");
        }
    }

    proptest! {
        #[test]
        fn printed_durations_parse_back(nanos in any::<i64>().prop_filter("Go cannot print i64::MIN's magnitude back", |n| *n != i64::MIN)) {
            let d = Duration(nanos);
            let text = d.to_string();
            let again: Duration = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(again, d);
        }
    }
}
