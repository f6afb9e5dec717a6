//! Where raw setting values come from: the defaults table, then an optional
//! TOML file, then `KOBRA_RELAY_*` environment variables, each later source
//! overriding the earlier ones. The tracing settings keep OpenTelemetry's
//! standard names (`OTEL_*`, read without the prefix), so the variables an
//! operator already sets for other services work here too.
//!
//! Values stay text here, tagged with their source, so that one parser per
//! setting serves every source and an error can say where a value came from.

use std::{collections::BTreeMap, path::Path};

use super::ConfigError;

/// Prefix of every environment variable the relay reads.
pub const ENV_PREFIX: &str = "KOBRA_RELAY_";

/// Every setting, by its upper-case name, with its default (if any).
pub(super) const SETTINGS: [(&str, Option<&str>); 37] = [
    ("LISTEN", Some("0.0.0.0:8080")),
    ("ADMIN_LISTEN", Some("0.0.0.0:8081")),
    ("API_KEYS", None),
    ("API_KEYS_FILE", None),
    ("AMQP_URL", Some("amqp://guest:guest@127.0.0.1:5672/%2f")),
    ("AMQP_CA_FILE", None),
    ("TOPOLOGY_PREFIX", Some("kobra")),
    ("QUEUE_TYPE", Some("quorum")),
    ("DECLARE_QUEUES", Some("true")),
    ("ARCHIVE", Some("true")),
    ("ARCHIVE_MAX_AGE", Some("30d")),
    ("ARCHIVE_MAX_BYTES", Some("10GiB")),
    ("DURABILITY", Some("spool")),
    ("REPLICATED_DEADLINE", Some("50ms")),
    ("SPOOL_DIR", Some("./data/spool")),
    ("SPOOL_MAX_BYTES", Some("1 GiB")),
    ("MAX_BODY_BYTES", Some("1048576")),
    ("MAX_JSON_DEPTH", Some("64")),
    ("LOG_FORMAT", Some("json")),
    ("PUBLISH_TIMEOUT", Some("5s")),
    ("SHUTDOWN_GRACE", Some("10s")),
    ("READINESS_STALL_TIMEOUT", Some("0")),
    ("HEADER_READ_TIMEOUT", Some("10s")),
    ("BODY_READ_TIMEOUT", Some("30s")),
    ("MAX_CONNECTIONS", Some("4096")),
    ("MAX_HEADER_BYTES", Some("64KiB")),
    ("TLS_CERT_FILE", None),
    ("TLS_KEY_FILE", None),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", Some("http/protobuf")),
    ("OTEL_TRACES_EXPORTER", Some("otlp")),
    ("OTEL_SDK_DISABLED", Some("false")),
    ("OTEL_SERVICE_NAME", Some("kobra-relay")),
    ("OTEL_TRACES_SAMPLER", Some("parentbased_always_on")),
    ("OTEL_TRACES_SAMPLER_ARG", None),
    ("OTEL_BSP_MAX_QUEUE_SIZE", Some("2048")),
];

/// Settings whose environment variable is the OpenTelemetry standard name.
const OTEL_PREFIX: &str = "OTEL_";

/// The full environment variable of a setting.
pub(super) fn env_name(setting: &str) -> String {
    if setting.starts_with(OTEL_PREFIX) {
        setting.to_owned()
    } else {
        format!("{ENV_PREFIX}{setting}")
    }
}

/// Raw values by setting name, each with a description of its source.
pub(super) struct RawValues(BTreeMap<&'static str, (String, String)>);

impl RawValues {
    /// Every raw value by setting name: defaults, then `file`, then `env`.
    pub(super) fn collect(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut raw = Self(BTreeMap::new());
        for (name, default) in SETTINGS {
            if let Some(value) = default {
                raw.0.insert(name, (value.to_owned(), "default".to_owned()));
            }
        }
        if let Some(path) = file {
            raw.read_file(path)?;
        }
        for (key, value) in env {
            let setting = if let Some(name) = key.strip_prefix(ENV_PREFIX) {
                lookup(name)
                    .filter(|n| !n.starts_with(OTEL_PREFIX))
                    .ok_or_else(|| ConfigError::Unknown { name: key.clone() })?
            } else if key.starts_with(OTEL_PREFIX) {
                // Other OTEL_* variables belong to the exporter (headers,
                // timeout, compression) or to other programs.
                match SETTINGS.iter().find(|(n, _)| *n == key) {
                    Some((name, _)) => name,
                    None => continue,
                }
            } else {
                continue;
            };
            raw.0.insert(setting, (value, "environment".to_owned()));
        }
        Ok(raw)
    }

    /// The value of `name` as written, if any source set it.
    pub(super) fn get(&self, name: &'static str) -> Option<&str> {
        self.0.get(name).map(|(value, _)| value.as_str())
    }

    /// The value of `name`, trimmed, when it is set and not blank.
    pub(super) fn non_blank(&self, name: &'static str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// An invalid-value error for `name`, saying where its value came from.
    pub(super) fn invalid(&self, name: &'static str, reason: String) -> ConfigError {
        ConfigError::Invalid {
            setting: name,
            source_desc: self.0.get(name).map(|(_, s)| s.clone()).unwrap_or_default(),
            reason,
        }
    }

    /// Parses the trimmed value of `name` (empty when unset) with `parse`.
    pub(super) fn parse<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.get(name).map(str::trim).unwrap_or_default();
        parse(value).map_err(|reason| self.invalid(name, reason))
    }

    fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_error(e.message().to_owned()))?;
        for (key, value) in table {
            let setting = lookup(&key)
                .filter(|n| n.to_ascii_lowercase() == key)
                .ok_or_else(|| ConfigError::Unknown {
                    name: format!("{key} in {}", path.display()),
                })?;
            let source = format!("{key} in {}", path.display());
            self.0.insert(setting, (toml_text(value), source));
        }
        Ok(())
    }
}

/// A TOML value as the text the setting's parser reads; arrays become
/// comma-separated lists (`api_keys = ["a:1", "b:2"]`).
fn toml_text(value: toml::Value) -> String {
    match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn lookup(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(name))
}
