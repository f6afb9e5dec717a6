//! Value parsers shared by every setting: addresses, booleans, sizes,
//! durations and AMQP URLs. Each returns a reason that says what form is
//! expected; the caller adds which setting it was.

use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;

pub(super) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:8080 or [::1]:8080"))
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} must be true or false")),
    }
}

/// Parses `1048576`, `512KiB`, `64 MiB`, `1GiB` (binary units).
///
/// # Errors
/// Another form, zero, or more than `u64` bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let err = || format!("{s:?} is not a size like 1048576, 512KiB, 64MiB or 1GiB");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| err())?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(err()),
    };
    let bytes = number.checked_mul(multiplier).ok_or_else(err)?;
    if bytes == 0 {
        return Err(format!("{s:?} must be greater than zero"));
    }
    Ok(bytes)
}

/// Parses `250ms`, `5s`, `2m`, `12h`, `30d`; a bare number is seconds.
///
/// # Errors
/// Another form.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration like 500ms, 5s, 2m, 12h or 30d");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| err())?;
    let seconds = |per: u64| Duration::from_secs(number.saturating_mul(per));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3_600)),
        // `D` as RabbitMQ writes x-max-age.
        "d" | "D" => Ok(seconds(86_400)),
        _ => Err(err()),
    }
}

pub(super) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).and_then(|d| {
        if d.is_zero() {
            Err(format!("{s:?} must be longer than zero"))
        } else {
            Ok(d)
        }
    })
}

/// Comma-separated `amqp://` or `amqps://` URLs, checked with lapin's own
/// URI parser so a URL that loads is one the broker link can use.
pub(super) fn parse_amqp_urls(s: &str) -> Result<Vec<SecretString>, String> {
    let urls: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err("at least one amqp:// or amqps:// URL is required".into());
    }
    urls.into_iter()
        .map(|u| {
            u.parse::<lapin::uri::AMQPUri>()
                .map(|_| SecretString::from(u.to_owned()))
                .map_err(|e| format!("{} is not an AMQP URL: {e}", mask_url(u)))
        })
        .collect()
}

/// Replaces the password of a URL with `***`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}
