//! deploy/kubernetes: every core manifest validates against the Kubernetes
//! API schema (`kubernetes-validate --strict`), and the pieces agree with
//! each other and with the relay's own settings parser.

use std::{collections::BTreeMap, path::Path};

use kobra_relay::config::{Settings, parse_size};
use serde::Deserialize;
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// Every document of a manifest file.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(DIR).join(file)).expect(file);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect(file))
        .collect()
}

/// The one object of `kind` named `name` across the directory.
fn object(kind: &str, name: &str) -> Value {
    manifest_files()
        .iter()
        .flat_map(|f| documents(f))
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name}"))
}

fn manifest_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

/// The entry called `name` of a list of named items (ports, mounts, ...).
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|item| item["name"] == name))
        .unwrap_or_else(|| panic!("no item named {name}"))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &Value, target: &Value) -> bool {
    let (selector, target) = (labels(selector), labels(target));
    !selector.is_empty() && selector.iter().all(|(k, v)| target.get(k) == Some(v))
}

#[test]
fn the_core_manifests_validate_against_the_kubernetes_schema() {
    // The ServiceMonitor is a Prometheus Operator CRD, checked below instead.
    let files: Vec<String> = manifest_files()
        .into_iter()
        .filter(|f| f != "servicemonitor.yaml")
        .collect();
    let output = std::process::Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--no-warn"])
        .args(&files)
        .current_dir(DIR)
        .output()
        .expect("kubernetes-validate is installed (scripts/test.sh installs it from PyPI)");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !report.contains("ERROR"),
        "{report}"
    );
    for kind in [
        "configmap",
        "secret",
        "service",
        "statefulset",
        "poddisruptionbudget",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}/")),
            "{kind}: {report}"
        );
    }
}

#[test]
fn kustomize_applies_every_manifest_but_the_secret_example() {
    let kustomization = documents("kustomization.yaml").remove(0);
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("path").to_owned())
        .collect();
    listed.sort();
    let expected: Vec<String> = manifest_files()
        .into_iter()
        .filter(|f| f != "secret.example.yaml")
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn the_config_map_and_the_example_secret_are_settings_the_relay_accepts() {
    let config = object("ConfigMap", "kobra-relay-config");
    let secret = object("Secret", "kobra-relay-secrets");
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let keys_file = keys_dir.path().join("keys");
    std::fs::write(
        &keys_file,
        secret["stringData"]["keys"].as_str().expect("keys"),
    )
    .expect("keys");

    let mut env: Vec<(String, String)> = config["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_owned()))
        .collect();
    for (name, value) in &mut env {
        if name == "KOBRA_RELAY_API_KEYS_FILE" {
            *value = keys_file.to_str().expect("utf-8").to_owned();
        }
    }
    env.push((
        "KOBRA_RELAY_AMQP_URL".into(),
        secret["stringData"]["amqp-url"]
            .as_str()
            .expect("url")
            .to_owned(),
    ));
    let settings = Settings::from_sources(None, env).expect("the relay accepts them");
    assert_eq!(
        settings.broker.amqp_urls.len(),
        3,
        "one URL per cluster node"
    );
    // Stated, and off: a whole-cluster outage must not make every replica
    // unready while the spools can absorb it (docs/deployment.md).
    assert!(
        config["data"]
            .get("KOBRA_RELAY_READINESS_STALL_TIMEOUT")
            .is_some(),
        "the config map states the readiness rule"
    );
    assert_eq!(settings.durability.readiness_stall_timeout, None);
    assert_eq!(
        settings.keys.api_keys.labels().collect::<Vec<_>>(),
        ["kobra-2026"]
    );
}

#[test]
fn the_stateful_set_mounts_probes_and_stops_as_the_relay_expects() {
    let config = object("ConfigMap", "kobra-relay-config");
    let setting = |name: &str| {
        config["data"][format!("KOBRA_RELAY_{name}")]
            .as_str()
            .expect(name)
            .to_owned()
    };
    let set = object("StatefulSet", "kobra-relay");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = |name: &str| {
        named(&container["ports"], name)["containerPort"]
            .as_u64()
            .expect(name)
    };
    let listen_port = |name: &str| {
        setting(name)
            .rsplit(':')
            .next()
            .expect("port")
            .parse::<u64>()
            .expect("port")
    };
    assert_eq!(port("http"), listen_port("LISTEN"));
    assert_eq!(port("admin"), listen_port("ADMIN_LISTEN"));
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe}");
    }

    let mount = |volume: &str| {
        named(&container["volumeMounts"], volume)["mountPath"]
            .as_str()
            .expect(volume)
            .to_owned()
    };
    assert_eq!(mount("spool"), setting("SPOOL_DIR"));
    let keys_file = setting("API_KEYS_FILE");
    let (keys_dir, keys_name) = keys_file.rsplit_once('/').expect("a path");
    assert_eq!(mount("keys"), keys_dir);
    assert_eq!(pod["volumes"][0]["secret"]["items"][0]["path"], keys_name);

    let claim = &set["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "spool");
    let storage = claim["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .expect("size");
    let storage_bytes =
        parse_size(&storage.replace("Gi", "GiB").replace("Mi", "MiB")).expect("size");
    assert!(storage_bytes > parse_size(&setting("SPOOL_MAX_BYTES")).expect("size"));

    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    let shutdown: u64 = setting("SHUTDOWN_GRACE")
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        grace >= pre_stop + 10 + shutdown,
        "preStop, in-flight requests and SHUTDOWN_GRACE fit"
    );

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
}

#[test]
fn services_budget_and_monitor_select_the_relay_pods() {
    let set = object("StatefulSet", "kobra-relay");
    let pod_labels = &set["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&set["spec"]["selector"]["matchLabels"], pod_labels));
    let container_ports: Vec<Value> = set["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["name"].clone())
        .collect();

    let headless = object(
        "Service",
        set["spec"]["serviceName"].as_str().expect("serviceName"),
    );
    assert_eq!(headless["spec"]["clusterIP"], "None");
    for name in ["kobra-relay", "kobra-relay-headless"] {
        let service = object("Service", name);
        assert!(selects(&service["spec"]["selector"], pod_labels), "{name}");
        for port in service["spec"]["ports"].as_array().expect("ports") {
            assert!(
                container_ports.contains(&port["targetPort"]),
                "{name}: {port}"
            );
        }
    }
    let public = object("Service", "kobra-relay");
    assert_eq!(
        public["spec"]["ports"].as_array().expect("ports").len(),
        1,
        "admin stays off the public service"
    );

    let budget = object("PodDisruptionBudget", "kobra-relay");
    assert!(selects(
        &budget["spec"]["selector"]["matchLabels"],
        pod_labels
    ));

    let monitor = object("ServiceMonitor", "kobra-relay");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &headless["metadata"]["labels"]
    ));
    assert!(!selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &public["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let monitored = endpoint["port"].as_str().expect("port name");
    assert_eq!(
        named(&headless["spec"]["ports"], monitored)["targetPort"],
        "admin",
        "the monitor scrapes the admin port"
    );
}
