//! Run with: cargo run -p gostocks-examples --example alert_rules
//!
//! Alert rules changed while ticks flow. The pipeline is built with alerts on; its second input
//! is the collection of rules, changed by `(rule, time, diff)` updates: `+1` inserts a rule from
//! a grid time on, `-1` retracts it. An update of a rule is a retraction of the old version and
//! an insertion of the new one at the same time; a deletion is a retraction.
//!
//! A `rearm` rule on AAPL is created 60 s into the recording, its threshold lowered at 150 s as
//! the price falls, and deleted at 240 s. This prints every event as the pipeline emits it, and checks them all
//! against a plain simulation of the rule over the file.

use std::cell::RefCell;
use std::rc::Rc;

use gostocks_core::alerts::{AlertEvent, AlertRule, Condition, Mode};
use gostocks_core::pipeline::build;
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Fixed, Symbol, Trade, timely};
use gostocks_examples::{SEC, load_recording, secs_since};

fn main() {
    let trades = load_recording();
    let start = trades[0].time_ns / SEC * SEC;
    let aapl = Symbol::new("AAPL").expect("symbol");
    let p = |s: &str| s.parse::<Fixed>().expect("decimal");
    // Fires when AAPL trades above the threshold; rearms once it is back 3 cents below.
    let created = AlertRule::new("aapl-high", aapl, Condition::PriceAbove, p("192.10"))
        .with_mode(Mode::Rearm)
        .with_hysteresis(p("0.03"))
        .with_storm(None);
    let updated = created.clone().with_threshold(p("191.75"));
    let (t_create, t_update, t_delete) = (start + 60 * SEC, start + 150 * SEC, start + 240 * SEC);
    // The rule changes, each at the grid time it takes effect.
    let changes = vec![
        (t_create, vec![(created.clone(), 1)]),
        (t_update, vec![(created.clone(), -1), (updated.clone(), 1)]),
        (t_delete, vec![(updated.clone(), -1)]),
    ];

    let input = trades.clone();
    let events = timely::execute_directly(move |worker| {
        let events = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&events);
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, outputs) = build(scope, &AnalyticsConfig::default(), true);
            outputs.in_order(
                |_stats| {},
                |_bars| {},
                move |batch: &mut Vec<AlertEvent>| {
                    for e in batch.drain(..) {
                        // Printed as they come out: each once its grid time is final.
                        println!("{:>7.3}s  {}", secs_since(start, e.time_ns), e.to_json());
                        sink.borrow_mut().push(e);
                    }
                },
            );
            inputs
        });
        let mut pending = changes.into_iter().peekable();
        for trade in input {
            let g = grid_ceil(trade.time_ns, SEC);
            // Rule changes due by this trade's grid time go in first, at their own times.
            while let Some((at, _)) = pending.peek().filter(|(at, _)| *at <= g) {
                inputs.rules.advance_to(*at);
                let (at, batch) = pending.next().expect("peeked");
                println!(
                    "{:>7.3}s  rules: {}",
                    secs_since(start, at),
                    describe(&batch)
                );
                for (rule, diff) in batch {
                    inputs.rules.send((rule, at, diff));
                }
            }
            // Both inputs move on together: the pipeline's time passes only when both have.
            inputs.rules.advance_to(g);
            inputs.trades.advance_to(g);
            inputs.trades.send(trade);
            // Let the dataflow catch up now and then, so events print while ticks flow.
            worker.step();
        }
        drop(inputs);
        while worker.step() {}
        events.take()
    });

    let want = simulate(
        &trades,
        &[
            (t_create, t_update, &created),
            (t_update, t_delete, &updated),
        ],
    );
    let got: Vec<(u64, u64, Fixed)> = events.iter().map(|e| (e.time_ns, e.seq, e.price)).collect();
    assert_eq!(got, want, "the events are the rule's, version by version");
    let fired_in = |from, until| {
        got.iter()
            .filter(|(t, _, _)| grid_ceil(*t, SEC) >= from && grid_ceil(*t, SEC) < until)
            .count()
    };
    assert!(
        fired_in(t_create, t_update) > 0 && fired_in(t_update, t_delete) > 0,
        "both versions fire"
    );
    assert_eq!(
        got.iter()
            .filter(|(t, _, _)| grid_ceil(*t, SEC) >= t_delete)
            .count(),
        0,
        "nothing after the deletion"
    );
    println!(
        "{} events, each one the simulation of the rule over the file expects",
        got.len()
    );
}

fn describe(batch: &[(AlertRule, isize)]) -> String {
    let parts: Vec<String> = batch
        .iter()
        .map(|(r, d)| {
            format!(
                "{} {} {} > {}",
                if *d > 0 { "insert" } else { "retract" },
                r.id,
                r.symbol,
                r.threshold
            )
        })
        .collect();
    parts.join(", ")
}

/// Each version of the rule over AAPL's trades of grid times `[from, until)`: a `rearm` rule
/// starts armed, fires on a price above the threshold, and rearms at or below threshold minus
/// hysteresis. Returns `(time, seq, price)` of each firing.
fn simulate(trades: &[Trade], versions: &[(u64, u64, &AlertRule)]) -> Vec<(u64, u64, Fixed)> {
    let mut out = Vec::new();
    for (from, until, rule) in versions {
        let mut armed = true;
        let rearm_at = Fixed::from_units(rule.threshold.units() - rule.hysteresis.units());
        for t in trades.iter().filter(|t| t.symbol == rule.symbol) {
            let g = grid_ceil(t.time_ns, SEC);
            if g < *from || g >= *until {
                continue;
            }
            if armed && t.price > rule.threshold {
                out.push((t.time_ns, t.seq, t.price));
                armed = false;
            } else if !armed && t.price <= rearm_at {
                armed = true;
            }
        }
    }
    out
}
