//! The whole request path of a running relay: any bytes sent to the ingress
//! over TCP (request line, headers, chunked or sized bodies, pipelining)
//! are parsed by hyper and handled by the relay's own routes, auth, limits
//! and spool. For any bytes: no panic (libFuzzer turns a panic on any
//! thread into a crash), and whatever the relay answers starts with a
//! well-formed HTTP/1.x status line.
#![no_main]

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::OnceLock,
    time::Duration,
};

use kobra_relay::{config::Settings, startup::App};
use libfuzzer_sys::fuzz_target;

/// One relay for the whole run: broker unreachable (everything accepted
/// stays in a temporary spool, capped so a long run answers 503 instead of
/// filling the disk) and short timeouts so slow inputs end quickly.
fn relay() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        let spool = std::env::temp_dir().join(format!("kobra-relay-fuzz-{}", std::process::id()));
        let env = [
            ("LISTEN", "127.0.0.1:0"),
            ("ADMIN_LISTEN", "127.0.0.1:0"),
            ("API_KEYS", "fuzz:fuzz-key"),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("SPOOL_DIR", spool.to_str().expect("utf-8 temp dir")),
            ("SPOOL_MAX_BYTES", "64MiB"),
            ("MAX_BODY_BYTES", "64KiB"),
            ("HEADER_READ_TIMEOUT", "200ms"),
            ("BODY_READ_TIMEOUT", "200ms"),
        ]
        .map(|(k, v)| (format!("KOBRA_RELAY_{k}"), v.to_owned()));
        let settings = Settings::from_sources(None, env).expect("fuzz settings");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let app = App::build(settings).await.expect("relay starts");
                tx.send(app.ingress_addr()).expect("address");
                app.run_until_stopped(std::future::pending())
                    .await
                    .expect("relay runs");
            });
        });
        rx.recv().expect("relay address")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let mut stream = TcpStream::connect(relay()).expect("connect to the relay");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The relay may close early (a refusal): a failed write is fine.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    if !answer.is_empty() {
        let status_line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
        // hyper answers an HTTP/1.0 request in kind.
        assert!(
            (status_line.starts_with(b"HTTP/1.1 ") || status_line.starts_with(b"HTTP/1.0 "))
                && status_line.len() >= 12
                && status_line[9..12].iter().all(u8::is_ascii_digit),
            "malformed answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }
});
