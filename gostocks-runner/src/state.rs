//! What the servers read: the latest price per symbol, as the dataflow maintains it, and the
//! live tick feed.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use gostocks_core::operators::Point;
use gostocks_core::{Fixed, Symbol, Tick};
use tokio::sync::broadcast;

/// The last trade of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastPrice {
    /// Price.
    pub price: Fixed,
    /// Event time, ns since the epoch.
    pub time_ns: u64,
    /// Sequence number.
    pub seq: u64,
}

/// Shared between the dataflow (writer) and the REST and gRPC servers (readers).
pub struct MarketState {
    prices: RwLock<BTreeMap<String, LastPrice>>,
    ticks: broadcast::Sender<Tick>,
    /// Ticks accepted into the dataflow.
    pub accepted: AtomicU64,
    /// Ticks rejected (bad price, size, symbol or time).
    pub rejected: AtomicU64,
}

impl MarketState {
    /// Empty state with a live feed that buffers `feed_capacity` ticks per slow subscriber.
    pub fn new(feed_capacity: usize) -> MarketState {
        MarketState {
            prices: RwLock::new(BTreeMap::new()),
            ticks: broadcast::channel(feed_capacity).0,
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Applies an insertion from the last-price arrangement; an older point never replaces a
    /// newer one.
    pub fn apply_last(&self, symbol: &Symbol, point: &Point) {
        let mut prices = self.prices.write().unwrap_or_else(|e| e.into_inner());
        let entry = LastPrice {
            price: point.price,
            time_ns: point.time_ns,
            seq: point.seq,
        };
        match prices.get_mut(symbol.as_str()) {
            Some(cur) if (cur.time_ns, cur.seq) >= (entry.time_ns, entry.seq) => {}
            Some(cur) => *cur = entry,
            None => {
                prices.insert(symbol.to_string(), entry);
            }
        }
    }

    /// The last price of `symbol`, if any trade of it has been seen.
    pub fn price(&self, symbol: &str) -> Option<LastPrice> {
        self.prices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(symbol)
            .copied()
    }

    /// Every symbol seen, sorted.
    pub fn symbols(&self) -> Vec<String> {
        self.prices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Publishes a tick to live subscribers (none listening is fine).
    pub fn publish(&self, tick: Tick) {
        let _ = self.ticks.send(tick);
    }

    /// A new subscription to the live feed.
    pub fn subscribe(&self) -> broadcast::Receiver<Tick> {
        self.ticks.subscribe()
    }

    /// `(accepted, rejected)` tick counts.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}
