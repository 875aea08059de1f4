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
//!     trades.to_stream(scope).sequence().last_price().consolidate().inner.capture()
//! });
//! let mut last: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v)
//!     .map(|((sym, point), _time, _diff)| format!("{sym} {}", point.price))
//!     .collect();
//! last.sort();
//! assert_eq!(last, ["AAPL 585.1", "GOOG 565.2"]);
//! ```
//!
//! [timely]: https://docs.rs/timely
//! [differential-dataflow]: https://docs.rs/differential-dataflow
#![forbid(missing_docs)]

pub mod decimal;
pub mod feed;
pub mod indicators;
pub mod operators;
pub mod span;
pub mod stats;
pub mod symbol;
pub mod tick;

pub use decimal::{DecimalError, Fixed};
pub use span::{Span, SpanError};
pub use symbol::{Symbol, SymbolError};
pub use tick::{Rejection, Side, Tick, Trade};
