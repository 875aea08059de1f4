//! Settings of the WebSocket client, and the providers it knows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::limits::MAX_RECORD_BYTES;

/// A market data provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ProviderKind {
    /// Finnhub (`wss://ws.finnhub.io`, token in `FINNHUB_TOKEN`).
    Finnhub,
    /// Alpaca market data stream v2 (key and secret in `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`).
    Alpaca,
    /// Binance public combined streams, no credentials.
    Binance,
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ProviderKind, String> {
        match s {
            "finnhub" => Ok(ProviderKind::Finnhub),
            "alpaca" => Ok(ProviderKind::Alpaca),
            "binance" => Ok(ProviderKind::Binance),
            other => Err(format!(
                "unknown provider `{other}`: use finnhub, alpaca or binance"
            )),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Finnhub => "finnhub",
            ProviderKind::Alpaca => "alpaca",
            ProviderKind::Binance => "binance",
        })
    }
}

/// How the client keeps a connection alive and comes back after losing it.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How often to send a WebSocket ping.
    pub ping_interval: Duration,
    /// A connection with no frame at all (data, ping or pong) for this long is dead.
    pub read_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// After a reconnect, trades up to this far behind the newest one seen before are compared
    /// with those already delivered, to drop the ones resent (providers without contiguous ids).
    pub dedup_horizon: Duration,
    /// The longest message (and frame) accepted, in bytes; a longer one drops the connection
    /// before it is read whole (see [`MAX_RECORD_BYTES`]).
    pub max_message_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            // Well inside the idle cut-offs of the providers and of common proxies (60 s).
            ping_interval: Duration::from_secs(15),
            // Two missed pings: long enough for a quiet market, short enough to notice a dead link.
            read_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            dedup_horizon: Duration::from_secs(60),
            max_message_bytes: MAX_RECORD_BYTES,
        }
    }
}

impl ClientConfig {
    /// The delay before reconnect attempt `attempt` (0-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so that many clients cut off at once do not return in
    /// lockstep. `unit` is a random number in [0, 1).
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let base = self
            .backoff_min
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .min(self.backoff_max);
        base / 2 + base.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 6] = ["token", "key", "secret", "apikey", "api_key", "password"];

/// The URL with secret query values (`token=...`) and user info replaced by `***`: the only form
/// of a URL that may be logged.
///
/// ```
/// use gostocks_connectors::websocket::redact_url;
/// assert_eq!(redact_url("wss://ws.finnhub.io?token=abc123"), "wss://ws.finnhub.io?token=***");
/// assert_eq!(redact_url("ws://u:pw@h:1/x?streams=a@trade"), "ws://***@h:1/x?streams=a@trade");
/// ```
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) => {
                format!("{scheme}://{}/{path}", redact_authority(authority))
            }
            None => format!("{scheme}://{}", redact_authority(rest)),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

fn redact_authority(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let c = ClientConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..ClientConfig::default()
        };
        assert_eq!(c.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(c.backoff(0, 0.999_999).as_millis(), 99);
        assert_eq!(c.backoff(3, 0.0), Duration::from_millis(400));
        assert_eq!(c.backoff(10, 0.0), Duration::from_millis(500));
        assert_eq!(c.backoff(u32::MAX, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn secrets_never_survive_redaction() {
        let url = "wss://ws.finnhub.io/?token=s3cr3t&x=1";
        assert!(!redact_url(url).contains("s3cr3t"));
        assert_eq!(
            redact_url("ws://127.0.0.1:5/stream"),
            "ws://127.0.0.1:5/stream"
        );
    }
}
