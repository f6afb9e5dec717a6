//! `kobra-relay probe URL`: a health check for images without curl.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    process::ExitCode,
    time::Duration,
};

use super::{FAILED, USAGE, fail};

/// GETs a local `http://` URL with a 2 s budget; success is a 200 status line.
pub fn run(url: &str) -> ExitCode {
    let Some(rest) = url.strip_prefix("http://") else {
        return fail("probe", USAGE, "only http:// URLs are supported");
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let answered = (|| -> std::io::Result<String> {
        let address = authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    match answered {
        Ok(head) if head.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(head) => fail("probe", FAILED, head.lines().next().unwrap_or("no answer")),
        Err(error) => fail("probe", FAILED, error),
    }
}
