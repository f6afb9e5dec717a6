//! Checklist answer types: the vendor's `answerTypeID` table, the `type`
//! name each gets in the document, and how a raw answer value is typed.

use serde_json::Value;

use super::{fields, time};

/// The vendor's `answerTypeID` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerType {
    /// 1
    Text,
    /// 2
    TextArea,
    /// 3
    Numeric,
    /// 4
    Decimal,
    /// 5
    Datepicker,
    /// 6
    Checkbox,
    /// 7
    Radio,
    /// 8
    Switch,
    /// 9
    Combo,
    /// 10
    Time,
    /// Anything else.
    Unknown,
}

impl AnswerType {
    pub(super) fn from_id(id: Option<i64>) -> Self {
        match id {
            Some(1) => Self::Text,
            Some(2) => Self::TextArea,
            Some(3) => Self::Numeric,
            Some(4) => Self::Decimal,
            Some(5) => Self::Datepicker,
            Some(6) => Self::Checkbox,
            Some(7) => Self::Radio,
            Some(8) => Self::Switch,
            Some(9) => Self::Combo,
            Some(10) => Self::Time,
            _ => Self::Unknown,
        }
    }

    /// The `type` of the document.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::TextArea => "text-area",
            Self::Numeric => "numeric",
            Self::Decimal => "decimal",
            Self::Datepicker => "datepicker",
            Self::Checkbox => "checkbox",
            Self::Radio => "radio",
            Self::Switch => "switch",
            Self::Combo => "combo",
            Self::Time => "time",
            Self::Unknown => "unknown",
        }
    }

    /// Types a raw answer value; `Err` carries the warning message.
    pub(super) fn typed(self, raw: &Value) -> Result<Value, String> {
        if raw.is_null() {
            return Ok(Value::Null);
        }
        let unreadable = |what: &str| format!("expected {what}, got {}", fields::describe(raw));
        let as_text = || match raw {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        };
        Ok(match self {
            Self::Text | Self::TextArea | Self::Radio | Self::Combo => {
                fields::text(raw)?.map(Value::String).unwrap_or(Value::Null)
            }
            Self::Numeric => fields::number(raw)?
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Self::Decimal => fields::decimal(raw)?
                .map(Value::String)
                .unwrap_or(Value::Null),
            Self::Switch => fields::switch_boolean(raw)?
                .map(Value::Bool)
                .unwrap_or(Value::Null),
            Self::Checkbox => match fields::switch_boolean(raw) {
                Ok(b) => b.map(Value::Bool).unwrap_or(Value::Null),
                Err(_) => fields::text(raw)?.map(Value::String).unwrap_or(Value::Null),
            },
            Self::Datepicker => as_text()
                .and_then(time::checklist_date)
                .map(Value::String)
                .ok_or_else(|| unreadable("a date"))?,
            Self::Time => as_text()
                .and_then(time::checklist_time)
                .map(Value::String)
                .ok_or_else(|| unreadable("a time of day"))?,
            Self::Unknown => raw.clone(),
        })
    }
}
