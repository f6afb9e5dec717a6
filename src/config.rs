//! Typed settings: defaults, then an optional TOML file, then
//! `KOBRA_RELAY_*` environment variables, validated once at load.
//!
//! Every value goes through one textual parser whatever its source, so a
//! setting behaves the same in a file and in the environment, and every
//! error names the setting to fix. Secrets (API keys, AMQP credentials)
//! never reach `Debug` output or logs; [`Settings::render_masked`] is the only
//! way settings are printed.

use rustls_pki_types::{CertificateDer, pem::PemObject};
use secrecy::{ExposeSecret, SecretString};
use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::auth::{ApiKeys, KeySpecError};
use crate::publisher::topology::Retention;

/// Prefix of every environment variable the relay reads.
pub const ENV_PREFIX: &str = "KOBRA_RELAY_";

/// Every setting, by its upper-case name, with its default (if any).
const SETTINGS: [(&str, Option<&str>); 27] = [
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
];

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

fn env_name(setting: &str) -> String {
    format!("{ENV_PREFIX}{setting}")
}

/// When `202` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the request is fsynced to the local spool (default).
    Spool,
    /// After the broker confirmed both messages; no spool.
    Confirm,
    /// After the spool's fsync and the broker's confirms on quorum queues
    /// when those come within `REPLICATED_DEADLINE`; otherwise after the
    /// fsync alone, as in `Spool`.
    Replicated,
}

impl Durability {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spool => "spool",
            Self::Confirm => "confirm",
            Self::Replicated => "replicated",
        }
    }
}

/// RabbitMQ queue type for declared queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// Replicated Raft queues (default).
    Quorum,
    /// Classic queues.
    Classic,
}

impl QueueType {
    /// The `x-queue-type` argument value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (default).
    Json,
    /// Human-readable, for local runs.
    Pretty,
}

/// The validated configuration.
#[derive(Clone)]
pub struct Settings {
    /// Ingress listen address.
    pub listen: SocketAddr,
    /// Admin (metrics, probes) listen address.
    pub admin_listen: SocketAddr,
    /// Configured API keys (`API_KEYS` plus `API_KEYS_FILE`).
    pub api_keys: Arc<ApiKeys>,
    /// The `API_KEYS_FILE`, if any (re-read on SIGHUP and when it changes).
    pub api_keys_file: Option<PathBuf>,
    /// The inline `API_KEYS` value, kept to rebuild the key set on reload.
    pub api_keys_inline: Option<SecretString>,
    /// Broker URLs in failover order.
    pub amqp_urls: Vec<SecretString>,
    /// Extra CA certificates trusted for `amqps://` besides the system's.
    pub amqp_ca: Option<AmqpCa>,
    /// First component of every exchange and queue name.
    pub topology_prefix: String,
    /// Type of declared queues.
    pub queue_type: QueueType,
    /// Whether queues and bindings are declared (exchanges always are).
    pub declare_queues: bool,
    /// The archive stream's retention (`None`: `ARCHIVE=false`).
    pub archive: Option<Retention>,
    /// When `202` is sent.
    pub durability: Durability,
    /// How long a `replicated` 202 waits for the broker's confirms before it
    /// answers from the spool.
    pub replicated_deadline: Duration,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool capacity in bytes of pending entries.
    pub spool_max_bytes: u64,
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// Log output format.
    pub log_format: LogFormat,
    /// How long a confirm may take before the publish counts as failed.
    pub publish_timeout: Duration,
    /// How long shutdown keeps draining the spool to the broker.
    pub shutdown_grace: Duration,
    /// `/readyz` fails once visits have waited this long in the spool with
    /// none delivered for as long (`None`: never, the contract's default).
    pub readiness_stall_timeout: Option<Duration>,
    /// Longest wait for a request head (slow clients, idle keep-alive).
    pub header_read_timeout: Duration,
    /// Longest wait for a whole body once its head is in.
    pub body_read_timeout: Duration,
    /// Open connections per listener, at most.
    pub max_connections: usize,
    /// Largest request head (hyper's read buffer).
    pub max_header_bytes: usize,
    /// TLS on the ingress, when both files are set.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_masked())
    }
}

/// Raw values by setting name, with a description of their source.
type RawValues = BTreeMap<&'static str, (String, String)>;

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
        Self::collect(file, std::env::vars()).and_then(|raw| Self::from_raw(&raw, false))
    }

    /// Loads settings from explicit sources (tests pass their own environment).
    ///
    /// # Errors
    /// Any missing, unknown or invalid setting; see [`ConfigError`].
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::collect(file, env).and_then(|raw| Self::from_raw(&raw, true))
    }

    /// Every raw value by setting name: defaults, then the file, then `env`.
    fn collect(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawValues, ConfigError> {
        let mut raw = RawValues::new();
        for (name, default) in SETTINGS {
            if let Some(value) = default {
                raw.insert(name, (value.to_owned(), "default".to_owned()));
            }
        }
        if let Some(path) = file {
            read_file(path, &mut raw)?;
        }
        for (key, value) in env {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let setting = lookup(name).ok_or_else(|| ConfigError::Unknown { name: key.clone() })?;
            raw.insert(setting, (value, "environment".to_owned()));
        }
        Ok(raw)
    }

    fn from_raw(raw: &RawValues, require_keys: bool) -> Result<Self, ConfigError> {
        let get = |name: &'static str| raw.get(name).map(|(v, _)| v.as_str());
        let invalid = |name: &'static str, reason: String| invalid(raw, name, reason);

        let api_keys_file = get("API_KEYS_FILE")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let api_keys = load_api_keys(get("API_KEYS"), api_keys_file.as_deref())
            .map_err(|(setting, reason)| invalid(setting, reason))?;
        if require_keys && api_keys.is_empty() {
            return Err(ConfigError::Missing {
                setting: "API_KEYS",
                hint: "set label:key[,label2:key2] (or KOBRA_RELAY_API_KEYS_FILE)",
            });
        }

        let topology_prefix = parse_setting(raw, "TOPOLOGY_PREFIX", |s| {
            let ok = !s.is_empty()
                && s.len() <= 200
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
            ok.then(|| s.to_owned())
                .ok_or_else(|| format!("{s:?} must be 1-200 characters of A-Z a-z 0-9 . _ - :"))
        })?;

        let queue_type = parse_setting(raw, "QUEUE_TYPE", |s| {
            match s.to_ascii_lowercase().as_str() {
                "quorum" => Ok(QueueType::Quorum),
                "classic" => Ok(QueueType::Classic),
                _ => Err(format!("{s:?} must be quorum or classic")),
            }
        })?;
        let durability = parse_setting(raw, "DURABILITY", |s| {
            match s.to_ascii_lowercase().as_str() {
                "spool" => Ok(Durability::Spool),
                "confirm" => Ok(Durability::Confirm),
                "replicated" => Ok(Durability::Replicated),
                _ => Err(format!("{s:?} must be spool, confirm or replicated")),
            }
        })?;
        if durability == Durability::Replicated && queue_type != QueueType::Quorum {
            // A classic queue's confirm says one node has it, not a majority.
            return Err(invalid(
                "DURABILITY",
                "replicated needs quorum queues, but KOBRA_RELAY_QUEUE_TYPE is classic".into(),
            ));
        }

        Ok(Self {
            listen: parse_setting(raw, "LISTEN", parse_addr)?,
            admin_listen: parse_setting(raw, "ADMIN_LISTEN", parse_addr)?,
            api_keys: Arc::new(api_keys),
            api_keys_file,
            api_keys_inline: get("API_KEYS").map(|k| SecretString::from(k.to_owned())),
            amqp_urls: parse_setting(raw, "AMQP_URL", parse_amqp_urls)?,
            amqp_ca: amqp_ca(raw)?,
            topology_prefix,
            queue_type,
            declare_queues: parse_setting(raw, "DECLARE_QUEUES", parse_bool)?,
            archive: archive(raw)?,
            durability,
            replicated_deadline: parse_setting(
                raw,
                "REPLICATED_DEADLINE",
                parse_positive_duration,
            )?,
            spool_dir: parse_setting(raw, "SPOOL_DIR", |s| {
                if s.is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(PathBuf::from(s))
                }
            })?,
            spool_max_bytes: parse_setting(raw, "SPOOL_MAX_BYTES", parse_size)?,
            max_body_bytes: parse_setting(raw, "MAX_BODY_BYTES", parse_size)?,
            log_format: parse_setting(raw, "LOG_FORMAT", |s| {
                match s.to_ascii_lowercase().as_str() {
                    "json" => Ok(LogFormat::Json),
                    "pretty" => Ok(LogFormat::Pretty),
                    _ => Err(format!("{s:?} must be json or pretty")),
                }
            })?,
            publish_timeout: parse_setting(raw, "PUBLISH_TIMEOUT", parse_duration)?,
            shutdown_grace: parse_setting(raw, "SHUTDOWN_GRACE", parse_duration)?,
            readiness_stall_timeout: Some(parse_setting(
                raw,
                "READINESS_STALL_TIMEOUT",
                parse_duration,
            )?)
            .filter(|d| !d.is_zero()),
            header_read_timeout: parse_setting(
                raw,
                "HEADER_READ_TIMEOUT",
                parse_positive_duration,
            )?,
            body_read_timeout: parse_setting(raw, "BODY_READ_TIMEOUT", parse_positive_duration)?,
            max_connections: parse_setting(raw, "MAX_CONNECTIONS", |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| format!("{s:?} must be a whole number from 1 to 1000000"))
            })?,
            tls: tls_files(raw)?,
            max_header_bytes: parse_setting(raw, "MAX_HEADER_BYTES", |s| {
                let bytes = parse_size(s)?;
                usize::try_from(bytes)
                    .ok()
                    .filter(|b| (8192..=1 << 24).contains(b))
                    .ok_or_else(|| format!("{s:?} must be between 8KiB and 16MiB"))
            })?,
        })
    }

    /// The effective configuration as TOML, with secrets masked: key labels
    /// only, and AMQP URLs without their passwords.
    pub fn render_masked(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, value: String| {
            out.push_str(&format!("{} = {}\n", name.to_ascii_lowercase(), value));
        };
        let quoted = |s: &str| format!("{s:?}");
        let millis = |d: Duration| format!("\"{}ms\"", d.as_millis());
        line("LISTEN", quoted(&self.listen.to_string()));
        line("ADMIN_LISTEN", quoted(&self.admin_listen.to_string()));
        let labels: Vec<String> = self.api_keys.labels().map(|l| format!("{l}:***")).collect();
        line("API_KEYS", quoted(&labels.join(",")));
        if let Some(path) = &self.api_keys_file {
            line("API_KEYS_FILE", quoted(&path.display().to_string()));
        }
        let urls: Vec<String> = self
            .amqp_urls
            .iter()
            .map(|u| mask_url(u.expose_secret()))
            .collect();
        line("AMQP_URL", quoted(&urls.join(",")));
        if let Some(ca) = &self.amqp_ca {
            line("AMQP_CA_FILE", quoted(&ca.path.display().to_string()));
        }
        line("TOPOLOGY_PREFIX", quoted(&self.topology_prefix));
        line("QUEUE_TYPE", quoted(self.queue_type.as_str()));
        line("DECLARE_QUEUES", self.declare_queues.to_string());
        line("ARCHIVE", self.archive.is_some().to_string());
        if let Some(retention) = &self.archive {
            line("ARCHIVE_MAX_AGE", quoted(&retention.max_age_argument()));
            line("ARCHIVE_MAX_BYTES", retention.max_bytes.to_string());
        }
        line("DURABILITY", quoted(self.durability.as_str()));
        line("REPLICATED_DEADLINE", millis(self.replicated_deadline));
        line("SPOOL_DIR", quoted(&self.spool_dir.display().to_string()));
        line("SPOOL_MAX_BYTES", self.spool_max_bytes.to_string());
        line("MAX_BODY_BYTES", self.max_body_bytes.to_string());
        let format = match self.log_format {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        };
        line("LOG_FORMAT", quoted(format));
        line("PUBLISH_TIMEOUT", millis(self.publish_timeout));
        line("SHUTDOWN_GRACE", millis(self.shutdown_grace));
        line(
            "READINESS_STALL_TIMEOUT",
            millis(self.readiness_stall_timeout.unwrap_or_default()),
        );
        line("HEADER_READ_TIMEOUT", millis(self.header_read_timeout));
        line("BODY_READ_TIMEOUT", millis(self.body_read_timeout));
        line("MAX_CONNECTIONS", self.max_connections.to_string());
        line("MAX_HEADER_BYTES", self.max_header_bytes.to_string());
        if let Some(tls) = &self.tls {
            line("TLS_CERT_FILE", quoted(&tls.cert.display().to_string()));
            line("TLS_KEY_FILE", quoted(&tls.key.display().to_string()));
        }
        out
    }
}

fn invalid(raw: &RawValues, name: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        setting: name,
        source_desc: raw.get(name).map(|(_, s)| s.clone()).unwrap_or_default(),
        reason,
    }
}

fn parse_setting<T>(
    raw: &RawValues,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let value = raw.get(name).map(|(v, _)| v.trim()).unwrap_or_default();
    parse(value).map_err(|reason| invalid(raw, name, reason))
}

fn lookup(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(name))
}

fn read_file(path: &Path, raw: &mut RawValues) -> Result<(), ConfigError> {
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
        let text = match value {
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
        };
        raw.insert(setting, (text, format!("{key} in {}", path.display())));
    }
    Ok(())
}

/// Reads `API_KEYS` and `API_KEYS_FILE` (their union). Errors carry the
/// setting they belong to.
pub fn load_api_keys(
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<ApiKeys, (&'static str, String)> {
    let mut specs: Vec<String> = inline
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let inline_count = specs.len();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "API_KEYS_FILE",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        specs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    ApiKeys::parse(specs.iter().map(String::as_str)).map_err(|e: KeySpecError| {
        let setting = match &e {
            KeySpecError::BadLabel(l)
            | KeySpecError::DuplicateLabel(l)
            | KeySpecError::EmptyKey(l)
            | KeySpecError::BadDigest(l) => {
                let in_inline = specs[..inline_count]
                    .iter()
                    .any(|s| s.starts_with(l.as_str()));
                if in_inline {
                    "API_KEYS"
                } else {
                    "API_KEYS_FILE"
                }
            }
        };
        (setting, e.to_string())
    })
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:8080 or [::1]:8080"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} must be true or false")),
    }
}

/// Parses `1048576`, `512KiB`, `64 MiB`, `1GiB` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let err = || format!("{s:?} is not a size like 1048576, 512KiB, 64MiB or 1GiB");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| err())?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(err()),
    };
    let bytes = number.checked_mul(multiplier).ok_or_else(err)?;
    if bytes == 0 {
        return Err(format!("{s:?} must be greater than zero"));
    }
    Ok(bytes)
}

/// Parses `250ms`, `5s`, `2m`, `12h`, `30d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration like 500ms, 5s, 2m, 12h or 30d");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| err())?;
    let seconds = |per: u64| Duration::from_secs(number.saturating_mul(per));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3_600)),
        // `D` as RabbitMQ writes x-max-age.
        "d" | "D" => Ok(seconds(86_400)),
        _ => Err(err()),
    }
}

/// `ARCHIVE`, `ARCHIVE_MAX_AGE` and `ARCHIVE_MAX_BYTES`.
fn archive(raw: &RawValues) -> Result<Option<Retention>, ConfigError> {
    if !parse_setting(raw, "ARCHIVE", parse_bool)? {
        return Ok(None);
    }
    let max_age = parse_setting(raw, "ARCHIVE_MAX_AGE", |s| {
        let age = parse_duration(s)?;
        if age.subsec_nanos() != 0 || age.is_zero() {
            // x-max-age counts whole seconds at least.
            return Err(format!(
                "{s:?} must be at least one second, in whole seconds"
            ));
        }
        Ok(age)
    })?;
    let max_bytes = parse_setting(raw, "ARCHIVE_MAX_BYTES", parse_size)?;
    Ok(Some(Retention { max_age, max_bytes }))
}

fn tls_files(raw: &RawValues) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let path = |name| {
        raw.get(name)
            .map(|(v, _)| v.trim())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (path("TLS_CERT_FILE"), path("TLS_KEY_FILE")) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles { cert, key })),
        (Some(_), None) => Err(ConfigError::Missing {
            setting: "TLS_KEY_FILE",
            hint: "KOBRA_RELAY_TLS_CERT_FILE is set; TLS needs the key file too",
        }),
        (None, Some(_)) => Err(ConfigError::Missing {
            setting: "TLS_CERT_FILE",
            hint: "KOBRA_RELAY_TLS_KEY_FILE is set; TLS needs the certificate file too",
        }),
    }
}

/// CA certificates (PEM) trusted for `amqps://` in addition to the system's.
#[derive(Clone)]
pub struct AmqpCa {
    /// The `AMQP_CA_FILE` path.
    pub path: PathBuf,
    /// Its PEM text, read and checked at load.
    pub pem: String,
}

fn amqp_ca(raw: &RawValues) -> Result<Option<AmqpCa>, ConfigError> {
    let Some(path) = raw
        .get("AMQP_CA_FILE")
        .map(|(v, _)| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(path)
        .map_err(|e| invalid(raw, "AMQP_CA_FILE", format!("cannot read {path}: {e}")))?;
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(raw, "AMQP_CA_FILE", format!("{path} is not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(
            raw,
            "AMQP_CA_FILE",
            format!("{path} holds no CERTIFICATE block"),
        ));
    }
    Ok(Some(AmqpCa {
        path: PathBuf::from(path),
        pem,
    }))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).and_then(|d| {
        if d.is_zero() {
            Err(format!("{s:?} must be longer than zero"))
        } else {
            Ok(d)
        }
    })
}

fn parse_amqp_urls(s: &str) -> Result<Vec<SecretString>, String> {
    let urls: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err("at least one amqp:// or amqps:// URL is required".into());
    }
    urls.into_iter()
        .map(|u| {
            u.parse::<lapin::uri::AMQPUri>()
                .map(|_| SecretString::from(u.to_owned()))
                .map_err(|e| format!("{} is not an AMQP URL: {e}", mask_url(u)))
        })
        .collect()
}

/// Replaces the password of a URL with `***`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{ENV_PREFIX}{k}"), (*v).to_owned()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(None, env(pairs))
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = load(&[("API_KEYS", "k")]).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(s.admin_listen.to_string(), "0.0.0.0:8081");
        assert_eq!(s.topology_prefix, "kobra");
        assert_eq!(s.queue_type, QueueType::Quorum);
        assert!(s.declare_queues);
        assert_eq!(
            s.archive,
            Some(Retention {
                max_age: Duration::from_secs(30 * 86_400),
                max_bytes: 10 << 30,
            })
        );
        assert_eq!(s.durability, Durability::Spool);
        assert_eq!(s.replicated_deadline, Duration::from_millis(50));
        assert_eq!(
            s.readiness_stall_timeout, None,
            "a broker outage alone keeps it ready"
        );
        assert_eq!(s.spool_dir, PathBuf::from("./data/spool"));
        assert_eq!(s.spool_max_bytes, 1 << 30);
        assert_eq!(s.max_body_bytes, 1_048_576);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.publish_timeout, Duration::from_secs(5));
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.body_read_timeout, Duration::from_secs(30));
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.max_header_bytes, 64 * 1024);
        assert_eq!(s.amqp_urls.len(), 1);
    }

    #[test]
    fn no_key_is_a_one_line_error_naming_the_setting() {
        let err = load(&[]).unwrap_err().to_string();
        assert!(err.contains("KOBRA_RELAY_API_KEYS"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn bad_values_name_the_setting_and_the_expected_form() {
        let err = load(&[("API_KEYS", "k"), ("MAX_BODY_BYTES", "lots")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KOBRA_RELAY_MAX_BODY_BYTES"), "{err}");
        assert!(err.contains("MiB"), "{err}");
        let err = load(&[("API_KEYS", "k"), ("DURABILITY", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KOBRA_RELAY_DURABILITY"), "{err}");
        let err = load(&[
            ("API_KEYS", "k"),
            ("DURABILITY", "replicated"),
            ("QUEUE_TYPE", "classic"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("KOBRA_RELAY_DURABILITY"), "{err}");
        assert!(err.contains("KOBRA_RELAY_QUEUE_TYPE"), "{err}");
        let err = load(&[("API_KEYS", "k"), ("AMQP_URL", "http://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KOBRA_RELAY_AMQP_URL"), "{err}");
        let err = load(&[("API_KEYS", "k"), ("LISTEN", "8080")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KOBRA_RELAY_LISTEN"), "{err}");
    }

    #[test]
    fn unknown_variables_are_refused() {
        let err = load(&[("API_KEYS", "k"), ("SPOOL_MAX", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KOBRA_RELAY_SPOOL_MAX"), "{err}");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("1 GB").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn durations_run_from_milliseconds_to_days() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_duration("30D"), parse_duration("30d"));
        assert!(parse_duration("1w").is_err());
    }

    #[test]
    fn the_archive_can_be_turned_off_or_resized() {
        let off = load(&[("API_KEYS", "k"), ("ARCHIVE", "false")]).unwrap();
        assert_eq!(off.archive, None);
        let week = load(&[
            ("API_KEYS", "k"),
            ("ARCHIVE_MAX_AGE", "7d"),
            ("ARCHIVE_MAX_BYTES", "512MiB"),
        ])
        .unwrap();
        assert_eq!(
            week.archive,
            Some(Retention {
                max_age: Duration::from_secs(7 * 86_400),
                max_bytes: 512 << 20,
            })
        );
        let err = load(&[("API_KEYS", "k"), ("ARCHIVE_MAX_AGE", "1500ms")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KOBRA_RELAY_ARCHIVE_MAX_AGE"), "{err}");
        assert!(err.contains("whole seconds"), "{err}");
    }
    #[test]
    fn environment_overrides_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "api_keys = [\"a:1\", \"b:2\"]\nmax_body_bytes = \"2 MiB\"\nqueue_type = \"classic\"\n",
        )
        .unwrap();
        let s = Settings::from_sources(Some(&path), env(&[("QUEUE_TYPE", "quorum")])).unwrap();
        assert_eq!(s.max_body_bytes, 2 << 20);
        assert_eq!(s.queue_type, QueueType::Quorum);
        assert_eq!(s.api_keys.labels().collect::<Vec<_>>(), vec!["a", "b"]);

        std::fs::write(&path, "max_body = 1\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_body"), "{err}");
    }

    #[test]
    fn keys_file_and_inline_keys_are_combined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# rotated 2026-11\nnew:s3cret\n\n").unwrap();
        let file = path.to_str().unwrap();
        let s = load(&[("API_KEYS", "old:0ld"), ("API_KEYS_FILE", file)]).unwrap();
        assert_eq!(s.api_keys.labels().collect::<Vec<_>>(), vec!["old", "new"]);
        let err = load(&[("API_KEYS", "new:x"), ("API_KEYS_FILE", file)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn rendering_masks_every_secret() {
        let s = load(&[
            ("API_KEYS", "ops:hunter2"),
            (
                "AMQP_URL",
                "amqp://user:pa55@10.0.0.1:5672/%2f,amqps://u:pw@b.example/v",
            ),
        ])
        .unwrap();
        let shown = s.render_masked();
        assert!(shown.contains("ops:***"), "{shown}");
        assert!(
            shown.contains("amqp://user:***@10.0.0.1:5672/%2f"),
            "{shown}"
        );
        assert!(shown.contains("amqps://u:***@b.example/v"), "{shown}");
        for secret in ["hunter2", "pa55", ":pw@"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
            assert!(!format!("{s:?}").contains(secret));
        }
        let reparsed: toml::Table = shown.parse().expect("rendered config is TOML");
        assert_eq!(reparsed["queue_type"].as_str(), Some("quorum"));
    }
}
