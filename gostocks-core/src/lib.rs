//! # gostocks-core
//!
//! Exact, incremental market analytics as [timely] and [differential-dataflow] operators. This
//! crate does no I/O: connectors feed it [`Trade`]s and read its collections.
//!
//! The types you meet first:
//! - [`Fixed`]: an exact decimal (8 places) for prices and sizes; parsed, never rounded;
//! - [`Symbol`]: an inline, `Copy` instrument symbol;
//! - [`Tick`]: the canonical trade record (JSON and protobuf), and [`Trade`], its validated
//!   dataflow form; [`Rejection`] says why a tick was refused;
//! - [`stats::AnalyticsConfig`]: the windows, grid, bars and EMA to compute, and the rows that
//!   come out ([`stats::StatsRow`], [`stats::BarRow`], [`alerts::AlertEvent`]);
//! - [`pipeline::build`]: the whole analytics on a timely scope, with [`pipeline::Sink`] to take
//!   its rows; [`batch::run_batch`] runs it over trades in memory;
//! - [`alerts`]: rules and their semantics; [`indicators`]: the maths (exact window sums that
//!   add and retract); [`operators`]: the dataflow building blocks.
//!
//! The crate re-exports the [`timely`] and [`differential_dataflow`] versions its API uses:
//! build your dataflows with `gostocks_core::timely` so that the versions always agree.
//!
//! # First steps
//! What a user does first: (1) read ticks and validate them, (2) choose what to compute, (3)
//! run the analytics and read the rows.
//! ```
//! use gostocks_core::batch::{Outputs, run_batch};
//! use gostocks_core::stats::AnalyticsConfig;
//! use gostocks_core::{Span, Tick};
//!
//! // 1. Ticks in their canonical JSON form, validated into trades (a bad one says why).
//! let lines = [
//!     r#"{"symbol":"AAPL","price":"585.00","size":"200","time_ns":1000000000,"seq":0}"#,
//!     r#"{"symbol":"AAPL","price":"585.10","size":"100","time_ns":1500000000,"seq":1}"#,
//!     r#"{"symbol":"GOOG","price":"565.20","size":"10","time_ns":2000000000,"seq":2}"#,
//! ];
//! let trades: Vec<_> = lines
//!     .iter()
//!     .map(|l| serde_json::from_str::<Tick>(l).unwrap().validate().unwrap())
//!     .collect();
//! let bad: Tick = serde_json::from_str(r#"{"symbol":"X","price":"-1","size":"1","time_ns":0,"seq":0}"#).unwrap();
//! assert_eq!(bad.validate().unwrap_err().to_string(), "price must be > 0, got -1");
//!
//! // 2. A 10-second sliding window on a 1-second grid.
//! let config = AnalyticsConfig::default().with_windows(vec!["10s".parse::<Span>().unwrap()]);
//! config.validate().unwrap();
//!
//! // 3. Run it on one worker and read the stats changelog, in time order.
//! let out = run_batch(vec![trades], &config, 1, Outputs::Collect);
//! let aapl = out
//!     .stats
//!     .iter()
//!     .find(|r| r.symbol.as_str() == "AAPL" && r.time_ns == 2_000_000_000)
//!     .unwrap();
//! let window = aapl.core.unwrap();
//! assert_eq!((window.agg.count, window.agg.volume_fixed().to_string()), (2, "300".into()));
//! assert_eq!(aapl.last.unwrap().to_string(), "585.1");
//! // The VWAP: (585.00 * 200 + 585.10 * 100) / 300.
//! assert!((window.agg.vwap().unwrap() - 585.033333).abs() < 1e-6);
//! ```
//!
//! The incremental operators underneath can be used on their own; the last price per symbol:
//! ```
//! use gostocks_core::operators::{LastPrice, Sequence};
//! use gostocks_core::Tick;
//! use gostocks_core::timely::dataflow::operators::{Capture, ToStream, capture::Extract};
//!
//! let lines = [
//!     r#"{"symbol":"AAPL","price":"585.10","size":"100","time_ns":2,"seq":1}"#,
//!     r#"{"symbol":"AAPL","price":"585.00","size":"200","time_ns":1,"seq":0}"#,
//!     r#"{"symbol":"GOOG","price":"565.20","size":"10","time_ns":1,"seq":2}"#,
//! ];
//! let trades: Vec<_> = lines
//!     .iter()
//!     .map(|l| serde_json::from_str::<Tick>(l).unwrap().validate().unwrap())
//!     .collect();
//! let captured = gostocks_core::timely::example(move |scope| {
//!     trades.to_stream(scope).sequence(1).last_price().consolidate().inner.capture()
//! });
//! // Accumulate the changes over all times: what remains is the current last price per symbol.
//! let mut state = std::collections::BTreeMap::new();
//! for ((sym, point), _time, diff) in captured.extract().into_iter().flat_map(|(_, v)| v) {
//!     *state.entry((sym.to_string(), point.price.to_string())).or_insert(0) += diff;
//! }
//! let last: Vec<_> = state.into_iter().filter(|(_, d)| *d != 0).map(|(k, _)| k).collect();
//! assert_eq!(last, [("AAPL".into(), "585.1".into()), ("GOOG".into(), "565.2".into())]);
//! ```
//!
//! # Features
//! - `testing`: the `reference` module, a from-scratch recomputation of the analytics that the tests
//!   compare the dataflow with. Not part of the stable API: it may change in any release.
//!
//! [timely]: https://docs.rs/timely
//! [differential-dataflow]: https://docs.rs/differential-dataflow
#![forbid(missing_docs)]

pub mod alerts;
pub mod batch;
pub mod decimal;
pub mod indicators;
pub mod operators;
pub mod pipeline;
pub mod quotes;
#[cfg(feature = "testing")]
pub mod reference;
pub mod span;
pub mod stats;
pub mod symbol;
pub mod tick;
pub mod watermark;

pub use decimal::{DecimalError, Fixed};
pub use differential_dataflow;
pub use span::{Span, SpanError};
pub use symbol::{Symbol, SymbolError};
pub use tick::{Rejection, Side, Tick, Trade};
pub use timely;

/// The README's code, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
