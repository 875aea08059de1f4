//! The in-process read model ([`ReadModel`]) as a sink: what REST and gRPC answer from. It never
//! fails, takes every output but alert events, and is not shared (after a restart it starts
//! empty, so it is handed the replayed outputs too).

use std::sync::Arc;

use super::{Output, Sink, SinkError, Takes};
use crate::read_model::ReadModel;

/// Writes prices, stats and bars into a [`ReadModel`].
pub struct ReadModelSink(pub Arc<ReadModel>);

impl Sink for ReadModelSink {
    fn name(&self) -> &str {
        "read_model"
    }

    fn takes(&self) -> Takes {
        Takes {
            events: false,
            shared: false,
            ..Takes::ALL
        }
    }

    async fn write(&mut self, batch: &[Output]) -> Result<(), SinkError> {
        for output in batch {
            match output {
                Output::Price(symbol, price) => self.0.apply_price(symbol, *price),
                Output::Stats(row) => self.0.apply_stats(row),
                Output::Bar(row) => self.0.apply_bar(row),
                Output::Event(_) | Output::Mark(_) => {}
            }
        }
        Ok(())
    }
}
