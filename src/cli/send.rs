//! `kobra-relay send FILE`: post a payload to a relay and print the answer,
//! the quickest smoke test of a deployment.

use std::{
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;

use super::{FAILED, USAGE, fail};
use crate::config::Settings;

/// Arguments of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// JSON payload to post; `-` reads standard input.
    pub file: PathBuf,
    /// Webhook URL (http:// only). Default: this configuration's LISTEN
    /// address on loopback, path /webhooks/finish-visit.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The `api-key` header to send.
    #[arg(
        long,
        env = "KOBRA_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: String,
}

/// Posts the file; exit 0 on a 2xx answer, 1 on any other answer or a
/// connection failure, 2 on bad arguments.
pub fn run(args: &SendArgs, settings: &Settings) -> ExitCode {
    let body = match read_payload(&args.file) {
        Ok(body) => body,
        Err(e) => {
            return fail(
                "send",
                USAGE,
                format!("cannot read {}: {e}", args.file.display()),
            );
        }
    };
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| default_url(settings.http.listen));
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return fail("send", USAGE, format!("{url} is not a URL: {e}")),
    };
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return fail(
            "send",
            USAGE,
            format!("{url}: only http://host:port/path URLs are supported (use curl for https)"),
        );
    }
    let runtime = match super::runtime("send") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let exchange = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), post(&uri, &args.api_key, body)).await
    });
    match exchange {
        Ok(Ok(answer)) => {
            println!("{}", answer.status_line);
            if let Some(id) = &answer.request_id {
                println!("x-request-id: {id}");
            }
            println!("{}", String::from_utf8_lossy(&answer.body));
            if answer.success {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(FAILED)
            }
        }
        Ok(Err(error)) => fail("send", FAILED, format!("{url}: {error}")),
        Err(_) => fail("send", FAILED, format!("{url}: no answer within 30 s")),
    }
}

fn read_payload(file: &Path) -> std::io::Result<Bytes> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(Bytes::from(buf))
    } else {
        std::fs::read(file).map(Bytes::from)
    }
}

/// The webhook URL of a relay listening on `listen`, reached on loopback
/// when it listens on every address.
fn default_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        ip if ip.is_ipv6() => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!(
        "http://{host}:{}{}",
        listen.port(),
        crate::routes::FINISH_VISIT
    )
}

struct Answer {
    status_line: String,
    request_id: Option<String>,
    body: Bytes,
    success: bool,
}

async fn post(uri: &Uri, api_key: &str, body: Bytes) -> anyhow::Result<Answer> {
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header("api-key", api_key)
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status_line: format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ),
        request_id,
        body,
        success: status.is_success(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_reaches_a_wildcard_listener_on_loopback() {
        let url = |s: &str| default_url(s.parse().expect("address"));
        assert_eq!(
            url("0.0.0.0:8080"),
            "http://127.0.0.1:8080/webhooks/finish-visit"
        );
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/webhooks/finish-visit");
        assert_eq!(
            url("10.1.2.3:80"),
            "http://10.1.2.3:80/webhooks/finish-visit"
        );
        assert_eq!(url("[::1]:81"), "http://[::1]:81/webhooks/finish-visit");
    }
}
