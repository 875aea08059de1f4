//! The speed layer as a [`Sink`]: last prices and the latest stats and bar hashes, coalesced per
//! batch to the newest value of each key and written in pipelines of guarded scripts
//! ([`RedisSink`]).

use std::collections::HashMap;

use gostocks_connectors::redis::{BAR_PREFIX, HashUpdate, PriceUpdate, RedisSink, STATS_PREFIX};
use gostocks_core::Symbol;
use gostocks_core::stats::{BarRow, StatsRow};

use super::{Output, Sink, SinkError, Takes};

/// Writes prices, stats and bars to Redis.
pub struct Redis {
    redis: RedisSink,
    windows: Vec<String>,
    bars: Vec<String>,
}

impl Redis {
    /// A sink over `redis`; `windows` and `bars` are the labels by index.
    pub fn new(redis: RedisSink, windows: Vec<String>, bars: Vec<String>) -> Redis {
        Redis {
            redis,
            windows,
            bars,
        }
    }
}

/// A float field as the hash has always held it (JSON's shortest form; empty when absent).
fn float(v: Option<f64>) -> String {
    v.and_then(serde_json::Number::from_f64)
        .map_or_else(String::new, |n| n.to_string())
}

fn fixed(v: Option<gostocks_core::Fixed>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// The guarded write of one hash: `key` (without the sink's prefix), ordered by `time_ns`.
fn hash_update(
    key: String,
    symbol: &gostocks_core::Symbol,
    time_ns: u64,
    fields: Vec<(String, String)>,
) -> HashUpdate {
    HashUpdate {
        key,
        symbol: symbol.to_string(),
        time_ns: time_ns as i64,
        fields,
    }
}

/// The fields of a stats hash (all but `time_ns`, which the guarded write sets), built from
/// the row.
pub fn stats_fields(row: &StatsRow, label: &str) -> Vec<(String, String)> {
    let core = row.core.as_ref();
    let agg = core.map(|c| &c.agg);
    [
        ("symbol", row.symbol.to_string()),
        ("window", label.to_owned()),
        ("count", agg.map_or(0, |a| a.count).to_string()),
        (
            "volume",
            fixed(Some(
                agg.map_or(gostocks_core::Fixed::ZERO, |a| a.volume_fixed()),
            )),
        ),
        ("last", fixed(core.and(row.last))),
        ("min", fixed(core.map(|c| c.min))),
        ("max", fixed(core.map(|c| c.max))),
        ("sma", float(agg.and_then(|a| a.sma()))),
        ("vwap", float(agg.and_then(|a| a.vwap()))),
        ("stddev", float(agg.and_then(|a| a.stddev()))),
        ("volatility", float(agg.and_then(|a| a.volatility()))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The fields of a bar hash (all but `time_ns`), built from the row.
pub fn bar_fields(row: &BarRow, label: &str) -> Vec<(String, String)> {
    let c = &row.core;
    [
        ("symbol", row.symbol.to_string()),
        ("bar", label.to_owned()),
        ("start_ns", row.start_ns.to_string()),
        ("open", c.open.to_string()),
        ("high", c.high.to_string()),
        ("low", c.low.to_string()),
        ("close", c.close.to_string()),
        ("volume", c.agg.volume_fixed().to_string()),
        ("count", c.agg.count.to_string()),
        ("vwap", float(c.agg.vwap())),
        ("ema", float(Some(row.ema))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Sink for Redis {
    fn name(&self) -> &str {
        "redis"
    }

    fn takes(&self) -> Takes {
        Takes {
            events: false,
            ..Takes::ALL
        }
    }

    async fn write(&mut self, batch: &[Output]) -> Result<(), SinkError> {
        // Coalesced: only the newest value of each key is written.
        let mut prices: HashMap<Symbol, PriceUpdate> = HashMap::new();
        let mut hashes: HashMap<String, HashUpdate> = HashMap::new();
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
                    let u = hash_update(
                        format!("{STATS_PREFIX}{}:{label}", row.symbol),
                        &row.symbol,
                        row.time_ns,
                        stats_fields(row, label),
                    );
                    hashes.insert(u.key.clone(), u);
                }
                Output::Bar(row) => {
                    let label = &self.bars[row.bar as usize];
                    let u = hash_update(
                        format!("{BAR_PREFIX}{}:{label}", row.symbol),
                        &row.symbol,
                        row.start_ns,
                        bar_fields(row, label),
                    );
                    hashes.insert(u.key.clone(), u);
                }
                Output::Event(_) | Output::Mark(_) => {}
            }
        }
        let prices: Vec<PriceUpdate> = prices.into_values().collect();
        let hashes: Vec<HashUpdate> = hashes.into_values().collect();
        // One round trip for both.
        self.redis.write(&prices, &hashes).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gostocks_core::indicators::Agg;
    use gostocks_core::stats::WindowCore;

    /// The fields are what the JSON line says, as text (what the hash held when it was filled
    /// by parsing the line).
    fn via_json(line: &str) -> Vec<(String, String)> {
        let serde_json::Value::Object(map) = serde_json::from_str(line).expect("json") else {
            panic!("an object");
        };
        let mut f: Vec<(String, String)> = map
            .into_iter()
            .filter(|(k, _)| k != "time_ns")
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        f.sort();
        f
    }

    #[test]
    fn hash_fields_equal_the_json_lines_fields() {
        let p = |s: &str| s.parse::<gostocks_core::Fixed>().expect("fixed");
        let symbol = Symbol::new("AAPL").expect("symbol");
        let mut agg = Agg::tick(p("185.25"), p("3"), 1, None);
        agg += Agg::tick(p("185.5"), p("2"), 2, Some(1));
        let core = WindowCore::new(agg, p("185.25"), p("185.5"));
        let full = StatsRow::new(1_000, symbol, 0, Some(core), Some(p("185.5")));
        let empty = StatsRow::new(1_000, symbol, 0, None, None);
        for row in [full, empty] {
            let mut line = String::new();
            row.write_json(&mut line, "60s");
            let mut got = stats_fields(&row, "60s");
            got.sort();
            assert_eq!(got, via_json(&line), "{line}");
        }
    }
}
