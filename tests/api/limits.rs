//! Connection limits: slow senders are cut off, silent bodies time out, and
//! idle sockets cannot crowd out clients with requests.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{FIXTURE, KEY, spawn_app_with};

/// Reads until the server answers or closes; returns what it sent.
async fn read_reply(stream: &mut tokio::net::TcpStream, within: Duration) -> String {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => panic!("the server neither answered nor closed within {within:?}"),
    }
}

#[tokio::test]
async fn a_client_sending_headers_a_byte_at_a_time_is_cut_off() {
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!("POST /webhooks/finish-visit HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\n");
    let started = Instant::now();
    let mut cut = false;
    for byte in head.bytes().take(40) {
        if stream.write_all(&[byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = if cut {
        String::new()
    } else {
        read_reply(&mut stream, Duration::from_secs(3)).await
    };
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut off after about HEADER_READ_TIMEOUT"
    );
    assert_eq!(
        app.post_visit(FIXTURE, Some(KEY)).await.status(),
        202,
        "others are served"
    );
}

#[tokio::test]
async fn a_client_that_never_sends_its_body_gets_408() {
    let app = spawn_app_with(&[("BODY_READ_TIMEOUT", "1s")]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /webhooks/finish-visit HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\ncontent-type: application/json\r\ncontent-length: 2000\r\n\r\n{{\"productID\":"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let reply = read_reply(&mut stream, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains(r#""error":"request_timeout""#), "{reply}");
    assert_eq!(
        app.readyz().await.1["spool"]["entries"],
        0,
        "nothing half-kept"
    );
}

#[tokio::test]
async fn thousands_of_idle_connections_are_bounded_and_requests_still_get_through() {
    let app = spawn_app_with(&[("MAX_CONNECTIONS", "64"), ("HEADER_READ_TIMEOUT", "5s")]).await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        // Once the accept backlog is full, connects stall: stop there.
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(app.addr),
        )
        .await
        {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    assert!(idle.len() >= 1000, "opened {} idle connections", idle.len());
    assert_eq!(
        app.readyz().await.0,
        200,
        "the admin listener is unaffected"
    );

    let started = Instant::now();
    for _ in 0..3 {
        let resp = app.post_visit(FIXTURE, Some(KEY)).await;
        assert_eq!(resp.status(), 202);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "served within {:?}",
        started.elapsed()
    );
    let metrics = app.metrics().await;
    let open: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kobra_relay_http_open_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("open connections gauge");
    assert!(open <= 64, "{open} connections served at once");

    // The silent sockets are closed by the relay, not kept.
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed * 10 >= idle.len() * 9,
        "{closed} of {} idle sockets closed",
        idle.len()
    );
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let app = spawn_app_with(&[("MAX_HEADER_BYTES", "8KiB")]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /webhooks/finish-visit HTTP/1.1\r\nhost: x\r\napi-key: {KEY}\r\nx-padding: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let reply = read_reply(&mut stream, Duration::from_secs(5)).await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    assert_eq!(app.post_visit(FIXTURE, Some(KEY)).await.status(), 202);
}
