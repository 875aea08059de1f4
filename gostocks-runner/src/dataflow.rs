//! The dataflow `gostocks run` drives: trades in; the analytics (window stats, bars) and the
//! last price per symbol (an arrangement) out into [`MarketState`].

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gostocks_core::feed::grid_ceil;
use gostocks_core::operators::{LastPrice, analytics};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::{Tick, Trade};
use timely::dataflow::operators::{Input, Inspect, Probe};

use crate::state::MarketState;

/// Runs the dataflow on `workers` threads until `ticks` closes. Worker 0 reads the channel;
/// trades are routed to workers by symbol inside the dataflow.
pub fn run(
    workers: usize,
    config: AnalyticsConfig,
    ticks: Receiver<Vec<Tick>>,
    state: Arc<MarketState>,
) -> anyhow::Result<()> {
    let resolution = config.resolution.ns();
    let ticks = Arc::new(Mutex::new(Some(ticks)));
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let state_out = Arc::clone(&state);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, trades) = scope.new_input::<Vec<Trade>>();
            let out = analytics(trades, &config);
            let (stats_state, bars_state) = (Arc::clone(&state_out), Arc::clone(&state_out));
            let probe = out
                .stats
                .inspect(move |row| stats_state.apply_stats(row))
                .probe()
                .0;
            out.bars
                .inspect(move |row| bars_state.apply_bar(row))
                .probe_with(&probe);
            out.sequenced
                .last_price()
                .arrange_by_key_named("LastPriceBySymbol")
                .as_collection(|sym, point| (*sym, *point))
                .inspect(move |((sym, point), _time, diff)| {
                    if *diff > 0 {
                        state_out.apply_last(sym, point);
                    }
                })
                .probe_with(&probe);
            (input, probe)
        });
        let Some(rx) = (worker.index() == 0)
            .then(|| ticks.lock().ok().and_then(|mut r| r.take()))
            .flatten()
        else {
            // Other workers contribute no input: close theirs and serve the exchange.
            drop(input);
            while worker.step_or_park(None) {}
            return;
        };
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(batch) => {
                    for tick in batch {
                        match tick.validate() {
                            Ok(trade) => {
                                let time = grid_ceil(trade.time_ns, resolution);
                                // Replayed ticks arrive in event-time order, so none is late here.
                                if time > *input.time() {
                                    input.advance_to(time);
                                }
                                input.send(trade);
                                state.accepted.fetch_add(1, Ordering::Relaxed);
                                state.publish(tick);
                            }
                            Err(reason) => {
                                state.rejected.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(symbol = %tick.symbol, %reason, "rejected tick");
                            }
                        }
                    }
                    input.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while probe.less_than(input.time()) && worker.step() {}
            worker.step();
        }
        drop(input);
        while worker.step() {}
    })
    .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;
    drop(guards);
    Ok(())
}
