//! Ingest that fills its own gaps: trades a Binance stream skipped (a reconnect, a dropped frame)
//! fetched over Binance's REST API and delivered, in trade-id order, before the live trades that
//! follow them.
//!
//! The stage sits between the WebSocket client and the buffer in front of Kafka. Binance trade
//! ids are contiguous per symbol, so a trade whose id jumps past the one before opens a gap; the
//! stage holds the stream (the client goes on reading into a bounded queue), pages through
//! `GET /api/v3/historicalTrades?symbol=&fromId=&limit=` (or the futures'
//! `/fapi/v1/historicalTrades`) within a request-weight budget, delivers the missing trades, then
//! the live trade. A gap it cannot fill (no API key, an answer that is not trades, the deadline)
//! is reported with its id range: in the log, on `/metrics` and in the summary.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use gostocks_connectors::kafka::TickBuffer;
use gostocks_connectors::websocket::binance_rest_trade;
use gostocks_core::Tick;
use governor::{DefaultDirectRateLimiter, Quota};
use tokio::time::Instant;
use tracing::{info, warn};

/// The environment variable holding the Binance API key sent as `X-MBX-APIKEY`.
pub const API_KEY: &str = "BINANCE_API_KEY";
/// Trades asked for per request: Binance's spot maximum (futures answer at most 500 and say so
/// by answering fewer, which paging takes in its stride).
const PAGE: u64 = 1000;
/// Request weight of one `historicalTrades` call (spot: 25; futures: 20).
const REQUEST_WEIGHT: u32 = 25;
/// The most bytes read of one answer: a page of 1,000 trades is about 150 kB.
const MAX_ANSWER: usize = 4 << 20;
/// At most this many unfilled ranges are kept for the summary (the counter has them all).
const MAX_RANGES: usize = 100;
/// The longest `Retry-After` obeyed (Binance's bans run longer: the gap is then unfilled).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How the stage reaches Binance.
#[derive(Clone, Debug)]
pub struct BackfillConfig {
    /// The `historicalTrades` endpoint.
    pub url: reqwest::Url,
    /// The API key (`None`: gaps are reported, not filled).
    pub key: Option<String>,
    /// Request weight spent per minute at most.
    pub weight_per_minute: NonZeroU32,
    /// How long one gap may take before what is still missing is reported unfilled.
    pub deadline: Duration,
}

impl BackfillConfig {
    /// The default endpoint for a stream at `ws_url`: the futures API for `fstream` hosts, else
    /// the spot API.
    pub fn default_url(ws_url: Option<&str>) -> &'static str {
        if ws_url.is_some_and(|u| u.contains("fstream.binance")) {
            "https://fapi.binance.com/fapi/v1/historicalTrades"
        } else {
            "https://api.binance.com/api/v3/historicalTrades"
        }
    }
}

/// What the stage did, for the log, `/metrics` and the summary.
#[derive(Debug, Default)]
pub struct BackfillMetrics {
    /// Missing trade ids fetched and delivered.
    pub filled: AtomicU64,
    /// Missing trade ids that could not be fetched.
    pub unfilled: AtomicU64,
    /// REST requests made.
    pub requests: AtomicU64,
    /// The first unfilled ranges, `(symbol, first id, last id)`.
    ranges: Mutex<Vec<(String, u64, u64)>>,
}

impl BackfillMetrics {
    fn unfilled(&self, symbol: &str, from: u64, to: u64) {
        self.unfilled.fetch_add(to - from + 1, Ordering::Relaxed);
        let mut ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        if ranges.len() < MAX_RANGES {
            ranges.push((symbol.to_owned(), from, to));
        }
    }

    /// The unfilled ranges as `SYMBOL:first-last,...` (`-` when there are none).
    pub fn ranges(&self) -> String {
        let ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        if ranges.is_empty() {
            return "-".to_owned();
        }
        let mut out: Vec<String> = ranges
            .iter()
            .map(|(s, a, b)| format!("{s}:{a}-{b}"))
            .collect();
        if self.unfilled.load(Ordering::Relaxed)
            > ranges.iter().map(|(_, a, b)| b - a + 1).sum::<u64>()
        {
            out.push("...".to_owned());
        }
        out.join(",")
    }
}

/// Why a gap was not (wholly) filled.
#[derive(Debug)]
struct Unfilled(String);

/// Fetches missing trades from the REST API.
pub struct Backfiller {
    client: reqwest::Client,
    config: BackfillConfig,
    limiter: DefaultDirectRateLimiter,
    metrics: std::sync::Arc<BackfillMetrics>,
}

impl Backfiller {
    /// A backfiller reporting into `metrics`.
    pub fn new(
        config: BackfillConfig,
        metrics: std::sync::Arc<BackfillMetrics>,
    ) -> anyhow::Result<Backfiller> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gostocks-ingest/", env!("CARGO_PKG_VERSION")))
            .build()?;
        // The whole minute's weight may be spent at once, then it refills evenly.
        let limiter = governor::RateLimiter::direct(Quota::per_minute(config.weight_per_minute));
        Ok(Backfiller {
            client,
            config,
            limiter,
            metrics,
        })
    }

    /// Moves ticks from `incoming` to `outgoing` until `incoming` is closed and empty, filling
    /// each gap in a symbol's trade ids before the trade that revealed it; then closes
    /// `outgoing`.
    pub async fn run(&self, incoming: &TickBuffer, outgoing: &TickBuffer) {
        let mut last: HashMap<String, u64> = HashMap::new();
        while let Some(tick) = incoming.next().await {
            if let Some(id) = tick.trade_id {
                let before = last.insert(tick.symbol.clone(), id);
                if let Some(before) = before
                    && id > before.saturating_add(1)
                {
                    self.fill(&tick.symbol, before + 1, id - 1, outgoing).await;
                }
            }
            outgoing.push(tick);
        }
        outgoing.close();
    }

    /// Fetches and delivers the trades `from..=to` of `symbol`; what it cannot is reported.
    async fn fill(&self, symbol: &str, from: u64, to: u64, outgoing: &TickBuffer) {
        let missing = to - from + 1;
        let started = Instant::now();
        let Some(key) = self.config.key.as_deref() else {
            warn!(
                symbol,
                from,
                to,
                missing,
                "gap in trade ids not filled: set {API_KEY} to fill gaps from Binance's REST API"
            );
            self.metrics.unfilled(symbol, from, to);
            return;
        };
        let mut next = from;
        let result = self
            .pages(
                symbol,
                key,
                &mut next,
                to,
                started + self.config.deadline,
                outgoing,
            )
            .await;
        let filled = next - from;
        self.metrics.filled.fetch_add(filled, Ordering::Relaxed);
        match result {
            Ok(()) => info!(
                symbol,
                from,
                to,
                filled,
                ms = started.elapsed().as_millis() as u64,
                "gap in trade ids filled from the REST API"
            ),
            Err(Unfilled(reason)) => {
                warn!(symbol, from = next, to, missing = to - next + 1, filled, reason = %reason, "gap in trade ids not (wholly) filled");
                self.metrics.unfilled(symbol, next, to);
            }
        }
    }

    /// Pages through the REST API from `*next` to `to`, delivering each trade as it comes and
    /// moving `*next` past it.
    async fn pages(
        &self,
        symbol: &str,
        key: &str,
        next: &mut u64,
        to: u64,
        give_up: Instant,
        outgoing: &TickBuffer,
    ) -> Result<(), Unfilled> {
        let weight = NonZeroU32::new(REQUEST_WEIGHT).unwrap_or(NonZeroU32::MIN);
        let mut retries = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .build();
        while *next <= to {
            let wait = self.limiter.until_n_ready(weight);
            match tokio::time::timeout_at(give_up, wait).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Unfilled(format!(
                        "one request weighs {REQUEST_WEIGHT}, more than the budget per minute"
                    )));
                }
                Err(_) => {
                    return Err(Unfilled(
                        "deadline passed waiting for request weight".into(),
                    ));
                }
            }
            let limit = (to - *next + 1).min(PAGE);
            self.metrics.requests.fetch_add(1, Ordering::Relaxed);
            let pause = match self.page(symbol, key, *next, limit).await {
                Ok(trades) => {
                    let before = *next;
                    for tick in trades {
                        let Some(id) = tick.trade_id else { continue };
                        if id < *next {
                            continue;
                        }
                        if id > to {
                            break;
                        }
                        if id != *next {
                            return Err(Unfilled(format!(
                                "the REST API skipped from id {} to {id}",
                                *next
                            )));
                        }
                        outgoing.push(tick);
                        *next += 1;
                    }
                    if *next == before {
                        return Err(Unfilled(format!(
                            "the REST API returned no trade from id {before}"
                        )));
                    }
                    continue;
                }
                Err(Attempt::Fatal(reason)) => return Err(Unfilled(reason)),
                Err(Attempt::Later(reason, after)) => {
                    let delay = after.or_else(|| retries.next()).unwrap_or(MAX_RETRY_AFTER);
                    (reason, delay)
                }
            };
            let (reason, delay) = pause;
            if Instant::now() + delay > give_up {
                return Err(Unfilled(format!("{reason}; gave up at the deadline")));
            }
            warn!(symbol, from = *next, reason = %reason, retry_in = ?delay, "backfill request failed; retrying");
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// One request: up to `limit` trades of `symbol` from id `from`.
    async fn page(
        &self,
        symbol: &str,
        key: &str,
        from: u64,
        limit: u64,
    ) -> Result<Vec<Tick>, Attempt> {
        let request = self
            .client
            .get(self.config.url.clone())
            .query(&[
                ("symbol", symbol.to_owned()),
                ("fromId", from.to_string()),
                ("limit", limit.to_string()),
            ])
            .header("X-MBX-APIKEY", key);
        // Errors name no URL: it is public, but the key travels in a header and stays there.
        let mut resp = request
            .send()
            .await
            .map_err(|e| Attempt::Later(format!("request failed: {}", e.without_url()), None))?;
        let status = resp.status();
        let retry_after = crate::notify::worker::retry_after(resp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Attempt::Later(format!("answer broken off: {}", e.without_url()), None))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(Attempt::Fatal(format!("answer over {MAX_ANSWER} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let excerpt = || gostocks_core::symbol::excerpt(&String::from_utf8_lossy(&body));
        match status.as_u16() {
            200 => {}
            // Too many requests, or an IP ban: Binance says how long to wait.
            429 | 418 => {
                let after = retry_after.unwrap_or(Duration::from_secs(1));
                if after > MAX_RETRY_AFTER {
                    return Err(Attempt::Fatal(format!(
                        "HTTP {status}: rate limited for {after:?}"
                    )));
                }
                return Err(Attempt::Later(
                    format!("HTTP {status}: rate limited"),
                    Some(after),
                ));
            }
            s if s >= 500 => {
                return Err(Attempt::Later(
                    format!("HTTP {status}: {}", excerpt()),
                    None,
                ));
            }
            _ => return Err(Attempt::Fatal(format!("HTTP {status}: {}", excerpt()))),
        }
        let values: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
            Attempt::Fatal(format!(
                "the answer is not a list of trades ({e}): {}",
                excerpt()
            ))
        })?;
        values
            .iter()
            .map(|v| binance_rest_trade(symbol, v))
            .collect::<Result<Vec<Tick>, _>>()
            .map_err(|e| Attempt::Fatal(format!("a trade did not decode: {e}")))
    }
}

/// Why a request gave no trades.
enum Attempt {
    /// Retrying may help: after the given wait, or the backoff's.
    Later(String, Option<Duration>),
    /// Retrying cannot help.
    Fatal(String),
}
