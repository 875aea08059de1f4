use std::str::FromStr;

use rdkafka::ClientConfig;

/// How ticks are encoded on a topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TickEncoding {
    /// `gostocks.v1.Tick` protobuf (the default).
    #[default]
    Protobuf,
    /// The canonical JSON tick form.
    Json,
}

impl FromStr for TickEncoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "protobuf" | "proto" => Ok(TickEncoding::Protobuf),
            "json" => Ok(TickEncoding::Json),
            other => Err(format!(
                "unknown tick encoding `{other}`: use protobuf or json"
            )),
        }
    }
}

/// Where and how to reach Kafka.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group id.
    pub group: String,
    /// The longest a consumer's fetch waits at the broker for data (`fetch.wait.max.ms`).
    /// Some brokers (tansu) hold every fetch this long, so it bounds the tick-to-output latency.
    pub fetch_wait_ms: u32,
    /// How long the producer gathers records into a batch (`linger.ms`).
    pub linger_ms: u32,
}

/// The default [`KafkaConfig::fetch_wait_ms`]: low enough for real-time outputs, high enough
/// that an idle consumer does not poll the broker in a tight loop.
pub const DEFAULT_FETCH_WAIT_MS: u32 = 5;

impl KafkaConfig {
    /// A config for `brokers` with consumer group `group`.
    pub fn new(brokers: impl Into<String>, group: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            group: group.into(),
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
            linger_ms: 5,
        }
    }

    /// The same config with the consumer's fetch wait set to `ms`.
    pub fn with_fetch_wait_ms(mut self, ms: u32) -> KafkaConfig {
        self.fetch_wait_ms = ms;
        self
    }

    /// The same config with the producer's linger set to `ms`.
    pub fn with_linger_ms(mut self, ms: u32) -> KafkaConfig {
        self.linger_ms = ms;
        self
    }

    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            // Exactly-once per partition on retries: no duplicates, no reordering.
            .set("enable.idempotence", "true")
            // Ticks are small and many: a short linger batches them without adding visible latency.
            .set("linger.ms", self.linger_ms.to_string())
            // Bounded wait so a dead broker surfaces as an error instead of an endless retry.
            .set("message.timeout.ms", "30000");
        c
    }

    /// The consumer settings gostocks uses (for a consumer with its own context).
    pub fn consumer(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            // Offsets are committed by gostocks after its outputs are durable, never on a timer.
            .set("enable.auto.commit", "false")
            // A new group starts from the beginning of the topic: no tick is silently skipped.
            .set("auto.offset.reset", "earliest")
            // A crashed member's partitions move on after 6 s (the brokers' usual minimum),
            // not the default 45 s: a restart after kill -9 resumes promptly.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1500")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string());
        if let Ok(debug) = std::env::var("GOSTOCKS_KAFKA_DEBUG") {
            c.set("debug", debug);
        }
        c
    }
}
