//! Deployment files: checked by what can run here (no container engine).

use std::path::Path;

use crate::helpers::spawn_app;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

#[tokio::test]
async fn the_probe_subcommand_checks_readiness_for_container_health_checks() {
    let app = spawn_app().await;
    let probe = |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kobra-relay"))
            .args(["probe", &url])
            .env_clear()
            .output()
            .expect("run probe")
    };
    let ready = tokio::task::spawn_blocking({
        let url = format!("{}/readyz", app.admin);
        move || probe(url)
    })
    .await
    .expect("probe");
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let down = tokio::task::spawn_blocking(move || probe("http://127.0.0.1:1/readyz".into()))
        .await
        .expect("probe");
    assert_eq!(down.status.code(), Some(1));
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged_with_a_spool_volume() {
    let dockerfile = repo_file("deploy/docker/Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("&&"))
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(from.len() >= 2, "multi-stage");
    assert!(
        from.last().expect("final stage").contains("distroless"),
        "small final image"
    );
    let last_user = instructions
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(last_user.contains("nonroot"), "runs as non-root");
    assert!(dockerfile.contains("VOLUME [\"/var/lib/kobra-relay/spool\"]"));
    assert!(
        dockerfile.contains("KOBRA_RELAY_SPOOL_DIR=/var/lib/kobra-relay/spool"),
        "the spool is on the volume"
    );
    assert!(
        dockerfile.contains("HEALTHCHECK") && dockerfile.contains("\"probe\""),
        "health check via the binary"
    );
    assert!(dockerfile.contains("EXPOSE 8080 8081"));
    for line in instructions
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        for source in line
            .split_whitespace()
            .skip(1)
            .filter(|w| !w.starts_with("--"))
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, s)| s)
        {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(source).exists(),
                "COPY source {source} exists"
            );
        }
    }
    let ignore = repo_file(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target/"),
        "build output stays out of the context"
    );
}

#[test]
fn the_systemd_unit_is_hardened_and_reloads_with_sighup() {
    let unit = repo_file("deploy/systemd/kobra-relay.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(unit.contains(section), "{section}");
    }
    assert_eq!(get("ExecStart"), vec!["/usr/local/bin/kobra-relay serve"]);
    assert_eq!(get("ExecReload"), vec!["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("KillSignal"), vec!["SIGTERM"]);
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "kobra-relay"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(get(key), vec![value], "{key}");
    }
    let stop: u64 = get("TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    assert!(
        stop > 20,
        "room for the 10 s HTTP drain plus the 10 s shutdown grace"
    );
    assert!(
        get("Environment")
            .iter()
            .any(|e| e.starts_with("KOBRA_RELAY_SPOOL_DIR=/var/lib/kobra-relay")),
        "spool in StateDirectory"
    );
}
