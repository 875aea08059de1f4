//! The command line. Every flag of `gostocks run` also reads a `GOSTOCKS_*` environment variable
//! (named in `--help`), as do the connection and service flags of the other commands. With
//! `--config FILE` a TOML file comes in between; the precedence is written down once, in
//! [`crate::config`]: default < file < environment < flag.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gostocks_connectors::file::Format;
use gostocks_connectors::kafka::{ALERTS_TOPIC, STATS_TOPIC, TICKS_TOPIC, TickEncoding};
use gostocks_connectors::limits::MAX_RECORD_BYTES;
use gostocks_connectors::websocket::ProviderKind;
use gostocks_core::Span;
use gostocks_core::stats::AnalyticsConfig;

/// gostocks: exact, incremental market analytics on timely/differential dataflow.
///
/// Start with `gostocks run`: it replays the bundled recording and serves REST on
/// 127.0.0.1:8080 and gRPC on 127.0.0.1:50051, with no external services.
#[derive(Debug, Parser)]
#[command(name = "gostocks", version, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info`, `gostocks=debug` (default: RUST_LOG, else `info`).
    #[arg(long, global = true, env = "GOSTOCKS_LOG")]
    pub log: Option<String>,

    /// Log lines as text, or as JSON: one object a line, with the span fields.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "GOSTOCKS_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// A TOML configuration file: `log` and `log_format` at the top, `[run]` and `[ingest]`
    /// holding their commands' flags (with `_` for `-`), `[kafka.options]` librdkafka settings.
    /// See `examples/gostocks.toml` and `gostocks config show`.
    #[arg(long, global = true, env = "GOSTOCKS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line: timestamp, level, message, fields and the spans' fields.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline: replay ticks through the dataflow and serve REST and gRPC.
    ///
    /// With no flags it needs no services: it loops the bundled recording at its recorded pace,
    /// keeps state in memory, and serves `GET /price/:symbol` and the gRPC MarketService.
    Run(Box<RunArgs>),
    /// Write a synthetic tick recording (geometric Brownian prices, bursty arrivals).
    Simulate(SimulateArgs),
    /// Run the analytics dataflow over recorded files and write stats, bars and late ticks.
    ///
    /// Stats are a changelog: a line per (symbol, window) at every grid time where the window's
    /// content changed; the state at any time is the latest line at or before it. Bars are
    /// written once final. See the README for every field.
    Analyze(AnalyzeArgs),
    /// Replay recorded files into a Kafka topic, keyed by symbol, in event-time order.
    ///
    /// Prints a progress line on a terminal and the final rate. Records that do not decode or
    /// validate are counted and passed over.
    Replay(ReplayArgs),
    /// Measure throughput and memory on a workload built from the real recorded tapes.
    ///
    /// Prints a table: ticks/s of the dataflow on ticks already in memory (1 and 2 workers),
    /// of `analyze` end to end from a CSV file (parsing and writing every output), and peak RSS.
    Bench(BenchArgs),
    /// Manage users of the alert service (their API keys).
    Users(UsersArgs),
    /// Apply the database migrations (also done at start-up by `run`).
    Migrate(PostgresArgs),
    /// Verify a running pipeline end to end: a probe tick through Kafka, the dataflow, Redis
    /// and REST, with each hop's latency; exits non-zero naming the hop that failed.
    Check(CheckArgs),
    /// Benchmark the Kafka → dataflow → Redis pipeline against a local broker and Redis:
    /// consume-only rate of a bare consumer, the pipeline's rate on the same pre-filled topic,
    /// and tick-to-Redis latency at a steady produce rate.
    BenchPipeline(BenchPipelineArgs),
    /// Stream live trades from a market WebSocket into Kafka, keyed by symbol.
    ///
    /// Credentials come from the environment, never from flags (which `ps` would show):
    /// FINNHUB_TOKEN for Finnhub, APCA_API_KEY_ID and APCA_API_SECRET_KEY for Alpaca; Binance needs
    /// none. Lost connections are re-made with backoff, duplicates resent after a reconnect are
    /// dropped, and ticks are held in a bounded buffer while Kafka is unreachable. Stops on
    /// Ctrl-C, after delivering what it holds.
    Ingest(IngestArgs),
    /// Show the effective configuration, or check a configuration file.
    Config(ConfigArgs),
    /// Print a shell completion script, e.g. `gostocks completions bash > /etc/bash_completion.d/gostocks`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `gostocks config ...`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// What to do with the configuration.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of `run` (or `--command ingest`): defaults, the
    /// `--config` file and the environment merged, each value with where it came from.
    /// Passwords and secrets are shown as `***`.
    Show {
        /// The command whose configuration to show.
        #[arg(long, value_enum, default_value = "run")]
        command: crate::config::Section,
    },
    /// Check a configuration file: its syntax, that every key exists, that every value parses.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// librdkafka settings for every Kafka client of a command (consumer, producer, admin).
#[derive(Clone, Debug, Default, Args)]
pub struct KafkaOptionArgs {
    /// A librdkafka setting, `key=value`, e.g. `security.protocol=SASL_SSL`; repeat for
    /// several. A value `${file:PATH}` is read from a file, `${env:NAME}` from the environment
    /// (for secrets). Over `[kafka.options]` of the config file, key by key.
    #[arg(
        long = "kafka-option",
        value_name = "KEY=VALUE",
        env = "GOSTOCKS_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub kafka_option: Vec<String>,

    /// `[kafka.options]` of the config file (filled in by [`crate::config`]).
    #[arg(skip)]
    pub from_file: Vec<(String, String)>,
}

/// Flags of `gostocks bench-pipeline`.
#[derive(Debug, Args)]
pub struct BenchPipelineArgs {
    /// The shared data folder (default: GOSTOCKS_DATA_DIR, else ../shared/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Ticks to pre-fill the topic with (from the replicated real tapes).
    #[arg(long, default_value_t = 1_000_000)]
    pub ticks: usize,

    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", env = "GOSTOCKS_KAFKA_BROKERS")]
    pub brokers: String,

    /// Redis URL.
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        env = "GOSTOCKS_REDIS_URL"
    )]
    pub redis: String,

    /// Produce rate (ticks/s) of the latency measurement.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,

    /// Seconds of the latency measurement (after 2 s of warm-up); the bench prints the p99 of
    /// each second.
    #[arg(long, default_value_t = 30)]
    pub latency_secs: u64,

    /// The result grid of the latency measurement: stats are written once their grid time is
    /// final, so this bounds their latency from below (prices go out as ticks are taken in).
    #[arg(long, default_value = "100ms")]
    pub latency_resolution: String,

    /// The runners' `--fetch-wait`.
    #[arg(long, default_value = "1ms")]
    pub fetch_wait: String,

    /// Partitions of the latency measurement's topic.
    #[arg(long, default_value_t = 4)]
    pub latency_partitions: i32,

    /// Timely workers of the runner in the latency measurement (the throughput measurement
    /// always uses 2).
    #[arg(long, default_value_t = 2)]
    pub latency_workers: usize,

    /// The latency producer's `linger.ms`: how long it gathers ticks into a batch before
    /// sending. The default is what `gostocks ingest` and `replay` use. The latency counts it
    /// (ticks are stamped as they are handed to the producer); but every batch is an object the
    /// in-memory broker lists on each fetch, so a shorter linger loads the broker more.
    #[arg(long, default_value = "5ms")]
    pub latency_linger: Span,
}

/// Flags of `gostocks check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", env = "GOSTOCKS_KAFKA_BROKERS")]
    pub kafka: String,

    /// The tick topic the pipeline consumes.
    #[arg(long, default_value = TICKS_TOPIC, env = "GOSTOCKS_TOPIC")]
    pub topic: String,

    /// Record encoding the pipeline expects.
    #[arg(long, default_value = "protobuf")]
    pub tick_encoding: TickEncoding,

    #[command(flatten)]
    pub kafka_options: KafkaOptionArgs,

    /// The pipeline's Redis (omit to skip the Redis hop).
    #[arg(long, env = "GOSTOCKS_REDIS_URL", value_name = "URL")]
    pub redis: Option<String>,

    /// The pipeline's Redis key prefix.
    #[arg(long, default_value = "", env = "GOSTOCKS_REDIS_PREFIX")]
    pub redis_prefix: String,

    /// The REST gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http: String,

    /// How long to wait for the probe at each hop, in all.
    #[arg(long, default_value = "30s")]
    pub timeout: Span,
}

/// Where the alert service keeps users, alerts and events.
#[derive(Clone, Debug, Args)]
pub struct PostgresArgs {
    /// Postgres URL, e.g. postgres://postgres@127.0.0.1:5432/postgres. Without it, `run` keeps
    /// users, alerts and events in memory.
    #[arg(long, env = "GOSTOCKS_POSTGRES_URL", value_name = "URL")]
    pub postgres: Option<String>,

    /// Postgres schema to use (created if missing); default: the connection's search_path.
    #[arg(long, env = "GOSTOCKS_POSTGRES_SCHEMA", value_name = "SCHEMA")]
    pub postgres_schema: Option<String>,

    /// PEM certificates of the CAs that sign the Postgres server's certificate, for
    /// `sslmode=verify-ca|verify-full` in the URL (default: the Mozilla root store).
    #[arg(long, env = "GOSTOCKS_POSTGRES_CA_FILE", value_name = "FILE")]
    pub postgres_ca_file: Option<PathBuf>,
}

/// `gostocks users ...`.
#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// What to do with users.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user and print its API key, once: only a salted hash is stored.
    Create {
        /// The user's name (unique).
        name: String,

        #[command(flatten)]
        db: PostgresArgs,
    },
}

/// Flags of `gostocks replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Files to replay (any supported format, gzip or plain); merged in event-time order.
    #[arg(required = true)]
    pub input: Vec<PathBuf>,

    /// Kafka topic to produce to.
    #[arg(long, default_value = TICKS_TOPIC, env = "GOSTOCKS_TOPIC")]
    pub topic: String,

    /// Also produce the inputs' quotes (LOBSTER order books beside their message files, Binance
    /// bookTicker frames, Alpaca q messages) to this topic, keyed by symbol, in the same
    /// encoding, merged with the ticks in event-time order (e.g. `quotes`).
    #[arg(long, env = "GOSTOCKS_QUOTES_TOPIC")]
    pub quotes_topic: Option<String>,

    /// Pace: `1x` is the recorded pace, `10x` ten times faster, `max` as fast as the broker takes.
    #[arg(long, default_value = "max")]
    pub speed: Speed,

    /// Input format.
    #[arg(long, default_value = "auto")]
    pub format: Format,

    /// The longest record read, in bytes: a line of an input without its line break. A longer
    /// one is rejected, naming the limit (with --errors-out, as an excerpt of its start), and
    /// passed over without being held in memory.
    #[arg(long, default_value_t = MAX_RECORD_BYTES, env = "GOSTOCKS_MAX_RECORD_BYTES")]
    pub max_record_bytes: usize,

    /// Where the ticks go.
    #[command(flatten)]
    pub kafka: ProducerArgs,
}

/// Flags of the commands that produce ticks into Kafka (`replay`, `ingest`).
#[derive(Debug, Args)]
pub struct ProducerArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", env = "GOSTOCKS_KAFKA_BROKERS")]
    pub brokers: String,

    /// Partitions of the topic when it has to be created (an existing topic is kept as is).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,

    /// Encoding of the records: protobuf (`gostocks.v1.Tick`) or json (the canonical form).
    #[arg(long, default_value = "protobuf", env = "GOSTOCKS_TICK_ENCODING")]
    pub tick_encoding: TickEncoding,

    #[command(flatten)]
    pub kafka_options: KafkaOptionArgs,
}

/// Flags of `gostocks ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The market data provider.
    #[arg(long, env = "GOSTOCKS_PROVIDER")]
    pub provider: ProviderKind,

    /// Symbols to subscribe to, comma-separated, as the provider names them (Finnhub: AAPL or
    /// BINANCE:BTCUSDT; Alpaca: AAPL; Binance: BTCUSDT).
    #[arg(long, required = true, value_delimiter = ',', env = "GOSTOCKS_SYMBOLS")]
    pub symbols: Vec<String>,

    /// The WebSocket URL (default: the provider's public endpoint; for Binance the base that
    /// `/stream?streams=...` is appended to, for Alpaca the feed, e.g. .../v2/sip).
    #[arg(long, env = "GOSTOCKS_INGEST_URL")]
    pub url: Option<String>,

    /// Kafka topic to produce to.
    #[arg(long, default_value = TICKS_TOPIC, env = "GOSTOCKS_TOPIC")]
    pub topic: String,

    /// Also produce the quotes (Binance `@bookTicker`, Alpaca `quotes`, subscribed beside the
    /// trades) to this topic, keyed by symbol, in the tick encoding (e.g. `quotes`). Not with
    /// Finnhub, whose WebSocket sends trades only.
    #[arg(long, env = "GOSTOCKS_QUOTES_TOPIC")]
    pub quotes_topic: Option<String>,

    /// Also write every frame received, `<local receive ns> <frame>` per line, to replay later
    /// (`gostocks replay` / `analyze` with --format finnhub-raw|alpaca-raw|binance-raw).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Where the ticks go.
    #[command(flatten)]
    pub kafka: ProducerArgs,

    /// Ticks held while Kafka is unreachable; beyond it the oldest are dropped (counted, logged).
    #[arg(long, default_value_t = 1_000_000, env = "GOSTOCKS_INGEST_BUFFER")]
    pub buffer: usize,

    /// How often to ping the server.
    #[arg(long, default_value = "15s")]
    pub ping_interval: humantime::Duration,

    /// A connection silent this long (no frame, ping or pong) is dead and is re-made.
    #[arg(long, default_value = "30s")]
    pub read_timeout: humantime::Duration,

    /// First reconnect delay; doubles per failed attempt, with jitter.
    #[arg(long, default_value = "500ms")]
    pub backoff_min: humantime::Duration,

    /// Longest reconnect delay.
    #[arg(long, default_value = "30s")]
    pub backoff_max: humantime::Duration,

    /// After a reconnect, resent trades up to this far back are recognised and dropped
    /// (Finnhub and Alpaca; Binance uses its contiguous trade ids).
    #[arg(long, default_value = "60s")]
    pub dedup_horizon: humantime::Duration,

    /// On shutdown, how long the ticks still held may take to reach Kafka before ingest gives up
    /// (and says how many were not delivered).
    #[arg(long, default_value = "30s")]
    pub drain_timeout: humantime::Duration,

    /// How often to log the counters (frames, ticks, errors, reconnects, gaps, delay).
    #[arg(long, default_value = "10s")]
    pub stats_interval: humantime::Duration,

    /// The longest WebSocket message accepted, in bytes; a longer one drops the connection
    /// (counted as a parse error) before it is read whole, and it is re-made.
    #[arg(long, default_value_t = MAX_RECORD_BYTES, env = "GOSTOCKS_MAX_RECORD_BYTES")]
    pub max_record_bytes: usize,

    /// Serve Prometheus metrics on `http://ADDR/metrics` (frames, ticks, reconnects, gaps,
    /// overflow, the delay histogram); none when omitted.
    #[arg(long, env = "GOSTOCKS_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Binance: the REST endpoint that fills gaps in trade ids (default: the spot API's
    /// historicalTrades, or the futures API's for an fstream URL). Needs the API key in
    /// BINANCE_API_KEY; without it gaps are reported with their id ranges, not filled.
    #[arg(long, env = "GOSTOCKS_BACKFILL_URL", value_name = "URL")]
    pub backfill_url: Option<String>,

    /// Binance: request weight the backfill may spend per minute (a historicalTrades request
    /// weighs 25; Binance allows 6,000 per minute and IP, shared with everything else).
    #[arg(long, default_value_t = NonZeroU32::new(1200).unwrap_or(NonZeroU32::MIN), env = "GOSTOCKS_BACKFILL_WEIGHT")]
    pub backfill_weight: NonZeroU32,

    /// Binance: how long filling one gap may take; what is still missing then is reported
    /// unfilled. Live trades of every symbol wait behind a gap being filled.
    #[arg(long, default_value = "60s", env = "GOSTOCKS_BACKFILL_DEADLINE")]
    pub backfill_deadline: humantime::Duration,

    /// Binance: do not fill gaps (they are still counted and reported).
    #[arg(long, env = "GOSTOCKS_NO_BACKFILL")]
    pub no_backfill: bool,
}

/// Flags of `gostocks bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The shared data folder (default: GOSTOCKS_DATA_DIR, else ../shared/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Replicate the tapes until the workload has at least this many ticks.
    #[arg(long, default_value_t = 2_500_000)]
    pub ticks: usize,

    /// Also keep the workload as a CSV file here (to run `analyze` on it yourself), and the
    /// (d) rows' alert files beside it (`NAME-alerts-once.json`, `-guarded`, `-unguarded`).
    #[arg(long)]
    pub workload_out: Option<PathBuf>,

    /// Internal: run one measurement (used by the parent bench process).
    #[arg(long, hide = true)]
    pub phase: Option<BenchPhase>,

    /// Internal: workers of the phase.
    #[arg(long, hide = true, default_value_t = 1)]
    pub workers: usize,

    /// Internal: the workload CSV of the phase.
    #[arg(long, hide = true)]
    pub csv: Option<PathBuf>,

    /// Active alerts for the alert-matching measurement, spread over the symbols.
    #[arg(long, default_value_t = 100_000)]
    pub alerts: usize,

    /// Runs of each measurement: the table shows the median run and the best one (a shared
    /// machine's neighbours move a single run by tens of percent).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
}

/// One measurement of the bench.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BenchPhase {
    /// The dataflow on ticks already in memory, each worker consuming the rows it computes.
    Memory,
    /// The same, with every row gathered in order on worker 0 (as `analyze` writes them).
    Ordered,
    /// The same, with `--alerts` rules matched.
    Alerts,
    /// The same, with the rules drawn from every condition.
    AlertsEvery,
}

/// A timely cluster: `--processes` processes, each started with its own `--process` and the
/// same `--hostfile` (timely's `-n`, `-p` and `-h`), each running `--workers` threads.
#[derive(Clone, Debug, Default, Args)]
pub struct ClusterArgs {
    /// Processes in the cluster (1: no cluster).
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        env = "GOSTOCKS_PROCESSES"
    )]
    pub processes: usize,

    /// This process's index in the cluster, 0 to N-1.
    #[arg(long, default_value_t = 0, value_name = "I", env = "GOSTOCKS_PROCESS")]
    pub process: usize,

    /// The cluster's addresses, `host:port` per line, process 0 first (at least N lines; blank
    /// lines and `#` comments are passed over). Default: 127.0.0.1:2101, 127.0.0.1:2102, ...
    #[arg(long, value_name = "FILE", env = "GOSTOCKS_HOSTFILE")]
    pub hostfile: Option<PathBuf>,
}

/// Flags of `gostocks analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Input files (any mix of formats; gzip is detected). Each file is its own input with its
    /// own watermark.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,

    /// Input format.
    #[arg(long, default_value = "auto")]
    pub format: Format,

    /// The longest record read, in bytes: a line of an input without its line break. A longer
    /// one is rejected, naming the limit (with --errors-out, as an excerpt of its start), and
    /// passed over without being held in memory.
    #[arg(long, default_value_t = MAX_RECORD_BYTES, env = "GOSTOCKS_MAX_RECORD_BYTES")]
    pub max_record_bytes: usize,

    /// A sliding window length; repeat for several.
    #[arg(long, default_values = ["60s", "300s"])]
    pub window: Vec<Span>,

    /// The result grid; must divide every window and bar.
    #[arg(long, default_value = "1s")]
    pub resolution: Span,

    /// A tumbling bar size; repeat for several.
    #[arg(long, default_values = ["1s", "1m"])]
    pub bar: Vec<Span>,

    /// EMA span over bar closes (a = 2 / (span + 1)).
    #[arg(long, default_value_t = 20)]
    pub ema_span: u32,

    /// Allowed lateness per input: a tick more than this behind the greatest time seen from its
    /// input is late (written to --late-out, not counted). Default 0.
    #[arg(long)]
    pub lateness: Option<Span>,

    /// Timely worker threads (per process, in a cluster).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,

    /// Running as one process of a cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Where to write the stats changelog (JSON lines). In a cluster, process 0 writes every
    /// output file; the others write none.
    #[arg(long)]
    pub stats_out: PathBuf,

    /// Where to write final bars (JSON lines).
    #[arg(long)]
    pub bars_out: Option<PathBuf>,

    /// Where to write late ticks (JSON lines: symbol, time_ns, seq, reason).
    #[arg(long)]
    pub late_out: Option<PathBuf>,

    /// Where to write records that did not decode or validate, with the reason (JSON lines).
    #[arg(long)]
    pub errors_out: Option<PathBuf>,

    /// Alert rules to match, applying from the start: a JSON array of {"id","symbol",
    /// "condition","threshold"[,"mode","hysteresis","cooldown","window"]}.
    #[arg(long, requires = "events_out")]
    pub alerts: Option<PathBuf>,

    /// Where to write the alert events (JSON lines: alert_id, symbol, time_ns, seq, price, value).
    #[arg(long, requires = "alerts")]
    pub events_out: Option<PathBuf>,

    /// Where to write the quote statistics (JSON lines: time-weighted spread, mid, crossed and
    /// locked shares per symbol, window and grid time) of the inputs that carry quotes: LOBSTER
    /// message files with their order book file beside them, raw Binance sessions (bookTicker
    /// frames) and raw Alpaca sessions (q messages). Other inputs add no quotes.
    #[arg(long)]
    pub quotes_out: Option<PathBuf>,

    /// Where to write tumbling bars of mid prices (JSON lines), beside --quotes-out.
    #[arg(long, requires = "quotes_out")]
    pub mid_bars_out: Option<PathBuf>,
}

/// Flags of `gostocks run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Tick file to replay (any supported format); default: the bundled recording.
    #[arg(long, env = "GOSTOCKS_INPUT")]
    pub input: Option<PathBuf>,

    /// Replay speed: `1x` is the recorded pace, `10x` ten times faster, `max` as fast as possible.
    #[arg(long, default_value = "1x", env = "GOSTOCKS_SPEED")]
    pub speed: Speed,

    /// Replay the input once instead of looping it.
    #[arg(long, env = "GOSTOCKS_NO_LOOP")]
    pub no_loop: bool,

    /// REST listen address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "GOSTOCKS_HTTP_ADDR")]
    pub http_addr: SocketAddr,

    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:50051", env = "GOSTOCKS_GRPC_ADDR")]
    pub grpc_addr: SocketAddr,

    /// The most connections each server (REST, gRPC) holds open at once; beyond it, new
    /// connections wait to be accepted.
    #[arg(long, default_value_t = 1024, env = "GOSTOCKS_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// How long a REST client has to send a request's headers before its connection is closed.
    #[arg(long, default_value = "10s", env = "GOSTOCKS_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: humantime::Duration,

    /// How long a connection may move no byte either way before it is closed (REST between
    /// requests; gRPC clients answer the server's keep-alive pings, sent at a third of it, and
    /// event streams send heartbeats).
    #[arg(long, default_value = "60s", env = "GOSTOCKS_IDLE_TIMEOUT")]
    pub idle_timeout: humantime::Duration,

    /// How long a shutdown (SIGTERM or Ctrl-C) may take: open streams and long polls end at
    /// once, then intake stops and the sinks drain within it. A second signal exits at once.
    #[arg(long, default_value = "10s", env = "GOSTOCKS_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: humantime::Duration,

    /// Timely worker threads.
    #[arg(long, default_value_t = 1, env = "GOSTOCKS_WORKERS")]
    pub workers: usize,

    /// Result grid: stats are evaluated at multiples of this duration.
    #[arg(long, default_value = "1s", env = "GOSTOCKS_RESOLUTION")]
    pub resolution: Span,

    /// A sliding window for the stats; repeat for several.
    #[arg(long, default_values = ["60s", "300s"], env = "GOSTOCKS_WINDOWS", value_delimiter = ',')]
    pub window: Vec<Span>,

    /// A tumbling bar size; repeat for several.
    #[arg(long, default_values = ["1s", "1m"], env = "GOSTOCKS_BARS", value_delimiter = ',')]
    pub bar: Vec<Span>,

    /// EMA span over bar closes.
    #[arg(long, default_value_t = 20, env = "GOSTOCKS_EMA_SPAN")]
    pub ema_span: u32,

    /// Consume ticks from Kafka at these bootstrap servers instead of replaying a file.
    #[arg(long, value_name = "BROKERS", env = "GOSTOCKS_KAFKA")]
    pub kafka: Option<String>,

    /// With --kafka: the tick topic.
    #[arg(long, default_value = TICKS_TOPIC, env = "GOSTOCKS_TOPIC")]
    pub topic: String,

    /// With --kafka: the consumer group.
    #[arg(long, default_value = "gostocks", env = "GOSTOCKS_GROUP")]
    pub group: String,

    /// With --kafka and --redis: also read quotes from this topic (as `replay` and `ingest`
    /// write them with --quotes-topic) and keep their statistics in Redis, `quote:<SYMBOL>:
    /// <window>` and `midbar:<SYMBOL>:<size>`. Every start rebuilds them from the topic's
    /// beginning.
    #[arg(long, env = "GOSTOCKS_QUOTES_TOPIC")]
    pub quotes_topic: Option<String>,

    /// With --quotes-topic: the topic of the quote statistics changelog (JSON lines keyed by
    /// symbol, as `analyze --quotes-out` writes them).
    #[arg(
        long,
        default_value = "quotes.stats",
        env = "GOSTOCKS_QUOTE_STATS_TOPIC"
    )]
    pub quote_stats_topic: String,

    /// With --kafka: this runner's static membership id in the consumer group (Kafka's
    /// `group.instance.id`). A runner restarted under the id it had, after a crash, takes its
    /// partitions back at once. Default: `<hostname>-<n>`, n the lowest number that no other
    /// running runner of the group on this host holds, so a restarted runner gets its id back
    /// and two runners on one host get different ones. Two running runners must never share an
    /// id. An empty value makes the runner a dynamic member.
    #[arg(long, env = "GOSTOCKS_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// With --kafka: record encoding.
    #[arg(long, default_value = "protobuf", env = "GOSTOCKS_TICK_ENCODING")]
    pub tick_encoding: TickEncoding,

    /// With --kafka: librdkafka settings of its clients.
    #[command(flatten)]
    pub kafka_options: KafkaOptionArgs,

    /// With --kafka: running as one process of a timely cluster. Process `I` of `N` reads the
    /// partitions `p` with `p % N == I`; ticks are exchanged by symbol across the cluster, and
    /// each process's sinks write the symbols its workers own.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// A source (Kafka partition) silent for this long stops holding event time back.
    #[arg(long, default_value = "5s", env = "GOSTOCKS_IDLE")]
    pub idle: Span,

    /// With --kafka: the longest a fetch waits at the broker for new ticks
    /// (`fetch.wait.max.ms`). Brokers that hold every fetch this long (tansu) add up to twice
    /// this to the tick-to-output latency; lower means fresher outputs and more polling.
    #[arg(long, default_value = "5ms", env = "GOSTOCKS_FETCH_WAIT")]
    pub fetch_wait: Span,

    /// With --kafka: the topic of the stats changelog (JSON lines keyed by symbol).
    #[arg(long, default_value = STATS_TOPIC, env = "GOSTOCKS_STATS_TOPIC")]
    pub stats_topic: String,

    /// With --kafka: the topic of alert events (JSON, keyed by symbol).
    #[arg(
        long,
        default_value = ALERTS_TOPIC,
        env = "GOSTOCKS_ALERTS_TOPIC"
    )]
    pub alerts_topic: String,

    /// Write the speed layer to Redis at this URL (`price:<SYM>`, `stats:<SYM>:<window>`,
    /// `bar:<SYM>:<size>`, PUBLISH `updates:<SYM>`); REST then answers prices from Redis.
    #[arg(long, env = "GOSTOCKS_REDIS_URL", value_name = "URL")]
    pub redis: Option<String>,

    /// PEM certificates of the CAs that sign the Redis server's certificate, for a
    /// `rediss://` URL (default: the Mozilla root store).
    #[arg(long, env = "GOSTOCKS_REDIS_CA_FILE", value_name = "FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// A prefix for every Redis key and channel (to share one Redis between deployments).
    #[arg(long, default_value = "", env = "GOSTOCKS_REDIS_PREFIX")]
    pub redis_prefix: String,

    /// Expire stats and bar hashes this many seconds after their last update (0: never).
    #[arg(long, default_value_t = 0, env = "GOSTOCKS_REDIS_TTL")]
    pub redis_ttl: u64,

    /// Also append every output (prices, stats, bars, alert events) to this JSON-lines file.
    #[arg(long, value_name = "PATH", env = "GOSTOCKS_OUTPUTS_JSONL")]
    pub outputs_jsonl: Option<std::path::PathBuf>,

    /// Outputs each sink's queue holds; when a sink falls this far behind (its service down),
    /// the dataflow waits, and with it intake, instead of memory growing.
    #[arg(long, default_value_t = crate::sinks::driver::DEFAULT_CAPACITY, env = "GOSTOCKS_SINK_QUEUE")]
    pub sink_queue: usize,

    /// A sink failing (and retrying) for longer than this makes `/readyz` answer 503.
    #[arg(long, default_value = "10s", env = "GOSTOCKS_SINK_UNREADY_AFTER")]
    pub sink_unready_after: humantime::Duration,

    /// A notification still failing this long after its event is failed for good.
    #[arg(long, default_value = "24h", env = "GOSTOCKS_NOTIFY_MAX_AGE")]
    pub notify_max_age: humantime::Duration,

    /// Each notification attempt's timeout (connect, send, response).
    #[arg(long, default_value = "10s", env = "GOSTOCKS_NOTIFY_TIMEOUT")]
    pub notify_timeout: humantime::Duration,

    /// The delay before a failed notification's first retry; each further one doubles (with
    /// jitter), up to 10 minutes.
    #[arg(long, default_value = "1s", env = "GOSTOCKS_NOTIFY_BACKOFF")]
    pub notify_backoff: humantime::Duration,

    /// The most notification attempts in flight to one host.
    #[arg(long, default_value_t = 4, env = "GOSTOCKS_NOTIFY_PER_HOST")]
    pub notify_per_host: usize,

    /// Allow notification channels to loopback, private and link-local addresses (refused by
    /// default: a channel must not reach inside the network the runner is in).
    #[arg(long, env = "GOSTOCKS_NOTIFY_ALLOW_PRIVATE")]
    pub notify_allow_private: bool,

    /// Browser origins allowed to call the REST API and open its event streams from their own
    /// pages: comma-separated `scheme://host[:port]` (e.g. `https://app.example.com`), or `*`
    /// for any. Default: none; the dashboard at `/` is on the API's own origin and needs none.
    #[arg(long, env = "GOSTOCKS_CORS_ORIGIN")]
    pub cors_origin: Option<crate::http::cors::Cors>,

    #[command(flatten)]
    pub db: PostgresArgs,
}

impl RunArgs {
    /// The analytics this run computes.
    pub fn analytics_config(&self) -> anyhow::Result<AnalyticsConfig> {
        let config = AnalyticsConfig::default()
            .with_windows(self.window.clone())
            .with_resolution(self.resolution.clone())
            .with_bars(self.bar.clone())
            .with_ema_span(self.ema_span)
            .with_lateness(0);
        config.validate()?;
        Ok(config)
    }
}

/// Flags of `gostocks simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Output file (canonical JSON lines); `-` for stdout.
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,

    /// Symbols to simulate, comma-separated; each gets its own price level and activity.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "AAPL,MSFT,GOOG,AMZN,TSLA"
    )]
    pub symbols: Vec<String>,

    /// Length of the session in event time.
    #[arg(long, default_value = "10m")]
    pub duration: Span,

    /// Event time of the first tick, ns since the Unix epoch (default: 2024-06-03 13:30 UTC,
    /// a US market open).
    #[arg(long, default_value_t = 1_717_421_400_000_000_000)]
    pub start_ns: i64,

    /// Mean trades per second per symbol in calm periods (bursts run ~8x faster).
    #[arg(long, default_value_t = 0.8)]
    pub rate: f64,

    /// Random seed: the same seed writes the same recording.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Replay pace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// Multiple of the recorded pace.
    Factor(f64),
    /// No pacing.
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        s.strip_suffix('x')
            .and_then(|f| f.parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(Speed::Factor)
            .ok_or_else(|| format!("`{s}` is not a speed: use 1x, 10x, 0.5x or max"))
    }
}
