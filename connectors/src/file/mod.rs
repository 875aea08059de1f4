//! Recorded ticks in files: the canonical JSON lines, plain CSV, LOBSTER message files, Binance
//! trade CSVs and raw WebSocket sessions of Binance, Finnhub and Alpaca (a local receive time and
//! a frame per line, as `gostocks ingest --record` writes them; gzip or plain).
//!
//! ```
//! use gostocks_connectors::file::{Format, TickFile};
//! let dir = std::env::temp_dir().join(format!("gostocks-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("t.csv");
//! std::fs::write(&path, "symbol,time_ns,seq,price,size\nAAPL,1,0,585.33,100\nAAPL,2,1,oops,1\n").unwrap();
//! let mut file = TickFile::open(&path, Format::Auto).unwrap();
//! assert_eq!(file.format(), Format::Csv);
//! let records: Vec<_> = file.by_ref().collect();
//! assert_eq!(records[0].as_ref().unwrap().price.to_string(), "585.33");
//! assert!(records[1].as_ref().unwrap_err().reason.to_string().contains("oops"));
//! assert_eq!(file.counts().rejected, 1);
//! ```

pub(crate) mod eastern;
mod parts;
pub(crate) mod quotes;
mod source;

pub use parts::{Part, split};
pub use quotes::{QuoteCounts, QuoteFile, QuoteRejected};
pub use source::{FileCounts, Opener, Record, Rejected, TickFile};

use std::fmt;
use std::str::FromStr;

/// A recorded-tick file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// Detect from the file name and first line.
    Auto,
    /// The canonical JSON tick form, one object per line.
    Jsonl,
    /// CSV with a header naming at least `symbol,time_ns,seq,price,size`.
    Csv,
    /// LOBSTER `*_message_<L>.csv` files; trades are event types 4 and 5.
    Lobster,
    /// The trade CSV of Binance sessions (`local_recv_ts,event_time_ms,trade_time_ms,...`).
    BinanceTrades,
    /// Raw Binance WebSocket sessions: `<local receive ts> <frame>` per line, gzip or plain.
    BinanceRaw,
    /// Raw Finnhub WebSocket sessions, as `gostocks ingest --record` writes them.
    FinnhubRaw,
    /// Raw Alpaca WebSocket sessions, as `gostocks ingest --record` writes them.
    AlpacaRaw,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Ok(match s {
            "auto" => Format::Auto,
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            "lobster" => Format::Lobster,
            "binance-trades" => Format::BinanceTrades,
            "binance-raw" => Format::BinanceRaw,
            "finnhub-raw" => Format::FinnhubRaw,
            "alpaca-raw" => Format::AlpacaRaw,
            other => {
                return Err(format!(
                    "unknown format `{other}`: use auto, jsonl, csv, lobster, binance-trades, binance-raw, finnhub-raw or alpaca-raw"
                ));
            }
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Lobster => "lobster",
            Format::BinanceTrades => "binance-trades",
            Format::BinanceRaw => "binance-raw",
            Format::FinnhubRaw => "finnhub-raw",
            Format::AlpacaRaw => "alpaca-raw",
        })
    }
}
