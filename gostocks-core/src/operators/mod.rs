//! Dataflow operators: extension traits over timely streams and differential collections, each
//! with its name string, and [`analytics`], which wires the ones the analytics use. The maths
//! they apply lives in [`crate::indicators`].
//!
//! - [`sequence`]: [`Sequence`] (trades in order, each with its predecessor) and
//!   [`SequenceCells`] (the same pass folding them into [`Cell`]s, defined in [`cells`]);
//! - [`window_stats`]: [`WindowStats`], the stats changelog, whose sums are arranged by the
//!   [`WindowBatcher`] of [`window_batcher`];
//! - [`bars`]: [`Bars`] and [`BarEma`];
//! - [`last_price`], [`alerts`] ([`MatchAlerts`]) and [`emit`] ([`EmitOrdered`]).
//!
//! Where an operator has a `_core` variant (crate-private, taking the most general arguments,
//! such as the exchange pact), [`analytics`] calls it, and the public method is a thin wrapper.

pub mod alerts;
pub mod bars;
pub mod cells;
pub mod emit;
mod fold;
pub mod last_price;
mod route;
pub mod sequence;
mod stash;
mod symbol_ids;
pub mod window_batcher;
pub mod window_stats;

pub use alerts::MatchAlerts;
pub use bars::{BarEma, Bars};
pub use cells::{Cell, Partial};
pub use emit::EmitOrdered;
pub use last_price::LastPrice;
pub use route::symbol_route;
pub use sequence::{Point, Sequence, SequenceCells, Sequenced};
pub use window_batcher::{WindowBatcher, WindowEntry, WindowKey};
pub use window_stats::{WindowChange, WindowStats};

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;

use crate::stats::{AnalyticsConfig, BarRow, StatsRow};
use crate::tick::Trade;

/// The outputs of [`analytics`].
#[non_exhaustive]
pub struct Analytics<'scope> {
    /// The stats changelog, emitted as each grid time becomes final.
    pub stats: StreamVec<'scope, u64, StatsRow>,
    /// Final bars with their EMA.
    pub bars: StreamVec<'scope, u64, BarRow>,
    /// The sequenced trades (for alert matching and live feeds), when asked for.
    pub sequenced: Option<StreamVec<'scope, u64, Sequenced>>,
}

/// The whole analytics dataflow of the contract over trades placed at their grid times:
/// sequence per symbol and fold into cells (in one pass, [`SequenceCells`]), window stats with
/// the last price ([`WindowStats`]), bars ([`Bars`]) with their EMA ([`BarEma`]), each through
/// its `_core` variant: the cells stay on their symbol's worker, folded as they are made. The sequenced trades come out too when
/// `keep_sequenced` (alert matching needs them; producing them costs a record per trade).
///
/// # Examples
/// ```
/// use gostocks_core::operators::analytics;
/// use gostocks_core::stats::AnalyticsConfig;
/// use gostocks_core::{Symbol, Trade};
/// use timely::dataflow::operators::{Capture, capture::Extract};
/// use timely::dataflow::operators::Input;
///
/// let captured = timely::example(|scope| {
///     let (mut input, trades) = scope.new_input::<Vec<Trade>>();
///     let out = analytics(trades, &AnalyticsConfig::default(), false);
///     let sec = 1_000_000_000u64;
///     for (t, price) in [(sec / 2, "10"), (sec, "11"), (3 * sec / 2, "12")] {
///         // Each trade is placed at its grid time; the input only promises not to go below t.
///         input.advance_to(t);
///         input.send(Trade::new(Symbol::new("X").unwrap(), t, 0,
///             price.parse().unwrap(), "1".parse().unwrap()));
///     }
///     input.close();
///     assert!(out.sequenced.is_none());
///     out.stats.capture()
/// });
/// let rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
/// // 60s window at t = 1s: ticks at 0.5s and 1s.
/// let first = rows.iter().find(|r| r.window == 0 && r.time_ns == 1_000_000_000).unwrap();
/// assert_eq!(first.core.unwrap().agg.count, 2);
/// assert_eq!(first.last.unwrap().to_string(), "11");
/// // 61s later the 60s window has emptied again: a row with no content.
/// let last = rows.iter().filter(|r| r.window == 0).last().unwrap();
/// assert_eq!((last.time_ns, last.core), (62_000_000_000, None));
/// ```
pub fn analytics<'scope>(
    trades: StreamVec<'scope, u64, Trade>,
    config: &AnalyticsConfig,
    keep_sequenced: bool,
) -> Analytics<'scope> {
    analytics_core(trades, config, keep_sequenced, None)
}

/// [`analytics`], with the sequenced trades' containers taken from `spares` where the alert
/// matcher gave them back.
pub(crate) fn analytics_core<'scope>(
    trades: StreamVec<'scope, u64, Trade>,
    config: &AnalyticsConfig,
    keep_sequenced: bool,
    spares: Option<sequence::Spares>,
) -> Analytics<'scope> {
    // Each worker sequences the trades of its symbols and folds them into cells, and the
    // cells at once into what the windows' sums, their extremes and the bars need: nothing
    // downstream moves.
    let folds = (
        window_stats::EntriesFold,
        window_stats::ChangesFold,
        bars::BarsFold::new(&config.bars),
    );
    let (entries, changes, bar_parts, sequenced) = sequence::sequence_cells_core(
        trades,
        config.resolution.ns(),
        &config.bars,
        keep_sequenced,
        spares,
        folds,
    );
    let stats = window_stats::window_changelog_core(entries, changes, &config.windows);
    let bar_cores = bars::bar_cores_core(bar_parts, Pipeline);
    let bars = bars::with_ema_core(bar_cores, config.ema_span, Pipeline);
    Analytics {
        stats,
        bars,
        sequenced,
    }
}
