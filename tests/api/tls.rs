//! TLS on the ingress with a self-signed certificate made at test time, and
//! its reload on SIGHUP.

use std::{path::Path, sync::Arc, time::Duration};

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{FIXTURE, KEY, spawn_app_with};

/// Writes a fresh self-signed certificate for `localhost`; returns its DER.
fn write_certificate(dir: &Path) -> CertificateDer<'static> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("cert file");
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("key file");
    certified.cert.der().clone()
}

fn client_for(trusted: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("trust anchor");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// POSTs the fixture over TLS; returns the status line and the server's certificate.
async fn post_over_tls(
    addr: std::net::SocketAddr,
    trusted: &CertificateDer<'static>,
) -> (String, CertificateDer<'static>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = client_for(trusted)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone()
        .into_owned();
    let head = format!(
        "POST /webhooks/finish-visit HTTP/1.1\r\nhost: localhost\r\napi-key: {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        FIXTURE.len()
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(FIXTURE).await.expect("body");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    (
        reply.lines().next().unwrap_or_default().to_owned(),
        presented,
    )
}

#[tokio::test]
async fn the_ingress_serves_https_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = write_certificate(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let app = spawn_app_with(&[
        ("TLS_CERT_FILE", cert.to_str().expect("utf-8")),
        ("TLS_KEY_FILE", key.to_str().expect("utf-8")),
    ])
    .await;

    let (status, presented) = post_over_tls(app.addr, &first).await;
    assert_eq!(status, "HTTP/1.1 202 Accepted");
    assert_eq!(presented, first);
    let plain = app.try_post_visit(FIXTURE, Some(KEY)).await;
    assert!(plain.is_err(), "plain HTTP is not served on a TLS listener");

    let second = write_certificate(dir.path());
    let pid = std::process::id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tcp = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        if client_for(&second).connect(name, tcp).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, presented) = post_over_tls(app.addr, &second).await;
    assert_eq!(status, "HTTP/1.1 202 Accepted");
    assert_eq!(presented, second);
}

#[tokio::test]
async fn a_certificate_without_its_key_is_a_startup_error_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_certificate(dir.path());
    let env = [
        ("KOBRA_RELAY_API_KEYS".to_owned(), "k".to_owned()),
        (
            "KOBRA_RELAY_TLS_CERT_FILE".to_owned(),
            dir.path().join("cert.pem").display().to_string(),
        ),
    ];
    let err = kobra_relay::config::Settings::from_sources(None, env).expect_err("refused");
    assert!(
        err.to_string().contains("KOBRA_RELAY_TLS_KEY_FILE"),
        "{err}"
    );
}
