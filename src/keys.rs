//! Where the API keys come from: `API_KEYS` inline and `API_KEYS_FILE`,
//! read into one [`ApiKeys`] set, and swapped atomically when
//! [`crate::reload`] asks (SIGHUP, or the file changed).
//!
//! A reload that fails (unreadable file, bad line, no key left) keeps the
//! keys in force and says why; requests never see a half-loaded set.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::{ApiKeys, KeySpecError};
use crate::reload::Reloadable;

/// The key set requests are checked against.
pub type LiveKeys = Arc<ArcSwap<ApiKeys>>;

/// Why the key set could not be loaded; names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    /// `API_KEYS` or `API_KEYS_FILE` holds something unusable.
    #[error("KOBRA_RELAY_{setting}: {reason}")]
    Setting {
        /// `API_KEYS` or `API_KEYS_FILE`.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Both are empty: a relay must always have a key.
    #[error("no API key left in KOBRA_RELAY_API_KEYS or KOBRA_RELAY_API_KEYS_FILE")]
    Empty,
}

/// Where the key set comes from.
#[derive(Clone, Default)]
pub struct KeySource {
    /// `API_KEYS`.
    pub inline: Option<SecretString>,
    /// `API_KEYS_FILE`.
    pub file: Option<PathBuf>,
}

impl KeySource {
    /// Reads both sources into one set, which may be empty.
    ///
    /// # Errors
    /// [`KeyLoadError::Setting`]: the file cannot be read, or a key
    /// specification in either source is unusable.
    pub fn read(&self) -> Result<ApiKeys, KeyLoadError> {
        let inline = self.inline.as_ref().map(|k| k.expose_secret());
        read_specs(inline, self.file.as_deref())
    }

    /// Reads the key set, refusing an empty one.
    ///
    /// # Errors
    /// See [`KeyLoadError`].
    pub fn load(&self) -> Result<ApiKeys, KeyLoadError> {
        let keys = self.read()?;
        if keys.is_empty() {
            return Err(KeyLoadError::Empty);
        }
        Ok(keys)
    }
}

/// The union of the inline specifications and the file's lines (blank lines
/// and `#` comments skipped). An error names the source the bad
/// specification came from.
fn read_specs(inline: Option<&str>, file: Option<&Path>) -> Result<ApiKeys, KeyLoadError> {
    let mut specs: Vec<String> = inline
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let inline_count = specs.len();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| KeyLoadError::Setting {
            setting: "API_KEYS_FILE",
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        specs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    ApiKeys::parse(specs.iter().map(String::as_str)).map_err(|e: KeySpecError| {
        let label = match &e {
            KeySpecError::BadLabel(l)
            | KeySpecError::DuplicateLabel(l)
            | KeySpecError::EmptyKey(l)
            | KeySpecError::BadDigest(l) => l,
        };
        let in_inline = specs[..inline_count]
            .iter()
            .any(|s| s.starts_with(label.as_str()));
        KeyLoadError::Setting {
            setting: if in_inline {
                "API_KEYS"
            } else {
                "API_KEYS_FILE"
            },
            reason: e.to_string(),
        }
    })
}

/// Replaces the live keys, or keeps them and logs why not.
pub fn reload(source: &KeySource, live: &LiveKeys, reason: &str) {
    match source.load() {
        Ok(keys) => {
            let labels: Vec<&str> = keys.labels().collect();
            tracing::info!(reason, labels = ?labels, "API keys reloaded");
            live.store(Arc::new(keys));
        }
        Err(error) => {
            tracing::error!(reason, %error, "API keys not reloaded; the previous keys stay in force");
        }
    }
}

/// The live keys and their source, for [`crate::reload::watch`].
pub struct KeyReloader {
    /// Where the keys are read from.
    pub source: KeySource,
    /// The set requests are checked against.
    pub live: LiveKeys,
}

impl Reloadable for KeyReloader {
    fn reload(&self, reason: &str) {
        reload(&self.source, &self.live, reason);
    }

    fn watched_file(&self) -> Option<(&Path, &'static str)> {
        Some((self.source.file.as_deref()?, "API_KEYS_FILE changed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_swaps_keys_and_a_broken_file_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "old:first\n").unwrap();
        let source = KeySource {
            inline: None,
            file: Some(path.clone()),
        };
        let live: LiveKeys = Arc::new(ArcSwap::from_pointee(source.load().unwrap()));
        assert!(live.load().check(Some(b"first")).is_ok());

        std::fs::write(&path, "new:second\n").unwrap();
        reload(&source, &live, "test");
        assert!(live.load().check(Some(b"first")).is_err());
        assert_eq!(&*live.load().check(Some(b"second")).unwrap().label, "new");

        std::fs::write(&path, "bad label:x\n").unwrap();
        reload(&source, &live, "test");
        assert!(live.load().check(Some(b"second")).is_ok(), "old keys stay");

        std::fs::write(&path, "# nothing\n").unwrap();
        reload(&source, &live, "test");
        assert!(
            live.load().check(Some(b"second")).is_ok(),
            "never zero keys"
        );
    }
}
