//! Lenient readers for the vendor's scalar fields.
//!
//! The vendor documents types it does not always send (ids typed int but sent
//! as strings, booleans as `"false"`). Each reader accepts every spelling seen
//! and returns `Ok(None)` for null, or `Err(message)` when the value cannot be
//! read; the caller turns that message into a warning, never a refusal.

use std::borrow::Cow;

use serde_json::{Number, Value, value::RawValue};

use super::{json_type_name, raw};

/// Result of reading one field: `Ok(None)` is a legitimate null.
pub type Read<T> = Result<Option<T>, String>;

fn wrong_type(expected: &str, got: &Value) -> String {
    format!("expected {expected}, got {}", json_type_name(got))
}

/// An identifier as a string: strings as sent, numbers by their digits.
pub fn id_string(v: &Value) -> Read<String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(wrong_type("a string or number", other)),
    }
}

/// Free text: strings as sent; numbers and booleans are stringified with a
/// warning-free conversion because they carry no ambiguity.
pub fn text(v: &Value) -> Read<String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(wrong_type("a string", other)),
    }
}

/// [`id_string`] read from the sender's raw value, borrowing from the body.
pub fn id_string_raw(raw: &RawValue) -> Read<Cow<'_, str>> {
    scalar_text(raw, "a string or number", false)
}

/// [`text`] read from the sender's raw value, borrowing from the body.
pub fn text_raw(raw: &RawValue) -> Read<Cow<'_, str>> {
    scalar_text(raw, "a string", true)
}

/// A scalar as text without parsing it: a string's content (borrowed
/// unless it has escapes), a number's digits, and `true`/`false` when
/// `booleans` are text too.
fn scalar_text<'a>(raw: &'a RawValue, expected: &str, booleans: bool) -> Read<Cow<'a, str>> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => Ok(raw::string(raw)),
        Some(b'-' | b'0'..=b'9') => Ok(Some(Cow::Borrowed(text))),
        Some(b't' | b'f') if booleans => Ok(Some(Cow::Borrowed(text))),
        Some(b'n') => Ok(None),
        _ => Err(wrong_type(expected, &raw::value(raw))),
    }
}

/// A boolean from `true/false`, `"true"/"false"` or `1/0` (number or string).
pub fn boolean(v: &Value) -> Read<bool> {
    let parsed = match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim() {
            t if t.eq_ignore_ascii_case("true") || t == "1" => Some(true),
            t if t.eq_ignore_ascii_case("false") || t == "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| format!("expected a boolean, got {}", describe(v)))
}

/// The wider boolean vocabulary of checklist switches: also `sí/si/no`, any case.
pub fn switch_boolean(v: &Value) -> Read<bool> {
    if let Value::String(s) = v {
        let t = s.trim();
        if lowercase_is(t, "sí") || lowercase_is(t, "si") {
            return Ok(Some(true));
        }
        if lowercase_is(t, "no") {
            return Ok(Some(false));
        }
    }
    boolean(v)
}

/// Whether `text` in lower case is `lower`, without building the lower-case copy.
fn lowercase_is(text: &str, lower: &str) -> bool {
    text.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

/// A JSON number, from a number or a numeric string, keeping its digits.
pub fn number(v: &Value) -> Read<Number> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) if is_finite(n) => Ok(Some(n.clone())),
        Value::Number(n) => Err(format!("{n} is out of range")),
        Value::String(s) => parse_number(s)
            .map(Some)
            .ok_or_else(|| format!("expected a number, got {}", describe(v))),
        other => Err(wrong_type("a number", other)),
    }
}

/// Whether a number is representable as a finite 64-bit float (what most
/// consumers' JSON parsers need); `1e400` is valid JSON but is not.
fn is_finite(n: &Number) -> bool {
    n.as_f64().is_some_and(f64::is_finite)
}

/// Parses a numeric string into a JSON number (JSON number grammar, trimmed).
pub fn parse_number(s: &str) -> Option<Number> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let n: Number = s.parse().ok()?;
    is_finite(&n).then_some(n)
}

/// An exact decimal as a string (`"1234.50"`): the digits are kept, never
/// passed through a binary float. A single comma is read as the decimal
/// separator (`"1234,50"`), as many Spanish-language forms write it.
pub fn decimal(v: &Value) -> Read<String> {
    let raw = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        other => return Err(wrong_type("a decimal number", other)),
    };
    let candidate = if !raw.contains('.') && raw.matches(',').count() == 1 {
        raw.replace(',', ".")
    } else {
        raw.clone()
    };
    let unsigned = candidate
        .strip_prefix('-')
        .or_else(|| candidate.strip_prefix('+'))
        .unwrap_or(&candidate);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = digits_only(int)
        && digits_only(frac)
        && !(int.is_empty() && frac.is_empty())
        && !(candidate.ends_with('.'));
    if !well_formed {
        return Err(format!("expected a decimal number, got {raw:?}"));
    }
    let sign = if candidate.starts_with('-') { "-" } else { "" };
    let int = if int.is_empty() { "0" } else { int };
    Ok(Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }))
}

/// Short description of a value for warnings, without echoing long input.
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        Value::String(_) => "a long string".into(),
        Value::Number(n) => n.to_string(),
        other => json_type_name(other).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_keep_their_digits_whether_sent_as_numbers_or_strings() {
        assert_eq!(id_string(&json!(21559)).unwrap().unwrap(), "21559");
        assert_eq!(
            id_string(&json!("9A1190V5974")).unwrap().unwrap(),
            "9A1190V5974"
        );
        let big: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
        assert_eq!(
            id_string(&big).unwrap().unwrap(),
            "123456789012345678901234567890"
        );
        assert!(id_string(&json!([1])).is_err());
        assert_eq!(id_string(&json!(null)).unwrap(), None);
    }

    #[test]
    fn booleans_accept_every_documented_spelling() {
        for (v, want) in [
            (json!(true), true),
            (json!(false), false),
            (json!("true"), true),
            (json!("FALSE"), false),
            (json!(1), true),
            (json!(0), false),
            (json!("1"), true),
            (json!("0"), false),
        ] {
            assert_eq!(boolean(&v).unwrap(), Some(want), "{v}");
        }
        assert!(boolean(&json!("yes")).is_err());
        assert!(boolean(&json!(2)).is_err());
        assert_eq!(boolean(&json!(null)).unwrap(), None);
    }

    #[test]
    fn switches_also_read_spanish_yes_and_no() {
        assert_eq!(switch_boolean(&json!("Sí")).unwrap(), Some(true));
        assert_eq!(switch_boolean(&json!("SI")).unwrap(), Some(true));
        assert_eq!(switch_boolean(&json!("No")).unwrap(), Some(false));
        assert_eq!(switch_boolean(&json!("false")).unwrap(), Some(false));
        assert!(switch_boolean(&json!("maybe")).is_err());
    }

    #[test]
    fn decimals_keep_exact_digits() {
        let n: Value = serde_json::from_str("1234.50").unwrap();
        assert_eq!(decimal(&n).unwrap().unwrap(), "1234.50");
        assert_eq!(decimal(&json!("1234.50")).unwrap().unwrap(), "1234.50");
        assert_eq!(decimal(&json!(" 1234,50 ")).unwrap().unwrap(), "1234.50");
        assert_eq!(decimal(&json!("-.5")).unwrap().unwrap(), "-0.5");
        assert_eq!(decimal(&json!("+7")).unwrap().unwrap(), "7");
        let exact: Value = serde_json::from_str("0.1000000000000000000001").unwrap();
        assert_eq!(
            decimal(&exact).unwrap().unwrap(),
            "0.1000000000000000000001"
        );
        for bad in [
            json!("12a"),
            json!("1.2.3"),
            json!("1e3"),
            json!(""),
            json!("5."),
        ] {
            assert!(decimal(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_come_from_numbers_or_numeric_strings() {
        assert_eq!(number(&json!("5")).unwrap().unwrap().to_string(), "5");
        assert_eq!(
            number(&json!(" -1.25 ")).unwrap().unwrap().to_string(),
            "-1.25"
        );
        assert!(number(&json!("five")).is_err());
        assert!(number(&json!("NaN")).is_err());
        assert!(number(&json!({})).is_err());
        let huge: Value = serde_json::from_str("1e400").unwrap();
        assert!(number(&huge).is_err(), "out of f64 range");
        assert!(number(&json!("1e400")).is_err());
    }

    #[test]
    fn reading_the_raw_value_gives_what_reading_the_parsed_one_gives() {
        for sent in [
            r#""Cliente ya pagó""#,
            r#""tab\tand \"quotes\"""#,
            r#""""#,
            "12",
            "-1.50",
            "true",
            "false",
            "null",
            "[1]",
            r#"{"a":1}"#,
        ] {
            let raw: &RawValue = serde_json::from_str(sent).unwrap();
            let owned = |read: Read<Cow<'_, str>>| read.map(|t| t.map(Cow::into_owned));
            assert_eq!(owned(text_raw(raw)), text(&raw::value(raw)), "{sent}");
            assert_eq!(
                owned(id_string_raw(raw)),
                id_string(&raw::value(raw)),
                "{sent}"
            );
        }
    }
}
