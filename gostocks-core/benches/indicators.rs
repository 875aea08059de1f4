//! Criterion benchmarks of the indicator maths alone (no dataflow): the per-tick costs that
//! every window and bar pays.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gostocks_core::Fixed;
use gostocks_core::indicators::{Agg, Ema, quantize_log_return};

fn prices(n: usize) -> Vec<Fixed> {
    // A deterministic walk around 585 in cents, like a LOBSTER AAPL tape.
    let mut p = 58_533i64;
    (0..n)
        .map(|i| {
            p += [(1, 0), (-1, 1), (0, 2), (2, 3)][i % 4].0;
            Fixed::from_mantissa(p, 2).expect("in range")
        })
        .collect()
}

fn indicators(c: &mut Criterion) {
    let n = 100_000;
    let ps = prices(n);
    let size = Fixed::from_mantissa(100, 0).expect("in range");
    let mut group = c.benchmark_group("indicators");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("parse_decimal", |b| {
        let texts: Vec<String> = ps.iter().map(ToString::to_string).collect();
        b.iter(|| {
            texts
                .iter()
                .map(|t| Fixed::parse_bytes(t.as_bytes()).expect("valid").units())
                .sum::<i64>()
        })
    });
    group.bench_function("log_return", |b| {
        b.iter(|| {
            ps.windows(2)
                .map(|w| quantize_log_return(w[1], w[0]))
                .sum::<i64>()
        })
    });
    group.bench_function("agg_add_and_retract", |b| {
        b.iter(|| {
            let mut w = Agg::default();
            for (i, p) in ps.iter().enumerate() {
                w += Agg::tick(*p, size, i as u64, Some(1));
                if i >= 60 {
                    w -= Agg::tick(ps[i - 60], size, (i - 60) as u64, Some(1));
                }
            }
            black_box(w)
        })
    });
    group.bench_function("stats_from_agg", |b| {
        let mut w = Agg::default();
        for (i, p) in ps.iter().take(60).enumerate() {
            w += Agg::tick(*p, size, i as u64, Some(i as i64));
        }
        b.iter(|| {
            (0..n)
                .map(|_| {
                    black_box(&w).stddev().unwrap_or(0.0)
                        + w.volatility().unwrap_or(0.0)
                        + w.vwap().unwrap_or(0.0)
                })
                .sum::<f64>()
        })
    });
    group.bench_function("ema", |b| {
        b.iter(|| {
            let mut e = Ema::new(20);
            ps.iter().map(|p| e.update(p.to_f64())).sum::<f64>()
        })
    });
    group.finish();
}

criterion_group!(benches, indicators);
criterion_main!(benches);
