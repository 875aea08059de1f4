//! Indicator maths as plain, exact code: no timely types here.
//!
//! Window sums travel through differential dataflow as [`Agg`] differences: every field is an
//! integer, so adding a tick at `t` and retracting it at `t + W` returns the window exactly to
//! where it was. Floating point appears only when a finished aggregate is turned into the
//! numbers users read ([`Agg::sma`], [`Agg::stddev`], ...).

mod agg;
mod ema;
mod tick_window;

pub use agg::{Agg, RETURN_SCALE, quantize_log_return};
pub use ema::Ema;
pub use tick_window::{Sums, TickWindow};
pub(crate) use tick_window::{TickWindows, VolatilitySquares, WindowView};
