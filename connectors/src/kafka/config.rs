use std::str::FromStr;
use std::time::Duration;

use rdkafka::ClientConfig;

/// How ticks are encoded on a topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TickEncoding {
    /// `gostocks.v1.Tick` protobuf (the default).
    #[default]
    #[cfg_attr(feature = "clap", value(alias = "proto"))]
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
    /// The consumer's static group membership id (`group.instance.id`, KIP-345), if any; see
    /// [`KafkaConfig::session_timeout`] for what it changes.
    pub instance_id: Option<String>,
    /// librdkafka settings given by the operator (security, timeouts), set on every client
    /// after gostocks' own, so that they win.
    pub options: KafkaOptions,
}

/// librdkafka settings `key = value`, in the order given (a later one wins). Their `Debug`
/// shows the values of secret keys (see [`is_secret_key`]) as `***`, so that a config printed
/// or logged never holds a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaOptions(pub Vec<(String, String)>);

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_key(k) { "***" } else { v.as_str() };
                (k, shown)
            }))
            .finish()
    }
}

/// Whether the librdkafka setting `key` holds a secret (a password, a private key, an OAuth
/// client secret): never printed.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "ssl.key.pem",
        "private",
        "sasl.jaas",
        "token",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// The default [`KafkaConfig::fetch_wait_ms`]: low enough for real-time outputs, high enough
/// that an idle consumer does not poll the broker in a tight loop.
pub const DEFAULT_FETCH_WAIT_MS: u32 = 5;

/// The session timeout of a dynamic group member: a crashed member's partitions move on after
/// 6 s (the brokers' usual minimum), not the default 45 s.
pub const DYNAMIC_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The session timeout of a static group member (one with an instance id). A static member
/// restarted within it takes its own assignment back; it must also outlast the join itself:
/// tansu 0.6 holds a static member's JoinGroup and SyncGroup 3 s each and refreshes the member's
/// session only on heartbeats, so with 6 s it would expire every member at its first heartbeat.
pub const STATIC_SESSION_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaConfig {
    /// A config for `brokers` with consumer group `group`.
    pub fn new(brokers: impl Into<String>, group: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            group: group.into(),
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
            linger_ms: 5,
            instance_id: None,
            options: KafkaOptions::default(),
        }
    }

    /// The same config with the operator's librdkafka `options` (set last on every client).
    pub fn with_options(mut self, options: KafkaOptions) -> KafkaConfig {
        self.options = options;
        self
    }

    /// Sets the operator's options on `c`, after gostocks' own.
    fn apply_options(&self, c: &mut ClientConfig) {
        for (k, v) in &self.options.0 {
            c.set(k, v);
        }
    }

    /// The settings of an admin client (creating topics).
    pub(crate) fn admin(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        self.apply_options(&mut c);
        c
    }

    /// The same config with the consumer a static group member named `id` (`None`: dynamic).
    pub fn with_instance_id(mut self, id: Option<String>) -> KafkaConfig {
        self.instance_id = id;
        self
    }

    /// How long the group coordinator waits for a silent member before it gives the member's
    /// partitions to others: [`STATIC_SESSION_TIMEOUT`] for a static member,
    /// [`DYNAMIC_SESSION_TIMEOUT`] otherwise.
    pub fn session_timeout(&self) -> Duration {
        if self.instance_id.is_some() {
            STATIC_SESSION_TIMEOUT
        } else {
            DYNAMIC_SESSION_TIMEOUT
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
        self.apply_options(&mut c);
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
            // See DYNAMIC_SESSION_TIMEOUT and STATIC_SESSION_TIMEOUT.
            .set(
                "session.timeout.ms",
                self.session_timeout().as_millis().to_string(),
            )
            // Heartbeats also bring news of a rebalance: at most 3 s late, and several per
            // session, so that one lost heartbeat does not cost the session.
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout() / 4)
                    .min(Duration::from_secs(3))
                    .as_millis()
                    .to_string(),
            )
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string());
        // KIP-345: a member restarted under the same id gets its assignment back at once
        // instead of waiting for its dead predecessor's session to expire.
        if let Some(id) = &self.instance_id {
            c.set("group.instance.id", id);
        }
        if let Ok(debug) = std::env::var("GOSTOCKS_KAFKA_DEBUG") {
            c.set("debug", debug);
        }
        self.apply_options(&mut c);
        c
    }
}
