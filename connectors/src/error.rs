//! Connector errors, split by whether a retry can help.

use crate::websocket::ProviderError;

/// A connector failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file's format is not one gostocks reads, or could not be detected.
    #[error("{0}")]
    Format(String),
    /// Kafka refused or failed an operation.
    #[error("kafka: {context}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Redis refused or failed an operation.
    #[error("redis: {context}")]
    Redis {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: ::redis::RedisError,
    },
    /// Postgres refused or failed an operation.
    #[error("postgres: {context}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A WebSocket connection failed.
    #[error("websocket: {context}")]
    WebSocket {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// A thread could not be started.
    #[error("cannot start thread {name}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A market data provider refused the session (see [`ProviderError::retry`]).
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

impl Error {
    /// Whether backing off and retrying may succeed (a service is down or overloaded), as opposed
    /// to a definite failure (bad input, bad configuration) that retrying repeats.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Format(_) | Error::Thread { .. } => false,
            Error::Kafka { source, .. } => !matches!(
                source.rdkafka_error_code(),
                Some(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                        | rdkafka::types::RDKafkaErrorCode::InvalidConfig
                        | rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
                )
            ),
            Error::Redis { source, .. } => {
                source.is_io_error() || source.is_connection_dropped() || source.is_timeout()
            }
            Error::Postgres { source, .. } => source.as_db_error().is_none(),
            Error::WebSocket { source, .. } => !matches!(
                source.as_ref(),
                tokio_tungstenite::tungstenite::Error::Http(r)
                    if matches!(r.status().as_u16(), 401 | 403)
            ),
            Error::Provider(e) => e.retry,
        }
    }
}
