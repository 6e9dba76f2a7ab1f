//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`): parsing with the API
//! server's grammar, exact decimal values, and the canonical form the API server stores.
//!
//! A value is `mantissa × 10^exponent` with a 128-bit mantissa, so arithmetic and
//! comparisons are exact; like the API server, precision finer than a nano-unit is
//! rounded up (away from zero).

use nom::branch::alt;
use nom::bytes::complete::tag;
use nom::character::complete::{char, digit0, digit1, one_of};
use nom::combinator::{all_consuming, map, opt, recognize, value};
use nom::sequence::preceded;
use nom::{IResult, Parser};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `1e3`, `12E-3`
    DecimalExponent,
    /// `1Ki`, `1.5Gi`
    BinarySI,
    /// `100m`, `2k`, `5`
    DecimalSI,
}

#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
    format: Format,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "\"{0}\" is not a quantity: write a number with an optional suffix (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei) or exponent (e3)"
    )]
    Syntax(String),
    #[error("\"{0}\" has too many significant digits (at most 38)")]
    TooPrecise(String),
    #[error("\"{0}\" is too large")]
    TooLarge(String),
}

/// Exponents beyond this are refused at parse time (a quantity of 10^1000 is no amount).
const MAX_EXPONENT: u32 = 1000;

const DECIMAL_SUFFIXES: &[(&str, i32)] =
    &[("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];
const BINARY_SUFFIXES: &[(&str, u32)] = &[("Ki", 1), ("Mi", 2), ("Gi", 3), ("Ti", 4), ("Pi", 5), ("Ei", 6)];

enum Suffix {
    Decimal(i32),
    Binary(u32),
    Exponent(i32),
}

fn suffix(input: &str) -> IResult<&str, Suffix> {
    let exponent = preceded(
        one_of("eE"),
        nom::combinator::map_res(recognize((opt(one_of("+-")), digit1)), |s: &str| s.parse::<i32>()),
    );
    let binary = alt((
        value(1, tag("Ki")),
        value(2, tag("Mi")),
        value(3, tag("Gi")),
        value(4, tag("Ti")),
        value(5, tag("Pi")),
        value(6, tag("Ei")),
    ));
    let decimal = alt((
        value(-9, tag("n")),
        value(-6, tag("u")),
        value(-3, tag("m")),
        value(3, tag("k")),
        value(6, tag("M")),
        value(9, tag("G")),
        value(12, tag("T")),
        value(15, tag("P")),
        value(18, tag("E")),
        value(0, tag("")),
    ));
    alt((map(exponent, Suffix::Exponent), map(binary, Suffix::Binary), map(decimal, Suffix::Decimal))).parse(input)
}

/// `[+-]? (digits | digits. | digits.digits | .digits)`, returned as (sign, whole, fraction).
fn number(input: &str) -> IResult<&str, (Option<char>, &str, &str)> {
    let with_whole = (digit1, opt(preceded(char('.'), digit0)));
    let fraction_only = preceded(char('.'), digit1);
    let (rest, sign) = opt(one_of("+-")).parse(input)?;
    let (rest, (whole, fraction)) =
        alt((map(with_whole, |(w, f): (&str, Option<&str>)| (w, f.unwrap_or(""))), map(fraction_only, |f| ("", f))))
            .parse(rest)?;
    Ok((rest, (sign, whole, fraction)))
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Quantity, QuantityError> {
        let syntax = || QuantityError::Syntax(text.to_string());
        let (_, ((sign, whole, fraction), suffix)) =
            all_consuming((number, suffix)).parse(text).map_err(|_| syntax())?;
        let digits = format!("{whole}{fraction}");
        let leading = digits.trim_start_matches('0');
        // Trailing zeros are exponent, not precision: `1` and 39 zeros is one digit.
        let significant = leading.trim_end_matches('0');
        let trailing = (leading.len() - significant.len()) as i32;
        if significant.len() > 38 {
            return Err(QuantityError::TooPrecise(text.to_string()));
        }
        let mut mantissa: i128 = if significant.is_empty() { 0 } else { significant.parse().map_err(|_| syntax())? };
        if sign == Some('-') {
            mantissa = -mantissa;
        }
        let mut exponent = trailing - fraction.len() as i32;
        let format = match suffix {
            Suffix::Decimal(e) => {
                exponent += e;
                Format::DecimalSI
            }
            Suffix::Exponent(e) => {
                // Far past any real amount, and far enough from i32's ends that the
                // arithmetic on exponents below cannot overflow.
                if e.unsigned_abs() > MAX_EXPONENT {
                    return Err(QuantityError::TooLarge(text.to_string()));
                }
                exponent += e;
                Format::DecimalExponent
            }
            Suffix::Binary(power) => {
                mantissa = mantissa
                    .checked_mul(1i128 << (10 * power))
                    .ok_or_else(|| QuantityError::TooLarge(text.to_string()))?;
                Format::BinarySI
            }
        };
        Ok(Quantity { mantissa, exponent, format }.rounded_to_nano())
    }
}

impl Quantity {
    pub fn zero() -> Quantity {
        Quantity { mantissa: 0, exponent: 0, format: Format::DecimalSI }
    }

    /// An integer number of milli-units (`250` → `250m`): how CPU is usually counted.
    pub fn from_millis(millis: i64) -> Quantity {
        Quantity { mantissa: millis as i128, exponent: -3, format: Format::DecimalSI }
    }

    /// An integer count (bytes, pods).
    pub fn from_units(units: i64, format: Format) -> Quantity {
        Quantity { mantissa: units as i128, exponent: 0, format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// The value rounded up to whole milli-units, as the scheduler counts CPU.
    pub fn millis_ceil(&self) -> i128 {
        self.scaled_ceil(-3)
    }

    /// The value rounded up to whole units, as the scheduler counts memory and pods.
    pub fn units_ceil(&self) -> i128 {
        self.scaled_ceil(0)
    }

    fn scaled_ceil(&self, scale: i32) -> i128 {
        let shift = self.exponent - scale;
        if shift >= 0 {
            pow10(shift as u32).and_then(|p| self.mantissa.checked_mul(p)).unwrap_or(if self.mantissa < 0 {
                i128::MIN
            } else {
                i128::MAX
            })
        } else {
            let divisor = pow10((-shift) as u32).unwrap_or(i128::MAX);
            let quotient = self.mantissa / divisor;
            if self.mantissa % divisor > 0 { quotient + 1 } else { quotient }
        }
    }

    /// `self + other`, exact; `None` if the result does not fit.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let exponent = self.exponent.min(other.exponent);
        let a = self.mantissa.checked_mul(pow10((self.exponent - exponent) as u32)?)?;
        let b = other.mantissa.checked_mul(pow10((other.exponent - exponent) as u32)?)?;
        Some(Quantity { mantissa: a.checked_add(b)?, exponent, format: self.format }.normalized())
    }

    /// `self × factor`, exact; `None` if the result does not fit.
    pub fn checked_mul(&self, factor: i64) -> Option<Quantity> {
        Some(Quantity { mantissa: self.mantissa.checked_mul(factor as i128)?, ..*self })
    }

    /// Precision beyond nano-units is rounded up, away from zero.
    fn rounded_to_nano(self) -> Quantity {
        if self.exponent >= -9 {
            return self.normalized();
        }
        let shift = (-9 - self.exponent) as u32;
        let mantissa = match pow10(shift) {
            Some(divisor) => {
                let quotient = self.mantissa / divisor;
                if self.mantissa % divisor != 0 { quotient + self.mantissa.signum() } else { quotient }
            }
            // Smaller than a nano-unit: rounds up to one.
            None => self.mantissa.signum(),
        };
        Quantity { mantissa, exponent: -9, format: self.format }.normalized()
    }

    /// Trailing zeros moved into the exponent: one representation per value.
    fn normalized(mut self) -> Quantity {
        if self.mantissa == 0 {
            self.exponent = 0;
            return self;
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.exponent += 1;
        }
        self
    }

    /// The canonical text, as the API server prints a stored quantity.
    pub fn canonical(&self) -> String {
        let q = self.normalized();
        if q.mantissa == 0 {
            return "0".into();
        }
        let mut format = q.format;
        let mut binary_units = None;
        if format == Format::BinarySI {
            let small = q.cmp(&Quantity::from_units(1024, Format::DecimalSI)).is_lt()
                && q.cmp(&Quantity::from_units(-1024, Format::DecimalSI)).is_gt();
            // A fraction or a small number would be rounded in binary form: decimal keeps it exact.
            binary_units = if small || q.exponent < 0 {
                None
            } else {
                pow10(q.exponent as u32).and_then(|p| q.mantissa.checked_mul(p))
            };
            if binary_units.is_none() {
                format = Format::DecimalSI;
            }
        }
        if let Some(mut units) = binary_units {
            let mut power = 0usize;
            while power < BINARY_SUFFIXES.len() && units % 1024 == 0 {
                units /= 1024;
                power += 1;
            }
            // With no binary suffix to write, the text would read back as decimal: print it
            // as decimal now, so canonical text is a fixed point (the API server would print
            // `10000` for 9.765625Ki, which reads back as `10k`).
            if power > 0 {
                return format!("{units}{}", BINARY_SUFFIXES[power - 1].0);
            }
            format = Format::DecimalSI;
        }
        // Decimal: the exponent goes to a multiple of three by growing the mantissa.
        let mut mantissa = q.mantissa;
        let mut exponent = q.exponent;
        let grow = exponent.rem_euclid(3);
        if let Some(grown) = pow10(grow as u32).and_then(|p| mantissa.checked_mul(p)) {
            mantissa = grown;
            exponent -= grow;
        }
        match format {
            Format::DecimalExponent => {
                if exponent == 0 {
                    mantissa.to_string()
                } else {
                    format!("{mantissa}e{exponent}")
                }
            }
            _ => {
                // Past exa there is no suffix: write more digits before the `E`.
                if exponent > 18
                    && let Some(grown) = pow10((exponent - 18) as u32).and_then(|p| mantissa.checked_mul(p))
                {
                    mantissa = grown;
                    exponent = 18;
                }
                match DECIMAL_SUFFIXES.iter().find(|(_, e)| *e == exponent) {
                    Some((suffix, _)) => format!("{mantissa}{suffix}"),
                    None => format!("{mantissa}e{exponent}"),
                }
            }
        }
    }

    /// Rounded up (away from zero) to whole milli-units, as the API server stores the
    /// amounts of a resource list (requests, limits, quotas, capacity).
    pub fn rounded_to_milli(&self) -> Quantity {
        let q = self.normalized();
        if q.exponent >= -3 {
            return q;
        }
        let divisor = pow10((-3 - q.exponent) as u32).unwrap_or(i128::MAX);
        let quotient = q.mantissa / divisor;
        let mantissa = if q.mantissa % divisor != 0 { quotient + q.mantissa.signum() } else { quotient };
        Quantity { mantissa, exponent: -3, format: q.format }.normalized()
    }

    /// A lossy view for display and scoring, never for decisions.
    pub fn as_f64(&self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.exponent)
    }
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// How many decimal digits a positive mantissa has.
fn digit_count(mut n: i128) -> i32 {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        let (a, b) = (self.normalized(), other.normalized());
        match a.mantissa.signum().cmp(&b.mantissa.signum()) {
            Ordering::Equal if a.mantissa == 0 => return Ordering::Equal,
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let negative = a.mantissa < 0;
        let (ma, mb) = (a.mantissa.unsigned_abs() as i128, b.mantissa.unsigned_abs() as i128);
        // Magnitude first (digits + exponent), then digits lined up: no overflow either way.
        let magnitude = (digit_count(ma) + a.exponent).cmp(&(digit_count(mb) + b.exponent));
        let ordering = if magnitude != Ordering::Equal {
            magnitude
        } else {
            let (da, db) = (digit_count(ma), digit_count(mb));
            let width = da.max(db);
            let pad = |m: i128, d: i32| m.checked_mul(10i128.pow((width - d) as u32)).unwrap_or(i128::MAX);
            pad(ma, da).cmp(&pad(mb, db))
        };
        if negative { ordering.reverse() } else { ordering }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canonical(text: &str) -> String {
        text.parse::<Quantity>().unwrap_or_else(|e| panic!("{text}: {e}")).canonical()
    }

    #[test]
    fn prints_as_the_api_server_does() {
        let cases = [
            ("0", "0"),
            ("0.0", "0"),
            ("-0", "0"),
            ("1", "1"),
            ("+1", "1"),
            ("-1", "-1"),
            ("1000", "1k"),
            ("1024", "1024"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("100m", "100m"),
            ("1000m", "1"),
            ("0.001", "1m"),
            ("0.0001", "100u"),
            ("1n", "1n"),
            ("1.5n", "2n"),
            ("0.0000000001", "1n"),
            ("-0.0000000001", "-1n"),
            ("1k", "1k"),
            ("1.5k", "1500"),
            ("1Ki", "1Ki"),
            ("1024Ki", "1Mi"),
            ("1536Ki", "1536Ki"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("1.1Ki", "1126400m"),
            ("0.1Ki", "102400m"),
            ("100Mi", "100Mi"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("12e2", "1200"),
            ("1.5e3", "1500"),
            ("1e-3", "1e-3"),
            ("5.", "5"),
            (".5", "500m"),
            ("1000E", "1000E"),
            // Exponents stay multiples of three.
            ("1e100", "10e99"),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical(input), expected, "{input}");
        }
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        for bad in ["", "m", "1.2.3", "1Kb", "1K", "1 Gi", "Gi", "1e", "1e+", "--1", "1i", "0x10", ".", "1.5.Gi"] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?} should not parse");
        }
        assert!(matches!(
            "123456789012345678901234567890123456789".parse::<Quantity>(),
            Err(QuantityError::TooPrecise(_))
        ));
    }

    #[test]
    fn compares_and_adds_exactly() {
        let q = |s: &str| s.parse::<Quantity>().unwrap();
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1024Mi"), q("1Gi"));
        assert!(q("-2") < q("-1"));
        assert!(q("1e100") > q("999999999E"));
        assert_eq!(q("100m").checked_add(&q("900m")).unwrap(), q("1"));
        assert_eq!(q("1.5").millis_ceil(), 1500);
        assert_eq!(q("1n").millis_ceil(), 1);
        assert_eq!(q("1.5Ki").units_ceil(), 1536);
    }

    fn quantity() -> impl Strategy<Value = Quantity> {
        (
            any::<i64>(),
            -9i32..30,
            prop_oneof![Just(Format::DecimalSI), Just(Format::BinarySI), Just(Format::DecimalExponent)],
        )
            .prop_map(|(mantissa, exponent, format)| {
                Quantity { mantissa: mantissa as i128, exponent, format }.normalized()
            })
    }

    proptest! {
        /// Printing and parsing again gives the same value, and the same text.
        #[test]
        fn canonical_text_round_trips(q in quantity()) {
            let text = q.canonical();
            let again: Quantity = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(again, q, "{}", text);
            prop_assert_eq!(again.canonical(), text);
        }

        #[test]
        fn order_agrees_with_floats_where_floats_are_exact(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, e in -6i32..6) {
            let qa = Quantity { mantissa: a as i128, exponent: e, format: Format::DecimalSI };
            let qb = Quantity { mantissa: b as i128, exponent: 0, format: Format::DecimalSI };
            prop_assert_eq!(qa.cmp(&qb), qa.as_f64().partial_cmp(&qb.as_f64()).unwrap());
        }
    }
}
