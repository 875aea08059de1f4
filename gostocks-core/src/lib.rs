//! # gostocks-core
//!
//! Exact, incremental market analytics as [timely] and [differential-dataflow] operators. This
//! crate does no I/O: connectors feed it [`Trade`]s and read its collections.
//!
//! A tour of the main types:
//! - [`Fixed`]: an exact decimal (10⁻⁸ units in an `i64`) for prices and sizes;
//! - [`Symbol`]: an inline, `Copy` instrument symbol;
//! - [`Tick`]: the canonical trade record (JSON and protobuf), and [`Trade`], its validated
//!   dataflow form; [`Rejection`] says why a tick was refused;
//! - [`indicators`]: the maths ([`indicators::Agg`], exact window sums that add and retract);
//! - [`operators`]: extension traits that build the dataflow ([`operators::Sequence`],
//!   [`operators::LastPrice`], ...).
//!
//! # Example
//! The last price per symbol, maintained incrementally:
//! ```
//! use gostocks_core::operators::{LastPrice, Sequence};
//! use gostocks_core::Tick;
//! use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
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
//! let captured = timely::example(move |scope| {
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
//! [timely]: https://docs.rs/timely
//! [differential-dataflow]: https://docs.rs/differential-dataflow
#![forbid(missing_docs)]

pub mod alerts;
pub mod batch;
pub mod decimal;
pub mod indicators;
pub mod operators;
pub mod pipeline;
pub mod reference;
pub mod span;
pub mod stats;
pub mod symbol;
pub mod tick;
pub mod watermark;

pub use decimal::{DecimalError, Fixed};
pub use span::{Span, SpanError};
pub use symbol::{Symbol, SymbolError};
pub use tick::{Rejection, Side, Tick, Trade};
