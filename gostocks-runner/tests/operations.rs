//! Running in production: the layered configuration (file < environment < flag), its checks
//! and `config show`, JSON logs, shell completions, and `/metrics` read with a Prometheus text
//! parser after a replay (from the bundled recording, and from Kafka, whose consumer lag goes to
//! 0 once the topic is drained).

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gostocks() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gostocks"));
    // The test command's service addresses are for the tests, not the runners started here.
    for var in [
        "GOSTOCKS_POSTGRES_URL",
        "GOSTOCKS_REDIS_URL",
        "GOSTOCKS_OUTPUTS_JSONL",
        "GOSTOCKS_CONFIG",
        "GOSTOCKS_LOG_FORMAT",
        "GOSTOCKS_KAFKA_OPTIONS",
    ] {
        c.env_remove(var);
    }
    c
}

fn output(c: &mut Command) -> Output {
    c.output().expect("gostocks runs")
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(common::unique_topic(tag));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Starts `gostocks run` (ephemeral ports) as `c` says; its REST address, once it is serving.
fn start(c: &mut Command) -> (Child, String) {
    let mut child = c.stdout(Stdio::piped()).spawn().expect("gostocks starts");
    let http = common::rest_address(child.stdout.take().expect("stdout"));
    (child, http)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gostocks did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_args() -> [&'static str; 5] {
    [
        "run",
        "--http-addr=127.0.0.1:0",
        "--grpc-addr=127.0.0.1:0",
        "--speed=max",
        "--no-loop",
    ]
}

#[test]
fn a_value_from_the_file_is_overridden_by_the_environment_then_by_a_flag() {
    let d = dir("layers");
    let (from_file, from_env, from_flag) = (
        d.join("file.jsonl"),
        d.join("env.jsonl"),
        d.join("flag.jsonl"),
    );
    let config = d.join("gostocks.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\noutputs_jsonl = {:?}\nsink_queue = 512\n",
            from_file.display().to_string()
        ),
    )
    .expect("config");
    let config = config.display().to_string();

    // The file alone.
    let (child, _) = start(
        gostocks()
            .args(run_args())
            .arg(format!("--config={config}")),
    );
    stop(child);
    assert!(from_file.exists(), "the file's outputs_jsonl is used");

    // The environment over the file.
    let (child, _) = start(
        gostocks()
            .args(run_args())
            .arg(format!("--config={config}"))
            .env("GOSTOCKS_OUTPUTS_JSONL", &from_env),
    );
    stop(child);
    assert!(
        from_env.exists(),
        "GOSTOCKS_OUTPUTS_JSONL wins over the file"
    );

    // A flag over both.
    let (child, _) = start(
        gostocks()
            .args(run_args())
            .arg(format!("--config={config}"))
            .arg(format!("--outputs-jsonl={}", from_flag.display()))
            .env("GOSTOCKS_OUTPUTS_JSONL", &from_env),
    );
    stop(child);
    assert!(from_flag.exists(), "--outputs-jsonl wins over both");

    // `config show` says where each value came from (file, environment, default).
    let shown = output(
        gostocks()
            .args(["--config", &config, "config", "show"])
            .env("GOSTOCKS_OUTPUTS_JSONL", &from_env),
    );
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} in:\n{text}"))
            .to_owned()
    };
    assert!(
        line("outputs_jsonl").contains("# environment GOSTOCKS_OUTPUTS_JSONL"),
        "{text}"
    );
    assert!(
        line("sink_queue").contains(&format!("# file {config}")),
        "{text}"
    );
    assert!(line("http_addr").contains("# default"), "{text}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn an_unknown_key_or_a_bad_value_fails_naming_it_and_the_file() {
    let d = dir("unknown");
    let config = d.join("gostocks.toml");
    std::fs::write(&config, "[run]\nhttp_adr = \"127.0.0.1:1\"\n").expect("config");
    let shown = config.display().to_string();
    for out in [
        output(gostocks().args(["config", "check", &shown])),
        output(gostocks().args(run_args()).arg(format!("--config={shown}"))),
    ] {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("`run.http_adr`") && err.contains(&shown),
            "{err}"
        );
    }
    std::fs::write(&config, "[run]\nhttp_addr = \"nowhere\"\n").expect("config");
    let out = output(gostocks().args(["config", "check", &shown]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`run.http_addr`") && err.contains("nowhere"),
        "{err}"
    );
    std::fs::write(&config, "[kafka.option]\nx = 1\n").expect("config");
    let out = output(gostocks().args(["config", "check", &shown]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`kafka.option`"));
    // The example file is valid.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/gostocks.toml");
    let out = output(gostocks().args(["config", "check", example]));
    assert!(out.status.success(), "{out:?}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn config_show_redacts_passwords_and_secrets() {
    let d = dir("redact");
    let config = d.join("gostocks.toml");
    std::fs::write(
        &config,
        "[run]\npostgres = \"postgres://app:pg-hunter2@db:5432/gostocks?sslmode=verify-full\"\n\
         [kafka.options]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"kafka-hunter2\"\n\
         \"sasl.username\" = \"gostocks\"\n",
    )
    .expect("config");
    let out = output(
        gostocks()
            .args(["--config", &config.display().to_string(), "config", "show"])
            .env("GOSTOCKS_REDIS_URL", "rediss://:redis-hunter2@cache:6380")
            .env("GOSTOCKS_KAFKA_OPTIONS", "ssl.key.password=key-hunter2"),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2"), "a secret shows:\n{text}");
    assert!(
        text.contains("postgres://app:***@db:5432/gostocks?sslmode=verify-full"),
        "{text}"
    );
    assert!(text.contains("rediss://:***@cache:6380"), "{text}");
    assert!(
        text.contains("\"security.protocol\" = \"SASL_SSL\""),
        "{text}"
    );
    assert!(text.contains("\"sasl.username\" = \"gostocks\""), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("\"ssl.key.password\" = \"***\"")
                && l.contains("environment GOSTOCKS_KAFKA_OPTIONS")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn kafka_options_reach_librdkafka() {
    // A setting librdkafka does not know is refused by librdkafka itself, naming it.
    let out = output(
        gostocks()
            .args(run_args())
            .args(["--kafka=127.0.0.1:1", "--kafka-option=no.such.setting=1"]),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no.such.setting"), "{err}");
    // A secret read from a missing file says which.
    let out = output(gostocks().args(run_args()).args([
        "--kafka=127.0.0.1:1",
        "--kafka-option=sasl.password=${file:/nonexistent/kafka-password}",
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sasl.password") && err.contains("/nonexistent/kafka-password"),
        "{err}"
    );
}

#[test]
fn completions_and_enum_values_in_help() {
    for shell in ["bash", "zsh", "fish"] {
        let out = output(gostocks().args(["completions", shell]));
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("gostocks") && script.contains("kafka-option"),
            "{shell}"
        );
    }
    let out = output(gostocks().args(["ingest", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("binance") && help.contains("finnhub"),
        "{help}"
    );
    let out = output(gostocks().args(["run", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("protobuf") && help.contains("json"), "{help}");
}

#[test]
fn every_flag_of_run_reads_an_environment_variable() {
    let out = output(gostocks().args(["run", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout);
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") || t.starts_with("-h,") || t.starts_with("-V,") {
            blocks.push((
                t.split_whitespace().next().unwrap_or_default().to_owned(),
                String::new(),
            ));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(t);
            text.push(' ');
        }
    }
    let flags: Vec<_> = blocks.iter().filter(|(f, _)| f.starts_with("--")).collect();
    assert!(flags.len() > 30, "{help}");
    for (flag, text) in flags {
        assert!(
            text.contains("[env: GOSTOCKS_"),
            "{flag} has no environment variable: {text}"
        );
    }
}

#[test]
fn json_logs_every_line_parses() {
    let mut child = gostocks()
        .args(run_args())
        .args(["--log-format=json", "--log=debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gostocks starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let logs = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let (http, grpc) = common::addresses(child.stdout.take().expect("stdout"));
    assert_eq!(common::get(&http, "/healthz").0, 200);
    assert_eq!(common::get(&http, "/price/NOPE").0, 404);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("gRPC connects");
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("gRPC health answers");
    });
    stop(child);
    let all = logs.join().expect("logs");
    let (mut requests, mut grpc_requests) = (0, 0);
    for line in all.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["fields"]["message"] == "request" {
            requests += 1;
            assert!(v["fields"]["status"].is_u64(), "{line}");
            // The span's fields: the connection's peer and protocol.
            assert_eq!(v["span"]["name"], "connection", "{line}");
            assert!(v["span"]["peer"].is_string(), "{line}");
            if v["span"]["protocol"] == "Grpc" {
                grpc_requests += 1;
                assert_eq!(
                    v["fields"]["path"], "/grpc.health.v1.Health/Check",
                    "{line}"
                );
            }
        }
    }
    assert!(requests >= 3, "access log lines at debug:\n{all}");
    assert_eq!(grpc_requests, 1, "the gRPC call's access log line:\n{all}");
}

/// The count of histogram `name` with `label` (`("", "")`: any), if it is there.
fn histogram_count(s: &prometheus_parse::Scrape, name: &str, label: (&str, &str)) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.0.is_empty() || x.labels.get(label.0) == Some(label.1))
        .find_map(|x| match &x.value {
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            _ => None,
        })
}

fn value(s: &prometheus_parse::Scrape, name: &str, label: (&str, &str)) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.0.is_empty() || x.labels.get(label.0) == Some(label.1))
        .find_map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Waits until `ok` holds for a scrape of `http`, at most `secs`.
fn wait_scrape(
    http: &str,
    secs: u64,
    what: &str,
    ok: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = common::scrape(http);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {:#?}", s.samples);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_parse_and_hold_latency_histograms_after_a_replay() {
    let (child, http) = start(gostocks().args(run_args()));
    let s = wait_scrape(&http, 30, "histograms after the replay", |s| {
        histogram_count(s, "gostocks_tick_to_sink_seconds", ("sink", "read_model")) > Some(0.0)
            && histogram_count(s, "gostocks_event_time_lag_seconds", ("", "")) > Some(0.0)
    });
    let (_, ticks) = common::recording();
    assert_eq!(
        value(&s, "gostocks_ticks_total", ("outcome", "accepted")),
        Some(ticks.len() as f64)
    );
    assert_eq!(
        value(&s, "gostocks_ticks_total", ("outcome", "rejected")),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "gostocks_sink_state", ("sink", "read_model")),
        Some(0.0)
    );
    assert!(value(&s, "gostocks_sink_queue_depth", ("sink", "alert_store")).is_some());
    assert!(value(&s, "gostocks_sink_retries_total", ("sink", "read_model")).is_some());
    assert!(value(&s, "gostocks_alert_events_total", ("", "")).is_some());
    assert!(
        value(
            &s,
            "gostocks_notify_deliveries_total",
            ("outcome", "delivered")
        )
        .is_some()
    );
    stop(child);
}

#[test]
fn kafka_consumer_lag_goes_to_zero_once_the_topic_is_drained() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let topic = common::unique_topic("lag");
    let (path, ticks) = common::recording();
    let out = output(gostocks().args([
        "replay",
        path,
        "--topic",
        &topic,
        "--brokers",
        &brokers,
        "--partitions",
        "2",
    ]));
    assert!(out.status.success(), "{out:?}");
    let (child, http) = start(gostocks().args(run_args()).args([
        &format!("--kafka={brokers}"),
        &format!("--topic={topic}"),
        &format!("--group={topic}"),
        "--instance-id=",
        "--idle=1s",
    ]));
    let n = ticks.len() as f64;
    let partitions = |s: &prometheus_parse::Scrape| {
        s.samples
            .iter()
            .filter(|x| x.metric == "gostocks_kafka_consumer_lag")
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .collect::<Vec<_>>()
    };
    let s = wait_scrape(&http, 90, "every tick taken in and the lag at 0", |s| {
        let lags = partitions(s);
        value(s, "gostocks_ticks_total", ("outcome", "accepted")) == Some(n)
            && lags.len() == 2
            && lags.iter().all(|&l| l == 0.0)
    });
    assert!(
        histogram_count(&s, "gostocks_tick_to_sink_seconds", ("sink", "read_model")) > Some(0.0),
        "{:#?}",
        s.samples
    );
    assert!(histogram_count(&s, "gostocks_event_time_lag_seconds", ("", "")) > Some(0.0));
    assert_eq!(
        value(&s, "gostocks_kafka_assigned_partitions", ("", "")),
        Some(2.0)
    );
    stop(child);
}
