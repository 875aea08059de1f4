use gostocks_core::{Rejection, Tick};
use gostocks_proto::v1;
use prost::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

use super::config::{KafkaConfig, TickEncoding};
use crate::error::Error;

/// Decodes a record's payload into a tick; the error says what is wrong with the bytes.
pub fn decode_tick(payload: &[u8], encoding: TickEncoding) -> Result<Tick, Rejection> {
    match encoding {
        TickEncoding::Protobuf => {
            let msg = v1::Tick::decode(payload)
                .map_err(|e| Rejection::Decode(format!("protobuf: {e}")))?;
            Tick::try_from(msg).map_err(|e| Rejection::Decode(e.to_string()))
        }
        TickEncoding::Json => {
            serde_json::from_slice(payload).map_err(|e| Rejection::Decode(format!("json: {e}")))
        }
    }
}

/// A consumer-group member reading tick topics; offsets are committed explicitly.
pub struct TickConsumer {
    /// The underlying rdkafka consumer.
    pub consumer: StreamConsumer,
}

impl TickConsumer {
    /// Joins the configured group and subscribes to `topics`.
    pub fn subscribe(config: &KafkaConfig, topics: &[&str]) -> Result<TickConsumer, Error> {
        let consumer: StreamConsumer =
            config.consumer().create().map_err(|source| Error::Kafka {
                context: "creating consumer".into(),
                source,
            })?;
        consumer.subscribe(topics).map_err(|source| Error::Kafka {
            context: format!("subscribing to {topics:?}"),
            source,
        })?;
        Ok(TickConsumer { consumer })
    }
}
