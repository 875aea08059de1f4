//! Kafka: tick topics (protobuf by default, JSON on request), produced keyed by symbol.
//!
//! See [`KafkaConfig`] for the settings and why each non-default librdkafka option is set.
//!
//! [`KafkaSource`] reads ticks as a consumer-group member: it says what it was assigned, what
//! was revoked and what it read, and commits what its driver says is durable. Its arithmetic
//! is pure and tested on its own: which offsets to commit ([`Commits`]), whose outputs to
//! write ([`Ownership`]), and whether the consumer is stuck (the watchdog's [`Verdict`]).

mod buffer;
mod commits;
mod config;
mod membership;
mod ownership;
mod quotes;
mod rebalance;
mod sampler;
mod sink;
mod source;
mod watchdog;

pub use buffer::{TickBuffer, deliver};
pub use commits::{Commits, Handed, Start};
pub use config::{
    DEFAULT_FETCH_WAIT_MS, DYNAMIC_SESSION_TIMEOUT, KafkaConfig, KafkaOptions,
    STATIC_SESSION_TIMEOUT, TickEncoding, is_secret_key,
};
pub use membership::InstanceId;
pub use ownership::Ownership;
pub use quotes::{QUOTES_TOPIC, decode_quote, encode_quote};
pub use sink::TickProducer;
pub use source::{
    Assignment, Event, KafkaSource, REJOIN_MARGIN, Record, Rejected, Share, TickConsumer,
    decode_tick,
};
pub use watchdog::Verdict;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::Error;

/// Locks `m`, whatever a panicking holder left behind (the state stays consistent: every
/// holder's changes are whole before it can panic).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates `topic` with `partitions` partitions unless it exists (replication 1: a local or test
/// broker; production topics are provisioned by their operators).
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), Error> {
    ensure_topic_with(&KafkaConfig::new(brokers, ""), topic, partitions).await
}

/// [`ensure_topic`] with the brokers and [`KafkaConfig::options`] (security settings) of `config`.
pub async fn ensure_topic_with(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), Error> {
    let err = |source| Error::Kafka {
        context: format!("creating topic {topic}"),
        source,
    };
    let admin: AdminClient<DefaultClientContext> = config.admin().create().map_err(err)?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .map_err(err)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(rdkafka::error::KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

/// The default topic of ticks.
pub const TICKS_TOPIC: &str = "ticks";
/// Where records that do not decode or validate go, with an `error` header.
pub const DLQ_TOPIC: &str = "ticks.dlq";
/// The stats changelog topic: one JSON stats line per record, keyed by symbol.
pub const STATS_TOPIC: &str = "stats";
/// Alert events: one JSON event per record, keyed by symbol.
pub const ALERTS_TOPIC: &str = "alerts.triggered";
