//! The document as JSON, written directly. Its member names are constants
//! and go out as written; every value goes through serde_json, so strings
//! are escaped and numbers printed exactly as serde would. The derived
//! `Serialize` stays the definition of the layout: a test holds this
//! writer to it byte for byte. What it saves is serde's work per member
//! (escaping each name again, the serializer's state), about 170 members
//! per example visit, most of them in the checklist.

use serde::Serialize;

use super::{Answer, NormalizedVisit, Question};

/// Appends `value` as serde_json writes it.
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, value)
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

/// Appends `"name":` after `separator` (`{` or `,`).
fn member(out: &mut Vec<u8>, separator: u8, name: &'static str) {
    out.push(separator);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

impl NormalizedVisit<'_> {
    /// Appends the document to `out`: the same bytes as
    /// `serde_json::to_writer(out, self)`.
    ///
    /// # Errors
    /// Only what serde_json's own serialization of a value would return.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        member(out, b'{', "schemaVersion");
        value(out, &self.schema_version)?;
        member(out, b',', "event");
        value(out, self.event)?;
        member(out, b',', "messageId");
        value(out, &self.message_id)?;
        member(out, b',', "receiptId");
        value(out, &self.receipt_id)?;
        member(out, b',', "receivedAt");
        value(out, &self.received_at)?;
        member(out, b',', "product");
        value(out, &self.product)?;
        member(out, b',', "visitId");
        value(out, &self.visit_id)?;
        member(out, b',', "externalId");
        value(out, &self.external_id)?;
        member(out, b',', "visitType");
        value(out, &self.visit_type)?;
        member(out, b',', "client");
        value(out, &self.client)?;
        member(out, b',', "comment");
        value(out, &self.comment)?;
        member(out, b',', "tag");
        value(out, &self.tag)?;
        member(out, b',', "cancellationReason");
        value(out, &self.cancellation_reason)?;
        member(out, b',', "agent");
        value(out, &self.agent)?;
        member(out, b',', "location");
        value(out, &self.location)?;
        member(out, b',', "interest");
        value(out, &self.interest)?;
        member(out, b',', "rebound");
        value(out, &self.rebound)?;
        member(out, b',', "finished");
        value(out, &self.finished)?;
        member(out, b',', "cancelled");
        value(out, &self.cancelled)?;
        member(out, b',', "timeZone");
        value(out, &self.time_zone)?;
        member(out, b',', "startedAt");
        value(out, &self.started_at)?;
        member(out, b',', "endedAt");
        value(out, &self.ended_at)?;
        member(out, b',', "startedAtLocal");
        value(out, &self.started_at_local)?;
        member(out, b',', "endedAtLocal");
        value(out, &self.ended_at_local)?;
        member(out, b',', "durationSeconds");
        value(out, &self.duration_seconds)?;
        member(out, b',', "checklist");
        array(out, &self.checklist, Question::write_json)?;
        member(out, b',', "phones");
        value(out, &self.phones)?;
        member(out, b',', "emails");
        value(out, &self.emails)?;
        member(out, b',', "extra");
        value(out, &self.extra)?;
        member(out, b',', "warnings");
        value(out, &self.warnings)?;
        out.push(b'}');
        Ok(())
    }
}

impl Question<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        member(out, b'{', "questionId");
        value(out, &self.question_id)?;
        member(out, b',', "question");
        value(out, &self.question)?;
        member(out, b',', "order");
        value(out, &self.order)?;
        member(out, b',', "answers");
        array(out, &self.answers, Answer::write_json)?;
        out.push(b'}');
        Ok(())
    }
}

impl Answer<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        member(out, b'{', "answerId");
        value(out, &self.answer_id)?;
        member(out, b',', "typeId");
        value(out, &self.type_id)?;
        member(out, b',', "type");
        value(out, self.kind)?;
        member(out, b',', "name");
        value(out, &self.name)?;
        member(out, b',', "order");
        value(out, &self.order)?;
        member(out, b',', "value");
        value(out, &self.value)?;
        member(out, b',', "rawValue");
        value(out, &self.raw_value)?;
        out.push(b'}');
        Ok(())
    }
}
