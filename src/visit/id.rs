//! Checklist ids and positions (`questionID`, `answerID`, `answerTypeID`,
//! `order`) as the document types them: an integer, or a string when the
//! sender's value is not one; null when missing. Read from the sender's raw
//! text, so the common case (an integer as digits) is borrowed and copied
//! into the document verbatim, without an allocation.

use std::borrow::Cow;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::raw;

/// One id or position of the checklist.
#[derive(Debug, Clone, Default)]
pub enum Id<'a> {
    /// Missing, null, an array or an object.
    #[default]
    Null,
    /// A JSON integer (within 64 bits), the sender's digits.
    Integer(&'a RawValue),
    /// A string holding an integer (`"11"`, spaces around allowed).
    FromString(i64),
    /// Anything else, as text: a string, a non-integer number's digits,
    /// `true`/`false`.
    Text(Cow<'a, str>),
}

impl<'a> Id<'a> {
    /// Types a sent value; `None` is a missing member.
    pub fn read(sent: Option<&'a RawValue>) -> Self {
        let Some(value) = sent else {
            return Self::Null;
        };
        let text = value.get();
        match text.as_bytes().first() {
            Some(b'"') => match raw::string(value) {
                Some(s) => match s.trim().parse::<i64>() {
                    Ok(i) => Self::FromString(i),
                    Err(_) => Self::Text(s),
                },
                None => Self::Null,
            },
            Some(b'-' | b'0'..=b'9') => {
                if text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok() {
                    Self::Integer(value)
                } else {
                    Self::Text(Cow::Borrowed(text))
                }
            }
            Some(b't') => Self::Text(Cow::Borrowed("true")),
            Some(b'f') => Self::Text(Cow::Borrowed("false")),
            _ => Self::Null,
        }
    }

    /// The integer, when it is one that fits `i64` (for sorting by `order`
    /// and looking up answer types).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Integer(digits) => digits.get().parse().ok(),
            Self::FromString(i) => Some(*i),
            Self::Null | Self::Text(_) => None,
        }
    }
}

impl Serialize for Id<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_unit(),
            Self::Integer(digits) => digits.serialize(serializer),
            Self::FromString(i) => serializer.serialize_i64(*i),
            Self::Text(text) => serializer.serialize_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(json: &str) -> String {
        let value: &RawValue = serde_json::from_str(json).expect("JSON");
        serde_json::to_string(&Id::read(Some(value))).expect("serializes")
    }

    #[test]
    fn integers_stay_integers_and_everything_else_becomes_text_or_null() {
        for (sent, document) in [
            ("11", "11"),
            ("-3", "-3"),
            ("18446744073709551615", "18446744073709551615"),
            ("18446744073709551616", r#""18446744073709551616""#),
            ("1.5", r#""1.5""#),
            ("2e3", r#""2e3""#),
            (r#"" 42 ""#, "42"),
            (r#""A-7""#, r#""A-7""#),
            (r#""caf\u00e9""#, r#""café""#),
            ("true", r#""true""#),
            ("false", r#""false""#),
            ("null", "null"),
            ("[1]", "null"),
            (r#"{"a":1}"#, "null"),
        ] {
            assert_eq!(typed(sent), document, "{sent}");
        }
        assert_eq!(
            serde_json::to_string(&Id::read(None)).expect("serializes"),
            "null"
        );
    }

    #[test]
    fn only_integers_within_i64_sort() {
        let id = |json: &'static str| Id::read(Some(serde_json::from_str(json).expect("JSON")));
        assert_eq!(id("7").as_i64(), Some(7));
        assert_eq!(id(r#""7""#).as_i64(), Some(7));
        assert_eq!(id("18446744073709551615").as_i64(), None);
        assert_eq!(id("1.5").as_i64(), None);
        assert_eq!(id("null").as_i64(), None);
    }
}
