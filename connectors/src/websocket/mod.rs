//! Market WebSockets: Finnhub, Alpaca and Binance trades as ticks.
//!
//! Each provider is a pure protocol state machine ([`Provider`]): a text frame goes in, an
//! [`Output`] comes out (trades, frames to send back, control notices, what was passed over), or
//! a [`ProviderError`] saying whether to reconnect or stop. [`client::run`] drives any provider
//! over a real socket: connect, subscribe, ping, a read timeout that detects a dead connection,
//! reconnect with exponential backoff and jitter, duplicates after a reconnect dropped and gaps
//! in trade ids reported ([`Dedup`]), every frame optionally recorded as
//! `<local receive ns> <frame>` lines that [`file`](mod@crate::file) reads back with the very same
//! frame decoders (`finnhub-raw`, `alpaca-raw`, `binance-raw`).
//!
//! ```
//! use gostocks_connectors::websocket::{Binance, Output, Provider};
//! let mut binance = Binance::new(&["BTCUSDT".to_owned()], None);
//! assert_eq!(binance.connect_url(), "wss://stream.binance.com:9443/stream?streams=btcusdt@trade");
//! let mut out = Output::default();
//! binance
//!     .on_frame(r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":7,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true}}"#, &mut out)
//!     .unwrap();
//! let tick = out.records[0].as_ref().unwrap();
//! assert_eq!((tick.price.to_string(), tick.seq), ("61837.63".to_owned(), 7));
//! ```

mod alpaca;
mod binance;
pub mod client;
mod config;
mod dedup;
mod finnhub;
mod metrics;
mod record;

pub use alpaca::Alpaca;
pub use binance::{Binance, binance_rest_trade};
pub use config::{ClientConfig, ProviderKind, redact_url};
pub use dedup::{Dedup, Verdict};
pub use finnhub::Finnhub;
pub use metrics::{IngestMetrics, MetricsSnapshot};
pub use record::Recorder;

pub(crate) use alpaca::decode_frame as decode_alpaca_frame;
pub(crate) use alpaca::rfc3339_ns;
pub(crate) use binance::decode_frame as decode_binance_frame;
pub(crate) use finnhub::decode_frame as decode_finnhub_frame;

use gostocks_core::{Fixed, Rejection, Tick};

/// What one frame held.
#[derive(Debug, Default)]
pub struct Output {
    /// Trades in frame order; a trade that does not decode is its rejection.
    pub records: Vec<Result<Tick, Rejection>>,
    /// Messages passed over: other streams, quotes, bars, pings, acknowledgements.
    pub ignored: u64,
    /// Text frames to send back to the server.
    pub replies: Vec<String>,
    /// Control messages worth logging: greetings, authentication, subscriptions, errors.
    pub notices: Vec<Notice>,
    /// Quotes in frame order, from a provider asked for them (Binance `with_quotes`); a quote
    /// that does not decode is its rejection.
    pub quotes: Vec<Result<gostocks_core::quotes::Quote, Rejection>>,
}

/// A control message from a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The server greeted the connection.
    Connected,
    /// The credentials were accepted.
    Authenticated,
    /// The server confirmed a subscription (its own description of it).
    Subscribed(String),
    /// The server reported an error that leaves the connection usable (e.g. one symbol refused).
    Error {
        /// The provider's error code, where it gives one.
        code: Option<i64>,
        /// The provider's message.
        message: String,
    },
}

/// An error frame after which the connection cannot go on as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{provider} error{}: {message}; {hint}", code.map(|c| format!(" {c}")).unwrap_or_default())]
pub struct ProviderError {
    /// The provider (`alpaca`).
    pub provider: &'static str,
    /// The provider's error code, where it gives one.
    pub code: Option<i64>,
    /// The provider's message.
    pub message: String,
    /// What to do about it, for the person reading the log.
    pub hint: String,
    /// Whether reconnecting (after a backoff) may help; if not, the ingestor stops.
    pub retry: bool,
}

/// A market WebSocket protocol, without I/O: the socket loop in [`client`] drives it.
pub trait Provider: Send {
    /// The provider's name, for logs, metrics and the ticks' `source`.
    fn name(&self) -> &'static str;
    /// The URL to connect to. It may hold a secret: log [`redact_url`] of it, never itself.
    fn connect_url(&self) -> String;
    /// Called on every (re)connection before any frame is read: resets the protocol state and
    /// queues the frames to send first (Finnhub's subscriptions; Alpaca waits for its greeting).
    fn on_connect(&mut self, out: &mut Output);
    /// Handles one text frame. An `Err` drops the connection, to reconnect or to stop.
    fn on_frame(&mut self, frame: &str, out: &mut Output) -> Result<(), ProviderError>;
    /// Whether trade ids are contiguous per symbol, so that a jump is a gap and an id at or below
    /// the last one is a duplicate (Binance); otherwise duplicates are found by content.
    fn contiguous_ids(&self) -> bool {
        false
    }
}

/// Parses the text of a JSON number or string (`173.18`, `"0.02000000"`, `1e-5`) straight into a
/// [`Fixed`]: prices and sizes never take a round trip through a binary float.
pub(crate) fn raw_decimal(
    raw: Option<&serde_json::value::RawValue>,
    name: &str,
) -> Result<Fixed, Rejection> {
    let raw = raw.ok_or_else(|| Rejection::Decode(format!("trade lacks `{name}`")))?;
    let text = raw.get().trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    Fixed::parse_bytes(text.as_bytes()).map_err(|e| Rejection::Decode(format!("{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn decimals_keep_their_exact_text_from_numbers_and_strings() {
        let parse = |s: &str| {
            let raw: Box<RawValue> = serde_json::from_str(s).unwrap();
            raw_decimal(Some(&raw), "p").map(|f| f.to_string())
        };
        // 0.1 + 0.2 style values that a float would print differently.
        assert_eq!(parse("7296.89").unwrap(), "7296.89");
        assert_eq!(parse("0.011467").unwrap(), "0.011467");
        assert_eq!(parse("\"61837.63000000\"").unwrap(), "61837.63");
        assert_eq!(parse("1e-5").unwrap(), "0.00001");
        assert_eq!(
            parse("92233720368.54775807").unwrap(),
            "92233720368.54775807"
        );
        assert!(parse("0.123456789").is_err(), "9 decimals cannot be exact");
        assert!(parse("null").is_err());
    }
}
