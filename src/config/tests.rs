use super::*;
use std::{path::PathBuf, time::Duration};

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
    assert_eq!(s.http.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(s.http.admin_listen.to_string(), "0.0.0.0:8081");
    assert_eq!(s.topology.prefix, "kobra");
    assert_eq!(s.topology.queue_type, QueueType::Quorum);
    assert!(s.topology.declare_queues);
    assert_eq!(
        s.topology.archive,
        Some(Retention {
            max_age: Duration::from_secs(30 * 86_400),
            max_bytes: 10 << 30,
        })
    );
    assert_eq!(s.durability.mode, Durability::Spool);
    assert_eq!(s.durability.replicated_deadline, Duration::from_millis(50));
    assert_eq!(
        s.durability.readiness_stall_timeout, None,
        "a broker outage alone keeps it ready"
    );
    assert_eq!(s.spool.dir, PathBuf::from("./data/spool"));
    assert_eq!(s.spool.max_bytes, 1 << 30);
    assert_eq!(s.http.max_body_bytes, 1_048_576);
    assert_eq!(s.http.max_json_depth, 64);
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.broker.publish_timeout, Duration::from_secs(5));
    assert_eq!(s.http.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.http.body_read_timeout, Duration::from_secs(30));
    assert_eq!(s.http.max_connections, 4096);
    assert_eq!(s.http.max_header_bytes, 64 * 1024);
    assert_eq!(s.broker.amqp_urls.len(), 1);
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
    assert_eq!(off.topology.archive, None);
    let week = load(&[
        ("API_KEYS", "k"),
        ("ARCHIVE_MAX_AGE", "7d"),
        ("ARCHIVE_MAX_BYTES", "512MiB"),
    ])
    .unwrap();
    assert_eq!(
        week.topology.archive,
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
    assert_eq!(s.http.max_body_bytes, 2 << 20);
    assert_eq!(s.topology.queue_type, QueueType::Quorum);
    assert_eq!(s.keys.api_keys.labels().collect::<Vec<_>>(), vec!["a", "b"]);

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
    assert_eq!(
        s.keys.api_keys.labels().collect::<Vec<_>>(),
        vec!["old", "new"]
    );
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

#[test]
fn trace_export_is_off_until_an_otlp_endpoint_is_set() {
    let off = load(&[("API_KEYS", "k")]).unwrap().traces;
    assert_eq!(off.endpoint, None);
    assert_eq!(off.service_name, "kobra-relay");
    assert_eq!(off.sampler, Sampler::ParentBased(Root::AlwaysOn));
    assert_eq!(off.max_queue, 2048);

    let mut vars = env(&[("API_KEYS", "k")]);
    vars.push((
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        "http://collector:4318/".into(),
    ));
    vars.push(("OTEL_TRACES_SAMPLER".into(), "traceidratio".into()));
    vars.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0.25".into()));
    vars.push(("OTEL_RESOURCE_ATTRIBUTES".into(), "left=to-the-sdk".into()));
    let on = Settings::from_sources(None, vars.clone()).unwrap().traces;
    assert_eq!(
        on.endpoint.as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(on.sampler, Sampler::Ratio(0.25));

    vars.push((
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
        "http://other:4318/traces".into(),
    ));
    let full = Settings::from_sources(None, vars.clone()).unwrap().traces;
    assert_eq!(full.endpoint.as_deref(), Some("http://other:4318/traces"));

    vars.push(("OTEL_SDK_DISABLED".into(), "true".into()));
    let disabled = Settings::from_sources(None, vars).unwrap().traces;
    assert_eq!(disabled.endpoint, None);
}

#[test]
fn trace_settings_errors_name_the_standard_variable() {
    let with = |name: &str, value: &str| {
        let mut vars = env(&[("API_KEYS", "k")]);
        vars.push((name.into(), value.into()));
        Settings::from_sources(None, vars).map(|s| s.traces)
    };
    let https = with("OTEL_EXPORTER_OTLP_ENDPOINT", "https://vendor.example")
        .unwrap_err()
        .to_string();
    assert!(
        https.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT has an invalid value"),
        "{https}"
    );
    assert!(https.contains("collector"), "{https}");
    let sampler = with("OTEL_TRACES_SAMPLER", "sometimes")
        .unwrap_err()
        .to_string();
    assert!(sampler.starts_with("OTEL_TRACES_SAMPLER has"), "{sampler}");
    let grpc = with("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .unwrap_err()
        .to_string();
    assert!(grpc.contains("http/protobuf"), "{grpc}");
    // Only the standard names: a prefixed one is a typo.
    let prefixed = load(&[("API_KEYS", "k"), ("OTEL_SERVICE_NAME", "x")])
        .unwrap_err()
        .to_string();
    assert!(
        prefixed.contains("unknown setting KOBRA_RELAY_OTEL_SERVICE_NAME"),
        "{prefixed}"
    );
}

#[test]
fn trace_settings_come_from_the_file_under_their_lower_case_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        "api_keys = \"k\"\notel_exporter_otlp_endpoint = \"http://127.0.0.1:4318\"\notel_service_name = \"eu1\"\n",
    )
    .expect("write");
    let traces = Settings::from_sources(Some(&file), Vec::new())
        .unwrap()
        .traces;
    assert_eq!(
        traces.endpoint.as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert_eq!(traces.service_name, "eu1");
}
