//! The settings tree: one section per part of the relay, each built and
//! validated from the raw values and handed whole to the part that uses it.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use rustls_pki_types::{CertificateDer, pem::PemObject};
use secrecy::SecretString;

use super::ConfigError;
use super::parse::{
    parse_addr, parse_amqp_urls, parse_bool, parse_duration, parse_positive_duration, parse_size,
};
use super::sources::RawValues;
use super::traces::TraceSettings;
use crate::auth::ApiKeys;
use crate::keys::{KeyLoadError, KeySource};
use crate::tls::TlsFiles;
use crate::visit::DEPTH_CEILING;

/// The validated configuration.
#[derive(Clone)]
pub struct Settings {
    /// Listeners, request limits and TLS.
    pub http: HttpSettings,
    /// API keys and where they come from.
    pub keys: KeySettings,
    /// How to reach the broker.
    pub broker: BrokerSettings,
    /// Exchange and queue names and what is declared.
    pub topology: TopologySettings,
    /// When `202` is sent, and when the relay stops being ready.
    pub durability: DurabilitySettings,
    /// The local spool.
    pub spool: SpoolSettings,
    /// Log output format.
    pub log_format: LogFormat,
    /// How long shutdown keeps draining the spool to the broker.
    pub shutdown_grace: Duration,
    /// Trace export (off unless an OTLP endpoint is set).
    pub traces: TraceSettings,
}

/// `LISTEN`, `ADMIN_LISTEN`, `MAX_BODY_BYTES`, the connection limits and TLS.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Ingress listen address.
    pub listen: SocketAddr,
    /// Admin (metrics, probes) listen address.
    pub admin_listen: SocketAddr,
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// Deepest nesting of objects and arrays in an accepted body.
    pub max_json_depth: usize,
    /// Longest wait for a request head: slow senders (slowloris) and idle
    /// keep-alive connections are closed after it.
    pub header_read_timeout: Duration,
    /// Longest wait for a whole body once its head is in (408 after it).
    pub body_read_timeout: Duration,
    /// Open connections per listener; further clients wait in the backlog.
    pub max_connections: usize,
    /// Largest request head (hyper's read buffer).
    pub max_header_bytes: usize,
    /// TLS on the ingress, when both files are set.
    pub tls: Option<TlsFiles>,
}

/// `API_KEYS` and `API_KEYS_FILE`.
#[derive(Clone)]
pub struct KeySettings {
    /// The key set loaded at start.
    pub api_keys: Arc<ApiKeys>,
    /// Where it came from, to read it again on reload.
    pub source: KeySource,
}

/// `AMQP_URL`, `AMQP_CA_FILE` and `PUBLISH_TIMEOUT`.
#[derive(Clone)]
pub struct BrokerSettings {
    /// Broker URLs in failover order.
    pub amqp_urls: Vec<SecretString>,
    /// Extra CA certificates trusted for `amqps://` besides the system's.
    pub amqp_ca: Option<AmqpCa>,
    /// How long a confirm may take before the publish counts as failed.
    pub publish_timeout: Duration,
}

impl BrokerSettings {
    /// The extra CA certificates' PEM text, if any.
    pub fn ca_pem(&self) -> Option<&str> {
        self.amqp_ca.as_ref().map(|ca| ca.pem.as_str())
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

/// `TOPOLOGY_PREFIX`, `QUEUE_TYPE`, `DECLARE_QUEUES` and the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySettings {
    /// First component of every exchange and queue name.
    pub prefix: String,
    /// Type of declared queues.
    pub queue_type: QueueType,
    /// Whether queues and bindings are declared (exchanges always are).
    pub declare_queues: bool,
    /// The archive stream's retention (`None`: `ARCHIVE=false`).
    pub archive: Option<Retention>,
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

/// How long and how much the archive stream keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Segments older than this are removed (`x-max-age`).
    pub max_age: Duration,
    /// The stream is trimmed to this size, oldest segments first
    /// (`x-max-length-bytes`).
    pub max_bytes: u64,
}

impl Retention {
    /// `x-max-age` in the largest unit that states it exactly (`30D`,
    /// `36h`, `90m`, `45s`): RabbitMQ reads `Y`, `M`, `D`, `h`, `m`, `s`.
    pub fn max_age_argument(&self) -> String {
        let seconds = self.max_age.as_secs();
        let unit = [(86_400, 'D'), (3_600, 'h'), (60, 'm')]
            .into_iter()
            .find(|(size, _)| seconds.is_multiple_of(*size));
        match unit {
            Some((size, letter)) => format!("{}{letter}", seconds / size),
            None => format!("{seconds}s"),
        }
    }
}

/// `DURABILITY`, `REPLICATED_DEADLINE` and `READINESS_STALL_TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurabilitySettings {
    /// When `202` is sent.
    pub mode: Durability,
    /// How long a `replicated` 202 waits for the broker's confirms before it
    /// answers from the spool.
    pub replicated_deadline: Duration,
    /// `/readyz` fails once visits have waited this long in the spool with
    /// none delivered for as long (`None`: never, the contract's default).
    pub readiness_stall_timeout: Option<Duration>,
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

/// `SPOOL_DIR` and `SPOOL_MAX_BYTES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// Spool directory.
    pub dir: PathBuf,
    /// Spool capacity in bytes of pending entries.
    pub max_bytes: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (default).
    Json,
    /// Human-readable, for local runs.
    Pretty,
}

impl LogFormat {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Pretty => "pretty",
        }
    }
}

impl Settings {
    /// Builds every section from `raw`; `require_keys` is false for the
    /// operator tools, which serve no requests.
    pub(super) fn from_raw(raw: &RawValues, require_keys: bool) -> Result<Self, ConfigError> {
        // Keys first: a missing key is the first thing a newcomer hits.
        let keys = KeySettings::from_raw(raw, require_keys)?;
        let topology = TopologySettings::from_raw(raw)?;
        Ok(Self {
            keys,
            durability: DurabilitySettings::from_raw(raw, topology.queue_type)?,
            topology,
            http: HttpSettings::from_raw(raw)?,
            broker: BrokerSettings::from_raw(raw)?,
            spool: SpoolSettings::from_raw(raw)?,
            log_format: raw.parse("LOG_FORMAT", |s| match s.to_ascii_lowercase().as_str() {
                "json" => Ok(LogFormat::Json),
                "pretty" => Ok(LogFormat::Pretty),
                _ => Err(format!("{s:?} must be json or pretty")),
            })?,
            shutdown_grace: raw.parse("SHUTDOWN_GRACE", parse_duration)?,
            traces: TraceSettings::from_raw(raw)?,
        })
    }
}

impl HttpSettings {
    fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        Ok(Self {
            listen: raw.parse("LISTEN", parse_addr)?,
            admin_listen: raw.parse("ADMIN_LISTEN", parse_addr)?,
            max_body_bytes: raw.parse("MAX_BODY_BYTES", parse_size)?,
            max_json_depth: raw.parse("MAX_JSON_DEPTH", |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=DEPTH_CEILING).contains(n))
                    .ok_or_else(|| {
                        format!("{s:?} must be a whole number from 1 to {DEPTH_CEILING}")
                    })
            })?,
            header_read_timeout: raw.parse("HEADER_READ_TIMEOUT", parse_positive_duration)?,
            body_read_timeout: raw.parse("BODY_READ_TIMEOUT", parse_positive_duration)?,
            max_connections: raw.parse("MAX_CONNECTIONS", |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| format!("{s:?} must be a whole number from 1 to 1000000"))
            })?,
            max_header_bytes: raw.parse("MAX_HEADER_BYTES", |s| {
                let bytes = parse_size(s)?;
                usize::try_from(bytes)
                    .ok()
                    .filter(|b| (8192..=1 << 24).contains(b))
                    .ok_or_else(|| format!("{s:?} must be between 8KiB and 16MiB"))
            })?,
            tls: tls_files(raw)?,
        })
    }
}

fn tls_files(raw: &RawValues) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |name| raw.non_blank(name).map(PathBuf::from);
    match (path("TLS_CERT_FILE"), path("TLS_KEY_FILE")) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
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

impl KeySettings {
    fn from_raw(raw: &RawValues, require_keys: bool) -> Result<Self, ConfigError> {
        let source = KeySource {
            inline: raw
                .get("API_KEYS")
                .map(|k| SecretString::from(k.to_owned())),
            file: raw.non_blank("API_KEYS_FILE").map(PathBuf::from),
        };
        let api_keys = source.read().map_err(|error| match error {
            KeyLoadError::Setting { setting, reason } => raw.invalid(setting, reason),
            KeyLoadError::Empty => raw.invalid("API_KEYS", error.to_string()),
        })?;
        if require_keys && api_keys.is_empty() {
            return Err(ConfigError::Missing {
                setting: "API_KEYS",
                hint: "set label:key[,label2:key2] (or KOBRA_RELAY_API_KEYS_FILE)",
            });
        }
        Ok(Self {
            api_keys: Arc::new(api_keys),
            source,
        })
    }
}

impl BrokerSettings {
    fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        Ok(Self {
            amqp_urls: raw.parse("AMQP_URL", parse_amqp_urls)?,
            amqp_ca: amqp_ca(raw)?,
            publish_timeout: raw.parse("PUBLISH_TIMEOUT", parse_duration)?,
        })
    }
}

/// Reads and checks `AMQP_CA_FILE` at load, so a bad file stops startup
/// rather than every connection attempt.
fn amqp_ca(raw: &RawValues) -> Result<Option<AmqpCa>, ConfigError> {
    let Some(path) = raw.non_blank("AMQP_CA_FILE") else {
        return Ok(None);
    };
    let invalid = |reason| raw.invalid("AMQP_CA_FILE", reason);
    let pem =
        std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{path} is not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(format!("{path} holds no CERTIFICATE block")));
    }
    Ok(Some(AmqpCa {
        path: PathBuf::from(path),
        pem,
    }))
}

impl TopologySettings {
    fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        Ok(Self {
            prefix: raw.parse("TOPOLOGY_PREFIX", |s| {
                let ok = !s.is_empty()
                    && s.len() <= 200
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
                ok.then(|| s.to_owned())
                    .ok_or_else(|| format!("{s:?} must be 1-200 characters of A-Z a-z 0-9 . _ - :"))
            })?,
            queue_type: raw.parse("QUEUE_TYPE", |s| match s.to_ascii_lowercase().as_str() {
                "quorum" => Ok(QueueType::Quorum),
                "classic" => Ok(QueueType::Classic),
                _ => Err(format!("{s:?} must be quorum or classic")),
            })?,
            declare_queues: raw.parse("DECLARE_QUEUES", parse_bool)?,
            archive: archive(raw)?,
        })
    }
}

/// `ARCHIVE`, `ARCHIVE_MAX_AGE` and `ARCHIVE_MAX_BYTES`.
fn archive(raw: &RawValues) -> Result<Option<Retention>, ConfigError> {
    if !raw.parse("ARCHIVE", parse_bool)? {
        return Ok(None);
    }
    let max_age = raw.parse("ARCHIVE_MAX_AGE", |s| {
        let age = parse_duration(s)?;
        if age.subsec_nanos() != 0 || age.is_zero() {
            // x-max-age counts whole seconds at least.
            return Err(format!(
                "{s:?} must be at least one second, in whole seconds"
            ));
        }
        Ok(age)
    })?;
    let max_bytes = raw.parse("ARCHIVE_MAX_BYTES", parse_size)?;
    Ok(Some(Retention { max_age, max_bytes }))
}

impl DurabilitySettings {
    fn from_raw(raw: &RawValues, queue_type: QueueType) -> Result<Self, ConfigError> {
        let mode = raw.parse("DURABILITY", |s| match s.to_ascii_lowercase().as_str() {
            "spool" => Ok(Durability::Spool),
            "confirm" => Ok(Durability::Confirm),
            "replicated" => Ok(Durability::Replicated),
            _ => Err(format!("{s:?} must be spool, confirm or replicated")),
        })?;
        if mode == Durability::Replicated && queue_type != QueueType::Quorum {
            // A classic queue's confirm says one node has it, not a majority.
            return Err(raw.invalid(
                "DURABILITY",
                "replicated needs quorum queues, but KOBRA_RELAY_QUEUE_TYPE is classic".into(),
            ));
        }
        Ok(Self {
            mode,
            replicated_deadline: raw.parse("REPLICATED_DEADLINE", parse_positive_duration)?,
            readiness_stall_timeout: Some(raw.parse("READINESS_STALL_TIMEOUT", parse_duration)?)
                .filter(|d| !d.is_zero()),
        })
    }
}

impl SpoolSettings {
    fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        Ok(Self {
            dir: raw.parse("SPOOL_DIR", |s| {
                if s.is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(PathBuf::from(s))
                }
            })?,
            max_bytes: raw.parse("SPOOL_MAX_BYTES", parse_size)?,
        })
    }
}
