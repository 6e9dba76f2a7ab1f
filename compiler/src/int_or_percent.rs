//! `intstr.GetScaledValueFromIntOrPercent`: a count, or a percentage of a total rounded
//! up or down. One home for it: the Deployment's `maxSurge`/`maxUnavailable`, the
//! DaemonSet's, and a PodDisruptionBudget's `minAvailable`/`maxUnavailable` all read
//! their int-or-percent fields through it.

use serde_json::Value;

/// An `IntOrString` field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrString<'a> {
    Int(i64),
    String(&'a str),
}

impl<'a> IntOrString<'a> {
    /// The field as JSON holds it; `None` for anything but a number or a string.
    pub fn from_json(value: &'a Value) -> Option<IntOrString<'a>> {
        match value {
            Value::Number(n) => n.as_i64().map(IntOrString::Int),
            Value::String(text) => Some(IntOrString::String(text)),
            _ => None,
        }
    }

    /// Whether it is a percentage (`"25%"`), as `intstr` tells them apart.
    pub fn is_percent(&self) -> bool {
        matches!(self, IntOrString::String(text) if text.ends_with('%'))
    }
}

/// A count as is, or `percent` of `total`, rounded up or down; the error in Go's words
/// (`invalid value for IntOrString: invalid type: string is not a percentage`).
pub fn scaled(value: IntOrString<'_>, total: i64, round_up: bool) -> Result<i64, String> {
    let text = match value {
        IntOrString::Int(count) => return Ok(count),
        IntOrString::String(text) => text,
    };
    let Some(digits) = text.strip_suffix('%') else {
        return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
    };
    let percent: i64 = digits.parse().map_err(|_| {
        format!(
            "invalid value for IntOrString: invalid value {text:?}: strconv.Atoi: parsing {digits:?}: invalid syntax"
        )
    })?;
    // Go computes in float64; whole numbers keep it exact well past any replica count.
    let exact = percent as f64 * total as f64 / 100.0;
    Ok(if round_up { exact.ceil() } else { exact.floor() } as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_stay_and_percentages_scale_rounded_as_asked() {
        assert_eq!(scaled(IntOrString::Int(3), 10, true), Ok(3));
        assert_eq!(scaled(IntOrString::String("25%"), 10, true), Ok(3));
        assert_eq!(scaled(IntOrString::String("25%"), 10, false), Ok(2));
        assert_eq!(scaled(IntOrString::String("100%"), 7, false), Ok(7));
        assert_eq!(scaled(IntOrString::String("0%"), 7, true), Ok(0));
        assert!(scaled(IntOrString::String("3"), 10, true).unwrap_err().contains("not a percentage"));
        assert!(scaled(IntOrString::String("x%"), 10, true).unwrap_err().contains("invalid value \"x%\""));
        assert_eq!(IntOrString::from_json(&json!("50%")), Some(IntOrString::String("50%")));
        assert_eq!(IntOrString::from_json(&json!(2)), Some(IntOrString::Int(2)));
        assert_eq!(IntOrString::from_json(&json!(true)), None);
        assert!(IntOrString::String("5%").is_percent() && !IntOrString::Int(5).is_percent());
    }
}
