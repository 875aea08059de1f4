//! Quote statistics: hand-computed cases, and the incremental engine against the plain
//! reference on seeded random books (ties, one-sided, crossed and locked books), fed out of
//! order within the lateness from several inputs and advanced at random points.

use gostocks_core::alerts::{AlertRule, Condition, EventKind, Mode, StormGuard};
use gostocks_core::quotes::{MidBarRow, Quote, QuoteEngine, QuoteStatsRow};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::{Fixed, Span, Symbol, reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEC: u64 = 1_000_000_000;
const BASE: u64 = 1_700_000_000 * SEC;

fn config(lateness: u64) -> AnalyticsConfig {
    AnalyticsConfig::default()
        .with_windows(vec![Span::new(3 * SEC, "3s"), Span::new(10 * SEC, "10s")])
        .with_resolution(Span::new(SEC, "1s"))
        .with_bars(vec![Span::new(SEC, "1s"), Span::new(5 * SEC, "5s")])
        .with_lateness(lateness)
}

fn fx(s: &str) -> Fixed {
    s.parse().unwrap()
}

fn quote(sym: &str, t: u64, seq: u64, bid: &str, ask: &str) -> Quote {
    let size = |p: &str| if p == "0" { fx("0") } else { fx("1") };
    Quote::new(
        Symbol::new(sym).unwrap(),
        t,
        seq,
        fx(bid),
        size(bid),
        fx(ask),
        size(ask),
    )
    .unwrap()
}

fn run(
    quotes: &[(usize, Quote)],
    inputs: usize,
    config: &AnalyticsConfig,
    rng: &mut StdRng,
) -> (Vec<QuoteStatsRow>, Vec<MidBarRow>) {
    let mut engine = QuoteEngine::new(config.clone(), inputs);
    let (mut rows, mut bars) = (Vec::new(), Vec::new());
    for (input, q) in quotes {
        engine.push(*input, *q).expect("within the lateness");
        if rng.random_bool(0.1) {
            let (r, b) = engine.advance();
            rows.extend(r);
            bars.extend(b);
        }
    }
    let (r, b) = engine.finish();
    rows.extend(r);
    bars.extend(b);
    rows.sort_by_key(|r| (r.time_ns, r.symbol, r.window));
    bars.sort();
    (rows, bars)
}

#[test]
fn time_weighting_by_hand() {
    // X: 10/10.04 from 0.5 s, crossed 10.02/10.01 from 2 s, locked 10/10 from 2.5 s, one-sided
    // from 3 s; the 3 s window at 3 s covers [0, 3].
    let qs = [
        quote("X", BASE + SEC / 2, 1, "10", "10.04"),
        quote("X", BASE + 2 * SEC, 2, "10.02", "10.01"),
        quote("X", BASE + 2 * SEC + SEC / 2, 3, "10", "10"),
        quote("X", BASE + 3 * SEC, 4, "10", "0"),
    ];
    let cfg = config(0);
    let want = reference::quote_stats(&qs, &cfg);
    let (rows, bars) = run(&qs.map(|q| (0, q)), 1, &cfg, &mut StdRng::seed_from_u64(1));
    assert_eq!(rows, want);
    assert_eq!(bars, reference::mid_bars(&qs, &cfg));
    let at3 = rows
        .iter()
        .find(|r| r.time_ns == BASE + 3 * SEC && r.window == 0)
        .unwrap();
    let s = at3.sums;
    assert_eq!(s.quotes, 4);
    // [0, 0.5] has no quote; then 1.5 s of 0.04, 0.5 s of -0.01, 0.5 s of 0.
    assert_eq!(s.two_sided_ns, 5 * SEC / 2);
    assert_eq!(
        s.spread_ns,
        (4_000_000 * 3 - 1_000_000) as i128 * (SEC / 2) as i128
    );
    assert_eq!((s.crossed_ns, s.locked_ns), (SEC / 2, SEC / 2));
    assert_eq!(s.mean_spread(), Some(0.022));
    assert!(at3.last.bid_size > Fixed::ZERO && !at3.last.two_sided());
    // At 4 s the one-sided book adds nothing; at 6 s no quote is in (3, 6]: no row.
    assert!(
        rows.iter()
            .any(|r| r.time_ns == BASE + 5 * SEC && r.window == 0)
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.time_ns == BASE + 6 * SEC && r.window == 0)
    );
    // The 10 s window holds the whole book at 10 s, and [2, 12] of it at 12 s, its last row.
    let at = |t: u64| {
        rows.iter()
            .find(|r| r.time_ns == BASE + t * SEC && r.window == 1)
    };
    assert_eq!(at(10).unwrap().sums.two_sided_ns, 5 * SEC / 2);
    assert_eq!(at(12).unwrap().sums.two_sided_ns, SEC);
    assert!(at(13).is_none());
    let mut line = String::new();
    at3.write_json(&mut line, "3s");
    assert!(line.contains(r#""bid":10,"bid_size":1,"ask":null,"ask_size":0,"mid":null,"spread":null,"mean_spread":0.022,"#), "{line}");
}

#[test]
fn quotes_are_validated_naming_the_field() {
    let s = Symbol::new("X").unwrap();
    let err = Quote::new(s, 1, 0, fx("0"), fx("1"), fx("1"), fx("1")).unwrap_err();
    assert!(err.to_string().contains("bid"), "{err}");
    let err = Quote::new(s, 1, 0, fx("1"), fx("1"), fx("1"), fx("-1")).unwrap_err();
    assert!(err.to_string().contains("ask_size"), "{err}");
    // An empty side's price is not kept.
    let q = Quote::new(s, 1, 0, fx("5"), fx("0"), fx("1"), fx("1")).unwrap();
    assert_eq!(q.bid, Fixed::ZERO);
}

/// Random books on a few symbols: prices on a coarse grid (so that crossed and locked books
/// and equal times happen), sometimes a side empty.
fn random_quotes(rng: &mut StdRng, n: usize) -> Vec<Quote> {
    let symbols = ["A", "B", "C"];
    let mut t = BASE;
    (0..n)
        .map(|i| {
            // Mostly small steps, sometimes a gap longer than every window.
            t += match rng.random_range(0..20) {
                0 => 0,
                1 => 15 * SEC + rng.random_range(0..SEC),
                _ => rng.random_range(0..SEC / 2),
            };
            let sym = symbols[rng.random_range(0..symbols.len())];
            let mid = 10_000 + rng.random_range(0..20) as i64;
            let bid = mid - rng.random_range(-2..5);
            let ask = mid + rng.random_range(-2..5);
            let mut side = |p: i64| -> (Fixed, Fixed) {
                if rng.random_bool(0.05) {
                    (Fixed::ZERO, Fixed::ZERO)
                } else {
                    (
                        Fixed::from_units(p * 1_000_000 + 1),
                        Fixed::from_units(100_000_000),
                    )
                }
            };
            let (b, bs) = side(bid);
            let (a, asz) = side(ask);
            Quote::new(Symbol::new(sym).unwrap(), t, i as u64 % 7, b, bs, a, asz).unwrap()
        })
        .collect()
}

/// Shuffles within `lateness`: sorts by a key jittered by up to the lateness.
fn jitter(rng: &mut StdRng, quotes: &[Quote], lateness: u64) -> Vec<Quote> {
    let mut keyed: Vec<(u64, Quote)> = quotes
        .iter()
        .map(|q| (q.time_ns + rng.random_range(0..=lateness), *q))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, q)| q).collect()
}

/// The quotes split at random among three inputs, each out of order within `lateness`,
/// interleaved: `(input, quote)`.
fn three_inputs(rng: &mut StdRng, quotes: &[Quote], lateness: u64) -> Vec<(usize, Quote)> {
    let mut parts: Vec<Vec<Quote>> = vec![Vec::new(); 3];
    for q in quotes {
        parts[rng.random_range(0..3)].push(*q);
    }
    let mut feeds: Vec<std::collections::VecDeque<Quote>> = parts
        .iter()
        .map(|p| jitter(rng, p, lateness).into())
        .collect();
    let mut mixed = Vec::new();
    while feeds.iter().any(|f| !f.is_empty()) {
        let i = rng.random_range(0..3);
        if let Some(q) = feeds[i].pop_front() {
            mixed.push((i, q));
        }
    }
    mixed
}

#[test]
fn the_engine_equals_the_reference_in_any_order_within_the_lateness() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let lateness = [0, SEC / 3, 2 * SEC][seed as usize % 3];
        let cfg = config(lateness);
        let quotes = random_quotes(&mut rng, 400);
        let want = reference::quote_stats(&quotes, &cfg);
        let want_bars = reference::mid_bars(&quotes, &cfg);
        assert!(want.len() > 100, "the books make rows ({})", want.len());
        // One input, in order.
        let ordered: Vec<(usize, Quote)> = quotes.iter().map(|q| (0, *q)).collect();
        assert_eq!(
            run(&ordered, 1, &cfg, &mut rng),
            (want.clone(), want_bars.clone())
        );
        // Three inputs, each out of order within the lateness, interleaved.
        let mixed = three_inputs(&mut rng, &quotes, lateness);
        let got = run(&mixed, 3, &cfg, &mut rng);
        assert_eq!(got.0.len(), want.len(), "seed {seed}");
        assert_eq!(got, (want, want_bars), "seed {seed}");
    }
}

#[test]
fn a_quote_beyond_the_lateness_is_late() {
    let cfg = config(SEC);
    let mut engine = QuoteEngine::new(cfg, 1);
    engine
        .push(0, quote("X", BASE + 5 * SEC, 0, "1", "2"))
        .unwrap();
    assert!(
        engine
            .push(0, quote("X", BASE + 4 * SEC, 0, "1", "2"))
            .is_ok()
    );
    let late = engine
        .push(0, quote("X", BASE + 4 * SEC - 1, 0, "1", "2"))
        .unwrap_err();
    assert_eq!(late.behind_ns, SEC + 1);
    // Once a grid time is written, a quote there is late, whoever admitted it.
    let _ = engine.advance_to(BASE + 10 * SEC);
    assert!(
        engine
            .push_admitted(quote("X", BASE + 9 * SEC, 0, "1", "2"))
            .is_err()
    );
    assert!(
        engine
            .push_admitted(quote("X", BASE + 10 * SEC, 0, "1", "2"))
            .is_ok()
    );
    // A closed input takes nothing more.
    engine.close(0);
    assert!(
        engine
            .push(0, quote("X", BASE + 9 * SEC, 0, "1", "2"))
            .is_err()
    );
}

// ---- spread_above: alerts judged on quotes ----

fn spread_rule(id: &str, sym: &str, bps: &str) -> AlertRule {
    AlertRule::new(
        id,
        Symbol::new(sym).unwrap(),
        Condition::SpreadAbove,
        fx(bps),
    )
}

/// Feeds `quotes` (input, quote) to an engine holding `rules` (`(rule, from, until)`, issued
/// before the first quote), advancing at random points; returns the events as the reference
/// lists them.
fn spread_events(
    quotes: &[(usize, Quote)],
    inputs: usize,
    rules: &[(AlertRule, u64, u64)],
    config: &AnalyticsConfig,
    rng: &mut StdRng,
) -> Vec<(String, u64, u64, EventKind)> {
    let mut engine = QuoteEngine::new(config.clone(), inputs);
    for (rule, from, until) in rules {
        engine.change_rule(rule.clone(), *from, 1);
        if *until < u64::MAX {
            engine.change_rule(rule.clone(), *until, -1);
        }
    }
    let mut events = Vec::new();
    for (input, q) in quotes {
        engine.push(*input, *q).expect("within the lateness");
        if rng.random_bool(0.1) {
            let _ = engine.advance();
            events.extend(engine.take_events());
        }
    }
    let _ = engine.advance_to(u64::MAX);
    events.extend(engine.take_events());
    let mut out: Vec<_> = events
        .into_iter()
        .map(|e| (e.alert_id.to_string(), e.time_ns, e.seq, e.kind))
        .collect();
    out.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
    out
}

/// Equal event lists, or a panic that shows what only one side has.
fn assert_same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if got != want {
        let only_got: Vec<_> = got.iter().filter(|e| !want.contains(e)).collect();
        let only_want: Vec<_> = want.iter().filter(|e| !got.contains(e)).collect();
        panic!("{what}: only the engine has {only_got:?}; only the reference has {only_want:?}");
    }
}

#[test]
fn spread_above_by_hand() {
    // 10 / 10.01: 10⁴ × 0.01 / 10.005 = 9.995 bps; 10 / 10.02: 19.98 bps; one-sided; 10 / 10.002
    // is exactly 2 bps (2 × 10⁴ × 0.002 / 20.002 < 2: just below, so it resets a rule at 2).
    let qs = [
        quote("X", BASE + 1, 1, "10", "10.01"),
        quote("X", BASE + 2, 2, "10", "10.02"),
        quote("X", BASE + 3, 3, "10", "0"),
        quote("X", BASE + 4, 4, "10", "10.03"),
        quote("X", BASE + 5, 5, "10", "10.002"),
        quote("X", BASE + 6, 6, "10", "10.02"),
    ];
    let rearm = |id: &str, bps: &str, h: &str| {
        spread_rule(id, "X", bps)
            .with_mode(Mode::Rearm)
            .with_hysteresis(fx(h))
            .with_storm(None)
    };
    let rules = [
        (spread_rule("once", "X", "15"), 0, u64::MAX),
        // Rearms only once the spread is at or below 10 - 8 = 2 bps: at 5.
        (rearm("h8", "10", "8"), 0, u64::MAX),
        (rearm("h0", "10", "0"), 0, u64::MAX),
    ];
    let cfg = config(0);
    let mut engine = QuoteEngine::new(cfg.clone(), 1);
    for (r, from, _) in &rules {
        engine.change_rule(r.clone(), *from, 1);
    }
    for q in qs {
        engine.push(0, q).unwrap();
    }
    let _ = engine.advance_to(u64::MAX);
    let events = engine.take_events();
    let got: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e.alert_id.as_str(), e.seq))
        .collect();
    // h0 resets at 9.995 bps (1) only before firing; fires at 2, resets at 5, fires at 6. The
    // one-sided quote 3 neither fires nor resets; 4 (29.97 bps) fires nothing disarmed.
    assert_eq!(
        got,
        [("h0", 2), ("h8", 2), ("once", 2), ("h0", 6), ("h8", 6)]
    );
    let e = &events[0];
    assert_eq!(e.price, fx("10.01"));
    assert!(
        (e.value - 19.980_019_980_019_98).abs() < 1e-9,
        "{}",
        e.value
    );
    let want = reference::spread_alert_events(&qs, &rules, &cfg);
    let want: Vec<(&str, u64)> = want.iter().map(|e| (e.0.as_str(), e.2)).collect();
    assert_eq!(got, want);

    // 99.99 / 100.01 is exactly 2 bps: above 1.99999999, not above 2.
    let exact = [quote("Y", BASE + 1, 1, "99.99", "100.01")];
    let rules = [
        (spread_rule("at", "Y", "2"), 0, u64::MAX),
        (spread_rule("under", "Y", "1.99999999"), 0, u64::MAX),
    ];
    let mut engine = QuoteEngine::new(cfg.clone(), 1);
    for (r, from, _) in &rules {
        engine.change_rule(r.clone(), *from, 1);
    }
    engine.push(0, exact[0]).unwrap();
    let _ = engine.advance_to(u64::MAX);
    let ids: Vec<String> = engine
        .take_events()
        .iter()
        .map(|e| e.alert_id.to_string())
        .collect();
    assert_eq!(ids, ["under"]);
    let want = reference::spread_alert_events(&exact, &rules, &cfg);
    assert_eq!(want.len(), 1);
    assert_eq!(want[0].0, "under");
}

#[test]
fn spread_alerts_equal_the_reference_in_any_order_within_the_lateness() {
    let (mut fired, mut paused) = (0, 0);
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let lateness = [0, SEC / 3, 2 * SEC][seed as usize % 3];
        let cfg = config(lateness);
        let quotes = random_quotes(&mut rng, 400);
        let (start, end) = (quotes[0].time_ns, quotes[quotes.len() - 1].time_ns);
        let grid = |t: u64| t.div_ceil(SEC) * SEC;
        let mut rules = Vec::new();
        for i in 0..24 {
            let sym = ["A", "B", "C"][i % 3];
            // The books' spreads are -2 to 9 cents on 100: about -2 to 9 bps.
            let bps = Fixed::from_units(rng.random_range(50_000_000..800_000_000));
            let mode = Mode::ALL[rng.random_range(0..Mode::ALL.len())];
            let mut rule = spread_rule(&format!("r{i}"), sym, "1")
                .with_threshold(bps)
                .with_mode(mode)
                .with_created_ns(if rng.random_bool(0.3) {
                    rng.random_range(start..=end)
                } else {
                    0
                })
                .with_storm(if rng.random_bool(0.5) {
                    None
                } else {
                    Some(StormGuard::new(rng.random_range(1..4), 5 * SEC))
                });
            if matches!(mode, Mode::Once | Mode::Rearm) {
                rule = rule.with_hysteresis(Fixed::from_units(rng.random_range(0..300_000_000)));
            }
            if matches!(mode, Mode::Rearm | Mode::OncePerInterval) {
                rule = rule.with_cooldown_ns(
                    rng.random_range(0..3) * SEC / 2 + u64::from(mode == Mode::OncePerInterval),
                );
            }
            if mode.needs_bar() {
                rule = rule.with_bar_ns(Some([SEC, 5 * SEC][rng.random_range(0..2)]));
            }
            rule.validate().expect("a valid rule");
            let from = if rng.random_bool(0.3) {
                grid(rng.random_range(start..=end))
            } else {
                0
            };
            let until = if rng.random_bool(0.3) {
                grid(rng.random_range(start..=end)).max(from)
            } else {
                u64::MAX
            };
            rules.push((rule.clone(), from, until));
            // Sometimes updated (retracted and inserted at one time) with a new threshold.
            if until < u64::MAX && rng.random_bool(0.5) {
                let later = rule
                    .with_threshold(Fixed::from_units(rng.random_range(50_000_000..800_000_000)));
                rules.push((later, until, u64::MAX));
            }
        }
        let want = reference::spread_alert_events(&quotes, &rules, &cfg);
        fired += want.iter().filter(|e| e.3 == EventKind::Fired).count();
        paused += want.iter().filter(|e| e.3 != EventKind::Fired).count();
        let ordered: Vec<(usize, Quote)> = quotes.iter().map(|q| (0, *q)).collect();
        let got = spread_events(&ordered, 1, &rules, &cfg, &mut rng);
        assert_same(&got, &want, &format!("seed {seed}, in order"));
        let mixed = three_inputs(&mut rng, &quotes, lateness);
        let got = spread_events(&mixed, 3, &rules, &cfg, &mut rng);
        assert_same(&got, &want, &format!("seed {seed}, out of order"));
    }
    // The cases are not vacuous: many firings, and storm guards that paused.
    assert!(
        fired > 1000 && paused > 20,
        "fired {fired}, paused {paused}"
    );
}
