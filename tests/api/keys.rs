//! Key rotation without a restart (API_KEYS_FILE, SIGHUP, file changes).

use std::time::{Duration, Instant};

use crate::helpers::{Cleanup, FIXTURE, random_prefix, spawn_app_with};
use crate::process::start_relay_with;

async fn status_with_key(client: &reqwest::Client, base: &str, key: &str) -> u16 {
    client
        .post(format!("{base}/webhooks/finish-visit"))
        .header("api-key", key)
        .body(FIXTURE)
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_rereads_the_keys_file_so_keys_rotate_without_a_restart() {
    let prefix = random_prefix();
    let _cleanup = Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    let keys = spool.path().join("keys");
    std::fs::write(&keys, "kobra-2026:old-secret\n").expect("keys file");
    let relay = start_relay_with(
        &prefix,
        &spool.path().join("spool"),
        None,
        &[
            ("API_KEYS", ""),
            ("API_KEYS_FILE", keys.to_str().expect("utf-8")),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        status_with_key(&client, &relay.base, "old-secret").await,
        202
    );

    // Rotation step 1: add the new key next to the old one.
    std::fs::write(&keys, "kobra-2026:old-secret\nkobra-2027:new-secret\n").expect("keys file");
    relay.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(2);
    while status_with_key(&client, &relay.base, "new-secret").await != 202 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP reloads at once, well before the file check"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status_with_key(&client, &relay.base, "old-secret").await,
        202,
        "both work meanwhile"
    );

    // Step 2: retire the old key.
    std::fs::write(&keys, "kobra-2027:new-secret\n").expect("keys file");
    relay.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(2);
    while status_with_key(&client, &relay.base, "old-secret").await != 401 {
        assert!(Instant::now() < deadline, "the retired key is refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status_with_key(&client, &relay.base, "new-secret").await,
        202
    );

    // A broken file keeps the keys in force.
    std::fs::write(&keys, "not a valid label:x\n").expect("keys file");
    relay.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_with_key(&client, &relay.base, "new-secret").await,
        202
    );
    let logs = relay.logs();
    assert!(
        logs.iter()
            .any(|l| l["message"] == "API keys not reloaded; the previous keys stay in force")
    );
    let text = serde_json::to_string(&logs).expect("logs");
    assert!(
        !text.contains("old-secret") && !text.contains("new-secret"),
        "no key in the logs"
    );
    relay.terminate().await;
}

#[tokio::test]
async fn a_changed_keys_file_is_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "a:first-key\n").expect("keys file");
    let app = spawn_app_with(&[
        ("API_KEYS", ""),
        ("API_KEYS_FILE", keys.to_str().expect("utf-8")),
    ])
    .await;
    assert_eq!(
        status_with_key(&app.http, &app.base, "first-key").await,
        202
    );

    std::fs::write(&keys, "b:second-key, longer\n").expect("keys file");
    let deadline = Instant::now() + kobra_relay::reload::FILE_CHECK_INTERVAL * 3;
    while status_with_key(&app.http, &app.base, "second-key, longer").await != 202 {
        assert!(
            Instant::now() < deadline,
            "the file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_with_key(&app.http, &app.base, "first-key").await,
        401
    );
}
