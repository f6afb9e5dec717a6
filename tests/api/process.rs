//! The relay as a child process (for `kill -9` and log checks).

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{AMQP_URL, KEY};

/// A running `kobra-relay serve`.
pub struct RelayProcess {
    child: tokio::process::Child,
    /// Ingress base URL.
    pub base: String,
    /// Admin base URL.
    pub admin: String,
    logs: Arc<Mutex<Vec<Value>>>,
    /// Reads stdout into `logs` until the process closes it.
    reader: tokio::task::JoinHandle<()>,
}

/// The variable of a setting: `KOBRA_RELAY_<name>`, or an `OTEL_*` name as is.
pub fn env_name(name: &str) -> String {
    if name.starts_with("OTEL_") {
        name.to_owned()
    } else {
        format!("KOBRA_RELAY_{name}")
    }
}

/// Starts the binary with JSON logs and waits until it reports ready.
pub async fn start_relay(prefix: &str, spool_dir: &Path, amqp_url: Option<&str>) -> RelayProcess {
    start_relay_with(prefix, spool_dir, amqp_url, &[]).await
}

/// Like [`start_relay`], with extra `KOBRA_RELAY_*` settings (names without
/// the prefix; `OTEL_*` names are passed as they are).
pub async fn start_relay_with(
    prefix: &str,
    spool_dir: &Path,
    amqp_url: Option<&str>,
    extra: &[(&str, &str)],
) -> RelayProcess {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kobra-relay"));
    command
        .arg("serve")
        .env_clear()
        .env("KOBRA_RELAY_LISTEN", "127.0.0.1:0")
        .env("KOBRA_RELAY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("KOBRA_RELAY_API_KEYS", format!("test:{KEY}"))
        .env("KOBRA_RELAY_AMQP_URL", amqp_url.unwrap_or(AMQP_URL))
        .env("KOBRA_RELAY_TOPOLOGY_PREFIX", prefix)
        .env("KOBRA_RELAY_SPOOL_DIR", spool_dir)
        .env("KOBRA_RELAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    for (name, value) in extra {
        command.env(env_name(name), value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start kobra-relay");
    let stdout = child.stdout.take().expect("stdout");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            let parsed = serde_json::from_str(&line).unwrap_or(Value::String(line));
            sink.lock().expect("logs").push(parsed);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = logs
            .lock()
            .expect("logs")
            .iter()
            .find(|l| l["message"] == "kobra-relay ready")
            .cloned();
        if let Some(line) = ready {
            return RelayProcess {
                child,
                base: format!("http://{}", line["ingress"].as_str().expect("ingress")),
                admin: format!("http://{}", line["admin"].as_str().expect("admin")),
                logs,
                reader,
            };
        }
        assert!(
            Instant::now() < deadline,
            "relay did not start: {:?}",
            logs.lock().expect("logs")
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "relay exited with {status}: {:?}",
                logs.lock().expect("logs")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl RelayProcess {
    /// Log lines so far, parsed.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("logs").clone()
    }

    /// Waits (bounded) until the relay reports a broker connection.
    pub async fn wait_connected(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = client.get(format!("{}/readyz", self.admin)).send().await
                && resp
                    .json::<Value>()
                    .await
                    .is_ok_and(|r| r["broker"]["connected"] == true)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "relay did not connect to the broker"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// `kill -9`: no chance to flush or close anything.
    pub async fn kill_hard(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }

    /// SIGTERM, a clean exit awaited, and every line the process logged.
    pub async fn terminate_with_logs(self) -> (std::process::ExitStatus, Vec<Value>) {
        let logs = self.logs.clone();
        let reader = self.terminate_keeping_reader().await;
        let status = reader.0;
        let _ = tokio::time::timeout(Duration::from_secs(5), reader.1).await;
        let lines = logs.lock().expect("logs").clone();
        (status, lines)
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.terminate_keeping_reader().await.0
    }

    async fn terminate_keeping_reader(
        mut self,
    ) -> (std::process::ExitStatus, tokio::task::JoinHandle<()>) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s of SIGTERM")
            .expect("reaped");
        (status, self.reader)
    }
}
