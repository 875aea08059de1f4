//! `run --kafka --quotes-topic`: the quotes topic through the [`QuoteEngine`] into Redis, beside
//! the tick dataflow.
//!
//! The statistics are derived from the topic alone, so the feed keeps no offsets: each start
//! reads the topic from its beginning (a consumer group of its own, never committed) and
//! rebuilds them; Redis's `time_ns` guard keeps a rebuilt hash from going back in time. Event
//! time is the partitions' watermarks, as for ticks ([`Sources`]): a partition silent for
//! `--idle` stops holding time back, and once all are silent everything seen is final.
//!
//! The alerts judged on quotes (`spread_above`) are matched here too: the alert hub sends
//! their rule changes to the feed, and their events go to the sinks as the dataflow's do.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use gostocks_connectors::kafka::{
    KafkaConfig, TickConsumer, TickEncoding, TickProducer, decode_quote,
};
use gostocks_connectors::limits::check_record_len;
use gostocks_connectors::redis::{HashUpdate, RedisSink};
use gostocks_core::quotes::{MidBarRow, QuoteEngine, QuoteStatsRow};
use gostocks_core::stats::{AnalyticsConfig, JsonDecimals};
use rdkafka::Message;
use tracing::{debug, info, warn};

use crate::alerts::RuleChange;
use crate::event_time::Sources;
use crate::sinks::Output;

/// Key prefix of the quote statistics hashes: `quote:<SYMBOL>:<window>`.
pub const QUOTE_PREFIX: &str = "quote:";
/// Key prefix of the mid bar hashes: `midbar:<SYMBOL>:<size>` (the latest final bar).
pub const MID_BAR_PREFIX: &str = "midbar:";

/// How often the feed moves event time on and writes what became final.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// What the feed reads and where it writes.
pub struct QuoteFeed {
    /// The Kafka client settings (brokers, options); the group is the feed's own.
    pub kafka: KafkaConfig,
    /// The quotes topic.
    pub topic: String,
    /// Record encoding.
    pub encoding: TickEncoding,
    /// Longest record taken.
    pub max_record_bytes: usize,
    /// Windows, bars, resolution and lateness.
    pub config: AnalyticsConfig,
    /// A partition silent this long stops holding event time back.
    pub idle: Duration,
    /// Where the rows go.
    pub redis: RedisSink,
    /// And the changelog: a producer and its topic.
    pub changelog: (TickProducer, String),
    /// The alert rules judged on quotes (`spread_above`), as the alert hub changes them.
    /// (In a mutex, so that the feed is `Sync` across its awaits; only the feed locks it.)
    pub rules: std::sync::Mutex<std::sync::mpsc::Receiver<RuleChange>>,
    /// Where their events go: the sinks' queue, as the dataflow's events.
    pub events: tokio::sync::mpsc::Sender<Output>,
    /// The runner's state: the feed lists there the symbols it has statistics for.
    pub state: std::sync::Arc<crate::state::MarketState>,
}

impl QuoteFeed {
    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        *self
            .state
            .quote_symbols
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Default::default());
        let consumer = TickConsumer::subscribe(&self.kafka, &[&self.topic])
            .with_context(|| format!("subscribing to the quotes topic {}", self.topic))?;
        let mut stream = consumer.consumer.stream();
        let res = self.config.resolution.ns();
        let mut sources = Sources::new(self.config.lateness, res, self.idle);
        let mut engine = QuoteEngine::new(self.config.clone(), 1);
        let windows: Vec<String> = self
            .config
            .windows
            .iter()
            .map(ToString::to_string)
            .collect();
        let bars: Vec<String> = self.config.bars.iter().map(ToString::to_string).collect();
        let (mut quotes, mut late, mut rejected, mut written) = (0u64, 0u64, 0u64, 0usize);
        let mut fired = 0u64;
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        info!(topic = %self.topic, "reading quotes from kafka");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = flush.tick() => {
                    let now = Instant::now();
                    let frontier = sources
                        .active_time(now)
                        .or_else(|| sources.closed_time())
                        .unwrap_or(0);
                    // Rule changes apply to the quotes not yet final.
                    let changes: Vec<RuleChange> = self
                        .rules
                        .lock()
                        .map(|rx| rx.try_iter().collect())
                        .unwrap_or_default();
                    for (rule, diff) in changes {
                        engine.change_rule(rule, engine.final_below(), diff);
                    }
                    let (rows, mid_bars) = engine.advance_to(frontier);
                    for event in engine.take_events() {
                        fired += 1;
                        // Bounded: a slow store holds the feed back. Err: the sinks stopped.
                        if self.events.send(Output::Event(event)).await.is_err() {
                            break;
                        }
                    }
                    if rows.is_empty() && mid_bars.is_empty() {
                        continue;
                    }
                    if let Some(set) = self
                        .state
                        .quote_symbols
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_mut()
                    {
                        set.extend(rows.iter().map(|r| r.symbol));
                    }
                    self.publish(&rows, &windows).await;
                    let updates = updates(&rows, &mid_bars, &windows, &bars);
                    match self.redis.write_hashes(&updates).await {
                        Ok(n) => written += n,
                        // Redis is the speed layer: the next rows overwrite these.
                        Err(e) => warn!(error = %e, rows = updates.len(), "quote statistics not written to Redis"),
                    }
                    debug!(quotes, late, rejected, written, fired, "quote feed");
                }
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            warn!(error = %e, "reading the quotes topic; going on");
                            continue;
                        }
                    };
                    let payload = msg.payload().unwrap_or_default();
                    let quote = check_record_len(payload.len(), self.max_record_bytes)
                        .and_then(|()| decode_quote(payload, self.encoding));
                    let quote = match quote {
                        Ok(q) => q,
                        Err(reason) => {
                            rejected += 1;
                            warn!(partition = msg.partition(), offset = msg.offset(), reason = %reason, "quote record refused");
                            continue;
                        }
                    };
                    let admitted = sources
                        .admit(msg.partition() as u32, quote.time_ns, Instant::now())
                        .and_then(|_| engine.push_admitted(quote));
                    match admitted {
                        Ok(()) => quotes += 1,
                        Err(why) => {
                            late += 1;
                            debug!(symbol = %quote.symbol, reason = %why, "late quote");
                        }
                    }
                }
            }
        }
        info!(quotes, late, rejected, written, fired, "quote feed stopped");
        Ok(())
    }

    /// Sends the rows to the changelog topic, each a JSON line keyed by its symbol, and waits
    /// for the broker (the producer retries on its own; a row it gives up on is logged).
    async fn publish(&self, rows: &[QuoteStatsRow], windows: &[String]) {
        let (producer, topic) = &self.changelog;
        let sends = rows.iter().map(|r| {
            let mut line = String::new();
            r.write_json(&mut line, &windows[usize::from(r.window)]);
            producer.send_record(
                topic,
                r.symbol.as_str().as_bytes().to_vec(),
                line.into_bytes(),
            )
        });
        for result in futures::future::join_all(sends).await {
            if let Err(e) = result {
                warn!(topic = %topic, error = %e, "a quote statistics row was not delivered");
            }
        }
    }
}

/// The Redis hashes of quote rows and mid bars: every field of the row's JSON form as text
/// (decimals exact), an absent value as an empty string.
fn updates(
    rows: &[QuoteStatsRow],
    mid_bars: &[MidBarRow],
    windows: &[String],
    bars: &[String],
) -> Vec<HashUpdate> {
    let fields = |line: &str| -> Vec<(String, String)> {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_default();
        v.into_iter()
            .filter(|(k, _)| k != "time_ns")
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect()
    };
    let mut out = Vec::with_capacity(rows.len() + mid_bars.len());
    let mut line = String::new();
    for r in rows {
        let label = &windows[usize::from(r.window)];
        line.clear();
        r.write_json_as(&mut line, label, JsonDecimals::Strings);
        out.push(HashUpdate {
            key: format!("{QUOTE_PREFIX}{}:{label}", r.symbol),
            symbol: r.symbol.to_string(),
            time_ns: i64::try_from(r.time_ns).unwrap_or(i64::MAX),
            fields: fields(&line),
        });
    }
    for b in mid_bars {
        let label = &bars[usize::from(b.bar)];
        line.clear();
        b.write_json_as(&mut line, label, JsonDecimals::Strings);
        out.push(HashUpdate {
            key: format!("{MID_BAR_PREFIX}{}:{label}", b.symbol),
            symbol: b.symbol.to_string(),
            time_ns: i64::try_from(b.start_ns).unwrap_or(i64::MAX),
            fields: fields(&line),
        });
    }
    out
}
