//! The alert store (Postgres, or memory) as a sink of alert events: each event is stored once
//! (the store deduplicates), a fired `once` alert is marked triggered, and newly stored events
//! go to live watchers ([`AlertHub::record`]). A store outage is transient: the driver retries
//! the batch with backoff, and the runner turns not ready if it lasts.

use std::sync::Arc;

use super::{Output, Sink, SinkError, Takes};
use crate::alerts::AlertHub;

/// Records alert events through an [`AlertHub`].
pub struct AlertEvents(pub Arc<AlertHub>);

impl Sink for AlertEvents {
    fn name(&self) -> &str {
        "alert_store"
    }

    fn takes(&self) -> Takes {
        Takes {
            prices: false,
            stats: false,
            bars: false,
            ..Takes::ALL
        }
    }

    async fn write(&mut self, batch: &[Output]) -> Result<(), SinkError> {
        for output in batch {
            if let Output::Event(event) = output {
                self.0.record(event).await.map_err(SinkError::Transient)?;
            }
        }
        Ok(())
    }
}
