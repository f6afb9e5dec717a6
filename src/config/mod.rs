//! Typed settings: defaults, then an optional TOML file, then
//! `KOBRA_RELAY_*` environment variables, validated once at load.
//!
//! - `sources`: where raw values come from, and in which order they win.
//! - `parse`: the value parsers (sizes, durations, URLs) every source shares,
//!   so a setting behaves the same in a file and in the environment.
//! - `settings`: the tree of sections, each handed whole to its user.
//! - `traces`: the tracing section, under OpenTelemetry's `OTEL_*` names.
//! - `render`: the masked TOML that `check-config` prints.
//!
//! Every error names the setting to fix. Secrets (API keys, AMQP
//! credentials) never reach `Debug` output or logs. Loading reads files
//! (the TOML file, `API_KEYS_FILE`, `AMQP_CA_FILE`) so that a bad one stops
//! startup instead of failing the first request.

mod parse;
mod render;
mod settings;
mod sources;
mod traces;

use std::path::{Path, PathBuf};

pub use parse::{mask_url, parse_duration, parse_size};
pub use settings::{
    AmqpCa, BrokerSettings, Durability, DurabilitySettings, HttpSettings, KeySettings, LogFormat,
    QueueType, Retention, Settings, SpoolSettings, TopologySettings,
};
pub use sources::ENV_PREFIX;
use sources::{RawValues, SETTINGS, env_name};
pub use traces::{Root, Sampler, TraceSettings};

/// A configuration problem; the message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting has no value.
    #[error("{} is required: {hint}", env_name(setting))]
    Missing {
        /// Upper-case setting name.
        setting: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A value that does not parse.
    #[error("{} has an invalid value ({source_desc}): {reason}", env_name(setting))]
    Invalid {
        /// Upper-case setting name.
        setting: &'static str,
        /// Where the value came from.
        source_desc: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A key in the file or a `KOBRA_RELAY_*` variable that is not a setting.
    #[error("unknown setting {name} (settings: {})", SETTINGS.map(|(n, _)| n).join(", "))]
    Unknown {
        /// The variable or key as written.
        name: String,
    },
    /// The config file cannot be read or is not TOML.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The `--config` path.
        path: PathBuf,
        /// The I/O or TOML error.
        reason: String,
    },
}

impl Settings {
    /// Loads settings from the process environment and an optional file.
    ///
    /// # Errors
    /// Any missing, unknown or invalid setting; see [`ConfigError`].
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, std::env::vars())
    }

    /// Like [`Settings::load`], for the operator subcommands that do not
    /// serve requests (`topology`, `tail`, `spool`, `send`): API keys are
    /// optional there.
    ///
    /// # Errors
    /// Any unknown or invalid setting; see [`ConfigError`].
    pub fn load_for_tools(file: Option<&Path>) -> Result<Self, ConfigError> {
        RawValues::collect(file, std::env::vars()).and_then(|raw| Self::from_raw(&raw, false))
    }

    /// Loads settings from explicit sources (tests pass their own environment).
    ///
    /// # Errors
    /// Any missing, unknown or invalid setting; see [`ConfigError`].
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        RawValues::collect(file, env).and_then(|raw| Self::from_raw(&raw, true))
    }
}

#[cfg(test)]
mod tests;
