//! Kafka: tick topics (protobuf by default, JSON on request), produced keyed by symbol.
//!
//! See [`KafkaConfig`] for the settings and why each non-default librdkafka option is set.

mod config;
mod sink;
mod source;

pub use config::{KafkaConfig, TickEncoding};
pub use sink::TickProducer;
pub use source::{TickConsumer, decode_tick};

/// The default topic of ticks.
pub const TICKS_TOPIC: &str = "ticks";
/// Where records that do not decode or validate go, with an `error` header.
pub const DLQ_TOPIC: &str = "ticks.dlq";
