//! What the dataflow sends between the processes of a cluster crosses timely's wire as bincode:
//! every exchanged record must come back as it left. Runs the whole pipeline (analytics and
//! alerts of every condition and mode) on two workers that exchange serialized bytes
//! (`ProcessBinary`) and compares every output with one worker.

use std::sync::{Arc, Mutex};

use gostocks_core::alerts::{AlertEvent, AlertRule, Condition, Mode};
use gostocks_core::batch::{Outputs, run_batch_core};
use gostocks_core::pipeline::{Inputs, build};
use gostocks_core::stats::{AnalyticsConfig, BarRow, StatsRow};
use gostocks_core::{Fixed, Symbol, Trade};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEC: u64 = 1_000_000_000;

fn trades() -> Vec<Trade> {
    let symbols: Vec<Symbol> = ["AAA", "BBB", "CCC"]
        .iter()
        .map(|s| Symbol::new(s).unwrap())
        .collect();
    let mut rng = StdRng::seed_from_u64(11);
    let mut prices = [100_000_000i64; 3];
    let mut t = 1_700_000_000 * SEC;
    (0..20_000u64)
        .map(|seq| {
            t += rng.random_range(0..200_000_000);
            let s = rng.random_range(0..3);
            prices[s] = (prices[s] + rng.random_range(-300_000..=300_000)).max(1);
            Trade::new(
                symbols[s],
                t,
                seq,
                Fixed::from_units(prices[s]),
                Fixed::from_units(rng.random_range(1..1_000) * 100_000_000),
            )
        })
        .collect()
}

fn rules(trades: &[Trade]) -> Vec<(AlertRule, u64, isize)> {
    let mut out = Vec::new();
    for (i, condition) in Condition::ALL.into_iter().enumerate() {
        for (j, mode) in Mode::ALL.into_iter().enumerate() {
            let t = trades[(i * 7 + j) * 97];
            let threshold = if condition == Condition::VolatilityAbove {
                Fixed::from_units(50_000)
            } else if matches!(
                condition,
                Condition::ChangePctAbove | Condition::ChangePctBelow
            ) {
                Fixed::from_units(5_000_000) // 0.05 %
            } else if condition == Condition::VolumeAbove {
                Fixed::from_units(100 * 100_000_000)
            } else {
                t.price
            };
            let rule = AlertRule::new(format!("r{i}-{j}"), t.symbol, condition, threshold)
                .with_mode(mode)
                .with_hysteresis(Fixed::from_units(if mode == Mode::Rearm {
                    100_000
                } else {
                    0
                }))
                .with_cooldown_ns(if matches!(mode, Mode::OncePerInterval | Mode::Rearm) {
                    30 * SEC
                } else {
                    0
                })
                .with_window(condition.needs_window().then_some(0))
                .with_upper(
                    condition
                        .needs_upper()
                        .then(|| Fixed::from_units(threshold.units() + 50_000_000)),
                )
                .with_bar_ns(
                    matches!(mode, Mode::OncePerBar | Mode::OncePerBarClose).then_some(60 * SEC),
                );
            out.push((rule, 0, 1));
        }
    }
    out
}

#[test]
fn two_workers_exchanging_bytes_compute_what_one_worker_does() {
    let config = AnalyticsConfig::default();
    let trades = trades();
    let rules = rules(&trades);
    for (rule, _, _) in &rules {
        rule.validate().unwrap_or_else(|e| panic!("{rule:?}: {e}"));
    }
    let one = run_batch_core(
        vec![trades.clone()],
        rules.clone(),
        &config,
        1,
        Outputs::Collect,
    );
    assert!(!one.events.is_empty() && !one.stats.is_empty() && !one.bars.is_empty());

    type Seen = (Vec<StatsRow>, Vec<BarRow>, Vec<AlertEvent>);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (out, input) = (Arc::clone(&seen), Arc::new(trades));
    let binary = timely::Config {
        communication: timely::CommunicationConfig::ProcessBinary(2),
        worker: timely::WorkerConfig::default(),
    };
    timely::execute(binary, move |worker| {
        let (s, b, e) = (Arc::clone(&out), Arc::clone(&out), Arc::clone(&out));
        let (pipeline, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (pipeline, outputs) = build(scope, &config, true);
            let probe = outputs.in_order(
                move |rows| s.lock().unwrap().0.append(rows),
                move |rows| b.lock().unwrap().1.append(rows),
                move |rows| e.lock().unwrap().2.append(rows),
            );
            (pipeline, probe)
        });
        let Inputs {
            trades: mut trade_input,
            rules: mut rule_input,
        } = pipeline;
        if worker.index() == 0 {
            for rule in &rules {
                rule_input.send(rule.clone());
            }
            for trade in input.iter() {
                let g = trade.time_ns.div_ceil(SEC) * SEC;
                if g > *trade_input.time() {
                    trade_input.advance_to(g);
                    rule_input.advance_to(g);
                }
                trade_input.send(*trade);
            }
        }
        drop((trade_input, rule_input));
        while worker.step_or_park(None) {}
        let _ = probe;
    })
    .expect("timely starts")
    .join();
    let (stats, bars, events) = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(stats, one.stats, "stats");
    assert_eq!(bars, one.bars, "bars");
    let show = |e: &[AlertEvent]| format!("{e:?}");
    assert_eq!(show(&events), show(&one.events), "events");
}
