//! Run with: cargo run -p gostocks-examples --example last_price
//!
//! Streams the first 20 seconds of the bundled recording through a small dataflow on a 1-second
//! grid, and prints each symbol's last price whenever it changes: the incremental output of
//! `last_price`, consolidated per grid time.

use std::cell::RefCell;
use std::rc::Rc;

use gostocks_core::operators::{LastPrice, Sequence};
use timely::dataflow::operators::Input;

const SECOND: u64 = 1_000_000_000;

fn main() {
    let trades = gostocks_examples::load_recording();
    let start = trades[0].time_ns / SECOND * SECOND;
    timely::execute_directly(move |worker| {
        let changes = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&changes);
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<gostocks_core::Trade>>();
            stream.sequence(SECOND).last_price().consolidate().inspect(
                move |((symbol, point), time, diff)| {
                    // A `+1` is the new last price; the `-1` it comes with retracts the old one.
                    if *diff > 0 {
                        sink.borrow_mut()
                            .push(((time - start) / SECOND, *symbol, point.price));
                    }
                },
            );
            input
        });
        for trade in trades.iter().filter(|t| t.time_ns < start + 20 * SECOND) {
            // The recording is in time order: each trade's time bounds the ones after it.
            input.advance_to(trade.time_ns);
            input.send(*trade);
        }
        input.close();
        while worker.step() {}
        let mut changes = changes.borrow_mut();
        changes.sort();
        for (second, symbol, price) in changes.iter() {
            println!("t={second:>3}s  {symbol:<5} {price:>8}");
        }
    });
}
