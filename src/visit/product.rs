//! Product identification: `productID` -> slug, name and routing.
//!
//! The slug is what routing keys, queue names and metric labels are built
//! from, so it is always one of a small, predictable set of shapes.

use serde_json::Value;
use std::borrow::Cow;

/// The product a visit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    /// Product 1.
    DebtCollection,
    /// Product 2.
    AddressValidation,
    /// Product 3.
    BusinessValidation,
    /// Any other positive id: slug `product_<id>`.
    Other(u64),
    /// Missing, non-integer, non-positive or out-of-range id.
    Unknown,
}

impl Product {
    /// The three products the vendor documents; queues are declared for these.
    pub const KNOWN: [Product; 3] = [
        Self::DebtCollection,
        Self::AddressValidation,
        Self::BusinessValidation,
    ];

    /// Maps a numeric id to a product.
    pub fn from_id(id: u64) -> Self {
        match id {
            1 => Self::DebtCollection,
            2 => Self::AddressValidation,
            3 => Self::BusinessValidation,
            0 => Self::Unknown,
            other => Self::Other(other),
        }
    }

    /// Reads a product as an operator writes it: a slug (`debt_collection`,
    /// `product_7`, `unknown`) or a numeric id (`1`).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(id) = text.parse::<u64>() {
            return (id > 0).then(|| Self::from_id(id));
        }
        if let Some(id) = text.strip_prefix("product_") {
            return id.parse().ok().filter(|&id| id > 0).map(Self::from_id);
        }
        Self::KNOWN
            .into_iter()
            .chain([Self::Unknown])
            .find(|p| p.slug() == text)
    }

    /// Reads `productID` as sent (number or numeric string). Returns the
    /// product and, when the value could not be used, why.
    pub fn from_json(value: Option<&Value>) -> (Self, Option<String>) {
        let parsed = match value {
            None | Some(Value::Null) => return (Self::Unknown, Some("missing".into())),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(other) => {
                return (
                    Self::Unknown,
                    Some(format!(
                        "expected a positive integer, got {}",
                        super::json_type_name(other)
                    )),
                );
            }
        };
        match parsed.parse::<u64>() {
            Ok(0) => (Self::Unknown, Some("product id must be positive".into())),
            Ok(id) => (Self::from_id(id), None),
            Err(_) => (
                Self::Unknown,
                Some(format!(
                    "expected a positive integer of at most 64 bits, got {parsed:?}"
                )),
            ),
        }
    }

    /// The numeric id, when there is one.
    pub fn id(self) -> Option<u64> {
        match self {
            Self::DebtCollection => Some(1),
            Self::AddressValidation => Some(2),
            Self::BusinessValidation => Some(3),
            Self::Other(id) => Some(id),
            Self::Unknown => None,
        }
    }

    /// Routing slug: `debt_collection`, `product_7`, `unknown`, ...
    pub fn slug(self) -> Cow<'static, str> {
        match self {
            Self::Other(id) => Cow::Owned(format!("product_{id}")),
            known => Cow::Borrowed(known.metric_label()),
        }
    }

    /// The vendor's product name (typos fixed); `None` outside the table.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::DebtCollection => Some("DebtCollection"),
            Self::AddressValidation => Some("AddressValidation"),
            Self::BusinessValidation => Some("BusinessValidation"),
            Self::Other(_) | Self::Unknown => None,
        }
    }

    /// Bounded metric label: a known slug, `other` or `unknown`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::DebtCollection => "debt_collection",
            Self::AddressValidation => "address_validation",
            Self::BusinessValidation => "business_validation",
            Self::Other(_) => "other",
            Self::Unknown => "unknown",
        }
    }

    /// Every metric label value, for counters that start at zero.
    pub const METRIC_LABELS: [&'static str; 5] = [
        "debt_collection",
        "address_validation",
        "business_validation",
        "other",
        "unknown",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators_name_products_by_slug_or_id() {
        assert_eq!(Product::parse("1"), Some(Product::DebtCollection));
        assert_eq!(
            Product::parse("address_validation"),
            Some(Product::AddressValidation)
        );
        assert_eq!(Product::parse("product_7"), Some(Product::Other(7)));
        assert_eq!(Product::parse("7"), Some(Product::Other(7)));
        assert_eq!(
            Product::parse("product_3"),
            Some(Product::BusinessValidation)
        );
        assert_eq!(Product::parse("unknown"), Some(Product::Unknown));
        for bad in ["0", "product_0", "debt", "", "product_x", "-1"] {
            assert_eq!(Product::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_ids_map_to_their_slugs() {
        assert_eq!(
            Product::from_json(Some(&json!(1))).0.slug(),
            "debt_collection"
        );
        assert_eq!(
            Product::from_json(Some(&json!(2))).0.slug(),
            "address_validation"
        );
        assert_eq!(
            Product::from_json(Some(&json!(3))).0.slug(),
            "business_validation"
        );
    }

    #[test]
    fn ids_sent_as_strings_are_read() {
        let (p, warning) = Product::from_json(Some(&json!("2")));
        assert_eq!(p, Product::AddressValidation);
        assert!(warning.is_none());
    }

    #[test]
    fn other_positive_ids_get_a_generic_slug_without_name() {
        let (p, _) = Product::from_json(Some(&json!(42)));
        assert_eq!(p.slug(), "product_42");
        assert_eq!(p.name(), None);
        assert_eq!(p.metric_label(), "other");
        let (p, _) = Product::from_json(Some(&json!(u64::MAX)));
        assert_eq!(p.slug(), format!("product_{}", u64::MAX));
    }

    #[test]
    fn unusable_ids_are_unknown_with_a_reason() {
        for v in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("abc"),
            json!(true),
            json!(null),
            json!([1]),
            json!("18446744073709551616"),
        ] {
            let (p, warning) = Product::from_json(Some(&v));
            assert_eq!(p, Product::Unknown, "{v}");
            assert!(warning.is_some(), "{v}");
        }
        let (p, warning) = Product::from_json(None);
        assert_eq!(p, Product::Unknown);
        assert_eq!(warning.as_deref(), Some("missing"));
    }
}
