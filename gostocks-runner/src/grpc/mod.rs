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
}

impl Market {
    /// The service, ready to add to a tonic server; its tick streams end when `shutdown`
    /// starts.
    pub fn server(
        state: Arc<MarketState>,
        shutdown: crate::shutdown::Shutdown,
    ) -> MarketServiceServer<Market> {
        MarketServiceServer::new(Market { state, shutdown })
    }
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
        let window = if req.window.is_empty() {
            0
        } else {
            windows
                .iter()
                .position(|w| *w == req.window)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "window: {} is not computed; use one of {}",
                        gostocks_core::symbol::excerpt(&req.window),
                        windows.join(", ")
                    ))
                })?
        };
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
