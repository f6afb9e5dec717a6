//! The effective configuration as TOML with every secret masked: the only
//! way settings are printed (`check-config`, and `Debug`).

use std::{fmt, time::Duration};

use secrecy::ExposeSecret;

use super::Settings;
use super::parse::mask_url;

impl Settings {
    /// The effective configuration as TOML, with secrets masked: key labels
    /// only, and AMQP URLs without their passwords.
    pub fn render_masked(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, value: String| {
            out.push_str(&format!("{} = {}\n", name.to_ascii_lowercase(), value));
        };
        let quoted = |s: &str| format!("{s:?}");
        let millis = |d: Duration| format!("\"{}ms\"", d.as_millis());
        let path = |p: &std::path::Path| quoted(&p.display().to_string());
        let http = &self.http;
        line("LISTEN", quoted(&http.listen.to_string()));
        line("ADMIN_LISTEN", quoted(&http.admin_listen.to_string()));
        let keys = &self.keys;
        let labels: Vec<String> = keys.api_keys.labels().map(|l| format!("{l}:***")).collect();
        line("API_KEYS", quoted(&labels.join(",")));
        if let Some(file) = &keys.source.file {
            line("API_KEYS_FILE", path(file));
        }
        let broker = &self.broker;
        let urls: Vec<String> = broker
            .amqp_urls
            .iter()
            .map(|u| mask_url(u.expose_secret()))
            .collect();
        line("AMQP_URL", quoted(&urls.join(",")));
        if let Some(ca) = &broker.amqp_ca {
            line("AMQP_CA_FILE", path(&ca.path));
        }
        let topology = &self.topology;
        line("TOPOLOGY_PREFIX", quoted(&topology.prefix));
        line("QUEUE_TYPE", quoted(topology.queue_type.as_str()));
        line("DECLARE_QUEUES", topology.declare_queues.to_string());
        line("ARCHIVE", topology.archive.is_some().to_string());
        if let Some(retention) = &topology.archive {
            line("ARCHIVE_MAX_AGE", quoted(&retention.max_age_argument()));
            line("ARCHIVE_MAX_BYTES", retention.max_bytes.to_string());
        }
        line("DURABILITY", quoted(self.durability.mode.as_str()));
        line(
            "REPLICATED_DEADLINE",
            millis(self.durability.replicated_deadline),
        );
        line("SPOOL_DIR", path(&self.spool.dir));
        line("SPOOL_MAX_BYTES", self.spool.max_bytes.to_string());
        line("MAX_BODY_BYTES", http.max_body_bytes.to_string());
        line("MAX_JSON_DEPTH", http.max_json_depth.to_string());
        line("LOG_FORMAT", quoted(self.log_format.as_str()));
        line("PUBLISH_TIMEOUT", millis(broker.publish_timeout));
        line("SHUTDOWN_GRACE", millis(self.shutdown_grace));
        line(
            "READINESS_STALL_TIMEOUT",
            millis(self.durability.readiness_stall_timeout.unwrap_or_default()),
        );
        line("HEADER_READ_TIMEOUT", millis(http.header_read_timeout));
        line("BODY_READ_TIMEOUT", millis(http.body_read_timeout));
        line("MAX_CONNECTIONS", http.max_connections.to_string());
        line("MAX_HEADER_BYTES", http.max_header_bytes.to_string());
        if let Some(tls) = &http.tls {
            line("TLS_CERT_FILE", path(&tls.cert));
            line("TLS_KEY_FILE", path(&tls.key));
        }
        let traces = &self.traces;
        if let Some(endpoint) = &traces.endpoint {
            line(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                quoted(&mask_url(endpoint)),
            );
        }
        line("OTEL_SERVICE_NAME", quoted(&traces.service_name));
        line("OTEL_TRACES_SAMPLER", quoted(traces.sampler.name()));
        if let Some(ratio) = traces.sampler.ratio() {
            line("OTEL_TRACES_SAMPLER_ARG", quoted(&ratio.to_string()));
        }
        out
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_masked())
    }
}
