//! deploy/docker-compose.yml: valid for Compose (`docker-compose config`,
//! which needs no engine) and wired together: credentials, ports, mounts and
//! names agree across the relay, RabbitMQ, Prometheus and Grafana.

use std::{path::Path, time::Duration};

use kobra_relay::config::{Settings, parse_duration};
use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The file as Compose resolves it (paths absolute, defaults filled in).
fn resolved() -> Value {
    let output = std::process::Command::new("docker-compose")
        .args(["-f", "deploy/docker-compose.yml", "config"])
        .current_dir(REPO)
        .env_remove("KOBRA_API_KEYS")
        .env_remove("GRAFANA_ADMIN_PASSWORD")
        .output()
        .expect("docker-compose is installed (scripts/test.sh installs Debian's package)");
    assert!(
        output.status.success(),
        "docker-compose config refused the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml_ng::from_slice(&output.stdout).expect("docker-compose config prints YAML")
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(REPO).join(path)).expect(path);
    serde_yaml_ng::from_str(&text).expect(path)
}

/// `(host source, container target)` of each bind mount of a service.
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| {
            let mut parts = v.as_str()?.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

fn env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name].as_str().expect(name)
}

#[test]
fn every_service_has_a_health_check_and_the_relay_waits_for_the_broker() {
    let config = resolved();
    let services = config["services"].as_object().expect("services");
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["grafana", "kobra-relay", "prometheus", "rabbitmq"]);
    for (name, service) in services {
        let test = service["healthcheck"]["test"].as_array().expect(name);
        assert!(test.len() > 1, "{name} has a health check command");
    }
    let relay = &config["services"]["kobra-relay"];
    assert_eq!(
        relay["depends_on"]["rabbitmq"]["condition"],
        "service_healthy"
    );
    let probe: Vec<&str> = relay["healthcheck"]["test"]
        .as_array()
        .expect("test")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        probe,
        [
            "CMD",
            "/usr/local/bin/kobra-relay",
            "probe",
            "http://127.0.0.1:8081/readyz"
        ]
    );
}

#[test]
fn the_relay_settings_load_and_reach_the_broker_with_its_credentials() {
    let config = resolved();
    let relay = &config["services"]["kobra-relay"];
    let rabbitmq = &config["services"]["rabbitmq"];

    let mut settings: Vec<(String, String)> = relay["environment"]
        .as_object()
        .expect("environment")
        .iter()
        .filter(|(k, _)| k.starts_with("KOBRA_RELAY_") || k.starts_with("OTEL_"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    // What the image sets (deploy/docker/Dockerfile ENV).
    settings.push((
        "KOBRA_RELAY_SPOOL_DIR".into(),
        "/var/lib/kobra-relay/spool".into(),
    ));
    let loaded = Settings::from_sources(None, settings).expect("the relay accepts its settings");
    assert_eq!(
        loaded.traces.endpoint, None,
        "trace export is off unless OTEL_EXPORTER_OTLP_ENDPOINT is given"
    );
    assert_eq!(
        loaded.keys.api_keys.labels().collect::<Vec<_>>(),
        ["dev"],
        "a default key for a laptop"
    );

    let url = env(relay, "KOBRA_RELAY_AMQP_URL");
    let expected = format!(
        "amqp://{}:{}@rabbitmq:5672/%2f",
        env(rabbitmq, "RABBITMQ_DEFAULT_USER"),
        env(rabbitmq, "RABBITMQ_DEFAULT_PASS")
    );
    assert_eq!(url, expected, "the broker's own user, not guest");

    let spool = relay["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.starts_with("relay-spool:"))
        .expect("a named volume for the spool");
    assert_eq!(spool, "relay-spool:/var/lib/kobra-relay/spool:rw");

    let grace =
        parse_duration(relay["stop_grace_period"].as_str().expect("stop grace")).expect("duration");
    assert!(
        grace >= loaded.shutdown_grace + Duration::from_secs(10),
        "in-flight requests plus SHUTDOWN_GRACE fit before SIGKILL"
    );
}

#[test]
fn prometheus_and_grafana_mount_the_repository_files_and_find_each_other() {
    let config = resolved();
    let services = &config["services"];
    for name in ["prometheus", "grafana"] {
        for (source, _) in mounts(&services[name])
            .iter()
            .filter(|(s, _)| s.starts_with('/'))
        {
            assert!(Path::new(source).exists(), "{name} mounts {source}");
            assert!(source.starts_with(REPO), "{source} is in the repository");
        }
    }

    let prometheus = yaml_file("deploy/prometheus/prometheus.yml");
    assert_eq!(
        prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0], "kobra-relay:8081",
        "the relay service's admin port"
    );
    let mounted: Vec<String> = mounts(&services["prometheus"])
        .into_iter()
        .map(|(_, target)| target)
        .collect();
    for rule_file in prometheus["rule_files"].as_array().expect("rule files") {
        let path = format!("/etc/prometheus/{}", rule_file.as_str().expect("path"));
        assert!(mounted.contains(&path), "{path} is mounted");
    }

    let datasources = yaml_file("grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(
        datasources["datasources"][0]["url"],
        "http://prometheus:9090"
    );

    let home = env(
        &services["grafana"],
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    );
    let (source, target) = mounts(&services["grafana"])
        .into_iter()
        .find(|(_, target)| home.starts_with(target.as_str()))
        .expect("the home dashboard is under a mount");
    let file = Path::new(&source).join(home[target.len()..].trim_start_matches('/'));
    assert!(file.exists(), "{} exists", file.display());
}
