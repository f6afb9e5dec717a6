//! API-key authentication: labelled keys, compared in constant time.
//!
//! Keys are stored only as SHA-256 digests, and a presented key is hashed
//! once and compared against every configured digest without early exit, so
//! neither the key nor its length leaks through timing. Only labels leave
//! this module (logs, headers, metrics).

use std::{collections::HashSet, fmt, sync::Arc};
use subtle::ConstantTimeEq;

use crate::visit::sha256;

/// Why a request was not authenticated; the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `api-key` header.
    #[error("the api-key header is missing")]
    Missing,
    /// An `api-key` that matches no configured key.
    #[error("the api-key header matches no configured key")]
    Invalid,
}

impl AuthError {
    /// Every variant, for metrics that start at zero.
    pub const ALL: [AuthError; 2] = [Self::Missing, Self::Invalid];

    /// The `reason` label of `auth_failures_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
        }
    }
}

/// Why a key specification in the configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySpecError {
    /// The label is empty or has characters outside `[A-Za-z0-9_-]`.
    #[error("label {0:?} must be non-empty and use only A-Z, a-z, 0-9, '_' and '-'")]
    BadLabel(String),
    /// The same label appears twice.
    #[error("label {0:?} is configured twice")]
    DuplicateLabel(String),
    /// `label:` with nothing after it.
    #[error("the key for label {0:?} is empty")]
    EmptyKey(String),
    /// `sha256:` not followed by 64 hex digits.
    #[error("the key for label {0:?} starts with sha256: but is not followed by 64 hex digits")]
    BadDigest(String),
}

/// Proof that a request carried a configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The label of the key that matched.
    pub label: Arc<str>,
}

struct Entry {
    label: Arc<str>,
    digest: [u8; 32],
}

/// The configured keys.
pub struct ApiKeys {
    entries: Vec<Entry>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.labels()).finish()
    }
}

impl ApiKeys {
    /// Parses `label:key` entries. A bare `key` gets the label `default`; a
    /// key written `sha256:<64 hex>` is a digest, so no plaintext is stored.
    ///
    /// # Errors
    /// Bad or duplicate labels, empty keys, malformed digests.
    pub fn parse<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Self, KeySpecError> {
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        for spec in specs {
            let (label, key) = split_spec(spec);
            if label.is_empty()
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(KeySpecError::BadLabel(label.to_owned()));
            }
            if !seen.insert(label.to_owned()) {
                return Err(KeySpecError::DuplicateLabel(label.to_owned()));
            }
            let digest = match key.strip_prefix("sha256:") {
                Some(hex_digest) => parse_digest(hex_digest)
                    .ok_or_else(|| KeySpecError::BadDigest(label.to_owned()))?,
                None if key.is_empty() => return Err(KeySpecError::EmptyKey(label.to_owned())),
                None => sha256(key.as_bytes()),
            };
            entries.push(Entry {
                label: label.into(),
                digest,
            });
        }
        Ok(Self { entries })
    }

    /// Number of configured keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is configured (the relay refuses to start then).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The labels, in configuration order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.label)
    }

    /// Checks a presented `api-key` value.
    ///
    /// # Errors
    /// [`AuthError::Missing`] without a value, [`AuthError::Invalid`] when no
    /// configured key matches.
    pub fn check(&self, presented: Option<&[u8]>) -> Result<Authorized, AuthError> {
        let presented = presented.ok_or(AuthError::Missing)?;
        let digest = sha256(presented);
        let mut matched: Option<&Entry> = None;
        for entry in &self.entries {
            // Visit every entry so the time taken does not depend on which matched.
            if bool::from(entry.digest.ct_eq(&digest)) && matched.is_none() {
                matched = Some(entry);
            }
        }
        matched
            .map(|e| Authorized {
                label: e.label.clone(),
            })
            .ok_or(AuthError::Invalid)
    }
}

/// Splits `label:key`; a bare key, or a bare `sha256:<hex>`, gets `default`.
fn split_spec(spec: &str) -> (&str, &str) {
    let spec = spec.trim();
    match spec.split_once(':') {
        None => ("default", spec),
        Some(("sha256", rest)) if parse_digest(rest).is_some() => ("default", spec),
        Some((label, key)) => (label.trim(), key.trim()),
    }
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).ok()?;
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_of_the_matching_key_is_returned() {
        let keys = ApiKeys::parse(["ops:first-secret", "kobra:second:with:colons"]).unwrap();
        assert_eq!(&*keys.check(Some(b"first-secret")).unwrap().label, "ops");
        assert_eq!(
            &*keys.check(Some(b"second:with:colons")).unwrap().label,
            "kobra"
        );
    }

    #[test]
    fn missing_and_wrong_keys_are_told_apart() {
        let keys = ApiKeys::parse(["k"]).unwrap();
        assert_eq!(keys.check(None), Err(AuthError::Missing));
        assert_eq!(keys.check(Some(b"K")), Err(AuthError::Invalid));
        assert_eq!(keys.check(Some(b"")), Err(AuthError::Invalid));
        assert_eq!(&*keys.check(Some(b"k")).unwrap().label, "default");
    }

    #[test]
    fn hashed_keys_match_the_key_whose_digest_they_hold() {
        let digest = hex::encode(sha256(b"rotate-me"));
        let keys = ApiKeys::parse([format!("new:sha256:{digest}").as_str()]).unwrap();
        assert_eq!(&*keys.check(Some(b"rotate-me")).unwrap().label, "new");
        assert_eq!(keys.check(Some(digest.as_bytes())), Err(AuthError::Invalid));

        let bare = ApiKeys::parse([format!("sha256:{digest}").as_str()]).unwrap();
        assert_eq!(&*bare.check(Some(b"rotate-me")).unwrap().label, "default");
    }

    #[test]
    fn bad_specs_are_refused_with_the_label_named() {
        assert_eq!(
            ApiKeys::parse(["a b:key"]).unwrap_err(),
            KeySpecError::BadLabel("a b".into())
        );
        assert_eq!(
            ApiKeys::parse(["x:1", "x:2"]).unwrap_err(),
            KeySpecError::DuplicateLabel("x".into())
        );
        assert_eq!(
            ApiKeys::parse(["x:"]).unwrap_err(),
            KeySpecError::EmptyKey("x".into())
        );
        assert_eq!(
            ApiKeys::parse(["x:sha256:abc"]).unwrap_err(),
            KeySpecError::BadDigest("x".into())
        );
    }

    #[test]
    fn debug_output_shows_labels_only() {
        let keys = ApiKeys::parse(["ops:hunter2"]).unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("ops"));
        assert!(!shown.contains("hunter2"));
    }
}
