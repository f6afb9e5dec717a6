//! The document as JSON, written directly. Its member names are constants
//! and go out as written; text that needs no escaping is copied as it is,
//! the sender's raw values are copied verbatim, and every other value goes
//! through serde_json, so escapes and numbers come out exactly as serde
//! writes them. The derived `Serialize` stays the definition of the
//! layout: a test holds this writer to it byte for byte. What it saves is
//! serde's work per member (escaping each name again, scanning each value
//! byte by byte, the serializer's state), about 170 members per example
//! visit, most of them in the checklist.

use serde::Serialize;
use serde_json::value::RawValue;

use super::{Answer, NormalizedVisit, Question};
use crate::visit::id::Id;
use crate::visit::raw::RawObject;

/// Appends `value` as serde_json writes it.
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, value)
}

/// Whether serde_json would escape any byte of `bytes`: a quote, a
/// backslash or a control character. Checked sixteen bytes at a time
/// without an early exit inside a block, which the compiler turns into a
/// few vector instructions per block.
fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | special(b)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| special(b))
}

/// Appends `text` as a JSON string.
fn text(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if needs_escape(text.as_bytes()) {
        return value(out, text);
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Appends `text` as a JSON string, or `null`.
fn optional_text(out: &mut Vec<u8>, optional: Option<&str>) -> serde_json::Result<()> {
    match optional {
        Some(t) => text(out, t),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// Appends the sender's bytes of `raw`, or `null`.
fn raw(out: &mut Vec<u8>, raw: Option<&RawValue>) {
    out.extend_from_slice(raw.map_or("null", RawValue::get).as_bytes());
}

/// Appends an id as its `Serialize` writes it.
fn id(out: &mut Vec<u8>, id: &Id<'_>) -> serde_json::Result<()> {
    match id {
        Id::Null => out.extend_from_slice(b"null"),
        Id::Integer(digits) => out.extend_from_slice(digits.get().as_bytes()),
        Id::FromString(_) => return value(out, id),
        Id::Text(t) => return text(out, t),
    }
    Ok(())
}

/// Appends an object of raw members: names as JSON strings, values as sent.
fn raw_object(out: &mut Vec<u8>, object: &RawObject<'_>) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (name, member)) in object.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        text(out, name)?;
        out.push(b':');
        raw(out, Some(member));
    }
    out.push(b'}');
    Ok(())
}

/// Appends `items` as a JSON array, each written by `write`.
fn array<T>(
    out: &mut Vec<u8>,
    items: &[T],
    write: impl Fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out)?;
    }
    out.push(b']');
    Ok(())
}

/// Appends `"name":` after `separator` (`{` or `,`): one constant, whose
/// copy the compiler writes inline.
macro_rules! member {
    ($out:expr, $separator:literal, $name:literal) => {
        $out.extend_from_slice(concat!($separator, "\"", $name, "\":").as_bytes())
    };
}

impl NormalizedVisit<'_> {
    /// Appends the document to `out`: the same bytes as
    /// `serde_json::to_writer(out, self)`.
    ///
    /// # Errors
    /// Only what serde_json's own serialization of a value would return.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        member!(out, "{", "schemaVersion");
        value(out, &self.schema_version)?;
        member!(out, ",", "event");
        text(out, self.event)?;
        member!(out, ",", "messageId");
        text(out, &self.message_id)?;
        member!(out, ",", "receiptId");
        text(out, &self.receipt_id)?;
        member!(out, ",", "receivedAt");
        text(out, &self.received_at)?;
        member!(out, ",", "product");
        value(out, &self.product)?;
        member!(out, ",", "visitId");
        optional_text(out, self.visit_id.as_deref())?;
        member!(out, ",", "externalId");
        optional_text(out, self.external_id.as_deref())?;
        member!(out, ",", "visitType");
        optional_text(out, self.visit_type.as_deref())?;
        member!(out, ",", "client");
        optional_text(out, self.client.as_deref())?;
        member!(out, ",", "comment");
        optional_text(out, self.comment.as_deref())?;
        member!(out, ",", "tag");
        optional_text(out, self.tag.as_deref())?;
        member!(out, ",", "cancellationReason");
        optional_text(out, self.cancellation_reason.as_deref())?;
        member!(out, ",", "agent");
        value(out, &self.agent)?;
        member!(out, ",", "location");
        value(out, &self.location)?;
        member!(out, ",", "interest");
        value(out, &self.interest)?;
        member!(out, ",", "rebound");
        value(out, &self.rebound)?;
        member!(out, ",", "finished");
        value(out, &self.finished)?;
        member!(out, ",", "cancelled");
        value(out, &self.cancelled)?;
        member!(out, ",", "timeZone");
        optional_text(out, self.time_zone.as_deref())?;
        member!(out, ",", "startedAt");
        optional_text(out, self.started_at.as_deref())?;
        member!(out, ",", "endedAt");
        optional_text(out, self.ended_at.as_deref())?;
        member!(out, ",", "startedAtLocal");
        optional_text(out, self.started_at_local.as_deref())?;
        member!(out, ",", "endedAtLocal");
        optional_text(out, self.ended_at_local.as_deref())?;
        member!(out, ",", "durationSeconds");
        value(out, &self.duration_seconds)?;
        member!(out, ",", "checklist");
        array(out, &self.checklist, Question::write_json)?;
        member!(out, ",", "phones");
        raw(out, self.phones);
        member!(out, ",", "emails");
        raw(out, self.emails);
        member!(out, ",", "extra");
        raw_object(out, &self.extra)?;
        member!(out, ",", "warnings");
        value(out, &self.warnings)?;
        out.push(b'}');
        Ok(())
    }
}

impl Question<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        member!(out, "{", "questionId");
        id(out, &self.question_id)?;
        member!(out, ",", "question");
        optional_text(out, self.question.as_deref())?;
        member!(out, ",", "order");
        id(out, &self.order)?;
        member!(out, ",", "answers");
        array(out, &self.answers, Answer::write_json)?;
        out.push(b'}');
        Ok(())
    }
}

impl Answer<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        member!(out, "{", "answerId");
        id(out, &self.answer_id)?;
        member!(out, ",", "typeId");
        id(out, &self.type_id)?;
        member!(out, ",", "type");
        text(out, self.kind)?;
        member!(out, ",", "name");
        optional_text(out, self.name.as_deref())?;
        member!(out, ",", "order");
        id(out, &self.order)?;
        member!(out, ",", "value");
        match &self.value {
            serde_json::Value::String(s) => text(out, s)?,
            other => value(out, other)?,
        }
        member!(out, ",", "rawValue");
        raw(out, self.raw_value);
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_written_as_serde_writes_it_wherever_the_escape_falls() {
        for special in ['"', '\\', '\u{0}', '\n', '\u{1f}'] {
            for at in [0, 5, 15, 16, 17, 31, 40] {
                let mut sent: String = "é-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
                    .chars()
                    .take(at)
                    .collect();
                sent.push(special);
                sent.push_str("tail");
                let mut direct = Vec::new();
                text(&mut direct, &sent).expect("write");
                let serde = serde_json::to_vec(&sent).expect("serialize");
                assert_eq!(direct, serde, "{sent:?}");
            }
        }
        let plain = "visit.finished \u{7f} ünïcödé, 2026-11-26T10:00:00Z";
        assert!(!needs_escape(plain.as_bytes()));
        let mut direct = Vec::new();
        text(&mut direct, plain).expect("write");
        assert_eq!(direct, serde_json::to_vec(plain).expect("serialize"));
    }
}
