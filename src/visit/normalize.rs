//! Raw Finish Visit body -> the typed, versioned document of CONTRACT.md §5.
//!
//! Pure and total: any JSON object yields a document. Whatever cannot be read
//! becomes null plus a warning, so an authenticated visit is never refused for
//! its content. Top-level fields this module does not know land in `extra`
//! verbatim, and every checklist answer keeps its `rawValue`, so nothing sent
//! is lost between the raw and the normalized message.
//!
//! The body is parsed once into borrowed raw members ([`RawObject`]) and
//! the checklist's questions and answers ([`SentVisit`]); only the small
//! scalars the document types are parsed further, and everything
//! copied verbatim is copied as the sender's bytes. The document borrows
//! from the envelope and is serialized straight away.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Number, Value, value::RawValue};

use super::Envelope;
use super::answer::AnswerType;
use super::checklist::{Item, List, SentAnswer, SentQuestion, SentVisit};
use super::fields::{self, Read};
use super::id::Id;
use super::product::Product;
use super::raw::{self, RawObject};
use super::time::{self, VisitTime};

/// Version of the document layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The normalized visit (schema version 1).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NormalizedVisit<'a> {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `"visit.finished"`.
    pub event: &'static str,
    /// Hex SHA-256 of the raw body.
    pub message_id: String,
    /// Receipt id (UUID v7).
    pub receipt_id: String,
    /// Receipt time, RFC 3339 UTC.
    pub received_at: String,
    /// Product id, slug and name.
    pub product: ProductInfo,
    /// Visit id as a string.
    pub visit_id: Option<Cow<'a, str>>,
    /// Customer's account id as a string.
    pub external_id: Option<Cow<'a, str>>,
    /// Kind of visit, e.g. "Cobranza".
    pub visit_type: Option<Cow<'a, str>>,
    /// Client's name.
    pub client: Option<Cow<'a, str>>,
    /// Agent's comment.
    pub comment: Option<Cow<'a, str>>,
    /// Label the agent chose (`tagName`).
    pub tag: Option<Cow<'a, str>>,
    /// Why the visit was cancelled.
    pub cancellation_reason: Option<Cow<'a, str>>,
    /// Who made the visit.
    pub agent: Agent<'a>,
    /// Where, when readable.
    pub location: Option<Location>,
    /// Interest on the account.
    pub interest: Option<Number>,
    /// The agent moved the geolocation of the original address.
    pub rebound: Option<bool>,
    /// The visit is finished.
    pub finished: Option<bool>,
    /// The visit was cancelled.
    pub cancelled: Option<bool>,
    /// The IANA zone name exactly as sent.
    pub time_zone: Option<Cow<'a, str>>,
    /// Start, RFC 3339 with the zone's offset.
    pub started_at: Option<String>,
    /// End, RFC 3339 with the zone's offset.
    pub ended_at: Option<String>,
    /// Start as wall-clock time.
    pub started_at_local: Option<String>,
    /// End as wall-clock time.
    pub ended_at_local: Option<String>,
    /// End minus start, when both parse.
    pub duration_seconds: Option<i64>,
    /// Questions and answers, ordered by `order`.
    pub checklist: Vec<Question<'a>>,
    /// Phones as sent (null when absent).
    pub phones: Option<&'a RawValue>,
    /// Emails as sent (null when absent).
    pub emails: Option<&'a RawValue>,
    /// Every top-level field not listed above, verbatim.
    pub extra: RawObject<'a>,
    /// What could not be read, field by field.
    pub warnings: Vec<Warning>,
}

/// `product` of the document.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProductInfo {
    /// Numeric id; null when unknown.
    pub id: Option<u64>,
    /// Routing slug.
    pub slug: String,
    /// Vendor's name; null outside the vendor's table.
    pub name: Option<&'static str>,
}

/// `agent` of the document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Agent<'a> {
    /// `agentID` as a string.
    pub id: Option<Cow<'a, str>>,
    /// `agent` (the agent's name).
    pub name: Option<Cow<'a, str>>,
}

/// `location` of the document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Location {
    /// Latitude in degrees, -90..=90.
    pub lat: Number,
    /// Longitude in degrees, -180..=180.
    pub lng: Number,
}

/// One checklist question.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Question<'a> {
    /// `questionID`: integer, or a string when not an integer.
    pub question_id: Id<'a>,
    /// `questionName`.
    pub question: Option<Cow<'a, str>>,
    /// Position; integer, string or null.
    pub order: Id<'a>,
    /// Answers, ordered by `order`.
    pub answers: Vec<Answer<'a>>,
}

/// One checklist answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer<'a> {
    /// `answerID`.
    pub answer_id: Id<'a>,
    /// `answerTypeID`.
    pub type_id: Id<'a>,
    /// Answer type name (`text`, `switch`, ... or `unknown`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `answerName`.
    pub name: Option<Cow<'a, str>>,
    /// Position.
    pub order: Id<'a>,
    /// The value typed by `type`.
    pub value: Value,
    /// The vendor's value, untouched (null when absent).
    pub raw_value: Option<&'a RawValue>,
}

/// A field that could not be read as documented.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
    /// The vendor's field (a path inside the checklist).
    pub field: String,
    /// What was wrong.
    pub message: String,
    /// Bounded metric label: the §5 top-level field it affects.
    #[serde(skip)]
    pub metric_field: &'static str,
}

/// Every value the `field` label of `normalization_warnings_total` can take.
pub const WARNING_FIELDS: [&str; 21] = [
    "product",
    "visitId",
    "externalId",
    "visitType",
    "client",
    "comment",
    "tag",
    "cancellationReason",
    "agent",
    "location",
    "interest",
    "rebound",
    "finished",
    "cancelled",
    "timeZone",
    "startedAt",
    "endedAt",
    "checklist",
    "phones",
    "emails",
    "extra",
];

/// Vendor keys this module reads, with the §5 field they feed. The
/// alternates (`visitId`, `Ing`) are handled separately.
const KNOWN_KEYS: [(&str, &str); 22] = [
    ("visitID", "visitId"),
    ("productID", "product"),
    ("agentID", "agent"),
    ("externalID", "externalId"),
    ("visitType", "visitType"),
    ("lat", "location"),
    ("lng", "location"),
    ("interest", "interest"),
    ("rebound", "rebound"),
    ("tagName", "tag"),
    ("finished", "finished"),
    ("cancelled", "cancelled"),
    ("cancellationReason", "cancellationReason"),
    ("client", "client"),
    ("agent", "agent"),
    ("startDate", "startedAt"),
    ("endDate", "endedAt"),
    ("comment", "comment"),
    ("timeZone", "timeZone"),
    ("checklist", "checklist"),
    ("phones", "phones"),
    ("emails", "emails"),
];

/// The page's spellings, read when the example's spelling is absent.
const ALTERNATE_KEYS: [(&str, &str); 2] = [("visitId", "visitID"), ("Ing", "lng")];

/// Normalizes an accepted visit from its body.
///
/// # Errors
/// The body is not a JSON object (the ingress only lets objects through as
/// visits; anything else is relayed as rejected).
pub fn normalize(envelope: &Envelope) -> Result<NormalizedVisit<'_>, serde_json::Error> {
    // Validated as UTF-8 once here: parsed from bytes, serde_json would
    // validate every raw member and answer value on its own.
    let text = std::str::from_utf8(&envelope.body).map_err(serde::de::Error::custom)?;
    let sent: SentVisit<'_> = serde_json::from_str(text)?;
    Ok(Reader::new(&sent.members, sent.checklist).read(envelope))
}

/// Reads one object, collecting warnings and the keys left for `extra`.
struct Reader<'o, 'a> {
    object: &'o RawObject<'a>,
    /// The checklist, read with the object (see [`SentVisit`]).
    checklist: Option<List<SentQuestion<'a>>>,
    warnings: Vec<Warning>,
    extra: RawObject<'a>,
}

impl<'o, 'a> Reader<'o, 'a> {
    fn new(object: &'o RawObject<'a>, checklist: Option<List<SentQuestion<'a>>>) -> Self {
        Self {
            object,
            checklist,
            warnings: Vec::new(),
            extra: RawObject::default(),
        }
    }

    fn warn(
        &mut self,
        field: impl Into<String>,
        metric_field: &'static str,
        message: impl Into<String>,
    ) {
        self.warnings.push(Warning {
            field: field.into(),
            message: message.into(),
            metric_field,
        });
    }

    /// The spelling of `key` the sender used: the example's when present,
    /// else the page's. When both are present, the example's spelling wins
    /// and the other goes to `extra` (see `collect_extra`).
    fn sent_key(&self, key: &'static str) -> &'static str {
        if self.object.contains(key) {
            return key;
        }
        ALTERNATE_KEYS
            .iter()
            .find(|(alternate, canonical)| *canonical == key && self.object.contains(alternate))
            .map_or(key, |(alternate, _)| *alternate)
    }

    fn get(&self, key: &'static str) -> Option<&'a RawValue> {
        self.object.get(self.sent_key(key))
    }

    /// Applies a lenient reader to a field, recording a warning on failure.
    fn field<T>(
        &mut self,
        key: &'static str,
        metric_field: &'static str,
        read: impl Fn(&Value) -> Read<T>,
    ) -> Option<T> {
        self.field_raw(key, metric_field, |sent| read(&raw::value(sent)))
    }

    /// [`Self::field`] for readers of the raw value, which can borrow
    /// from the body.
    fn field_raw<T>(
        &mut self,
        key: &'static str,
        metric_field: &'static str,
        read: impl Fn(&'a RawValue) -> Read<T>,
    ) -> Option<T> {
        let sent_key = self.sent_key(key);
        match read(self.object.get(sent_key)?) {
            Ok(v) => v,
            Err(message) => {
                self.warn(sent_key, metric_field, message);
                None
            }
        }
    }

    fn read(&mut self, envelope: &Envelope) -> NormalizedVisit<'a> {
        self.collect_extra();

        let product_id = self.get("productID").map(raw::value);
        let (product, product_problem) = Product::from_json(product_id.as_ref());
        if let Some(problem) = product_problem {
            self.warn("productID", "product", problem);
        }

        let time_zone = self.field_raw("timeZone", "timeZone", fields::text_raw);
        let tz = time_zone.as_deref().and_then(time::zone);
        if let (Some(name), None) = (&time_zone, &tz) {
            self.warn(
                "timeZone",
                "timeZone",
                format!("unknown IANA time zone {name:?}"),
            );
        }
        let started = self.visit_time("startDate", "startedAt", tz.as_ref());
        let ended = self.visit_time("endDate", "endedAt", tz.as_ref());
        let duration_seconds = match (&started, &ended) {
            (Some(a), Some(b)) => Some(time::duration_seconds(a, b)),
            _ => None,
        };

        NormalizedVisit {
            schema_version: SCHEMA_VERSION,
            event: "visit.finished",
            message_id: envelope.message_id(),
            receipt_id: envelope.receipt.id.to_string(),
            received_at: envelope.receipt.received_at.to_string(),
            product: ProductInfo {
                id: product.id(),
                slug: product.slug().into_owned(),
                name: product.name(),
            },
            visit_id: self.field_raw("visitID", "visitId", fields::id_string_raw),
            external_id: self.field_raw("externalID", "externalId", fields::id_string_raw),
            visit_type: self.field_raw("visitType", "visitType", fields::text_raw),
            client: self.field_raw("client", "client", fields::text_raw),
            comment: self.field_raw("comment", "comment", fields::text_raw),
            tag: self.field_raw("tagName", "tag", fields::text_raw),
            cancellation_reason: self.field_raw(
                "cancellationReason",
                "cancellationReason",
                fields::text_raw,
            ),
            agent: Agent {
                id: self.field_raw("agentID", "agent", fields::id_string_raw),
                name: self.field_raw("agent", "agent", fields::text_raw),
            },
            location: self.location(),
            interest: self.field("interest", "interest", fields::number),
            rebound: self.field("rebound", "rebound", fields::boolean),
            finished: self.field("finished", "finished", fields::boolean),
            cancelled: self.field("cancelled", "cancelled", fields::boolean),
            time_zone,
            started_at: started.as_ref().and_then(|t| t.rfc3339.clone()),
            ended_at: ended.as_ref().and_then(|t| t.rfc3339.clone()),
            started_at_local: started.as_ref().map(|t| time::format_local(t.local)),
            ended_at_local: ended.as_ref().map(|t| time::format_local(t.local)),
            duration_seconds,
            checklist: self.checklist(),
            phones: self.get("phones"),
            emails: self.get("emails"),
            extra: std::mem::take(&mut self.extra),
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    /// Moves unknown keys, and the losing spelling of a duplicated field, to `extra`.
    fn collect_extra(&mut self) {
        for (key, value) in self.object.iter() {
            if KNOWN_KEYS.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if let Some((alternate, canonical)) = ALTERNATE_KEYS.iter().find(|(a, _)| *a == key) {
                if !self.object.contains(canonical) {
                    continue;
                }
                let metric_field = if *canonical == "lng" {
                    "location"
                } else {
                    "visitId"
                };
                self.warn(
                    *alternate,
                    metric_field,
                    format!(
                        "both {alternate:?} and {canonical:?} were sent; {canonical:?} was used"
                    ),
                );
            }
            self.extra.push(key, value);
        }
    }

    fn visit_time(
        &mut self,
        key: &'static str,
        metric_field: &'static str,
        tz: Option<&jiff::tz::TimeZone>,
    ) -> Option<VisitTime> {
        let raw = self.field_raw(key, metric_field, fields::text_raw)?;
        match time::visit_time(&raw, tz) {
            Ok(t) => Some(t),
            Err(message) => {
                self.warn(key, metric_field, message);
                None
            }
        }
    }

    fn location(&mut self) -> Option<Location> {
        let lat = self.coordinate("lat", 90.0);
        let lng = self.coordinate("lng", 180.0);
        Some(Location {
            lat: lat?,
            lng: lng?,
        })
    }

    fn coordinate(&mut self, key: &'static str, limit: f64) -> Option<Number> {
        let n = self.field(key, "location", fields::number)?;
        if n.as_f64().is_some_and(|f| f.abs() <= limit) {
            return Some(n);
        }
        let sent_key = self.sent_key(key);
        self.warn(
            sent_key,
            "location",
            format!("{n} is outside -{limit}..={limit}"),
        );
        None
    }

    fn checklist(&mut self) -> Vec<Question<'a>> {
        let items = match self.checklist.take() {
            None => return Vec::new(),
            Some(List::Items(items)) => items,
            Some(List::Not(found)) => {
                self.warn(
                    "checklist",
                    "checklist",
                    format!("expected an array, got {found}"),
                );
                return Vec::new();
            }
        };
        let mut questions = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Item::Object(q) => questions.push(self.question(i, q)),
                Item::Not(found) => self.warn(
                    format!("checklist[{i}]"),
                    "checklist",
                    format!("expected an object, got {found}"),
                ),
            }
        }
        sort_by_order(&mut questions, |q| &q.order);
        questions
    }

    fn question(&mut self, index: usize, q: SentQuestion<'a>) -> Question<'a> {
        let path = || format!("checklist[{index}]");
        let answers = match q.answers {
            None => Vec::new(),
            Some(List::Items(items)) => {
                let mut answers = Vec::with_capacity(items.len());
                for (j, item) in items.into_iter().enumerate() {
                    let answer_path = || format!("{}.answers[{j}]", path());
                    match item {
                        Item::Object(a) => answers.push(self.answer(&answer_path, a)),
                        Item::Not(found) => self.warn(
                            answer_path(),
                            "checklist",
                            format!("expected an object, got {found}"),
                        ),
                    }
                }
                sort_by_order(&mut answers, |a| &a.order);
                answers
            }
            Some(List::Not(found)) => {
                self.warn(
                    format!("{}.answers", path()),
                    "checklist",
                    format!("expected an array, got {found}"),
                );
                Vec::new()
            }
        };
        let question = self.nested_text(q.question_name, || format!("{}.questionName", path()));
        Question {
            question_id: Id::read(q.question_id),
            question,
            order: Id::read(q.order),
            answers,
        }
    }

    fn answer(&mut self, path: &dyn Fn() -> String, a: SentAnswer<'a>) -> Answer<'a> {
        let type_id = Id::read(a.answer_type_id);
        let answer_type = AnswerType::from_id(type_id.as_i64());
        let value = match a.value.map(raw::value) {
            None => Value::Null,
            Some(sent) => match answer_type.typed(&sent) {
                Ok(v) => v,
                Err(message) => {
                    self.warn(format!("{}.value", path()), "checklist", message);
                    Value::Null
                }
            },
        };
        let name = self.nested_text(a.answer_name, || format!("{}.answerName", path()));
        Answer {
            answer_id: Id::read(a.answer_id),
            type_id,
            kind: answer_type.name(),
            name,
            order: Id::read(a.order),
            value,
            raw_value: a.value,
        }
    }

    /// A text member of a checklist object, with a warning (at the path
    /// `field` builds, only when needed) when unreadable.
    fn nested_text(
        &mut self,
        sent: Option<&'a RawValue>,
        field: impl Fn() -> String,
    ) -> Option<Cow<'a, str>> {
        match sent.map(fields::text_raw) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(text))) => Some(text),
            Some(Err(message)) => {
                self.warn(field(), "checklist", message);
                None
            }
        }
    }
}

/// Stable sort by an integer `order`; null and non-integer orders go last.
fn sort_by_order<T>(items: &mut [T], order: impl Fn(&T) -> &Id<'_>) {
    items.sort_by_key(|item| match order(item).as_i64() {
        Some(n) => (0, n),
        None => (1, 0),
    });
}

mod json;

#[cfg(test)]
mod tests;
