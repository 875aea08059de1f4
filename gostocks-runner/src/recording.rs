//! The bundled recording that `gostocks run` replays by default.

/// `examples/data/ticks.jsonl`, made by `gostocks simulate` (see the README).
pub const BUNDLED: &str = include_str!("../../examples/data/ticks.jsonl");
