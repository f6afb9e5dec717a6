//! Key rotation without a restart: the live key set is swapped atomically
//! when `API_KEYS_FILE` changes or the process receives SIGHUP.
//!
//! A reload that fails (unreadable file, bad line, no key left) keeps the
//! keys in force and says why; requests never see a half-loaded set.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::config::load_api_keys;

/// How often `API_KEYS_FILE` is checked for changes.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The key set requests are checked against.
pub type LiveKeys = Arc<ArcSwap<ApiKeys>>;

/// Where the key set comes from.
pub struct KeySource {
    /// `API_KEYS`.
    pub inline: Option<SecretString>,
    /// `API_KEYS_FILE`.
    pub file: Option<PathBuf>,
}

impl KeySource {
    /// Loads the key set now.
    ///
    /// # Errors
    /// A message naming the setting at fault.
    pub fn load(&self) -> Result<ApiKeys, String> {
        let inline = self.inline.as_ref().map(|k| k.expose_secret());
        let keys = load_api_keys(inline, self.file.as_deref())
            .map_err(|(setting, reason)| format!("KOBRA_RELAY_{setting}: {reason}"))?;
        if keys.is_empty() {
            return Err(
                "no API key left in KOBRA_RELAY_API_KEYS or KOBRA_RELAY_API_KEYS_FILE".into(),
            );
        }
        Ok(keys)
    }

    fn file_stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(self.file.as_ref()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }
}

/// Reloads `live` from `source` on SIGHUP and when the keys file changes,
/// until `stop` is cancelled.
pub async fn watch(source: KeySource, live: LiveKeys, stop: CancellationToken) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; keys reload only when the file changes");
            None
        }
    };
    let mut stamp = source.file_stamp();
    let mut ticks = tokio::time::interval(FILE_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reason = tokio::select! {
            Some(()) = async { hangups.as_mut()?.recv().await } => "SIGHUP",
            _ = ticks.tick(), if source.file.is_some() => {
                let now = source.file_stamp();
                if now == stamp {
                    continue;
                }
                stamp = now;
                "API_KEYS_FILE changed"
            }
            () = stop.cancelled() => return,
        };
        reload(&source, &live, reason);
    }
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
