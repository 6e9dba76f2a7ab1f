//! Kubernetes' field errors (apimachinery's `util/validation/field`) as the API server
//! words them: `<type>: <value>: <detail>`, the value printed as Go prints it, and the
//! `Status` cause reason each type carries. Every check that mirrors a server-side
//! validation (CRDs, custom resources) says its findings through these, so a client
//! reads the very message a real API server sends.

use crate::admission::Cause;
use serde_json::Value;

/// A value as a field error prints it: strings Go-quoted (`%q`), numbers and booleans
/// plain (`%v`), nothing as the quoted string `"null"` (Go's `ErrorBody` turns nil into
/// that string); lists and maps as Go's `%#v` prints the decoded JSON
/// (`[]interface {}{...}`, `map[string]interface {}{"a":1}`).
pub fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => go_quote(text),
        Value::Number(number) => go_number(number),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "\"null\"".into(),
        Value::Array(_) | Value::Object(_) => go_syntax(value),
    }
}

/// Go's `%#v` of a decoded JSON value (`interface{}`).
fn go_syntax(value: &Value) -> String {
    match value {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => go_number(number),
        Value::String(text) => go_quote(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(go_syntax).collect();
            format!("[]interface {{}}{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            // fmt prints map entries sorted by key.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let entries: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", go_quote(k), go_syntax(&map[*k]))).collect();
            format!("map[string]interface {{}}{{{}}}", entries.join(", "))
        }
    }
}

/// A JSON number as Go's `%v` prints the int64 or float64 it decodes to.
pub fn go_number(number: &serde_json::Number) -> String {
    if number.is_i64() || number.is_u64() {
        return number.to_string();
    }
    go_float(number.as_f64().unwrap_or_default())
}

/// A float64 as `%v` prints it: the shortest form that reads back, with an exponent only
/// for very large or very small magnitudes (`1e+21`, `1e-05`).
pub fn go_float(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e21 {
        return format!("{value:.0}");
    }
    let exponent = if value == 0.0 { 0 } else { value.abs().log10().floor() as i32 };
    if (-4..21).contains(&exponent) {
        return value.to_string();
    }
    // Rust writes `1e21` and `1e-5`; Go writes `1e+21` and `1e-05`.
    let formatted = format!("{value:e}");
    let (mantissa, exp) = formatted.split_once('e').unwrap_or((&formatted, "0"));
    let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Go's `strconv.Quote` (`%q`) for the text a field error shows.
pub fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() { head } else { format!("{head}: {detail}") }
}

fn cause(field: impl Into<String>, message: String, code: &'static str) -> Cause {
    Cause { field: field.into(), message, code }
}

/// `field.Invalid`: a malformed value.
pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
    cause(field, with_detail(format!("Invalid value: {}", shown(value)), detail), INVALID)
}

/// `field.TypeInvalid`: a value of the wrong type (printed as `Invalid value`).
pub fn type_invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
    cause(field, with_detail(format!("Invalid value: {}", shown(value)), detail), TYPE_INVALID)
}

/// `field.Required`: a value that must be given.
pub fn required(field: impl Into<String>, detail: &str) -> Cause {
    cause(field, with_detail("Required value".into(), detail), REQUIRED)
}

/// `field.NotSupported`: a value outside a fixed set.
pub fn not_supported<S: AsRef<str>>(field: impl Into<String>, value: &Value, supported: &[S]) -> Cause {
    let supported: Vec<String> = supported.iter().map(|s| go_quote(s.as_ref())).collect();
    let detail =
        if supported.is_empty() { String::new() } else { format!("supported values: {}", supported.join(", ")) };
    cause(field, with_detail(format!("Unsupported value: {}", shown(value)), &detail), NOT_SUPPORTED)
}

/// `field.Forbidden`: a value not allowed here.
pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
    cause(field, with_detail("Forbidden".into(), detail), FORBIDDEN)
}

/// `field.TooLong`: a string longer than its limit (the value is not printed).
pub fn too_long(field: impl Into<String>, max: i64) -> Cause {
    let detail = match max {
        1 => "may not be more than 1 byte".to_string(),
        max if max >= 0 => format!("may not be more than {max} bytes"),
        _ => "value is too long".to_string(),
    };
    cause(field, format!("Too long: {detail}"), TOO_LONG)
}

/// `field.TooMany`: a list or map with more items than allowed.
pub fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Cause {
    cause(field, format!("Too many: {actual}: must have at most {max} items"), TOO_MANY)
}

/// `field.Duplicate`: a value that must be unique.
pub fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
    cause(field, format!("Duplicate value: {}", shown(value)), DUPLICATE)
}

const INVALID: &str = "field/invalid";
const TYPE_INVALID: &str = "field/type-invalid";
const REQUIRED: &str = "field/required";
const NOT_SUPPORTED: &str = "field/not-supported";
const FORBIDDEN: &str = "field/forbidden";
const TOO_LONG: &str = "field/too-long";
const TOO_MANY: &str = "field/too-many";
const DUPLICATE: &str = "field/duplicate";

/// The `Status` cause reason of a cause: Kubernetes' for the field errors above; for the
/// compiler's own diagnostics, `FieldValueRequired` for a missing field and
/// `FieldValueInvalid` for the rest.
pub fn reason(code: &str) -> &'static str {
    match code {
        REQUIRED => "FieldValueRequired",
        NOT_SUPPORTED => "FieldValueNotSupported",
        FORBIDDEN => "FieldValueForbidden",
        TOO_LONG => "FieldValueTooLong",
        TOO_MANY => "FieldValueTooMany",
        DUPLICATE => "FieldValueDuplicate",
        TYPE_INVALID => "FieldValueTypeInvalid",
        code if code.starts_with("schema/required") => "FieldValueRequired",
        _ => "FieldValueInvalid",
    }
}

/// The reason of a cause from a rule that words its findings as Kubernetes' field errors
/// (`object/unsupported-value` says `Unsupported value`, `Required value` or `Invalid
/// value`, as the API server's check of that field does): read from the words.
pub fn reason_of(code: &str, message: &str) -> &'static str {
    if code != "object/unsupported-value" {
        return reason(code);
    }
    if message.starts_with("Unsupported value") {
        reason(NOT_SUPPORTED)
    } else if message.starts_with("Required value") {
        reason(REQUIRED)
    } else {
        reason(INVALID)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(shown(&json!("a\"b")), r#""a\"b""#);
        assert_eq!(shown(&json!(3)), "3");
        assert_eq!(shown(&json!(1.5)), "1.5");
        assert_eq!(shown(&json!(2.0)), "2");
        assert_eq!(shown(&json!(null)), r#""null""#);
        assert_eq!(shown(&json!({"name": "a", "port": 80})), r#"map[string]interface {}{"name":"a", "port":80}"#);
        assert_eq!(shown(&json!(["a", 1])), r#"[]interface {}{"a", 1}"#);
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(0.0001), "0.0001");
    }

    #[test]
    fn messages_and_reasons_are_kubernetes_own() {
        let c = not_supported("spec.color", &json!("purple"), &["red", "blue"]);
        assert_eq!(c.message, r#"Unsupported value: "purple": supported values: "red", "blue""#);
        assert_eq!(reason(c.code), "FieldValueNotSupported");
        assert_eq!(too_long("spec.name", 5).message, "Too long: may not be more than 5 bytes");
        assert_eq!(too_many("spec.items", 4, 3).message, "Too many: 4: must have at most 3 items");
        assert_eq!(required("spec.size", "").message, "Required value");
        assert_eq!(reason(required("x", "").code), "FieldValueRequired");
        assert_eq!(invalid("spec.size", &json!(0), "too small").message, "Invalid value: 0: too small");
        assert_eq!(reason(type_invalid("x", &json!("string"), "").code), "FieldValueTypeInvalid");
        assert_eq!(reason("schema/required"), "FieldValueRequired");
        assert_eq!(reason("metadata/invalid-name"), "FieldValueInvalid");
    }
}
