//! `amqps://` to the broker: a TLS front on loopback with a certificate
//! from a private CA made at test time, forwarding to the real RabbitMQ.
//! The relay trusts it only through `AMQP_CA_FILE`.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::helpers::{FIXTURE, KEY, spawn_app_with, take};

/// Terminates TLS and forwards to RabbitMQ; counts failed handshakes.
struct TlsFront {
    addr: SocketAddr,
    failed_handshakes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes `ca.pem` to `dir` and returns a front serving a leaf it signed
/// for 127.0.0.1.
async fn start_front(dir: &Path) -> TlsFront {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem");

    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let failed_handshakes = Arc::new(AtomicU64::new(0));
    let failures = failed_handshakes.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                if let Ok(mut broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                }
            });
        }
    });
    TlsFront {
        addr,
        failed_handshakes,
        task,
    }
}

#[tokio::test]
async fn visits_reach_the_broker_over_amqps_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let front = start_front(dir.path()).await;
    let url = format!("amqps://guest:guest@127.0.0.1:{}/%2f", front.addr.port());
    let ca = dir.path().join("ca.pem");
    let app = spawn_app_with(&[
        ("AMQP_URL", &url),
        ("AMQP_CA_FILE", ca.to_str().expect("utf-8")),
    ])
    .await;
    app.wait_connected().await;

    assert_eq!(app.post_visit(FIXTURE, Some(KEY)).await.status(), 202);
    let received = take(&format!("{}.visits.debt_collection", app.prefix), 1).await;
    assert_eq!(received[0].json()["visitId"], "9A1190V5974");
    assert_eq!(front.failed_handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_untrusted_broker_certificate_is_refused_and_visits_wait_in_the_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let front = start_front(dir.path()).await;
    let url = format!("amqps://guest:guest@127.0.0.1:{}/%2f", front.addr.port());
    let app = spawn_app_with(&[("AMQP_URL", &url)]).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while front.failed_handshakes.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the relay never tried the broker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.post_visit(FIXTURE, Some(KEY)).await.status(), 202);
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["broker"]["connected"], false);
    assert_eq!(ready["spool"]["entries"], 1);
}

#[test]
fn a_ca_file_without_certificates_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "not a certificate\n").expect("write");
    let error = kobra_relay::config::Settings::from_sources(
        None,
        [
            ("KOBRA_RELAY_API_KEYS".to_owned(), "k".to_owned()),
            (
                "KOBRA_RELAY_AMQP_CA_FILE".to_owned(),
                path.to_str().expect("utf-8").to_owned(),
            ),
        ],
    )
    .expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("KOBRA_RELAY_AMQP_CA_FILE has an invalid value"),
        "{error}"
    );
}
