//! A JSON object as sent: member names decoded, values kept as their raw
//! text (`&RawValue`), borrowed from the body.
//!
//! The normalizer reads a handful of small scalars and copies everything
//! else (unknown fields, checklist values, phones, emails) verbatim, so it
//! never builds a full document tree: one parse, few allocations, and
//! `extra`/`rawValue` carry the sender's bytes exactly.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, SeqAccess, Visitor},
    ser::SerializeMap,
};
use serde_json::value::RawValue;

/// An object's members in order. A repeated name keeps its first position
/// and its last value, as a JSON parser building a map would.
#[derive(Debug, Clone, Default)]
pub struct RawObject<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    /// The raw value of `name`.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> {
        self.members.iter().map(|(n, v)| (n.as_ref(), *v))
    }

    /// Sets a member as a parser meets it: a repeated name keeps its first
    /// position and takes the new value.
    pub(crate) fn set(&mut self, name: Cow<'a, str>, value: &'a RawValue) {
        match self.members.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.members.push((name, value)),
        }
    }

    /// Appends a member (used to build `extra`).
    pub fn push(&mut self, name: &str, value: &'a RawValue) {
        self.members.push((Cow::Owned(name.to_owned()), value));
    }

    /// An empty object with room for `members` members.
    pub(crate) fn with_capacity(members: usize) -> Self {
        Self {
            members: Vec::with_capacity(members),
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Parses a raw value into a small [`serde_json::Value`] (scalars, ids).
pub fn value(raw: &RawValue) -> serde_json::Value {
    serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null)
}

/// A JSON string's content, borrowed from the body unless it has escapes;
/// `None` when `raw` is not a string.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let content = text.strip_prefix('"')?.strip_suffix('"')?;
    if content.contains('\\') {
        serde_json::from_str(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(content))
    }
}

/// A member name, borrowed from the body unless it has escapes.
pub(crate) struct Name<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut object = RawObject::with_capacity(map.size_hint().unwrap_or(32));
                while let Some((Name(name), value)) =
                    map.next_entry::<Name<'de>, &'de RawValue>()?
                {
                    object.set(name, value);
                }
                Ok(object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(serde::de::Error::custom("expected an object, got an array"))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

impl Serialize for RawObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.members.len()))?;
        for (name, value) in &self.members {
            map.serialize_entry(name.as_ref(), value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).expect("raw value")
    }

    #[test]
    fn members_keep_their_raw_text_and_order() {
        let body = raw(r#"{"b": 1.50, "a\u0041": {"x": [1, 2]}, "c": "\u00e9"}"#);
        let object: RawObject<'_> = serde_json::from_str(body.get()).expect("object");
        let names: Vec<&str> = object.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["b", "aA", "c"]);
        assert_eq!(object.get("b").map(RawValue::get), Some("1.50"));
        assert_eq!(
            object.get("aA").map(RawValue::get),
            Some(r#"{"x": [1, 2]}"#)
        );
        assert_eq!(
            serde_json::to_string(&object).expect("serialize"),
            r#"{"b":1.50,"aA":{"x": [1, 2]},"c":"\u00e9"}"#
        );
    }

    #[test]
    fn a_repeated_name_keeps_its_last_value() {
        let object: RawObject<'_> =
            serde_json::from_str(r#"{"k": 1, "z": 0, "k": 2}"#).expect("object");
        assert_eq!(object.len(), 2);
        assert_eq!(object.get("k").map(RawValue::get), Some("2"));
    }

    #[test]
    fn arrays_are_not_objects() {
        assert!(serde_json::from_str::<RawObject<'_>>("[1]").is_err());
    }
}
