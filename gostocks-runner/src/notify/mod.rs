//! Notifications: an alert's events pushed to its channels over HTTP.
//!
//! A channel is a generic signed webhook or a preset for a chat service's incoming webhook
//! ([`Kind`]). Each (event, channel) delivery is queued in the outbox by the statement that
//! stores the event (`store.insert_event`), and sent by the delivery worker ([`worker`]), which
//! retries transient failures with backoff and records the outcome.
//!
//! The generic webhook's body (decimals as strings, exact):
//! ```text
//! {"event_id":"evt_42","type":"alert.fired","alert_id":"al_…","symbol":"AAPL",
//!  "condition":"price_above","threshold":"190","price":"190.12","value":190.12,
//!  "time_ns":1700000000000000000,"time":"2023-11-14T22:13:20.000000000Z","seq":7}
//! ```
//! with headers `X-Gostocks-Event-Id: evt_42` (the same on every retry and after restarts: the
//! receiver's idempotency key) and `X-Gostocks-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>" keyed by the channel's secret>`. The presets send one readable line as
//! `{"text": …}` (Slack, and Teams' incoming webhooks) or `{"content": …}` (Discord).

pub mod worker;

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use gostocks_connectors::postgres::notify::Claimed;
use hmac::{KeyInit, Mac};
use rand::Rng;

/// The longest channel URL, in bytes.
pub const MAX_URL: usize = 2048;
/// The shortest webhook secret a caller may give, in bytes.
pub const MIN_SECRET: usize = 16;
/// The longest webhook secret, in bytes.
pub const MAX_SECRET: usize = 128;
/// The most channels one user may have.
pub const MAX_CHANNELS_PER_USER: usize = 20;
/// The most channels one alert may notify.
pub const MAX_CHANNELS_PER_ALERT: usize = 5;
/// The longest channel id a request may name.
pub const MAX_CHANNEL_ID: usize = 64;
/// The header carrying the event id.
pub const EVENT_ID_HEADER: &str = "x-gostocks-event-id";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-gostocks-signature";

/// What a channel's body looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The generic JSON event, signed.
    Webhook,
    /// Slack incoming webhook: `{"text": …}`.
    Slack,
    /// Discord webhook: `{"content": …}`.
    Discord,
    /// Microsoft Teams incoming webhook: `{"text": …}` (a MessageCard's minimal form).
    Teams,
}

impl Kind {
    /// Reads `webhook`, `slack`, `discord` or `teams`.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "webhook" => Kind::Webhook,
            "slack" => Kind::Slack,
            "discord" => Kind::Discord,
            "teams" => Kind::Teams,
            _ => return None,
        })
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
            Kind::Discord => "discord",
            Kind::Teams => "teams",
        }
    }
}

/// A fresh webhook secret.
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("whsec_{}", hex(&bytes))
}

/// What may be shown of a secret after creation: its last four characters.
pub fn hint(secret: &str) -> String {
    if secret.is_empty() {
        return String::new();
    }
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("...{tail}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature header's value for `body` sent at unix second `t`.
pub fn sign(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// The event id sent with a delivery: the stored event's, so the same on every attempt.
pub fn event_id(d: &Claimed) -> String {
    format!("evt_{}", d.event.id)
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// The body a delivery sends, by its channel's kind.
pub fn body(kind: Kind, d: &Claimed) -> String {
    let e = &d.event.event;
    if kind == Kind::Webhook {
        return serde_json::json!({
            "event_id": event_id(d),
            "type": "alert.fired",
            "alert_id": e.alert_id,
            "symbol": e.symbol.as_str(),
            "condition": d.condition.as_str(),
            "threshold": d.threshold.to_string(),
            "price": e.price.to_string(),
            "value": e.value,
            "time_ns": e.time_ns,
            "time": rfc3339(e.time_ns),
            "seq": e.seq,
        })
        .to_string();
    }
    let text = format!(
        "gostocks alert {}: {} {} {} (price {} at {})",
        e.alert_id,
        e.symbol.as_str(),
        d.condition.as_str().replace('_', " "),
        d.threshold,
        e.price,
        rfc3339(e.time_ns)
    );
    match kind {
        Kind::Discord => serde_json::json!({ "content": text }),
        _ => serde_json::json!({ "text": text }),
    }
    .to_string()
}

/// Whether sending to `ip` is refused without `--notify-allow-private`: loopback, private,
/// carrier-grade NAT, link-local (the cloud metadata address 169.254.169.254 among them),
/// unspecified, multicast, broadcast, unique-local and documentation addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Checks a channel URL: at most [`MAX_URL`] bytes, `http` or `https`, with a host, no user
/// info; unless `allow_private`, every address its host resolves to must be public. `Err` says
/// what is wrong (without the field name).
pub async fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    if url.len() > MAX_URL {
        return Err(format!("at most {MAX_URL} bytes"));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("{} is not a URL ({e})", gostocks_core::symbol::excerpt(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("only http and https URLs are allowed".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("user info in the URL is not allowed".into());
    }
    let host = match parsed.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err("the URL needs a host".into()),
    };
    if allow_private {
        return Ok(parsed);
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let ips: Vec<IpAddr> =
        match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let d = host;
                let lookup = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::lookup_host((d, port)),
                )
                .await
                .map_err(|_| format!("resolving {} timed out", gostocks_core::symbol::excerpt(d)))?
                .map_err(|_| format!("{} does not resolve", gostocks_core::symbol::excerpt(d)))?;
                lookup.map(|a| a.ip()).collect()
            }
        };
    if ips.is_empty() || ips.iter().any(|ip| is_private(*ip)) {
        return Err(
            "the destination is a loopback, private, link-local or metadata address; refused (a runner started with --notify-allow-private allows it)"
                .into(),
        );
    }
    Ok(parsed)
}

/// A DNS resolver for the delivery client that drops private addresses (see [`is_private`]), so
/// a name that resolved to a public address at creation cannot be re-pointed inside.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the destination resolves to no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.3.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_signature_is_hmac_sha256_of_time_dot_body() {
        // The value `printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test` prints.
        let sig = sign("whsec_test", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
        assert_ne!(sig, sign("whsec_other", 1_700_000_000, b"{}"));
        assert_eq!(hint("whsec_abcdef"), "...cdef");
    }
}
