//! Helpers shared by the examples: where the bundled recording is, and how to load it.
//!
//! `data/ticks.jsonl` is five minutes of five symbols (2,398 ticks) recorded by
//! `gostocks simulate`, one canonical JSON tick per line, in time order.
#![forbid(missing_docs)]

use gostocks_core::{Tick, Trade};

/// The project README's Rust code, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Path of the recording made by `gostocks simulate` and committed with the project.
pub const RECORDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ticks.jsonl");

/// One second, in the nanoseconds that event times are counted in.
pub const SEC: u64 = 1_000_000_000;

/// The bundled recording's ticks, in file order (which is time order).
pub fn load_ticks() -> Vec<Tick> {
    let text = std::fs::read_to_string(RECORDING)
        .expect("examples/data/ticks.jsonl is part of the repository");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Tick>(l).expect("the recording is canonical JSON"))
        .collect()
}

/// The bundled recording's trades, validated, in file order.
pub fn load_recording() -> Vec<Trade> {
    load_ticks()
        .iter()
        .map(|t| t.validate().expect("the recording holds valid ticks"))
        .collect()
}

/// Seconds since `start`, for printing.
pub fn secs_since(start: u64, t: u64) -> f64 {
    (t - start) as f64 / SEC as f64
}
