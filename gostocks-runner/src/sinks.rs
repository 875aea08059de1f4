//! The outputs beyond the process: Redis (the speed layer) and the Kafka `stats` and
//! `alerts.triggered` topics. The dataflow hands every output to one task, which writes them in
//! pipelined batches and retries with backoff while a service is down, so an outage delays
//! outputs and loses none.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gostocks_connectors::kafka::TickProducer;
use gostocks_connectors::redis::{BAR_PREFIX, HashUpdate, PriceUpdate, RedisSink, STATS_PREFIX};
use gostocks_core::Symbol;
use gostocks_core::alerts::AlertEvent;
use gostocks_core::stats::{BarRow, StatsRow};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::state::LastPrice;

/// One output of the dataflow.
#[derive(Clone, Debug)]
pub enum Output {
    /// A symbol's new last price.
    Price(Symbol, LastPrice),
    /// A stats changelog row.
    Stats(StatsRow),
    /// A final bar.
    Bar(BarRow),
    /// A recorded alert event.
    Event(AlertEvent),
    /// Every output of a grid time below this came before this mark.
    Mark(u64),
}

/// Where outputs go.
pub struct Sinks {
    /// The speed layer.
    pub redis: Option<RedisSink>,
    /// The producer for the stats and alert-event topics.
    pub kafka: Option<TickProducer>,
    /// The stats changelog topic (`stats`).
    pub stats_topic: String,
    /// The alert events topic (`alerts.triggered`).
    pub alerts_topic: String,
    /// Window labels by index.
    pub windows: Vec<String>,
    /// Bar labels by index.
    pub bars: Vec<String>,
}

/// A JSON object's fields as text (null as an empty string), for a Redis hash.
fn fields(json: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    map.into_iter()
        .filter(|(k, _)| k != "time_ns")
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

async fn retry<F, Fut, T>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(error) => {
                tracing::warn!(sink = what, error = format!("{error:#}"), retry_in = ?backoff, "writing outputs failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Sinks {
    /// Writes everything `rx` delivers until it closes. Each sink runs on its own task with
    /// its own queue, so an outage of one delays only its outputs.
    pub async fn run(self, mut rx: UnboundedReceiver<Output>, cells: Vec<Arc<AtomicU64>>) {
        let Sinks {
            redis,
            kafka,
            stats_topic,
            alerts_topic,
            windows,
            bars,
        } = self;
        let mut queues = Vec::new();
        for which in 0..2 {
            let sink = Sinks {
                redis: if which == 0 { redis.clone() } else { None },
                kafka: if which == 1 { kafka.clone() } else { None },
                stats_topic: stats_topic.clone(),
                alerts_topic: alerts_topic.clone(),
                windows: windows.clone(),
                bars: bars.clone(),
            };
            if sink.redis.is_none() && sink.kafka.is_none() {
                continue;
            }
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            queues.push(tx);
            let cell = cells.get(which).cloned().unwrap_or_default();
            tokio::spawn(sink.drain(rx, cell));
        }
        while let Some(o) = rx.recv().await {
            for q in &queues {
                let _ = q.send(o.clone());
            }
        }
    }

    async fn drain(self, mut rx: UnboundedReceiver<Output>, written: Arc<AtomicU64>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.clear();
            batch.push(first);
            while batch.len() < 50_000 {
                match rx.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
            self.write(&batch).await;
            // Written: every output before the batch's last mark is durable in this sink.
            if let Some(m) = batch
                .iter()
                .filter_map(|o| match o {
                    Output::Mark(t) => Some(*t),
                    _ => None,
                })
                .max()
            {
                written.fetch_max(m, Ordering::Relaxed);
            }
        }
    }

    async fn write(&self, batch: &[Output]) {
        if let Some(redis) = &self.redis {
            // Coalesced: only the newest value of each key is written.
            let mut prices: HashMap<Symbol, PriceUpdate> = HashMap::new();
            let mut hashes: HashMap<String, HashUpdate> = HashMap::new();
            let mut line = String::new();
            for o in batch {
                match o {
                    Output::Price(sym, p) => {
                        let u = PriceUpdate {
                            symbol: sym.to_string(),
                            price: p.price.to_string(),
                            time_ns: p.time_ns as i64,
                            seq: p.seq,
                        };
                        if prices
                            .get(sym)
                            .is_none_or(|old| (old.time_ns, old.seq) <= (u.time_ns, u.seq))
                        {
                            prices.insert(*sym, u);
                        }
                    }
                    Output::Stats(row) => {
                        let label = &self.windows[row.window as usize];
                        line.clear();
                        row.write_json(&mut line, label);
                        let key = format!("{STATS_PREFIX}{}:{label}", row.symbol);
                        let u = HashUpdate {
                            key: key.clone(),
                            symbol: row.symbol.to_string(),
                            time_ns: row.time_ns as i64,
                            fields: fields(&line),
                        };
                        hashes.insert(key, u);
                    }
                    Output::Bar(row) => {
                        let label = &self.bars[row.bar as usize];
                        line.clear();
                        row.write_json(&mut line, label);
                        let key = format!("{BAR_PREFIX}{}:{label}", row.symbol);
                        let mut f = fields(&line);
                        f.push(("start_ns".into(), row.start_ns.to_string()));
                        hashes.insert(
                            key.clone(),
                            HashUpdate {
                                key,
                                symbol: row.symbol.to_string(),
                                time_ns: row.start_ns as i64,
                                fields: f,
                            },
                        );
                    }
                    Output::Event(_) | Output::Mark(_) => {}
                }
            }
            let prices: Vec<PriceUpdate> = prices.into_values().collect();
            let hashes: Vec<HashUpdate> = hashes.into_values().collect();
            retry("redis", || async {
                redis.write_prices(&prices).await?;
                redis.write_hashes(&hashes).await?;
                Ok(())
            })
            .await;
        }
        if let Some(kafka) = &self.kafka {
            let mut line = String::new();
            let mut records: Vec<(&str, Vec<u8>, Vec<u8>)> = Vec::new();
            let (stats_topic, alerts_topic) =
                (self.stats_topic.as_str(), self.alerts_topic.as_str());
            for o in batch {
                match o {
                    Output::Stats(row) => {
                        line.clear();
                        row.write_json(&mut line, &self.windows[row.window as usize]);
                        records.push((
                            stats_topic,
                            row.symbol.as_str().as_bytes().to_vec(),
                            line.as_bytes().to_vec(),
                        ));
                    }
                    Output::Event(e) => records.push((
                        alerts_topic,
                        e.symbol.as_str().as_bytes().to_vec(),
                        e.to_json().into_bytes(),
                    )),
                    Output::Price(..) | Output::Bar(_) | Output::Mark(_) => {}
                }
            }
            for chunk in records.chunks(10_000) {
                retry("kafka", || async {
                    let sends: Vec<_> = chunk
                        .iter()
                        .map(|(topic, key, payload)| {
                            kafka.send_record(topic, key.clone(), payload.clone())
                        })
                        .collect();
                    for r in futures::future::join_all(sends).await {
                        r?;
                    }
                    Ok(())
                })
                .await;
            }
        }
    }
}
