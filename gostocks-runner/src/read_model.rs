//! The read model the servers query: the last price, the latest stats row and the latest final
//! bars of each symbol, and the live tick broadcast. Written by its sink
//! (`sinks/read_model.rs`) and by the intake (live ticks); read by REST and gRPC.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

use gostocks_core::stats::{AnalyticsConfig, BarRow, StatsRow};
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

/// How many final bars are kept per symbol and bar size.
pub const BARS_KEPT: usize = 1_000;

/// What the servers read.
pub struct ReadModel {
    prices: RwLock<BTreeMap<String, LastPrice>>,
    /// The latest stats row per (symbol, window index).
    stats: RwLock<HashMap<(Symbol, u8), StatsRow>>,
    /// The latest final bars per (symbol, bar index), oldest first.
    bars: RwLock<HashMap<(Symbol, u8), VecDeque<BarRow>>>,
    /// Window labels, in index order.
    pub windows: Vec<String>,
    /// Bar labels, in index order.
    pub bar_sizes: Vec<String>,
    ticks: broadcast::Sender<Tick>,
}

impl ReadModel {
    /// Empty, for `config`'s windows and bars, with a live tick broadcast that buffers
    /// `feed_capacity` ticks per slow subscriber.
    pub fn new(feed_capacity: usize, config: &AnalyticsConfig) -> ReadModel {
        ReadModel {
            prices: RwLock::new(BTreeMap::new()),
            stats: RwLock::new(HashMap::new()),
            bars: RwLock::new(HashMap::new()),
            windows: config.windows.iter().map(ToString::to_string).collect(),
            bar_sizes: config.bars.iter().map(ToString::to_string).collect(),
            ticks: broadcast::channel(feed_capacity).0,
        }
    }

    /// Takes `price` as `symbol`'s last price unless a newer one (in `(time, seq)` order) is
    /// there: the final price is the same whatever order they come in.
    pub fn apply_price(&self, symbol: &Symbol, price: LastPrice) {
        let mut prices = self.prices.write().unwrap_or_else(|e| e.into_inner());
        match prices.get_mut(symbol.as_str()) {
            Some(cur) if (cur.time_ns, cur.seq) >= (price.time_ns, price.seq) => {}
            Some(cur) => *cur = price,
            None => {
                prices.insert(symbol.to_string(), price);
            }
        }
    }

    /// Applies a stats changelog row (rows of one window arrive in time order).
    pub fn apply_stats(&self, row: &StatsRow) {
        self.stats
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((row.symbol, row.window), *row);
    }

    /// Appends a final bar, keeping the latest [`BARS_KEPT`].
    pub fn apply_bar(&self, row: &BarRow) {
        let mut bars = self.bars.write().unwrap_or_else(|e| e.into_inner());
        let kept = bars.entry((row.symbol, row.bar)).or_default();
        kept.push_back(*row);
        if kept.len() > BARS_KEPT {
            kept.pop_front();
        }
    }

    /// The latest stats of `symbol` in window `window` (an index into [`ReadModel::windows`]).
    pub fn stats(&self, symbol: &str, window: u8) -> Option<StatsRow> {
        let symbol = Symbol::new(symbol).ok()?;
        self.stats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(symbol, window))
            .copied()
    }

    /// The latest `limit` bars of `symbol` for bar size `bar`, oldest first.
    pub fn bars(&self, symbol: &str, bar: u8, limit: usize) -> Option<Vec<BarRow>> {
        let symbol = Symbol::new(symbol).ok()?;
        let bars = self.bars.read().unwrap_or_else(|e| e.into_inner());
        let kept = bars.get(&(symbol, bar))?;
        Some(
            kept.iter()
                .skip(kept.len().saturating_sub(limit))
                .copied()
                .collect(),
        )
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
}
