//! The dashboard and alert rules only query metrics a running relay
//! exports, promtool accepts the Prometheus files, and a real Prometheus
//! scraping a relay on loopback evaluates every panel query and rule.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{FIXTURE, KEY, TestApp, spawn_app};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every PromQL expression of the dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let text =
        std::fs::read_to_string(repo("grafana/dashboards/kobra-relay.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(queries.len() >= 15, "the dashboard has its panels");
    queries
}

/// Every expression of the alert rules.
fn alert_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).expect("alerts");
    let rules: Value = serde_yaml_ng::from_str(&text).expect("alerts are YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| r["expr"].as_str().expect("expr").trim().to_owned())
        .collect()
}

/// Grafana's variables, as a dashboard load would fill them in.
fn as_promql(query: &str) -> String {
    query
        .replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
        .replace("$job", ".*")
}

/// Metric names (`kobra_relay_*`, `process_*`) a query reads.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut token = String::new();
    for c in query.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            if token.starts_with("kobra_relay_") || token.starts_with("process_") {
                names.insert(std::mem::take(&mut token));
            }
            token.clear();
        }
    }
    names
}

/// Some of everything: accepted visits of known and unknown products, odd
/// fields, refused keys, a rejected body.
async fn traffic(app: &TestApp) {
    assert_eq!(app.post_visit(FIXTURE, Some(KEY)).await.status(), 202);
    assert_eq!(
        app.post_visit(r#"{"productID": 8, "lat": "x"}"#, Some(KEY))
            .await
            .status(),
        202
    );
    assert_eq!(app.post_visit(FIXTURE, Some("wrong")).await.status(), 401);
    assert_eq!(app.post_visit("[]", Some(KEY)).await.status(), 400);
    app.wait_spool_empty().await;
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let app = spawn_app().await;
    traffic(&app).await;
    let exported = app.metrics().await;
    let exported_names: BTreeSet<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let queried: BTreeSet<String> = dashboard_queries()
        .iter()
        .chain(alert_queries().iter())
        .flat_map(|q| metric_names(q))
        .collect();
    assert!(queried.len() >= 14, "{queried:?}");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|n| !exported_names.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}

fn promtool(args: &[&str]) -> std::process::Output {
    std::process::Command::new("promtool")
        .args(args)
        .current_dir(repo("deploy/prometheus"))
        .output()
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus package)")
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alert_rules_and_their_tests() {
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts.test.yml"],
    ] {
        let out = promtool(args);
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Prometheus server on loopback, ended when dropped.
struct PrometheusServer {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start_prometheus(target: &str) -> PrometheusServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    let rules = repo("deploy/prometheus/alerts.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: kobra-relay\n    static_configs:\n      - targets: [{target:?}]\n"
        ),
    )
    .expect("config");
    let port = free_port();
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (scripts/test.sh installs Debian's prometheus package)");
    PrometheusServer {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn query(client: &reqwest::Client, base: &str, promql: &str) -> Value {
    client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .expect("query sent")
        .json()
        .await
        .expect("query answer is JSON")
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_relay_and_runs_every_panel_query_and_rule() {
    let app = spawn_app().await;
    traffic(&app).await;
    let target = app.admin.trim_start_matches("http://").to_owned();
    let prometheus = start_prometheus(&target);
    let client = reqwest::Client::new();

    wait_for("Prometheus is ready", Duration::from_secs(60), async || {
        let ready = client
            .get(format!("{}/-/ready", prometheus.base))
            .send()
            .await;
        ready.is_ok_and(|r| r.status() == 200)
    })
    .await;
    wait_for(
        "Prometheus has scraped the relay twice",
        Duration::from_secs(60),
        async || {
            let answer = query(
                &client,
                &prometheus.base,
                "count_over_time(kobra_relay_build_info[1m])",
            )
            .await;
            answer["data"]["result"][0]["value"][1]
                .as_str()
                .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 2))
        },
    )
    .await;

    for panel_query in dashboard_queries() {
        let promql = as_promql(&panel_query);
        let answer = query(&client, &prometheus.base, &promql).await;
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
    }
    let accepted = query(
        &client,
        &prometheus.base,
        r#"sum(kobra_relay_http_requests_total{status="202"})"#,
    )
    .await;
    assert_eq!(
        accepted["data"]["result"][0]["value"][1], "2",
        "the scrape saw the traffic"
    );

    wait_for(
        "every alert rule has been evaluated cleanly",
        Duration::from_secs(30),
        async || {
            let rules: Value = client
                .get(format!("{}/api/v1/rules", prometheus.base))
                .send()
                .await
                .expect("rules")
                .json()
                .await
                .expect("json");
            let all: Vec<&Value> = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            !all.is_empty() && all.iter().all(|r| r["health"] == "ok")
        },
    )
    .await;
}

#[tokio::test]
async fn a_healthy_first_start_logs_no_warning_or_error() {
    let prefix = crate::helpers::random_prefix();
    let _cleanup = crate::helpers::Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    // A fresh topology: nothing declared yet, the archive stream included.
    let relay = crate::process::start_relay(&prefix, spool.path(), None).await;
    relay.wait_connected().await;
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/finish-visit", relay.base))
        .header("api-key", KEY)
        .body(FIXTURE)
        .send()
        .await
        .expect("posted");
    assert_eq!(response.status(), 202);
    let queue = format!("{prefix}.visits.debt_collection");
    wait_for("the visit to arrive", Duration::from_secs(20), async || {
        crate::helpers::depth(&queue).await == 1
    })
    .await;

    let (status, logs) = relay.terminate_with_logs().await;
    assert!(status.success(), "{status}");
    let alarming: Vec<&Value> = logs
        .iter()
        .filter(|line| matches!(line["level"].as_str(), Some("WARN" | "ERROR")))
        .collect();
    assert!(
        alarming.is_empty(),
        "a healthy start, run and stop: {alarming:#?}"
    );
    assert!(
        logs.iter().any(|l| l["message"] == "kobra-relay stopped"),
        "the logs were read to the end: {logs:#?}"
    );
}

#[tokio::test]
async fn every_exported_metric_is_in_the_readme_table() {
    let app = spawn_app().await;
    let exported = app.metrics().await;
    let readme = std::fs::read_to_string(repo("README.md")).expect("README");
    let missing: Vec<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE kobra_relay_"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !readme.contains(&format!("`{name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's metrics table lacks {missing:?}"
    );
}
