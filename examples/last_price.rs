//! Run with: cargo run -p gostocks-examples --example last_price
//!
//! Streams the first 20 seconds of the bundled recording through a small dataflow, one second of
//! event time per timestamp, and prints each symbol's last price whenever it changes: the
//! incremental output of `last_price`, consolidated per second.

use std::cell::RefCell;
use std::rc::Rc;

use gostocks_core::operators::{LastPrice, Sequence};
use timely::dataflow::operators::Input;

fn main() {
    let trades = gostocks_examples::load_recording();
    let first_second = trades[0].time_ns / 1_000_000_000;
    timely::execute_directly(move |worker| {
        let changes = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&changes);
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<gostocks_core::Trade>>();
            stream.sequence().last_price().consolidate().inspect(
                move |((symbol, point), second, diff)| {
                    // A `+1` is the new last price; the `-1` it comes with retracts the old one.
                    if *diff > 0 {
                        sink.borrow_mut().push((*second, *symbol, point.price));
                    }
                },
            );
            input
        });
        for trade in trades
            .iter()
            .filter(|t| t.time_ns / 1_000_000_000 < first_second + 20)
        {
            let second = trade.time_ns / 1_000_000_000 - first_second + 1;
            if second > *input.time() {
                input.advance_to(second);
            }
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
