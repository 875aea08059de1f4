//! What the servers read: the latest price per symbol, as the dataflow maintains it, and the
//! live tick feed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use gostocks_connectors::kafka::Ownership;
use gostocks_core::operators::Point;
use gostocks_core::stats::{AnalyticsConfig, BarRow, StatsRow};
use gostocks_core::{Fixed, Symbol, Tick};
use tokio::sync::broadcast;

use crate::kafka_status::KafkaStatus;

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

/// Shared between the dataflow (writer) and the REST and gRPC servers (readers).
pub struct MarketState {
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
    /// Ticks accepted into the dataflow.
    pub accepted: AtomicU64,
    /// Ticks rejected (bad price, size, symbol or time).
    pub rejected: AtomicU64,
    /// Ticks that arrived too late to count.
    pub late: AtomicU64,
    /// Kafka records that did not decode, sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    stats_rows: AtomicU64,
    bar_rows: AtomicU64,
    latest: AtomicU64,
    /// Alert events fired.
    pub alert_events: AtomicU64,
    outputs: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::sinks::Output>>,
    /// The latest progress mark: every output of a grid time below it is handed on.
    handed_on: AtomicU64,
    /// Per external sink: every output below this grid time is durably written.
    sink_marks: std::sync::Mutex<Vec<Arc<AtomicU64>>>,
    /// Per external sink: how it stands (for `/readyz` and `/metrics`).
    sink_health: std::sync::Mutex<Vec<Arc<crate::sinks::SinkHealth>>>,
    /// Which outputs a Kafka consumer of a shared group must not write (see [`Ownership`]).
    pub ownership: Ownership,
    /// How the Kafka source stands in its consumer group.
    pub kafka: KafkaStatus,
    bar_ns: Vec<u64>,
}

impl MarketState {
    /// Empty state for `config`'s windows and bars, with a live feed that buffers
    /// `feed_capacity` ticks per slow subscriber.
    pub fn new(feed_capacity: usize, config: &AnalyticsConfig) -> MarketState {
        MarketState {
            prices: RwLock::new(BTreeMap::new()),
            stats: RwLock::new(HashMap::new()),
            bars: RwLock::new(HashMap::new()),
            windows: config.windows.iter().map(ToString::to_string).collect(),
            bar_sizes: config.bars.iter().map(ToString::to_string).collect(),
            ticks: broadcast::channel(feed_capacity).0,
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            stats_rows: AtomicU64::new(0),
            bar_rows: AtomicU64::new(0),
            latest: AtomicU64::new(0),
            alert_events: AtomicU64::new(0),
            outputs: std::sync::OnceLock::new(),
            handed_on: AtomicU64::new(0),
            sink_marks: std::sync::Mutex::new(Vec::new()),
            sink_health: std::sync::Mutex::new(Vec::new()),
            ownership: Ownership::default(),
            kafka: KafkaStatus::default(),
            bar_ns: config.bars.iter().map(|b| b.ns()).collect(),
        }
    }

    /// A progress mark from the dataflow: passed to the sinks, which confirm it once written.
    /// Called (from the alert hub, on the runtime) only after every output below `t` has been
    /// handed on: see the ordering contract in `sinks/driver.rs`. Waits while the sinks' queues
    /// are full.
    pub async fn mark(&self, t: u64) {
        self.handed_on.fetch_max(t, Ordering::Relaxed);
        self.emit_async(crate::sinks::Output::Mark(t)).await;
    }

    /// Shows an external sink's health in [`MarketState::readiness`] and `/metrics`.
    pub fn watch_sink(&self, health: Arc<crate::sinks::SinkHealth>) {
        self.sink_health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(health);
    }

    /// A new external sink's confirmation cell.
    pub fn register_sink(&self) -> Arc<AtomicU64> {
        let cell = Arc::new(AtomicU64::new(0));
        self.sink_marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&cell));
        cell
    }

    /// Every output of a grid time below this is durably written (by every sink; with no
    /// external sink, handed to the in-process state).
    pub fn durable(&self) -> u64 {
        let marks = self.sink_marks.lock().unwrap_or_else(|e| e.into_inner());
        let handed = self.handed_on.load(Ordering::Relaxed);
        marks
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .min()
            .map_or(handed, |m| m.min(handed))
    }

    /// Whether every sink has confirmed every progress mark handed on so far (at shutdown: the
    /// sinks have drained).
    pub fn sinks_caught_up(&self) -> bool {
        self.durable() >= self.handed_on.load(Ordering::Relaxed)
    }

    /// From now on, every change of the state also goes to `tx` (the external sinks). `tx` is
    /// bounded: when the sinks fall behind, the dataflow's threads wait in [`MarketState::emit`],
    /// which holds their intake back.
    pub fn set_outputs(&self, tx: tokio::sync::mpsc::Sender<crate::sinks::Output>) {
        let _ = self.outputs.set(tx);
    }

    /// Hands an output to the external sinks, if any, unless it was written before a restart
    /// or belongs to a partition another consumer owns now. Blocks the calling thread while the
    /// sinks' queues are full: call it from the dataflow's threads, never on the runtime (there,
    /// [`MarketState::emit_async`]).
    pub fn emit(&self, output: crate::sinks::Output) {
        let Some(tx) = self.outputs.get() else { return };
        if !self.suppressed(&output) {
            // Err: the sinks have stopped (shutdown); nothing waits for the output any more.
            let _ = tx.blocking_send(output);
        }
    }

    /// [`MarketState::emit`] for tasks on the runtime: waits for room instead of blocking.
    pub async fn emit_async(&self, output: crate::sinks::Output) {
        let Some(tx) = self.outputs.get() else { return };
        if !self.suppressed(&output) {
            let _ = tx.send(output).await;
        }
    }

    fn suppressed(&self, output: &crate::sinks::Output) -> bool {
        use crate::sinks::Output;
        match output {
            Output::Price(sym, p) => self.ownership.suppress(sym, p.time_ns),
            Output::Stats(row) => self.ownership.suppress(&row.symbol, row.time_ns),
            Output::Bar(row) => self.ownership.suppress(
                &row.symbol,
                row.start_ns + self.bar_ns.get(row.bar as usize).copied().unwrap_or(0),
            ),
            Output::Event(_) | Output::Mark(_) => false,
        }
    }

    /// Notes an accepted tick's event time.
    pub fn observe(&self, time_ns: u64) {
        self.latest.fetch_max(time_ns, Ordering::Relaxed);
    }

    /// The greatest event time accepted so far (0 before any tick): "now" in event time.
    pub fn latest_ns(&self) -> u64 {
        self.latest.load(Ordering::Relaxed)
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
            Some(cur) if (cur.time_ns, cur.seq) >= (entry.time_ns, entry.seq) => return,
            Some(cur) => *cur = entry,
            None => {
                prices.insert(symbol.to_string(), entry);
            }
        }
        drop(prices);
        self.emit(crate::sinks::Output::Price(*symbol, entry));
    }

    /// Applies a stats changelog row (rows of one window arrive in time order).
    pub fn apply_stats(&self, row: &StatsRow) {
        self.stats_rows.fetch_add(1, Ordering::Relaxed);
        self.stats
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((row.symbol, row.window), *row);
        self.emit(crate::sinks::Output::Stats(*row));
    }

    /// Appends a final bar, keeping the latest [`BARS_KEPT`].
    pub fn apply_bar(&self, row: &BarRow) {
        self.bar_rows.fetch_add(1, Ordering::Relaxed);
        let mut bars = self.bars.write().unwrap_or_else(|e| e.into_inner());
        let kept = bars.entry((row.symbol, row.bar)).or_default();
        kept.push_back(*row);
        if kept.len() > BARS_KEPT {
            kept.pop_front();
        }
        drop(bars);
        self.emit(crate::sinks::Output::Bar(*row));
    }

    /// The latest stats of `symbol` in window `window` (an index into [`MarketState::windows`]).
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

    /// Whether this runner does its part of the pipeline: `Ok` if so, else why not (for
    /// `/readyz`). With `--kafka`, not ready while the consumer has not yet joined its group, nor
    /// while it has held no partition for longer than the bound (see [`KafkaStatus`]) although
    /// records of the topic wait and nobody consumes them. Without `--kafka`, always ready.
    ///
    /// Not ready either while an external sink has stopped on a definite failure, or has been
    /// failing transiently for longer than its bound (`--sink-unready-after`); the reason names
    /// the sink.
    ///
    /// gRPC health reports the same for the server as a whole (service `""`).
    pub fn readiness(&self) -> Result<(), String> {
        self.kafka.readiness()?;
        for sink in self
            .sink_health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            sink.readiness()?;
        }
        Ok(())
    }

    /// The Prometheus text exposition of this state's counters and gauges.
    pub fn metrics(&self) -> String {
        let (accepted, rejected) = self.counts();
        let stats_rows = self.stats_rows.load(Ordering::Relaxed);
        let (late, dead) = (
            self.late.load(Ordering::Relaxed),
            self.dead_letters.load(Ordering::Relaxed),
        );
        let bars = self.bar_rows.load(Ordering::Relaxed);
        let symbols = self.prices.read().unwrap_or_else(|e| e.into_inner()).len();
        let kafka = self.kafka.metrics();
        let sinks = self.sink_metrics();
        format!(
            "# HELP gostocks_ticks_total Ticks accepted into the dataflow.\n# TYPE gostocks_ticks_total counter\ngostocks_ticks_total {accepted}\n\
             # HELP gostocks_ticks_rejected_total Ticks rejected (bad price, size, symbol or time).\n# TYPE gostocks_ticks_rejected_total counter\ngostocks_ticks_rejected_total {rejected}\n\
             # HELP gostocks_ticks_late_total Ticks too late to count.\n# TYPE gostocks_ticks_late_total counter\ngostocks_ticks_late_total {late}\n\
             # HELP gostocks_dead_letters_total Kafka records sent to the dead-letter topic.\n# TYPE gostocks_dead_letters_total counter\ngostocks_dead_letters_total {dead}\n\
             # HELP gostocks_stats_rows_total Window stats changelog rows computed.\n# TYPE gostocks_stats_rows_total counter\ngostocks_stats_rows_total {stats_rows}\n\
             # HELP gostocks_bars_total Final bars computed.\n# TYPE gostocks_bars_total counter\ngostocks_bars_total {bars}\n\
             # HELP gostocks_symbols Symbols with a last price.\n# TYPE gostocks_symbols gauge\ngostocks_symbols {symbols}\n{kafka}{sinks}"
        )
    }

    /// Every external sink's state, queue depth and counters, one family after another.
    fn sink_metrics(&self) -> String {
        let sinks = self.sink_health.lock().unwrap_or_else(|e| e.into_inner());
        if sinks.is_empty() {
            return String::new();
        }
        let lines: Vec<_> = sinks.iter().map(|s| s.metrics()).collect();
        let mut out = String::new();
        for (i, header) in crate::sinks::driver::METRICS_HEADERS.iter().enumerate() {
            out.push_str(header);
            for l in &lines {
                out.push_str(&l[i]);
            }
        }
        out
    }

    /// `(accepted, rejected)` tick counts.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}
