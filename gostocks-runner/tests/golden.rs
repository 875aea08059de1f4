//! Golden tests on the real recorded data in `../shared/data`: hand-checked values, the full
//! outputs against the from-scratch reference, and `gostocks analyze` end to end on every tape.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use gostocks_connectors::file::{Format, TickFile};
use gostocks_core::alerts::{AlertRule, Condition, Mode};
use gostocks_core::batch::{Outputs, run_batch, run_batch_core};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::{Fixed, Trade, reference};

fn trades(path: &Path) -> Vec<Trade> {
    TickFile::open(path, Format::Auto)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|r| {
            r.expect("the tapes decode")
                .validate()
                .expect("the tapes hold valid trades")
        })
        .collect()
}

const AAPL: &str = "lobster/AAPL_2012-06-21_34200000_57600000_message_1.csv";
/// 2012-06-21 09:30:00 EDT.
const OPEN_NS: u64 = 1_340_285_400_000_000_000;

#[test]
fn lobster_aapl_hand_checked_values() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let ticks = trades(&dir.join(AAPL));
    assert_eq!(ticks.len(), 34_990, "the README's trade count");
    let cfg = AnalyticsConfig::default();
    let out = run_batch(vec![ticks], &cfg, 1, Outputs::Collect);

    // Checked by hand with awk on the raw file: trades (types 4, 5) with 34200 <= time < 34201.
    let bar = out
        .bars
        .iter()
        .find(|b| b.bar == 0 && b.start_ns == OPEN_NS)
        .expect("the 09:30:00 1s bar");
    let c = bar.core;
    assert_eq!(
        (c.agg.count, c.agg.volume_fixed().to_string()),
        (28, "1038".into())
    );
    assert_eq!(
        [c.open, c.high, c.low, c.close].map(|p| p.to_string()),
        ["585.74", "585.93", "585.7", "585.86"]
    );
    assert!(
        (c.agg.vwap().unwrap() - 585.843).abs() < 5e-4,
        "vwap {:?}",
        c.agg.vwap()
    );
    // The first bar's EMA is its close.
    assert_eq!(bar.ema, 585.86);

    // The 60s window at 09:30:02: trades with 34142 < time <= 34202.
    let row = out
        .stats
        .iter()
        .rfind(|r| r.window == 0 && r.time_ns <= OPEN_NS + 2_000_000_000)
        .expect("a row by 09:30:02");
    let core = row.core.expect("non-empty");
    assert_eq!(
        (core.agg.count, core.agg.volume_fixed().to_string()),
        (44, "1857".into())
    );
    assert!((core.agg.sma().unwrap() - 585.728).abs() < 5e-4);
}

#[test]
fn real_tapes_match_the_reference_at_one_and_two_workers() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let cfg = AnalyticsConfig::default();
    for tape in [
        AAPL,
        "lobster/GOOG_2012-06-21_34200000_57600000_message_1.csv",
        "crypto/trades/binance_usdm_btcusdt_20240808.trades.csv",
        "crypto/raw_hftbacktest/spot_ethusdt_20240809.gz",
    ] {
        let ticks = trades(&dir.join(tape));
        let want_stats = reference::stats(&ticks, &cfg);
        let want_bars = reference::bars(&ticks, &cfg);
        assert!(!want_stats.is_empty(), "{tape} has rows");
        for workers in [1, 2] {
            let got = run_batch(vec![ticks.clone()], &cfg, workers, Outputs::Collect);
            assert!(got.late.is_empty(), "{tape}: in order, nothing late");
            assert!(
                got.stats == want_stats,
                "{tape}: stats differ from the reference at {workers} workers"
            );
            assert!(
                got.bars == want_bars,
                "{tape}: bars differ from the reference at {workers} workers"
            );
        }
    }
}

fn analyze(inputs: &[PathBuf], out: &Path, workers: usize) -> (String, String) {
    let stats = out.with_extension("stats.jsonl");
    let bars = out.with_extension("bars.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args([
            "--log",
            "warn",
            "analyze",
            "--workers",
            &workers.to_string(),
            "--input",
        ])
        .args(inputs)
        .arg("--stats-out")
        .arg(&stats)
        .arg("--bars-out")
        .arg(&bars)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("gostocks runs");
    assert!(status.success(), "analyze {inputs:?} failed");
    (
        std::fs::read_to_string(&stats).expect("stats written"),
        std::fs::read_to_string(&bars).expect("bars written"),
    )
}

#[test]
fn analyze_runs_on_every_tape_and_agrees_with_itself_and_the_reference() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let tmp = std::env::temp_dir().join(format!("gostocks-golden-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let mut tapes: Vec<PathBuf> = Vec::new();
    for sub in [
        "lobster",
        "lobster/truncated",
        "crypto/trades",
        "crypto/raw_hftbacktest",
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .expect("data folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                let name = p.to_string_lossy();
                // Tick files only: LOBSTER message files and Binance sessions (not order books).
                p.is_file() && (name.contains("_message_") || name.contains("usdt"))
            })
            .collect();
        files.sort();
        tapes.extend(files);
    }
    assert!(tapes.len() >= 22, "every tape found: {tapes:?}");
    for (i, tape) in tapes.iter().enumerate() {
        let (stats, _) = analyze(std::slice::from_ref(tape), &tmp.join(i.to_string()), 1);
        assert!(!stats.is_empty(), "{} produced stats", tape.display());
    }

    // The stats file is, byte for byte, the reference rendered as the contract says.
    let cfg = AnalyticsConfig::default();
    let tape = dir.join("lobster/GOOG_2012-06-21_34200000_57600000_message_1.csv");
    let (stats, _) = analyze(std::slice::from_ref(&tape), &tmp.join("goog"), 1);
    let mut want = String::new();
    for row in reference::stats(&trades(&tape), &cfg) {
        row.write_json(&mut want, cfg.windows[row.window as usize].label());
        want.push('\n');
    }
    assert!(stats == want, "analyze's stats equal the reference's");

    // Two workers write the same bytes as one.
    let (stats2, bars2) = analyze(std::slice::from_ref(&tape), &tmp.join("goog2"), 2);
    let (_, bars1) = analyze(std::slice::from_ref(&tape), &tmp.join("goog1"), 1);
    assert!(
        stats2 == stats && bars2 == bars1,
        "1 and 2 workers are byte-identical"
    );

    // A raw WebSocket session and the trade CSV cut from it give the same results.
    let raw = dir.join("crypto/raw_hftbacktest/usdm_btcusdt_20240808.gz");
    let csv = dir.join("crypto/trades/binance_usdm_btcusdt_20240808.trades.csv");
    assert!(
        analyze(&[raw], &tmp.join("raw"), 1) == analyze(&[csv], &tmp.join("csv"), 1),
        "raw session == trade CSV"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Thousands of seeded rules spread around a tape's price range: every condition and mode,
/// both windows, hysteresis and cooldowns.
fn rules_for(ticks: &[Trade], n: usize, seed: u64) -> Vec<(AlertRule, u64, u64)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut prices: Vec<i64> = ticks.iter().map(|t| t.price.units()).collect();
    prices.sort_unstable();
    let symbol = ticks[0].symbol;
    (0..n)
        .map(|i| {
            let condition = Condition::ON_TRADES[rng.random_range(0..Condition::ON_TRADES.len())];
            let threshold = if condition == Condition::VolatilityAbove {
                Fixed::from_units(rng.random_range(1_000..200_000)) // 0.00001 .. 0.002
            } else if matches!(
                condition,
                Condition::ChangePctAbove | Condition::ChangePctBelow
            ) {
                Fixed::from_units(rng.random_range(100_000..50_000_000)) // 0.001 .. 0.5 %
            } else if condition == Condition::VolumeAbove {
                // 10⁻² to 10⁶ of the tape's size unit: both shares and fractions of a coin.
                Fixed::from_units(10i64.pow(rng.random_range(6..=14)))
            } else {
                Fixed::from_units(prices[rng.random_range(0..prices.len())])
            };
            let spread = (prices[prices.len() - 1] - prices[0]).max(1);
            let hysteresis = rng.random_range(0..spread / 20 + 1);
            let mut rule = AlertRule::new(format!("g{i:05}"), symbol, condition, threshold);
            if condition.needs_upper() {
                // A channel from the threshold up to another of the tape's prices, at least
                // twice the hysteresis wide.
                let other = prices[rng.random_range(0..prices.len())];
                let upper = other.max(threshold.units() + 2 * hysteresis + 1);
                rule = rule.with_upper(Some(Fixed::from_units(upper)));
            }
            let rule = rule
                .with_mode(if rng.random_bool(0.5) {
                    Mode::Rearm
                } else {
                    Mode::Once
                })
                .with_hysteresis(Fixed::from_units(hysteresis))
                .with_cooldown_ns([0, 1_000_000_000, 60_000_000_000][rng.random_range(0..3)])
                .with_window(condition.needs_window().then(|| rng.random_range(0..2)))
                .with_storm(None);
            (rule, 0, u64::MAX)
        })
        .collect()
}

#[test]
fn alerts_on_real_tapes_match_the_reference_at_one_and_two_workers() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let cfg = AnalyticsConfig::default();
    for (i, tape) in [
        AAPL,
        "crypto/trades/binance_usdm_btcusdt_20240808.trades.csv",
    ]
    .iter()
    .enumerate()
    {
        let ticks = trades(&dir.join(tape));
        let rules = rules_for(&ticks, 2_000, i as u64);
        let want = reference::alert_events(&ticks, &rules, &cfg);
        assert!(want.len() > 500, "{tape}: the rules fire ({})", want.len());
        let changes: Vec<(AlertRule, u64, isize)> =
            rules.iter().map(|(r, ..)| (r.clone(), 0, 1)).collect();
        for workers in [1, 2] {
            let got = run_batch_core(
                vec![ticks.clone()],
                changes.clone(),
                &cfg,
                workers,
                Outputs::Collect,
            );
            let mut got: Vec<(String, u64, u64)> = got
                .events
                .into_iter()
                .map(|e| (e.alert_id.to_string(), e.time_ns, e.seq))
                .collect();
            got.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
            assert!(
                got == want,
                "{tape}: {} events, the reference has {} ({workers} workers)",
                got.len(),
                want.len()
            );
        }
    }
}

fn quotes(path: &Path) -> Vec<gostocks_core::quotes::Quote> {
    gostocks_connectors::file::QuoteFile::open(path, 1 << 20)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .expect("the file carries quotes")
        .map(|r| r.expect("the recorded quotes decode"))
        .collect()
}

/// A LOBSTER order book, a futures and a spot Binance session: three sources of quotes.
fn books(dir: &Path) -> [PathBuf; 3] {
    [
        "lobster/truncated/AAPL_2012-06-21_34200000_57600000_message_10.first999rows.csv",
        "crypto/raw_hftbacktest/usdm_btcusdt_20240808.gz",
        "crypto/raw_hftbacktest/spot_ethusdt_20240808.gz",
    ]
    .map(|p| dir.join(p))
}

/// `analyze --quotes-out` on a LOBSTER order book, a futures and a spot Binance session at
/// once, line for line against the plain reference over the same quotes; and a hand-checked
/// value of the LOBSTER book.
#[test]
fn quote_stats_on_real_books_match_the_reference() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let inputs = books(&dir);
    let all: Vec<_> = inputs.iter().flat_map(|p| quotes(p)).collect();
    // Every LOBSTER row that changes the top is a quote: of the first 999 rows, those.
    let aapl = quotes(&inputs[0]);
    assert!(aapl.len() > 300 && aapl.len() < 999, "{}", aapl.len());
    assert!(all.len() > 80_000, "{}", all.len());
    let cfg = AnalyticsConfig::default();
    let want = reference::quote_stats(&all, &cfg);
    let want_bars = reference::mid_bars(&all, &cfg);

    let tmp = std::env::temp_dir().join(format!("gostocks-golden-quotes-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let (stats, quotes_out, bars_out) = (
        tmp.join("stats.jsonl"),
        tmp.join("quotes.jsonl"),
        tmp.join("mid.jsonl"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "analyze", "--input"])
        .args(&inputs)
        .arg("--stats-out")
        .arg(&stats)
        .arg("--quotes-out")
        .arg(&quotes_out)
        .arg("--mid-bars-out")
        .arg(&bars_out)
        .output()
        .expect("gostocks runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "analyzed {} quotes from 3 inputs (0 rejected, 0 late)",
            all.len()
        )),
        "{stderr}"
    );
    let labels = ["60s", "300s"];
    let mut expected = String::new();
    for row in &want {
        row.write_json(&mut expected, labels[usize::from(row.window)]);
        expected.push('\n');
    }
    let got = std::fs::read_to_string(&quotes_out).expect("quotes written");
    assert_eq!(got.lines().count(), want.len());
    assert!(got == expected, "the quote stats equal the reference's");
    let mut bars: Vec<_> = want_bars.clone();
    bars.sort_by_key(|b| {
        let size = cfg.bars[usize::from(b.bar)].ns();
        (b.start_ns + size, b.symbol, b.bar)
    });
    let mut expected_bars = String::new();
    for bar in &bars {
        bar.write_json(&mut expected_bars, ["1s", "1m"][usize::from(bar.bar)]);
        expected_bars.push('\n');
    }
    assert!(
        std::fs::read_to_string(&bars_out).expect("mid bars written") == expected_bars,
        "the mid bars equal the reference's"
    );

    // By hand (a Python loop over the two files in decimals): at 09:30:01, 38 quotes since the
    // first at 09:30:00.004241176, two-sided for 0.995758824 s, mean spread 0.289773688031109...
    let first = got.lines().next().expect("a row");
    let v: serde_json::Value = serde_json::from_str(first).expect("JSON");
    assert_eq!(
        (
            &v["symbol"],
            &v["time_ns"],
            &v["quotes"],
            &v["two_sided_ns"]
        ),
        (
            &"AAPL".into(),
            &(OPEN_NS + 1_000_000_000).into(),
            &38.into(),
            &995_758_824u64.into()
        )
    );
    assert!((v["mean_spread"].as_f64().unwrap() - 0.289_773_688_031_109).abs() < 1e-15);
    assert_eq!(aapl.len(), 485);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `analyze --alerts` with `spread_above` alerts of every mode on a LOBSTER order book and a
/// futures and a spot Binance session at once: the events equal the plain reference's over
/// the same quotes, merged in order with a trade alert's event in one `--events-out`.
#[test]
fn spread_alerts_on_real_books_match_the_reference() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let inputs = books(&dir);
    let all: Vec<_> = inputs.iter().flat_map(|p| quotes(p)).collect();
    let cfg = AnalyticsConfig::default();
    // Per symbol, thresholds at the quartiles of its quotes' spreads (in bps), so that every
    // rule fires, rearms and pauses on real books.
    let mut specs = Vec::new();
    let mut symbols: Vec<_> = all.iter().map(|q| q.symbol).collect();
    symbols.sort();
    symbols.dedup();
    for symbol in symbols {
        let mut bps: Vec<f64> = all
            .iter()
            .filter(|q| q.symbol == symbol)
            .filter_map(gostocks_core::alerts::spread_bps)
            .collect();
        bps.sort_by(f64::total_cmp);
        // Never 0 (a threshold is positive): a locked book's spread is.
        let at = |q: f64| format!("{:.6}", bps[(bps.len() as f64 * q) as usize].max(1e-6));
        let s = symbol.as_str();
        for (i, extra) in [
            format!(r#""threshold":"{}","mode":"rearm","hysteresis":"{}","storm":"off""#, at(0.75), at(0.1)),
            format!(r#""threshold":"{}","mode":"rearm","cooldown":"1s""#, at(0.5)),
            format!(r#""threshold":"{}","mode":"once_per_bar","bar":"1s","storm":"off""#, at(0.5)),
            format!(r#""threshold":"{}","mode":"once_per_bar_close","bar":"1m","storm":"off""#, at(0.25)),
            format!(r#""threshold":"{}","mode":"once_per_interval","cooldown":"1s","storm":{{"max_events":20,"within":"1m"}}"#, at(0.25)),
            format!(r#""threshold":"{}""#, at(0.9)),
        ]
        .iter()
        .enumerate()
        {
            specs.push(format!(
                r#"{{"id":"{s}-{i}","symbol":"{s}","condition":"spread_above",{extra}}}"#
            ));
        }
    }
    specs
        .push(r#"{"id":"trade","symbol":"AAPL","condition":"price_above","threshold":"1"}"#.into());
    let tmp = std::env::temp_dir().join(format!("gostocks-golden-spread-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let alerts = tmp.join("alerts.json");
    std::fs::write(&alerts, format!("[{}]", specs.join(","))).expect("written");
    let rules: Vec<(AlertRule, u64, u64)> = specs
        .iter()
        .map(|s| {
            let spec: gostocks_core::alerts::AlertSpec = serde_json::from_str(s).expect("spec");
            let id = spec.id.clone().expect("an id");
            let rule = spec
                .to_rule_core(&id, 0, &cfg.windows, &cfg.bars)
                .expect("a valid rule");
            (rule, 0, u64::MAX)
        })
        .collect();
    let events = tmp.join("events.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "analyze", "--input"])
        .args(&inputs)
        .arg("--stats-out")
        .arg(tmp.join("stats.jsonl"))
        .arg("--alerts")
        .arg(&alerts)
        .arg("--events-out")
        .arg(&events)
        .output()
        .expect("gostocks runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .expect("events written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    // One file, in (time, symbol, seq, alert id) order, the trade alert's event among them.
    let key = |v: &serde_json::Value| {
        (
            v["time_ns"].as_u64().unwrap(),
            v["symbol"].as_str().unwrap().to_owned(),
            v["seq"].as_u64().unwrap(),
            v["alert_id"].as_str().unwrap().to_owned(),
        )
    };
    assert!(
        lines.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "in order"
    );
    assert_eq!(lines.iter().filter(|v| v["alert_id"] == "trade").count(), 1);
    let mut got: Vec<(String, u64, u64, bool)> = lines
        .iter()
        .filter(|v| v["alert_id"] != "trade")
        .map(|v| {
            (
                v["alert_id"].as_str().unwrap().to_owned(),
                v["time_ns"].as_u64().unwrap(),
                v["seq"].as_u64().unwrap(),
                v.get("kind").is_some_and(|k| k == "paused"),
            )
        })
        .collect();
    let mut want: Vec<(String, u64, u64, bool)> =
        reference::spread_alert_events(&all, &rules, &cfg)
            .into_iter()
            .map(|(id, t, seq, kind)| (id, t, seq, kind != gostocks_core::alerts::EventKind::Fired))
            .collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the spread alert events equal the reference's");
    // Every rule fired; the guarded one paused.
    for spec in &specs {
        let id = serde_json::from_str::<serde_json::Value>(spec).unwrap()["id"].clone();
        assert!(lines.iter().any(|v| v["alert_id"] == id), "{id} fired");
    }
    assert!(want.iter().any(|e| e.3), "a storm guard paused");
    println!(
        "{} spread alert events over {} quotes",
        want.len(),
        all.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
