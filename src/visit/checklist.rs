//! The checklist as sent, read in one pass.
//!
//! Questions and answers are read straight from the checklist's text into
//! small structs whose members stay the sender's raw text, borrowed from
//! the body (the normalizer types the few it reads). Whatever is
//! not shaped as documented (an answer list that is a string, a question
//! that is a number) is kept as the JSON type found, so the normalizer can
//! say so in a warning. Member names decoded as JSON strings; a repeated
//! member keeps its last value, as everywhere else in the relay.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::value::RawValue;

use super::raw::{Name, RawObject};

/// An array as sent, or the JSON type found instead.
#[derive(Debug)]
pub enum List<T> {
    /// The elements, in order.
    Items(Vec<Item<T>>),
    /// Not an array: "an object", "a string", ...
    Not(&'static str),
}

/// An array element: an object read as `T`, or the JSON type found instead.
#[derive(Debug)]
pub enum Item<T> {
    /// The object.
    Object(T),
    /// Not an object.
    Not(&'static str),
}

/// One question as sent.
#[derive(Debug, Default)]
pub struct SentQuestion<'a> {
    /// `questionID`.
    pub question_id: Option<&'a RawValue>,
    /// `questionName`.
    pub question_name: Option<&'a RawValue>,
    /// `order`.
    pub order: Option<&'a RawValue>,
    /// `answers`; `None` when absent or null.
    pub answers: Option<List<SentAnswer<'a>>>,
}

/// One answer as sent.
#[derive(Debug, Default)]
pub struct SentAnswer<'a> {
    /// `answerID`.
    pub answer_id: Option<&'a RawValue>,
    /// `answerTypeID`.
    pub answer_type_id: Option<&'a RawValue>,
    /// `answerName`.
    pub answer_name: Option<&'a RawValue>,
    /// `order`.
    pub order: Option<&'a RawValue>,
    /// `value`, as the sender's bytes.
    pub value: Option<&'a RawValue>,
}

/// A Finish Visit body read in one pass: every member as its raw text,
/// except the checklist, which is read into questions and answers on the
/// way (it is most of the body; reading it from its raw text afterwards
/// would scan it twice).
#[derive(Debug, Default)]
pub struct SentVisit<'a> {
    /// The members other than `checklist`, in order.
    pub members: RawObject<'a>,
    /// `checklist`; `None` when absent or null.
    pub checklist: Option<List<SentQuestion<'a>>>,
}

impl<'de> Deserialize<'de> for SentVisit<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VisitVisitor;
        impl<'de> Visitor<'de> for VisitVisitor {
            type Value = SentVisit<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut visit = SentVisit {
                    members: RawObject::with_capacity(map.size_hint().unwrap_or(32)),
                    checklist: None,
                };
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    if name == "checklist" {
                        visit.checklist = map.next_value()?;
                    } else {
                        visit.members.set(name, map.next_value()?);
                    }
                }
                Ok(visit)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(serde::de::Error::custom("expected an object, got an array"))
            }
        }
        deserializer.deserialize_map(VisitVisitor)
    }
}

/// With serde_json's `arbitrary_precision` (which the relay uses to keep
/// numbers' digits), a number reaches `deserialize_any` as a one-member map
/// under this name.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// An object read member by member.
pub trait Members<'de>: Default {
    /// Reads the value of member `name` from `map`.
    ///
    /// # Errors
    /// The value is not valid JSON.
    fn member<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error>;
}

/// The visitor of [`List`] and [`Item`]: the wanted shape, or the JSON type
/// found instead.
struct Shape<T>(PhantomData<T>);

/// The scalar cases shared by both visitors: the JSON type found.
macro_rules! scalars_are_not_the_shape {
    () => {
        scalars_are_not_the_shape! {
            visit_unit() => "null",
            visit_bool(bool) => "a boolean",
            visit_i64(i64) => "a number",
            visit_u64(u64) => "a number",
            visit_f64(f64) => "a number",
            visit_str(&str) => "a string",
        }
    };
    ($($method:ident($($arg:ty)?) => $name:literal),* $(,)?) => {
        $(fn $method<E: serde::de::Error>(self $(, _: $arg)?) -> Result<Self::Value, E> {
            Ok(Self::Value::Not($name))
        })*
    };
}

/// Consumes an object whose first member name was `first`; tells whether it
/// was really a number (see [`NUMBER_TOKEN`]).
fn drain_object<'de, A: MapAccess<'de>>(first: &str, mut map: A) -> Result<&'static str, A::Error> {
    map.next_value::<IgnoredAny>()?;
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(if first == NUMBER_TOKEN {
        "a number"
    } else {
        "an object"
    })
}

impl<'de, T: Members<'de>> Visitor<'de> for Shape<List<T>> {
    type Value = List<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(8).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(List::Items(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        match map.next_key::<Name<'de>>()? {
            None => Ok(List::Not("an object")),
            Some(Name(first)) => drain_object(&first, map).map(List::Not),
        }
    }
    scalars_are_not_the_shape!();
}

impl<'de, T: Members<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Shape::<List<T>>(PhantomData))
    }
}

impl<'de, T: Members<'de>> Visitor<'de> for Shape<Item<T>> {
    type Value = Item<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = T::default();
        let Some(Name(first)) = map.next_key::<Name<'de>>()? else {
            return Ok(Item::Object(object));
        };
        if first == NUMBER_TOKEN {
            return drain_object(&first, map).map(Item::Not);
        }
        object.member(&first, &mut map)?;
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            object.member(&name, &mut map)?;
        }
        Ok(Item::Object(object))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item::Not("an array"))
    }
    scalars_are_not_the_shape!();
}

impl<'de, T: Members<'de>> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Shape::<Item<T>>(PhantomData))
    }
}

impl<'de> Members<'de> for SentQuestion<'de> {
    fn member<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "questionID" => self.question_id = Some(map.next_value()?),
            "questionName" => self.question_name = Some(map.next_value()?),
            "order" => self.order = Some(map.next_value()?),
            "answers" => self.answers = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de> Members<'de> for SentAnswer<'de> {
    fn member<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "answerID" => self.answer_id = Some(map.next_value()?),
            "answerTypeID" => self.answer_type_id = Some(map.next_value()?),
            "answerName" => self.answer_name = Some(map.next_value()?),
            "order" => self.order = Some(map.next_value()?),
            "value" => self.value = Some(map.next_value()?),
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<List<SentQuestion<'_>>, serde_json::Error> {
        serde_json::from_str(text)
    }

    fn questions(text: &str) -> Vec<Item<SentQuestion<'_>>> {
        match parse(text).expect("json") {
            List::Items(items) => items,
            List::Not(found) => panic!("not an array: {found}"),
        }
    }

    #[test]
    fn questions_and_answers_are_read_with_raw_values() {
        let items = questions(
            r#"[{"questionID": 3, "questionName": "¿Pagó?", "order": "2", "extra": {"x": 1},
                 "answers": [{"answerID": 9, "answerTypeID": 4, "answerName": null,
                              "order": 1, "value": "1234.50"}]}]"#,
        );
        let [Item::Object(q)] = items.as_slice() else {
            panic!("one question: {items:?}")
        };
        assert_eq!(q.question_id.map(RawValue::get), Some("3"));
        assert_eq!(q.question_name.map(RawValue::get), Some(r#""¿Pagó?""#));
        assert_eq!(q.order.map(RawValue::get), Some(r#""2""#));
        let Some(List::Items(answers)) = &q.answers else {
            panic!("answers: {:?}", q.answers)
        };
        let [Item::Object(a)] = answers.as_slice() else {
            panic!("one answer: {answers:?}")
        };
        assert_eq!(a.answer_type_id.map(RawValue::get), Some("4"));
        assert_eq!(a.answer_name.map(RawValue::get), Some("null"));
        assert_eq!(a.value.map(RawValue::get), Some(r#""1234.50""#));
    }

    #[test]
    fn what_is_not_the_documented_shape_is_named() {
        assert!(matches!(parse(r#"{"a": [1]}"#), Ok(List::Not("an object"))));
        assert!(matches!(parse("\"x\""), Ok(List::Not("a string"))));
        assert!(matches!(parse("1.5"), Ok(List::Not("a number"))));
        let items = questions(r#"[7, [1, {"a": 2}], true, null, {"answers": "none"}]"#);
        let found: Vec<&str> = items
            .iter()
            .map(|item| match item {
                Item::Not(found) => *found,
                Item::Object(q) => match &q.answers {
                    Some(List::Not(found)) => *found,
                    other => panic!("answers: {other:?}"),
                },
            })
            .collect();
        assert_eq!(
            found,
            ["a number", "an array", "a boolean", "null", "a string"]
        );
    }

    #[test]
    fn a_body_is_read_with_its_checklist_in_one_pass() {
        let sent: SentVisit<'_> = serde_json::from_str(
            r#"{"visitID": "A", "checklist": [{"questionID": 1}], "x": [1, 2]}"#,
        )
        .expect("object");
        let names: Vec<&str> = sent.members.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["visitID", "x"]);
        assert_eq!(sent.members.get("x").map(RawValue::get), Some("[1, 2]"));
        let Some(List::Items(items)) = &sent.checklist else {
            panic!("checklist: {:?}", sent.checklist)
        };
        let [Item::Object(q)] = items.as_slice() else {
            panic!("one question: {items:?}")
        };
        assert_eq!(q.question_id.map(RawValue::get), Some("1"));

        let null: SentVisit<'_> = serde_json::from_str(r#"{"checklist": null}"#).expect("object");
        assert!(null.checklist.is_none() && null.members.is_empty());
        let repeated: SentVisit<'_> =
            serde_json::from_str(r#"{"checklist": [], "checklist": "no"}"#).expect("object");
        assert!(matches!(repeated.checklist, Some(List::Not("a string"))));
        assert!(serde_json::from_str::<SentVisit<'_>>("[1]").is_err());
    }

    #[test]
    fn a_repeated_member_keeps_its_last_value_and_null_answers_are_absent() {
        let items = questions(r#"[{"order": 1, "order": 5, "answers": null}]"#);
        let [Item::Object(q)] = items.as_slice() else {
            panic!("one question")
        };
        assert_eq!(q.order.map(RawValue::get), Some("5"));
        assert!(q.answers.is_none());
    }
}
