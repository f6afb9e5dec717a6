//! Opening AMQP connections: one URL, the first of several that answers
//! (the operator tools), or the next in failover order with the topology
//! declared and confirms on (the relay's link).

use std::time::Duration;

use lapin::{
    Channel, Connection, ConnectionProperties, options::ConfirmSelectOptions, tcp::OwnedTLSConfig,
    types::LongString,
};
use secrecy::{ExposeSecret, SecretString};

use super::declare::declare;
use super::topology::Topology;
use crate::config::{BrokerSettings, mask_url};

/// How long one connection attempt (TCP, TLS, AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens one AMQP connection named `name` (shown in the management UI);
/// for `amqps://`, `ca_pem` adds trusted CA certificates to the system's.
///
/// # Errors
/// TCP, TLS or the AMQP handshake failed.
pub async fn open(url: &str, ca_pem: Option<&str>, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(name.as_bytes().to_vec()));
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: ca_pem.map(str::to_owned),
    };
    Connection::connect_with_config(url, properties, tls, lapin::runtime::default_runtime()?).await
}

/// Opens a connection to the first of `urls` that answers, for the
/// operator tools: the connection and its URL (password masked), or every
/// URL's failure.
///
/// # Errors
/// No URL connected within the connect timeout.
pub async fn open_first(
    broker: &BrokerSettings,
    name: &str,
) -> Result<(Connection, String), String> {
    let ca_pem = broker.ca_pem();
    let mut failures = Vec::new();
    for url in &broker.amqp_urls {
        let shown = mask_url(url.expose_secret());
        match tokio::time::timeout(CONNECT_TIMEOUT, open(url.expose_secret(), ca_pem, name)).await {
            Ok(Ok(connection)) => return Ok((connection, shown)),
            Ok(Err(error)) => failures.push(format!("{shown}: {error}")),
            Err(_) => failures.push(format!("{shown}: timed out")),
        }
    }
    Err(failures.join("; "))
}

/// Tries each URL in order, starting at `first` and wrapping around;
/// returns the first that connects and sets up, with its index.
pub(super) async fn connect_any(
    urls: &[SecretString],
    first: usize,
    ca_pem: Option<&str>,
    topology: &Topology,
) -> Option<(Connection, Channel, usize)> {
    for index in (0..urls.len()).map(|i| (first + i) % urls.len()) {
        let url = &urls[index];
        let shown = mask_url(url.expose_secret());
        let attempt = connect(url.expose_secret(), ca_pem, topology);
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok((connection, channel))) => return Some((connection, channel, index)),
            Ok(Err(error)) => tracing::warn!(url = %shown, %error, "broker connection failed"),
            Err(_) => tracing::warn!(url = %shown, "broker connection timed out"),
        }
    }
    None
}

/// Opens a connection for the relay, declares the topology on it and
/// opens its channel in confirm mode.
async fn connect(
    url: &str,
    ca_pem: Option<&str>,
    topology: &Topology,
) -> lapin::Result<(Connection, Channel)> {
    let connection = open(url, ca_pem, "kobra-relay").await?;
    let setup = async {
        let channel = connection.create_channel().await?;
        declare(&connection, &channel, topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok::<_, lapin::Error>(channel)
    };
    match setup.await {
        Ok(channel) => Ok((connection, channel)),
        Err(error) => {
            let _ = connection.close(200, "setup failed".into()).await;
            Err(error)
        }
    }
}
