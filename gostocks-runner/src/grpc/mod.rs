//! The gRPC side: MarketService, the standard health service and server reflection.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use gostocks_proto::v1;
use gostocks_proto::v1::market_service_server::{MarketService, MarketServiceServer};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use crate::state::MarketState;

/// MarketService over the shared state.
pub struct Market {
    state: Arc<MarketState>,
    shutdown: crate::shutdown::Shutdown,
    /// Where the quote statistics are (`run --kafka --quotes-topic --redis`).
    redis: Option<gostocks_connectors::redis::RedisSink>,
}

impl Market {
    /// The service, ready to add to a tonic server; its tick streams end when `shutdown`
    /// starts.
    pub fn server(
        state: Arc<MarketState>,
        shutdown: crate::shutdown::Shutdown,
        redis: Option<gostocks_connectors::redis::RedisSink>,
    ) -> MarketServiceServer<Market> {
        MarketServiceServer::new(Market {
            state,
            shutdown,
            redis,
        })
    }

    /// The index of `window` (empty: the first), or INVALID_ARGUMENT naming the computed ones.
    fn window(&self, window: &str) -> Result<usize, Status> {
        let windows = &self.state.read.windows;
        if window.is_empty() {
            return Ok(0);
        }
        windows.iter().position(|w| w == window).ok_or_else(|| {
            Status::invalid_argument(format!(
                "window: {} is not computed; use one of {}",
                gostocks_core::symbol::excerpt(window),
                windows.join(", ")
            ))
        })
    }
}

/// A decimal's exact text (`585.805`, `-0.01`) as the wire's mantissa and scale.
fn wire_decimal(text: &str) -> Option<v1::Decimal> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = format!("{int}{frac}");
    Some(v1::Decimal {
        mantissa: digits.parse().ok()?,
        scale: u32::try_from(frac.len()).ok()?,
    })
}

/// The most symbols one StreamTicks request may name.
pub const MAX_STREAM_SYMBOLS: usize = 1_000;

/// A requested symbol, by the canonical rule ([`gostocks_core::Symbol::new`]).
fn symbol_of(text: &str) -> Result<String, Status> {
    gostocks_core::Symbol::new(text)
        .map(|s| s.as_str().to_owned())
        .map_err(|e| Status::invalid_argument(format!("symbol: {e}")))
}

type TickStream = Pin<Box<dyn Stream<Item = Result<v1::Tick, Status>> + Send>>;

#[tonic::async_trait]
impl MarketService for Market {
    async fn get_quote_stats(
        &self,
        req: Request<v1::GetStatsRequest>,
    ) -> Result<Response<v1::QuoteStats>, Status> {
        let req = req.into_inner();
        let symbol = symbol_of(&req.symbol)?;
        let window = self.state.read.windows[self.window(&req.window)?].clone();
        let not_found = || {
            Status::not_found(format!(
                "no quote statistics for symbol `{symbol}`: quotes come from `run --kafka --quotes-topic` with --redis"
            ))
        };
        let redis = self.redis.as_ref().ok_or_else(not_found)?;
        let key = format!("{}{symbol}:{window}", crate::quote_feed::QUOTE_PREFIX);
        let fields: std::collections::HashMap<String, String> = redis
            .read_hash(&key)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "reading quote statistics from redis");
                Status::unavailable("the speed layer (Redis) is unavailable; retry shortly")
            })?
            .ok_or_else(not_found)?
            .into_iter()
            .collect();
        let text = |f: &str| fields.get(f).map(String::as_str).filter(|t| !t.is_empty());
        let decimal = |f: &str| text(f).and_then(wire_decimal);
        let int = |f: &str| text(f).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
        let double = |f: &str| text(f).and_then(|t| t.parse::<f64>().ok());
        Ok(Response::new(v1::QuoteStats {
            symbol: symbol.clone(),
            window,
            time_ns: int("time_ns"),
            quotes: int("quotes"),
            bid: decimal("bid"),
            bid_size: decimal("bid_size"),
            ask: decimal("ask"),
            ask_size: decimal("ask_size"),
            mid: decimal("mid"),
            spread: decimal("spread"),
            mean_spread: double("mean_spread"),
            mean_spread_bps: double("mean_spread_bps"),
            mean_mid: double("mean_mid"),
            two_sided_ns: int("two_sided_ns"),
            crossed_share: double("crossed_share"),
            locked_share: double("locked_share"),
        }))
    }

    async fn get_price(
        &self,
        req: Request<v1::GetPriceRequest>,
    ) -> Result<Response<v1::Price>, Status> {
        let symbol = symbol_of(&req.into_inner().symbol)?;
        let p =
            self.state.read.price(&symbol).ok_or_else(|| {
                Status::not_found(format!("no trades seen for symbol `{symbol}`"))
            })?;
        Ok(Response::new(v1::Price {
            symbol,
            price: Some(p.price.into()),
            time_ns: p.time_ns as i64,
        }))
    }

    async fn get_stats(
        &self,
        req: Request<v1::GetStatsRequest>,
    ) -> Result<Response<v1::WindowStats>, Status> {
        let req = req.into_inner();
        let symbol = symbol_of(&req.symbol)?;
        let windows = &self.state.read.windows;
        let window = self.window(&req.window)?;
        let row = self
            .state
            .read
            .stats(&symbol, window as u8)
            .ok_or_else(|| Status::not_found(format!("no stats yet for symbol `{symbol}`")))?;
        let core = row.core;
        Ok(Response::new(v1::WindowStats {
            symbol,
            window: windows[window].clone(),
            time_ns: row.time_ns as i64,
            count: core.map_or(0, |c| c.agg.count),
            volume: Some(
                core.map_or(gostocks_core::Fixed::ZERO, |c| c.agg.volume_fixed())
                    .into(),
            ),
            last: row.last.map(Into::into),
            min: core.map(|c| c.min.into()),
            max: core.map(|c| c.max.into()),
            sma: core.and_then(|c| c.agg.sma()),
            vwap: core.and_then(|c| c.agg.vwap()),
            stddev: core.and_then(|c| c.agg.stddev()),
            volatility: core.and_then(|c| c.agg.volatility()),
        }))
    }

    type StreamTicksStream = TickStream;

    async fn stream_ticks(
        &self,
        req: Request<v1::StreamTicksRequest>,
    ) -> Result<Response<TickStream>, Status> {
        let symbols = req.into_inner().symbols;
        if symbols.len() > MAX_STREAM_SYMBOLS {
            return Err(Status::invalid_argument(format!(
                "symbols: at most {MAX_STREAM_SYMBOLS}, got {}",
                symbols.len()
            )));
        }
        let wanted = symbols
            .iter()
            .map(|s| symbol_of(s))
            .collect::<Result<Vec<String>, Status>>()?;
        let feed =
            BroadcastStream::new(self.state.read.subscribe()).filter_map(move |item| match item {
                Ok(tick) if wanted.is_empty() || wanted.contains(&tick.symbol) => {
                    Some(Ok(v1::Tick::from(&tick)))
                }
                Ok(_) => None,
                // A subscriber that falls behind skips ticks rather than stalling the feed.
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "slow tick subscriber");
                    None
                }
            });
        let shutdown = self.shutdown.clone();
        let feed = futures::StreamExt::take_until(feed, async move { shutdown.wait().await });
        Ok(Response::new(Box::pin(feed)))
    }
}
