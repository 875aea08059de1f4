//! The Kafka topics as a [`Sink`]: stats changelog rows to the `stats` topic and the alert
//! events the dataflow fires to `alerts.triggered`, keyed by symbol, through the idempotent
//! producer.

use gostocks_connectors::kafka::TickProducer;

use super::{Output, Sink, SinkError, Takes};

/// Writes stats rows and alert events to their topics.
pub struct Kafka {
    producer: TickProducer,
    stats_topic: String,
    alerts_topic: String,
    windows: Vec<String>,
}

impl Kafka {
    /// A sink over `producer`; `windows` are the window labels by index.
    pub fn new(
        producer: TickProducer,
        stats_topic: String,
        alerts_topic: String,
        windows: Vec<String>,
    ) -> Kafka {
        Kafka {
            producer,
            stats_topic,
            alerts_topic,
            windows,
        }
    }
}

/// Records in flight at once.
const IN_FLIGHT: usize = 10_000;

impl Sink for Kafka {
    fn name(&self) -> &str {
        "kafka"
    }

    fn takes(&self) -> Takes {
        Takes {
            prices: false,
            bars: false,
            ..Takes::ALL
        }
    }

    async fn write(&mut self, batch: &[Output]) -> Result<(), SinkError> {
        let mut line = String::new();
        let mut records: Vec<(&str, Vec<u8>, Vec<u8>)> = Vec::new();
        for o in batch {
            match o {
                Output::Stats(row) => {
                    line.clear();
                    row.write_json(&mut line, &self.windows[row.window as usize]);
                    records.push((
                        &self.stats_topic,
                        row.symbol.as_str().as_bytes().to_vec(),
                        line.as_bytes().to_vec(),
                    ));
                }
                Output::Event(e) => records.push((
                    &self.alerts_topic,
                    e.symbol.as_str().as_bytes().to_vec(),
                    e.to_json().into_bytes(),
                )),
                Output::Price(..) | Output::Bar(_) | Output::Mark(_) => {}
            }
        }
        for chunk in records.chunks(IN_FLIGHT) {
            let sends: Vec<_> = chunk
                .iter()
                .map(|(topic, key, payload)| {
                    self.producer
                        .send_record(topic, key.clone(), payload.clone())
                })
                .collect();
            for r in futures::future::join_all(sends).await {
                r?;
            }
        }
        Ok(())
    }
}
