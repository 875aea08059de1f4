use std::time::Duration;

use gostocks_core::Tick;
use gostocks_proto::v1;
use prost::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::config::{KafkaConfig, TickEncoding};
use crate::error::Error;

/// An idempotent producer of ticks, keyed by symbol so that each symbol stays in order on one
/// partition.
#[derive(Clone)]
pub struct TickProducer {
    producer: FutureProducer,
    encoding: TickEncoding,
}

impl TickProducer {
    /// Connects a producer.
    pub fn new(config: &KafkaConfig, encoding: TickEncoding) -> Result<TickProducer, Error> {
        let producer = config.producer().create().map_err(|source| Error::Kafka {
            context: "creating producer".into(),
            source,
        })?;
        Ok(TickProducer { producer, encoding })
    }

    /// Encodes a tick as this producer's encoding.
    pub fn encode(&self, tick: &Tick) -> Vec<u8> {
        match self.encoding {
            TickEncoding::Protobuf => v1::Tick::from(tick).encode_to_vec(),
            TickEncoding::Json => serde_json::to_vec(tick).unwrap_or_default(),
        }
    }

    /// Sends one tick to `topic` and waits for the broker's acknowledgement.
    pub async fn send(&self, topic: &str, tick: &Tick) -> Result<(i32, i64), Error> {
        self.send_owned(topic.to_owned(), tick.clone()).await
    }

    /// Sends one tick to `topic`; the future resolves when the broker acknowledges it. Many can
    /// be in flight at once, which is how a replay keeps the producer's batches full.
    ///
    /// The record is queued at once when the producer's queue has room, not when the future is
    /// first polled: a tick's latency does not depend on when its caller awaits.
    pub fn send_owned(
        &self,
        topic: String,
        tick: Tick,
    ) -> impl std::future::Future<Output = Result<(i32, i64), Error>> + use<> {
        let payload = self.encode(&tick);
        let producer = self.producer.clone();
        let queued = producer
            .send_result(
                FutureRecord::to(&topic)
                    .key(tick.symbol.as_bytes())
                    .payload(&payload),
            )
            .ok();
        async move {
            let err = |source| Error::Kafka {
                context: format!("producing to {topic}"),
                source,
            };
            match queued {
                Some(delivery) => match delivery.await {
                    Ok(Ok(d)) => Ok((d.partition, d.offset)),
                    Ok(Err((source, _))) => Err(err(source)),
                    Err(_) => Err(err(rdkafka::error::KafkaError::Canceled)),
                },
                // The queue was full: wait for room, as an unqueued send does.
                None => {
                    let record = FutureRecord::to(&topic)
                        .key(tick.symbol.as_bytes())
                        .payload(&payload);
                    deliver(&producer, record, &topic).await
                }
            }
        }
    }

    /// Sends a record with `key` and `payload` as they are (the stats and alert-event topics);
    /// the future resolves when the broker acknowledges it.
    pub fn send_record(
        &self,
        topic: &str,
        key: Vec<u8>,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(i32, i64), Error>> + use<> {
        let (producer, topic) = (self.producer.clone(), topic.to_owned());
        async move {
            let record = FutureRecord::to(&topic).key(&key).payload(&payload);
            deliver(&producer, record, &topic).await
        }
    }

    /// Sends a record that could not be used to a dead-letter topic: the original key and bytes,
    /// with the reason in an `error` header.
    pub async fn dead_letter(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        error: &str,
    ) -> Result<(), Error> {
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "error",
            value: Some(error),
        });
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        deliver(&self.producer, record, topic).await.map(|_| ())
    }

    /// Waits until every queued record is acknowledged.
    pub fn flush(&self) -> Result<(), Error> {
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(|source| Error::Kafka {
                context: "flushing producer".into(),
                source,
            })
    }
}

/// Sends one record and waits for the broker's acknowledgement: its (partition, offset).
async fn deliver<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &FutureProducer,
    record: FutureRecord<'_, K, P>,
    topic: &str,
) -> Result<(i32, i64), Error> {
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(source, _)| Error::Kafka {
            context: format!("producing to {topic}"),
            source,
        })?;
    Ok((delivery.partition, delivery.offset))
}
