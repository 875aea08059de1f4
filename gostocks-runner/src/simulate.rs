//! `gostocks simulate`: a realistic synthetic tape.
//!
//! Prices follow geometric Brownian motion, rounded to the symbol's tick size. Arrivals are a
//! Markov-modulated Poisson process: calm periods at the base rate and bursts at eight times it,
//! which gives the clustered activity of real tapes. Sizes are mostly round lots, with odd lots
//! and the occasional block.

use std::io::{BufWriter, Write};

use anyhow::Context;
use gostocks_core::{Fixed, Side, Tick};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, StandardNormal};

use crate::cli::SimulateArgs;

/// Seconds in a trading year (252 days of 6.5 hours): scales annual volatility to per-second.
const TRADING_SECONDS_PER_YEAR: f64 = 252.0 * 6.5 * 3600.0;
const BURST_FACTOR: f64 = 8.0;
/// Mean length of calm periods and bursts, in seconds.
const CALM_SECONDS: f64 = 90.0;
const BURST_SECONDS: f64 = 8.0;

struct Profile {
    start: f64,
    annual_vol: f64,
    tick_units: i64,
}

fn profile(symbol: &str) -> Profile {
    let known = [
        ("AAPL", 192.0, 0.25),
        ("MSFT", 415.0, 0.22),
        ("GOOG", 175.0, 0.28),
        ("AMZN", 180.0, 0.30),
        ("TSLA", 175.0, 0.55),
    ];
    let (start, annual_vol) = known
        .iter()
        .find(|k| k.0 == symbol)
        .map(|k| (k.1, k.2))
        .unwrap_or_else(|| {
            let h = symbol
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            (20.0 + (h % 400) as f64, 0.2 + (h % 40) as f64 / 100.0)
        });
    // US equities trade in cents.
    Profile {
        start,
        annual_vol,
        tick_units: 1_000_000,
    }
}

/// Ticks of one symbol over `[start_ns, start_ns + duration_ns)`.
fn symbol_ticks(symbol: &str, args: &SimulateArgs, rng: &mut StdRng) -> Vec<Tick> {
    let p = profile(symbol);
    let sigma = p.annual_vol / TRADING_SECONDS_PER_YEAR.sqrt();
    let end_ns = args.duration.ns() as f64;
    let size_dist = LogNormal::<f64>::new(0.0, 1.0).expect("valid lognormal");
    let mut ticks = Vec::new();
    let mut log_price = p.start.ln();
    let (mut t, mut burst) = (0.0f64, false);
    let mut regime_left = Exp::new(1.0 / CALM_SECONDS).expect("rate > 0").sample(rng);
    while t < end_ns / 1e9 {
        let rate = if burst {
            args.rate * BURST_FACTOR
        } else {
            args.rate
        };
        let dt: f64 = Exp::new(rate).expect("rate > 0").sample(rng);
        if dt > regime_left {
            // The regime switches before the next arrival; memorylessness lets us restart the clock.
            t += regime_left;
            burst = !burst;
            let mean = if burst { BURST_SECONDS } else { CALM_SECONDS };
            regime_left = Exp::new(1.0 / mean).expect("rate > 0").sample(rng);
            continue;
        }
        regime_left -= dt;
        t += dt;
        let z: f64 = StandardNormal.sample(rng);
        log_price += -0.5 * sigma * sigma * dt + sigma * dt.sqrt() * z;
        let units = (log_price.exp() * 1e8 / p.tick_units as f64).round() as i64 * p.tick_units;
        let shares: i64 = match rng.random_range(0..100) {
            0..=64 => 100 * (size_dist.sample(rng).ceil() as i64).clamp(1, 20),
            65..=94 => rng.random_range(1..100),
            _ => 100 * rng.random_range(10..50),
        };
        ticks.push(
            Tick::new(
                symbol.to_owned(),
                Fixed::from_units(units.max(p.tick_units)),
                Fixed::from_mantissa(shares, 0).expect("small"),
                args.start_ns + (t * 1e9) as i64,
                0,
            )
            .with_source("simulate")
            .with_side(Some(if rng.random_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            })),
        );
    }
    ticks
}

/// Generates the whole recording, in event-time order with a global sequence number.
pub fn generate(args: &SimulateArgs) -> Vec<Tick> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut all: Vec<Tick> = args
        .symbols
        .iter()
        .flat_map(|s| symbol_ticks(s, args, &mut rng))
        .collect();
    all.sort_by(|a, b| (a.time_ns, &a.symbol).cmp(&(b.time_ns, &b.symbol)));
    for (i, t) in all.iter_mut().enumerate() {
        t.seq = i as u64;
        t.trade_id = Some(i as u64 + 1);
    }
    all
}

/// Runs `gostocks simulate`.
pub fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be a positive number of trades per second"
    );
    for s in &args.symbols {
        gostocks_core::Symbol::new(s)
            .with_context(|| format!("--symbols: `{s}` is not a valid symbol"))?;
    }
    let ticks = generate(&args);
    let out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?,
        )
    };
    let mut out = BufWriter::new(out);
    for t in &ticks {
        serde_json::to_writer(&mut out, t)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!(
        "wrote {} ticks of {} symbols over {}",
        ticks.len(),
        args.symbols.len(),
        args.duration
    );
    Ok(())
}
