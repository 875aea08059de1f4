//! Alert matching: the rule semantics case by case, and the dataflow against a plain loop over
//! ticks and rules on seeded random streams with thousands of alerts.

use gostocks_core::alerts::{
    AlertEvent, AlertRule, Condition, EventKind, Mode, PauseReason, StormGuard,
};
use gostocks_core::batch::{Outputs, run_batch_core};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Fixed, Span, Symbol, Trade, reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEC: u64 = 1_000_000_000;
const BASE: u64 = 1_700_000_000 * SEC;

fn config() -> AnalyticsConfig {
    AnalyticsConfig::default()
        .with_windows(vec![Span::new(3 * SEC, "3s"), Span::new(10 * SEC, "10s")])
        .with_resolution(Span::new(SEC, "1s"))
        .with_bars(vec![Span::new(SEC, "1s"), Span::new(3 * SEC, "3s")])
        .with_ema_span(3)
        .with_lateness(0)
}

fn fx(s: &str) -> Fixed {
    s.parse().unwrap()
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn rule(id: &str, condition: Condition, threshold: &str) -> AlertRule {
    AlertRule::new(id, sym("X"), condition, fx(threshold)).with_storm(None)
}

/// Ticks of X at `BASE + i·0.5 s` with the given prices.
fn ticks(prices: &[&str]) -> Vec<Trade> {
    prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Trade::new(
                sym("X"),
                BASE + i as u64 * SEC / 2,
                i as u64,
                fx(p),
                fx("1"),
            )
        })
        .collect()
}

fn fired(
    trades: Vec<Trade>,
    rules: Vec<(AlertRule, u64, isize)>,
    workers: usize,
) -> Vec<(String, u64)> {
    run_batch_core(vec![trades], rules, &config(), workers, Outputs::Collect)
        .events
        .into_iter()
        .map(|e| (e.alert_id.to_string(), e.seq))
        .collect()
}

fn at0(rules: Vec<AlertRule>) -> Vec<(AlertRule, u64, isize)> {
    rules.into_iter().map(|r| (r, 0, 1)).collect()
}

fn ids(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(a, s)| ((*a).to_owned(), *s)).collect()
}

#[test]
fn price_levels_are_strict_at_the_threshold() {
    let rules = at0(vec![
        rule("above", Condition::PriceAbove, "10"),
        rule("below", Condition::PriceBelow, "10"),
    ]);
    let got = fired(ticks(&["10", "10", "10.00000001", "9.99999999"]), rules, 1);
    assert_eq!(got, ids(&[("above", 2), ("below", 3)]));
}

#[test]
fn crosses_need_the_previous_tick_on_the_other_side_or_at_the_level() {
    let rules = at0(vec![
        rule("up", Condition::CrossesAbove, "10"),
        rule("down", Condition::CrossesBelow, "10"),
    ]);
    // The first tick has no predecessor: above the level, but not a cross.
    let got = fired(ticks(&["11", "10", "10.5", "10", "9"]), rules, 1);
    // 10 -> 10.5 crosses above (prev <= 10); 11 -> 10 does not cross below (10 is not < 10);
    // 10 -> 9 crosses below (prev >= 10).
    assert_eq!(got, ids(&[("up", 2), ("down", 4)]));
}

fn channel(id: &str, condition: Condition, lower: &str, upper: &str) -> AlertRule {
    rule(id, condition, lower).with_upper(Some(fx(upper)))
}

#[test]
fn channels_are_closed_ranges_entered_and_left_exactly_at_their_edges() {
    let rules = at0(vec![
        channel("in", Condition::Inside, "10", "12"),
        channel("out", Condition::Outside, "10", "12"),
        channel("enter", Condition::EntersChannel, "10", "12"),
        channel("exit", Condition::ExitsChannel, "10", "12"),
    ]);
    // 0: 9.99999999 is outside (below 10), but the first tick enters nothing (no previous);
    // 1: 10 is inside (the lower edge belongs to the channel): entered;
    // 2: 12 still inside (the upper edge too); 3: 12.00000001 leaves it.
    let got = fired(
        ticks(&["9.99999999", "10", "12", "12.00000001"]),
        rules.clone(),
        1,
    );
    assert_eq!(
        got,
        ids(&[("out", 0), ("enter", 1), ("in", 1), ("exit", 3)])
    );
    // Jumping over the channel neither enters nor leaves it.
    let got = fired(ticks(&["9", "13", "9"]), rules, 1);
    assert_eq!(got, ids(&[("out", 0)]));
}

#[test]
fn a_rearming_channel_alert_waits_for_the_hysteresis_beyond_or_within_its_edges() {
    let rearm = |id, c| {
        channel(id, c, "10", "20")
            .with_mode(Mode::Rearm)
            .with_hysteresis(fx("1"))
    };
    let rules = at0(vec![
        rearm("in", Condition::Inside),
        rearm("out", Condition::Outside),
    ]);
    // in: fires at 15 (0); 9.5 is outside but not by 1; 9 is not either (< 10 - 1 is needed);
    //     8.99999999 is (5), so 15 fires again (6).
    // out: fires at 9.5 (1); 9 and 10.5 are not inside by 1; 11 is (the edge: 10 + 1 <=
    //     price), so 8.99999999 fires again (5).
    let got = fired(
        ticks(&["15", "9.5", "9", "10.5", "11", "8.99999999", "15"]),
        rules,
        1,
    );
    assert_eq!(got, ids(&[("in", 0), ("out", 1), ("out", 5), ("in", 6)]));
}

#[test]
fn equal_timestamps_are_ordered_by_seq() {
    let mut trades = ticks(&["9", "11", "9"]);
    for t in &mut trades {
        t.time_ns = BASE;
    }
    // Arrival order reversed: seq decides.
    trades.reverse();
    let got = fired(
        trades,
        at0(vec![rule("up", Condition::CrossesAbove, "10")]),
        1,
    );
    assert_eq!(got, ids(&[("up", 1)]));
}

#[test]
fn rearm_waits_for_the_hysteresis() {
    let mut r = rule("r", Condition::PriceAbove, "10");
    r.mode = Mode::Rearm;
    r.hysteresis = fx("1");
    // Fires at 11; 9.5 is not 1 below the level; 9 is (<= 10 - 1, the edge); then 10.5 fires.
    let got = fired(
        ticks(&["11", "12", "9.5", "10.5", "9", "10.5"]),
        at0(vec![r]),
        1,
    );
    assert_eq!(got, ids(&[("r", 0), ("r", 5)]));
}

#[test]
fn rearm_waits_for_the_cooldown_in_event_time() {
    let mut r = rule("r", Condition::PriceAbove, "10");
    r.mode = Mode::Rearm;
    r.cooldown_ns = SEC;
    // Ticks every 0.5 s: fires at seq 0 (t0); reset at seq 1 (t0 + 0.5s, cooling); seq 2 at
    // exactly t0 + 1s is the cooldown's edge: it may fire.
    let got = fired(
        ticks(&["11", "9", "11", "9", "11"]),
        at0(vec![r.clone()]),
        1,
    );
    assert_eq!(got, ids(&[("r", 0), ("r", 2), ("r", 4)]));
    r.cooldown_ns = SEC + 1;
    let got = fired(ticks(&["11", "9", "11", "9", "11"]), at0(vec![r]), 1);
    assert_eq!(got, ids(&[("r", 0), ("r", 4)]));
}

#[test]
fn once_fires_once() {
    let got = fired(
        ticks(&["11", "9", "11"]),
        at0(vec![rule("o", Condition::PriceAbove, "10")]),
        1,
    );
    assert_eq!(got, ids(&[("o", 0)]));
}

#[test]
fn an_alert_applies_from_its_creation_time() {
    let mut r = rule("late", Condition::PriceAbove, "10");
    // Created 1 s after the first tick: ticks 0 and 1 predate it.
    r.created_ns = BASE + SEC;
    let got = fired(ticks(&["11", "11", "11"]), vec![(r, BASE + SEC, 1)], 1);
    assert_eq!(got, ids(&[("late", 2)]));
}

#[test]
fn deleting_and_updating_mid_stream_take_effect_from_the_next_tick() {
    let trades = ticks(&["9", "9", "9", "9", "11", "11", "11", "11", "11"]);
    let mut rearm = rule("u", Condition::PriceAbove, "10");
    rearm.mode = Mode::Rearm;
    let deleted = rule("d", Condition::PriceAbove, "10");
    let raised = {
        let mut r = rearm.clone();
        r.threshold = fx("20");
        r
    };
    let lowered = rearm.clone();
    let t = |s: u64| BASE + s * SEC;
    let rules = vec![
        (deleted.clone(), 0, 1),
        (deleted, t(2), -1), // deleted before the first tick above 10 (seq 4, at BASE + 2s)
        (rearm.clone(), 0, 1),
        (rearm, t(2), -1),
        (raised.clone(), t(2), 1), // raised out of reach at 2s...
        (raised, t(4), -1),
        // ...and back at 4s: it applies from grid time 4s on, so the first tick it sees is
        // seq 7 (t = 3.5s, whose grid time is 4s).
        (lowered, t(4), 1),
    ];
    let got = fired(trades, rules, 1);
    assert_eq!(got, ids(&[("u", 7)]));
}

#[test]
fn an_alert_created_and_deleted_at_one_time_is_never_there() {
    // seq 4 is at BASE + 2 s, the grid time of the changes.
    let trades = ticks(&["11", "9", "12", "13", "14"]);
    let gone = rule("gone", Condition::PriceAbove, "10");
    let stays = rule("stays", Condition::PriceAbove, "10");
    let t = BASE + 2 * SEC;
    let rules = vec![
        // Inserted and retracted at one time: never there (retraction-first would insert it).
        (gone.clone(), t, 1),
        (gone, t, -1),
        // Retracted and inserted unchanged at one time: left as it is, spent (a fresh
        // insertion would fire again at seq 4).
        (stays.clone(), 0, 1),
        (stays.clone(), t, -1),
        (stays, t, 1),
    ];
    for workers in [1, 2] {
        assert_eq!(
            fired(trades.clone(), rules.clone(), workers),
            ids(&[("stays", 0)])
        );
    }
}

#[test]
fn sma_and_volatility_read_the_window_up_to_the_tick() {
    let mut up = rule("sma_up", Condition::SmaCrossAbove, "1");
    up.window = Some(0);
    let mut vol = rule("vol", Condition::VolatilityAbove, "0.05");
    vol.window = Some(0);
    // sma over 3 s. Tick 1 (10) equals the sma of {10, 10}: not above. Tick 2 (12) is above
    // the sma of {10, 10, 12} and the previous tick was at its sma: a cross.
    let got = fired(
        ticks(&["10", "10", "12", "10", "13"]),
        at0(vec![up, vol]),
        1,
    );
    // Returns 0, ln 1.2, ln(10/12): the sample stddev of {0, 0.182, -0.182} is 0.18 > 0.05 at
    // tick 3; with two returns {0, 0.182} at tick 2 it is 0.129 > 0.05 already.
    assert_eq!(got, ids(&[("sma_up", 2), ("vol", 2)]));
}

#[test]
fn change_pct_compares_the_move_from_the_windows_first_price_exactly() {
    let windowed = |id: &str, c: Condition, thr: &str, w: u8| {
        let mut r = rule(id, c, thr).with_mode(Mode::Rearm);
        r.window = Some(w);
        r
    };
    // Over 3 s the window's first tick moves on: at tick 6 (t = 3 s) the first is tick 1.
    let got = fired(
        ticks(&["100", "101", "100.5", "99", "98.01", "99", "97.02"]),
        at0(vec![
            // +1 % exactly at tick 1 is not above 1 %; 0.99 % is.
            windowed("up_1", Condition::ChangePctAbove, "1", 0),
            windowed("up_0.99", Condition::ChangePctAbove, "0.99", 0),
            // Tick 4: 98.01 from 100 is -1.99 %, not below -1.99 %; tick 6: 97.02 from 101 (3 s
            // window) is -3.940594...%, from 100 (10 s window) -2.98 %.
            windowed("down_1.99", Condition::ChangePctBelow, "1.99", 0),
            windowed("down_1.98", Condition::ChangePctBelow, "1.98", 0),
            windowed("down_3.9", Condition::ChangePctBelow, "3.9", 0),
            windowed("down_3.9_long", Condition::ChangePctBelow, "3.9", 1),
        ]),
        1,
    );
    // down_1.98 fires at tick 4, resets at tick 5 (-1 % is not below -1.98 %), fires again at
    // tick 6.
    assert_eq!(
        got,
        ids(&[
            ("up_0.99", 1),
            ("down_1.98", 4),
            ("down_1.98", 6),
            ("down_1.99", 6),
            ("down_3.9", 6),
        ])
    );
    // 3 to 3.1 is +3.333...%: above 3.33333333 %, not above 3.33333334 % (eight decimals, the
    // threshold's precision, decide).
    let got = fired(
        ticks(&["3", "3.1"]),
        at0(vec![
            windowed("under", Condition::ChangePctAbove, "3.33333333", 0),
            windowed("over", Condition::ChangePctAbove, "3.33333334", 0),
        ]),
        1,
    );
    assert_eq!(got, ids(&[("under", 1)]));
}

#[test]
fn volume_above_compares_the_windows_sum_of_sizes_exactly() {
    let windowed = |id: &str, thr: &str| {
        let mut r = rule(id, Condition::VolumeAbove, thr).with_mode(Mode::Rearm);
        r.window = Some(0);
        r
    };
    // Sizes are 1, ticks 0.5 s apart: a 3 s window holds at most 6 ticks (t - 3 s is out).
    let got = fired(
        ticks(&["10", "10", "10", "10", "10", "10", "10", "10"]),
        at0(vec![
            windowed("v5", "5"),
            windowed("v6", "6"),
            windowed("v4.99", "4.99999999"),
        ]),
        1,
    );
    // 5 ticks (tick 4) are above 4.99999999 but not above 5; 6 (tick 5) are above 5, never
    // above 6. Once above, the volume stays at 6: no reset, no second firing.
    assert_eq!(got, ids(&[("v4.99", 4), ("v5", 5)]));
}

#[test]
fn vwap_crosses_weigh_prices_by_size_exactly() {
    let windowed = |id: &str, c: Condition| {
        let mut r = rule(id, c, "1").with_mode(Mode::Rearm);
        r.window = Some(0);
        r
    };
    let trades: Vec<Trade> = [("10", "1"), ("12", "3"), ("11", "4")]
        .iter()
        .enumerate()
        .map(|(i, (p, q))| Trade::new(sym("X"), BASE + i as u64 * SEC / 2, i as u64, fx(p), fx(q)))
        .collect();
    let got = fired(
        trades,
        at0(vec![
            windowed("vwap_up", Condition::VwapCrossAbove),
            windowed("vwap_down", Condition::VwapCrossBelow),
            windowed("sma_down", Condition::SmaCrossBelow),
        ]),
        1,
    );
    // Tick 0 is at its vwap (10). Tick 1: 12 is above the vwap (10·1 + 12·3) / 4 = 11.5, a
    // cross. Tick 2: 11 is below the vwap 90 / 8 = 11.25, a cross down; it equals the sma (11),
    // so the sma cross does not fire.
    assert_eq!(got, ids(&[("vwap_up", 1), ("vwap_down", 2)]));
}

fn random_trades(seed: u64, n: usize) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let symbols = [sym("AAA"), sym("BBB"), sym("CCC")];
    let mut t = BASE;
    let mut prices = [1_000i64, 250, 77];
    (0..n)
        .map(|seq| {
            t += match rng.random_range(0..100) {
                0..=19 => 0,
                20..=29 => SEC - t % SEC,
                30..=31 => 12 * SEC,
                _ => rng.random_range(1..SEC / 2),
            };
            let s = rng.random_range(0..symbols.len());
            prices[s] = (prices[s] + rng.random_range(-3..=3)).max(1);
            Trade::new(
                symbols[s],
                t,
                seq as u64,
                Fixed::from_mantissa(prices[s], 1).unwrap(),
                // 0.1 to 4.9: the vwap weighs the prices, and differs from the sma.
                Fixed::from_mantissa(rng.random_range(1..50), 1).unwrap(),
            )
        })
        .collect()
}

fn random_rules(seed: u64, n: usize, span: (u64, u64)) -> Vec<(AlertRule, u64, u64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let symbols = [sym("AAA"), sym("BBB"), sym("CCC")];
    let centre = [1_000i64, 250, 77];
    (0..n)
        .map(|i| {
            let s = rng.random_range(0..symbols.len());
            let condition = Condition::ON_TRADES[rng.random_range(0..Condition::ON_TRADES.len())];
            let threshold = if condition == Condition::VolatilityAbove {
                Fixed::from_mantissa(rng.random_range(1..3000), 6).unwrap()
            } else if matches!(
                condition,
                Condition::ChangePctAbove | Condition::ChangePctBelow
            ) {
                // 0.01 % to 1.5 %: the random walk moves prices by about that over a window.
                Fixed::from_mantissa(rng.random_range(1..150), 2).unwrap()
            } else if condition == Condition::VolumeAbove {
                // Sizes are 2.5 on average: a window's volume is about 2.5 times its ticks.
                Fixed::from_mantissa(rng.random_range(5..400), 1).unwrap()
            } else {
                Fixed::from_mantissa((centre[s] + rng.random_range(-30..=30)).max(1), 1).unwrap()
            };
            let mode = if rng.random_bool(0.6) {
                Mode::Rearm
            } else {
                Mode::Once
            };
            let hysteresis = Fixed::from_mantissa(rng.random_range(0..4), 1).unwrap();
            // A channel at least twice the hysteresis wide, from 0.1 to 4 above that.
            let upper = condition.needs_upper().then(|| {
                let width = 2 * hysteresis.units() + rng.random_range(1..40) * 10_000_000;
                Fixed::from_units(threshold.units() + width)
            });
            // Some rules exist from the start, others come, go or are created mid-stream.
            let grid = |x: u64| grid_ceil(x, SEC);
            let (from, until, created) = match rng.random_range(0..4) {
                0 | 1 => (0, u64::MAX, 0),
                2 => {
                    let c = rng.random_range(span.0..span.1);
                    (grid(c), u64::MAX, c)
                }
                _ => {
                    let a = grid(rng.random_range(span.0..span.1));
                    let b = grid(rng.random_range(a..span.1 + SEC));
                    (a, b.max(a + SEC), a)
                }
            };
            let rule = AlertRule::new(format!("r{i:05}"), symbols[s], condition, threshold)
                .with_mode(mode)
                .with_hysteresis(hysteresis)
                .with_cooldown_ns([0, SEC / 2, 3 * SEC][rng.random_range(0..3)])
                .with_window(condition.needs_window().then(|| rng.random_range(0..2)))
                .with_created_ns(created)
                .with_upper(upper)
                .with_storm(None);
            assert_eq!(rule.validate(), Ok(()), "{rule:?}");
            (rule, from, until)
        })
        .collect()
}

fn changes(rules: &[(AlertRule, u64, u64)]) -> Vec<(AlertRule, u64, isize)> {
    let mut out = Vec::new();
    for (r, from, until) in rules {
        out.push((r.clone(), *from, 1));
        if *until != u64::MAX {
            out.push((r.clone(), *until, -1));
        }
    }
    out
}

/// The events as `(id, time, seq)`, in the reference's order: the output is in
/// `(time, symbol, seq, id)` order, the reference in `(time, seq, id)`.
fn in_reference_order(events: &[AlertEvent]) -> Vec<(String, u64, u64)> {
    let mut got: Vec<(String, u64, u64)> = events
        .iter()
        .map(|e| (e.alert_id.to_string(), e.time_ns, e.seq))
        .collect();
    got.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
    got
}

fn shuffled(trades: &[Trade], lateness: u64, seed: u64) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keyed: Vec<(u64, Trade)> = trades
        .iter()
        .map(|t| (t.time_ns + rng.random_range(0..=lateness), *t))
        .collect();
    keyed.sort_by_key(|(k, t)| (*k, t.seq));
    keyed.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn dataflow_agrees_with_the_plain_loop_on_random_streams() {
    for seed in 0..4u64 {
        let trades = random_trades(seed, 3_000);
        let span = (trades[0].time_ns, trades[trades.len() - 1].time_ns);
        let rules = random_rules(seed + 100, 2_000, span);
        let mut cfg = config();
        let want = reference::alert_events(&trades, &rules, &cfg);
        assert!(want.len() > 100, "the stream fires alerts: {}", want.len());
        for (workers, lateness) in [(1, 0), (2, 0), (2, 2 * SEC)] {
            cfg.lateness = lateness;
            let input = if lateness == 0 {
                trades.clone()
            } else {
                shuffled(&trades, lateness, seed)
            };
            let got = run_batch_core(
                vec![input],
                changes(&rules),
                &cfg,
                workers,
                Outputs::Collect,
            );
            assert!(got.late.is_empty());
            let got = in_reference_order(&got.events);
            assert_eq!(
                got.len(),
                want.len(),
                "seed {seed}, {workers} workers, lateness {lateness}: number of events"
            );
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "seed {seed}, {workers} workers, lateness {lateness}");
            }
        }
    }
}

/// As above in every trigger mode (the bar modes over the configured bars). With every rule in
/// from the start, the matcher takes each message of several grid times symbol by symbol; with
/// rules that come and go mid-stream, it keeps to time order around their changes. Both must
/// give the plain loop's events, bar-close firings included.
#[test]
fn dataflow_agrees_with_the_plain_loop_in_every_trigger_mode() {
    for seed in 0..6u64 {
        let trades = random_trades(seed, 3_000);
        let span = (trades[0].time_ns, trades[trades.len() - 1].time_ns);
        let mut rng = StdRng::seed_from_u64(seed + 200);
        let all_from_the_start = seed % 2 == 0;
        let rules: Vec<(AlertRule, u64, u64)> = random_rules(seed + 100, 2_000, span)
            .into_iter()
            .map(|(mut rule, from, until)| {
                rule.mode = Mode::ALL[rng.random_range(0..Mode::ALL.len())];
                rule.bar_ns = rule
                    .mode
                    .needs_bar()
                    .then(|| [SEC, 3 * SEC][rng.random_range(0..2)]);
                if all_from_the_start {
                    rule.created_ns = 0;
                    (rule, 0, u64::MAX)
                } else {
                    (rule, from, until)
                }
            })
            .filter(|(rule, ..)| rule.validate().is_ok())
            .collect();
        let want = reference::alert_events(&trades, &rules, &config());
        assert!(want.len() > 100, "the stream fires alerts: {}", want.len());
        for workers in [1, 2] {
            let got = run_batch_core(
                vec![trades.clone()],
                changes(&rules),
                &config(),
                workers,
                Outputs::Collect,
            );
            let got = in_reference_order(&got.events);
            assert_eq!(got, want, "seed {seed}, {workers} workers");
        }
    }
}

// ---- trigger frequencies and the storm guard (issue 27) ----

fn events(
    trades: Vec<Trade>,
    rules: Vec<(AlertRule, u64, isize)>,
    workers: usize,
) -> Vec<AlertEvent> {
    run_batch_core(vec![trades], rules, &config(), workers, Outputs::Collect).events
}

fn with_mode(id: &str, mode: Mode) -> AlertRule {
    let mut r = rule(id, Condition::PriceAbove, "10");
    r.mode = mode;
    if mode.needs_bar() {
        r.bar_ns = Some(SEC);
    }
    r
}

#[test]
fn once_per_bar_fires_on_the_first_qualifying_tick_of_each_bar() {
    // Two ticks per 1 s bar [kB, (k+1)B): seq 0, 1 | 2, 3 | 4, 5.
    let got = fired(
        ticks(&["11", "11", "9", "11", "11", "11"]),
        at0(vec![with_mode("b", Mode::OncePerBar)]),
        1,
    );
    assert_eq!(got, ids(&[("b", 0), ("b", 3), ("b", 4)]));
}

#[test]
fn a_tick_on_a_bar_boundary_opens_the_next_bar() {
    // seq 1 is at BASE + 0.5 s, seq 2 at BASE + 1 s exactly: the start of the second bar.
    let got = fired(
        ticks(&["9", "11", "11"]),
        at0(vec![with_mode("b", Mode::OncePerBar)]),
        1,
    );
    assert_eq!(got, ids(&[("b", 1), ("b", 2)]));
}

#[test]
fn once_per_bar_close_judges_the_last_tick_and_fires_at_the_bar_end() {
    // Bars: seq 0, 1 (close 9) | 2, 3 (close 11) | 4, 5 (close 11, closed by the end of input).
    for workers in [1, 2] {
        let got = events(
            ticks(&["11", "9", "9", "11", "11", "11"]),
            at0(vec![with_mode("c", Mode::OncePerBarClose)]),
            workers,
        );
        let got: Vec<_> = got
            .iter()
            .map(|e| (e.time_ns, e.seq, e.price.to_string(), e.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (BASE + 2 * SEC, 3, "11".into(), EventKind::Fired),
                (BASE + 3 * SEC, 5, "11".into(), EventKind::Fired),
            ],
            "{workers} workers"
        );
    }
}

#[test]
fn once_per_bar_close_needs_the_alert_alive_from_the_close_to_the_bar_end() {
    let trades = ticks(&["11", "11", "9", "9"]);
    let r = with_mode("c", Mode::OncePerBarClose);
    let at = |ns: u64| BASE + ns;
    let run = |rules: Vec<(AlertRule, u64, isize)>| fired(trades.clone(), rules, 1);
    // The first bar [BASE, BASE + 1s) closes at seq 1 (t = BASE + 0.5 s, grid BASE + 1 s).
    assert_eq!(run(vec![(r.clone(), 0, 1)]), ids(&[("c", 1)]));
    // Retracted at the bar's end: not alive when the bar is final.
    assert_eq!(
        run(vec![(r.clone(), 0, 1), (r.clone(), at(SEC), -1)]),
        ids(&[])
    );
    // Retracted a grid step later: it was.
    assert_eq!(
        run(vec![(r.clone(), 0, 1), (r.clone(), at(2 * SEC), -1)]),
        ids(&[("c", 1)])
    );
    // Inserted after the close's grid time: it did not see the close.
    let mut late = r.clone();
    late.created_ns = at(SEC + 1);
    assert_eq!(run(vec![(late, at(2 * SEC), 1)]), ids(&[]));
}

#[test]
fn once_per_interval_is_the_cooldown_without_the_reset() {
    let mut interval = with_mode("i", Mode::OncePerInterval);
    interval.cooldown_ns = SEC;
    let mut rearm = with_mode("r", Mode::Rearm);
    rearm.cooldown_ns = SEC;
    // Always above: rearm never resets; once_per_interval fires at t0, t0 + 1 s, t0 + 2 s.
    let got = fired(
        ticks(&["11", "11", "11", "11", "11"]),
        at0(vec![interval, rearm]),
        1,
    );
    assert_eq!(got, ids(&[("i", 0), ("r", 0), ("i", 2), ("i", 4)]));
}

fn storming(max_events: u32, within_ns: u64) -> AlertRule {
    let mut r = with_mode("s", Mode::Rearm);
    r.storm = Some(StormGuard::new(max_events, within_ns));
    r
}

#[test]
fn the_storm_guard_pauses_at_the_event_past_its_maximum_and_fires_nothing_more() {
    // Rearm without hysteresis fires on every other tick: at BASE, +1 s, +2 s, +3 s, +4 s.
    let prices = ["11", "9", "11", "9", "11", "9", "11", "9", "11"];
    let got = events(ticks(&prices), at0(vec![storming(3, 10 * SEC)]), 2);
    let got: Vec<_> = got.iter().map(|e| (e.seq, e.kind)).collect();
    let paused = EventKind::Paused {
        reason: PauseReason::Storm,
    };
    assert_eq!(
        got,
        vec![
            (0, EventKind::Fired),
            (2, EventKind::Fired),
            (4, EventKind::Fired),
            (6, paused)
        ]
    );
    let pause = &events(ticks(&prices), at0(vec![storming(3, 10 * SEC)]), 1)[3];
    assert_eq!(
        pause.to_json(),
        format!(
            r#"{{"alert_id":"s","symbol":"X","time_ns":{},"seq":6,"price":11,"value":11,"kind":"paused","reason":"storm"}}"#,
            BASE + 3 * SEC
        )
    );
}

#[test]
fn the_storm_span_excludes_its_lower_edge() {
    let prices = ["11", "9", "11", "9", "11", "9", "11"];
    // Events 1 s apart, at most 2 within (τ - 2 s, τ]: the event 2 s back is outside.
    let got = fired(ticks(&prices), at0(vec![storming(2, 2 * SEC)]), 1);
    assert_eq!(got, ids(&[("s", 0), ("s", 2), ("s", 4), ("s", 6)]));
    // One nanosecond more and the third event is the storm.
    let got = events(ticks(&prices), at0(vec![storming(2, 2 * SEC + 1)]), 1);
    let got: Vec<_> = got
        .iter()
        .map(|e| (e.seq, e.kind == EventKind::Fired))
        .collect();
    assert_eq!(got, vec![(0, true), (2, true), (4, false)]);
}

#[test]
fn a_paused_alert_fires_again_once_reinserted() {
    let prices = ["11", "9", "11", "9", "11", "9", "11", "9", "11"];
    let r = storming(1, 10 * SEC);
    // Re-enabled by the service: retracted, and inserted again as a new rule from BASE + 3 s.
    let mut again = r.clone();
    again.created_ns = BASE + 3 * SEC;
    let rules = vec![
        (r.clone(), 0, 1),
        (r, BASE + 3 * SEC, -1),
        (again, BASE + 3 * SEC, 1),
    ];
    let got = events(ticks(&prices), rules, 1);
    let got: Vec<_> = got
        .iter()
        .map(|e| (e.seq, e.kind == EventKind::Fired))
        .collect();
    // Fires at seq 0, pauses at seq 2; fires at seq 6 (BASE + 3 s) and pauses at seq 8.
    assert_eq!(got, vec![(0, true), (2, false), (6, true), (8, false)]);
}

fn random_modal_rules(seed: u64, n: usize, span: (u64, u64)) -> Vec<(AlertRule, u64, u64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rules = random_rules(seed, n, span);
    for (r, _, _) in &mut rules {
        r.mode = Mode::ALL[rng.random_range(0..Mode::ALL.len())];
        match r.mode {
            Mode::Once | Mode::Rearm => {}
            Mode::OncePerBar | Mode::OncePerBarClose => {
                r.hysteresis = Fixed::ZERO;
                r.cooldown_ns = 0;
                r.bar_ns = Some([SEC, 3 * SEC][rng.random_range(0..2)]);
            }
            Mode::OncePerInterval => {
                r.hysteresis = Fixed::ZERO;
                r.cooldown_ns = [SEC / 2, SEC, 3 * SEC][rng.random_range(0..3)];
            }
        }
        r.storm = match rng.random_range(0..3) {
            0 => None,
            _ => Some(StormGuard::new(
                rng.random_range(1..6),
                rng.random_range(SEC..8 * SEC),
            )),
        };
        r.validate().expect("a valid rule");
    }
    rules
}

#[test]
fn trigger_frequencies_and_the_storm_guard_agree_with_the_plain_loop() {
    for seed in 0..4u64 {
        let trades = random_trades(seed, 3_000);
        let span = (trades[0].time_ns, trades[trades.len() - 1].time_ns);
        let rules = random_modal_rules(seed + 200, 1_500, span);
        let mut cfg = config();
        let want = reference::alert_events_with_kind(&trades, &rules, &cfg);
        let count = |pred: &dyn Fn(&AlertRule, &EventKind) -> bool| {
            want.iter()
                .filter(|(id, _, _, k)| {
                    let r = &rules.iter().find(|(r, ..)| &r.id == id).unwrap().0;
                    pred(r, k)
                })
                .count()
        };
        for mode in Mode::ALL {
            let n = count(&|r, _| r.mode == mode);
            assert!(n > 20, "seed {seed}: {mode} fires: {n}");
        }
        let pauses = count(&|_, k| *k != EventKind::Fired);
        assert!(pauses > 20, "seed {seed}: the guard pauses: {pauses}");
        for (workers, lateness) in [(1, 0), (2, 0), (1, 2 * SEC), (2, 2 * SEC)] {
            cfg.lateness = lateness;
            let input = if lateness == 0 {
                trades.clone()
            } else {
                shuffled(&trades, lateness, seed)
            };
            let got = run_batch_core(
                vec![input],
                changes(&rules),
                &cfg,
                workers,
                Outputs::Collect,
            );
            assert!(got.late.is_empty());
            // The output is in (time, symbol, seq, id) order, and stays so.
            assert!(got.events.is_sorted(), "seed {seed}: events in order");
            let mut got: Vec<(String, u64, u64, EventKind)> = got
                .events
                .iter()
                .map(|e| (e.alert_id.to_string(), e.time_ns, e.seq, e.kind))
                .collect();
            got.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
            let what = format!("seed {seed}, {workers} workers, lateness {lateness}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{what}");
            }
            assert_eq!(got.len(), want.len(), "{what}: number of events");
        }
    }
}

/// `rearm` alerts with no hysteresis and no cooldown (the storm-prone default) are judged by a
/// sweep after their first firing, not by the armed and disarmed indexes: the same events as
/// the plain loop, for every condition, with and without a guard, rules coming and going.
#[test]
fn rearm_without_hysteresis_or_cooldown_agrees_with_the_plain_loop() {
    for seed in 0..3u64 {
        let trades = random_trades(seed + 50, 3_000);
        let span = (trades[0].time_ns, trades[trades.len() - 1].time_ns);
        let mut rules = random_rules(seed + 300, 1_000, span);
        let mut rng = StdRng::seed_from_u64(seed);
        for (r, _, _) in &mut rules {
            r.mode = Mode::Rearm;
            r.hysteresis = Fixed::ZERO;
            r.cooldown_ns = 0;
            r.storm = rng
                .random_bool(0.3)
                .then(|| StormGuard::new(rng.random_range(2..20), rng.random_range(SEC..8 * SEC)));
            r.validate().expect("a valid rule");
        }
        let mut cfg = config();
        let want = reference::alert_events_with_kind(&trades, &rules, &cfg);
        let refires = want.len() - {
            let mut ids: Vec<&String> = want.iter().map(|(id, ..)| id).collect();
            ids.sort();
            ids.dedup();
            ids.len()
        };
        assert!(refires > 1_000, "seed {seed}: alerts fire again: {refires}");
        for (workers, lateness) in [(1, 0), (2, 2 * SEC)] {
            cfg.lateness = lateness;
            let got = matched(&trades, &rules, &cfg, workers, seed);
            assert_eq!(
                got, want,
                "seed {seed}, {workers} workers, lateness {lateness}"
            );
        }
    }
}

/// The events of `rules` over `trades` (shuffled within `cfg`'s lateness) on `workers`
/// workers, as `(alert id, time, seq, kind)` in the reference's order.
fn matched(
    trades: &[Trade],
    rules: &[(AlertRule, u64, u64)],
    cfg: &AnalyticsConfig,
    workers: usize,
    seed: u64,
) -> Vec<(String, u64, u64, EventKind)> {
    let input = if cfg.lateness == 0 {
        trades.to_vec()
    } else {
        shuffled(trades, cfg.lateness, seed)
    };
    let got = run_batch_core(vec![input], changes(rules), cfg, workers, Outputs::Collect);
    assert!(got.late.is_empty());
    let mut got: Vec<(String, u64, u64, EventKind)> = got
        .events
        .iter()
        .map(|e| (e.alert_id.to_string(), e.time_ns, e.seq, e.kind))
        .collect();
    got.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
    got
}
