//! Helpers shared by the examples: where the bundled recording is, and how to load it.
#![forbid(missing_docs)]

use gostocks_core::{Tick, Trade};

/// Path of the recording made by `gostocks simulate` and committed with the project.
pub const RECORDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ticks.jsonl");

/// The bundled recording's trades, validated, in file order.
pub fn load_recording() -> Vec<Trade> {
    let text = std::fs::read_to_string(RECORDING)
        .expect("examples/data/ticks.jsonl is part of the repository");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Tick>(l).expect("the recording is canonical JSON"))
        .map(|t| t.validate().expect("the recording holds valid ticks"))
        .collect()
}
