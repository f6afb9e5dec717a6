//! The tracing section: where spans are exported and which are kept, from
//! OpenTelemetry's standard `OTEL_*` names. Export is off unless an OTLP
//! endpoint is set.

use super::ConfigError;
use super::parse::parse_bool;
use super::sources::RawValues;

/// `OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME` and `OTEL_TRACES_SAMPLER*`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/HTTP traces URL; `None` turns export off.
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Which traces are recorded.
    pub sampler: Sampler,
    /// Finished spans waiting for export; past this they are dropped (and
    /// counted) rather than slow anything down.
    pub max_queue: usize,
}

/// `OTEL_TRACES_SAMPLER`, with `OTEL_TRACES_SAMPLER_ARG` for the ratios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// `always_on`
    AlwaysOn,
    /// `always_off`
    AlwaysOff,
    /// `traceidratio`: this fraction of traces.
    Ratio(f64),
    /// `parentbased_*`: follow the caller's decision when a `traceparent`
    /// came with the request, else decide by the root sampler.
    ParentBased(Root),
}

/// The root sampler of a parent-based one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// `parentbased_always_on` (the default)
    AlwaysOn,
    /// `parentbased_always_off`
    AlwaysOff,
    /// `parentbased_traceidratio`
    Ratio(f64),
}

impl Sampler {
    /// The `OTEL_TRACES_SAMPLER` value, as `check-config` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::AlwaysOn => "always_on",
            Self::AlwaysOff => "always_off",
            Self::Ratio(_) => "traceidratio",
            Self::ParentBased(Root::AlwaysOn) => "parentbased_always_on",
            Self::ParentBased(Root::AlwaysOff) => "parentbased_always_off",
            Self::ParentBased(Root::Ratio(_)) => "parentbased_traceidratio",
        }
    }

    /// The ratio of the ratio samplers.
    pub fn ratio(self) -> Option<f64> {
        match self {
            Self::Ratio(r) | Self::ParentBased(Root::Ratio(r)) => Some(r),
            _ => None,
        }
    }
}

/// The path OTLP/HTTP serves traces on, appended to the base endpoint.
const TRACES_PATH: &str = "/v1/traces";

impl TraceSettings {
    pub(super) fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        let disabled = raw.parse("OTEL_SDK_DISABLED", parse_bool)?;
        let exporter = raw.parse("OTEL_TRACES_EXPORTER", |s| match s {
            "otlp" => Ok(true),
            "none" => Ok(false),
            _ => Err(format!("{s:?} must be otlp or none")),
        })?;
        raw.parse("OTEL_EXPORTER_OTLP_PROTOCOL", |s| match s {
            "http/protobuf" => Ok(()),
            _ => Err(format!("{s:?}: only http/protobuf is supported")),
        })?;
        let endpoint = if disabled || !exporter {
            None
        } else if let Some(url) = raw.non_blank("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(checked_url(raw, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)?.to_owned())
        } else if let Some(base) = raw.non_blank("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = checked_url(raw, "OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
            Some(format!("{}{TRACES_PATH}", base.trim_end_matches('/')))
        } else {
            None
        };
        let service_name = raw
            .non_blank("OTEL_SERVICE_NAME")
            .unwrap_or("kobra-relay")
            .to_owned();
        Ok(Self {
            endpoint,
            service_name,
            sampler: sampler(raw)?,
            max_queue: raw.parse("OTEL_BSP_MAX_QUEUE_SIZE", |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1 << 20).contains(n))
                    .ok_or_else(|| format!("{s:?} must be a whole number from 1 to 1048576"))
            })?,
        })
    }
}

fn checked_url<'a>(
    raw: &RawValues,
    name: &'static str,
    url: &'a str,
) -> Result<&'a str, ConfigError> {
    if url.starts_with("http://") && url.len() > "http://".len() {
        Ok(url)
    } else if url.starts_with("https://") {
        Err(raw.invalid(
            name,
            format!(
                "{url:?}: the relay exports over plain HTTP; point it at a collector on the same host or network (an OpenTelemetry Collector agent), which forwards over TLS"
            ),
        ))
    } else {
        Err(raw.invalid(name, format!("{url:?} must be an http:// URL")))
    }
}

fn sampler(raw: &RawValues) -> Result<Sampler, ConfigError> {
    let ratio = || {
        raw.parse("OTEL_TRACES_SAMPLER_ARG", |s| {
            if s.is_empty() {
                return Ok(1.0);
            }
            s.parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("{s:?} must be a ratio from 0 to 1"))
        })
    };
    raw.parse("OTEL_TRACES_SAMPLER", |s| Ok(s.to_ascii_lowercase()))
        .and_then(|name| match name.as_str() {
            "always_on" => Ok(Sampler::AlwaysOn),
            "always_off" => Ok(Sampler::AlwaysOff),
            "traceidratio" => Ok(Sampler::Ratio(ratio()?)),
            "parentbased_always_on" => Ok(Sampler::ParentBased(Root::AlwaysOn)),
            "parentbased_always_off" => Ok(Sampler::ParentBased(Root::AlwaysOff)),
            "parentbased_traceidratio" => Ok(Sampler::ParentBased(Root::Ratio(ratio()?))),
            other => Err(raw.invalid(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "{other:?} must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ),
            )),
        })
}
