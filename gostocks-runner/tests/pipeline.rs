//! The production pipeline against the real broker and Redis: ticks replayed into Kafka, through
//! `gostocks run --kafka --redis`, come out in the Redis hashes and on the `stats` topic exactly
//! as `gostocks analyze` computes them from the file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gostocks_connectors::kafka::{
    KafkaConfig, TickConsumer, TickEncoding, TickProducer, ensure_topic,
};
use gostocks_connectors::redis::RedisSink;
use rdkafka::Message;

const SEC: i64 = 1_000_000_000;

/// The runner's counters, for failure messages.
fn metrics(http: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(http) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.lines()
        .filter(|l| l.starts_with("gostocks_"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Produces `ticks` to `topic` (keyed by symbol) and waits for every acknowledgement.
async fn produce(brokers: &str, topic: &str, ticks: &[gostocks_core::Tick]) {
    let producer = TickProducer::new(&KafkaConfig::new(brokers, "unused"), TickEncoding::Protobuf)
        .expect("producer");
    let sends: Vec<_> = ticks
        .iter()
        .map(|t| producer.send_owned(topic.to_owned(), t.clone()))
        .collect();
    for sent in futures::future::join_all(sends).await {
        sent.expect("sent");
    }
}

/// The shared Redis of the test command.
fn redis_url() -> String {
    std::env::var("GOSTOCKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A test's own tick topic, stats topic, Redis key prefix and consumer group.
struct Names {
    topic: String,
    stats_topic: String,
    prefix: String,
    group: String,
}

impl Names {
    fn new(tag: &str) -> Names {
        let topic = common::unique_topic(tag);
        Names {
            stats_topic: format!("{topic}_stats"),
            prefix: format!("{topic}:"),
            group: format!("{topic}_group"),
            topic,
        }
    }
}

/// Waits up to 30 s for the hash `key` to appear in Redis; `what` names the wait on failure.
async fn wait_for_hash(redis: &RedisSink, key: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis.read_hash(key).await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The distinct lines of a stats topic (deduplicated by content: key and time included),
/// read until `expected` are in or 60 s have passed.
async fn stats_topic_lines(
    brokers: &str,
    topic: &str,
    group: &str,
    expected: usize,
) -> BTreeSet<String> {
    let consumer =
        TickConsumer::subscribe(&KafkaConfig::new(brokers, group), &[topic]).expect("consumer");
    let mut stream = consumer.consumer.stream();
    let mut got: BTreeSet<String> = BTreeSet::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(msg)) = stream.next().await {
            got.insert(String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned());
            if got.len() >= expected {
                break;
            }
        }
    })
    .await;
    got
}

/// Reads the distinct lines of `stats_topic` (see [`stats_topic_lines`]) and asserts they are
/// exactly `want`, naming a few missing and extra lines if not.
async fn expect_stats_topic(
    brokers: &str,
    stats_topic: &str,
    topic: &str,
    want: &BTreeSet<String>,
) {
    let got = stats_topic_lines(brokers, stats_topic, &format!("{topic}_reader"), want.len()).await;
    let missing: Vec<_> = want.difference(&got).take(3).collect();
    let extra: Vec<_> = got.difference(want).take(3).collect();
    assert!(
        &got == want,
        "stats topic: missing {missing:?}, extra {extra:?}"
    );
}

/// Waits until Redis holds, for every symbol and window, the latest stats line `gostocks
/// analyze` computes from `path` (up to the last grid time the pipeline can finalise), and the
/// last price; returns those stats lines.
async fn expect_redis_equals_analyze(
    redis: &RedisSink,
    http: &str,
    path: &str,
    ticks: &[gostocks_core::Tick],
    tag: &str,
    deadline_secs: u64,
) -> BTreeSet<String> {
    // What analyze computes on the same file.
    let dir = std::env::temp_dir().join(tag);
    std::fs::create_dir_all(&dir).expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["analyze", "--input", path, "--stats-out"])
        .arg(dir.join("stats.jsonl"))
        .output()
        .expect("analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pipeline finalises up to the greatest grid time seen once the partitions go idle;
    // analyze also writes the windows emptying afterwards. Compare up to that time.
    let last_t = ticks.iter().map(|t| t.time_ns).max().expect("ticks");
    let closed = (last_t + SEC - 1) / SEC * SEC;
    let want: BTreeSet<String> = std::fs::read_to_string(dir.join("stats.jsonl"))
        .expect("stats")
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["time_ns"].as_i64().is_some_and(|t| t <= closed)
        })
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let want_out = want.clone();

    // The speed layer: the last price of every symbol, and its latest stats hashes.
    let mut latest: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
    for l in &want {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        let key = (
            v["symbol"].as_str().unwrap().to_owned(),
            v["window"].as_str().unwrap().to_owned(),
        );
        if latest
            .get(&key)
            .is_none_or(|o| o["time_ns"].as_i64() < v["time_ns"].as_i64())
        {
            latest.insert(key, v);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(deadline_secs);
    'wait: loop {
        for ((symbol, window), row) in &latest {
            let hash = redis
                .read_hash(&format!("stats:{symbol}:{window}"))
                .await
                .expect("read")
                .unwrap_or_default();
            let get = |f: &str| hash.iter().find(|(k, _)| k == f).map(|(_, v)| v.clone());
            if get("time_ns") != row["time_ns"].as_i64().map(|t| t.to_string()) {
                if Instant::now() >= deadline {
                    let rest = common::get(http, &format!("/stats/{symbol}?window={window}"));
                    let health = common::get(http, "/healthz");
                    panic!(
                        "stats:{symbol}:{window} never caught up: {hash:?}; the runner has {rest:?}, {health:?}; want {row}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue 'wait;
            }
            assert_eq!(
                get("count"),
                Some(row["count"].to_string()),
                "{symbol} {window}: the runner has {:?}, {:?}, {}; want {row}",
                common::get(http, &format!("/stats/{symbol}?window={window}")),
                common::get(http, "/healthz"),
                metrics(http),
            );
            assert_eq!(
                get("vwap"),
                Some(row["vwap"].to_string()),
                "{symbol} {window}"
            );
            assert_eq!(
                get("volatility").unwrap_or_default(),
                match &row["volatility"] {
                    serde_json::Value::Null => String::new(),
                    v => v.to_string(),
                }
            );
        }
        break;
    }
    for symbol in latest
        .keys()
        .map(|(s, _)| s.clone())
        .collect::<BTreeSet<_>>()
    {
        let want = ticks
            .iter()
            .filter(|t| t.symbol == symbol)
            .max_by_key(|t| (t.time_ns, t.seq))
            .expect("trades");
        let got = redis.read_prices(&[&symbol]).await.expect("read");
        assert_eq!(
            got[0],
            Some((want.price.to_string(), want.time_ns)),
            "price:{symbol}"
        );
        // REST answers prices from Redis.
        let (status, body) = common::get(http, &format!("/price/{symbol}"));
        assert_eq!(
            (status, body["time_ns"].as_i64()),
            (200, Some(want.time_ns))
        );
    }

    want_out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_redis_and_the_stats_topic_equal_analyze() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let redis_url = redis_url();
    let Names {
        topic,
        stats_topic,
        prefix,
        group,
    } = Names::new("pipe");
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    ensure_topic(&brokers, &stats_topic, 2)
        .await
        .expect("stats topic");
    // Two workers: each reads one of the two partitions.
    let running = common::start(&[
        "--kafka",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--workers",
        "2",
        "--idle",
        "3s",
        "--stats-topic",
        &stats_topic,
        "--redis",
        &redis_url,
        "--redis-prefix",
        &prefix,
    ]);

    let (path, ticks) = common::recording();
    produce(&brokers, &topic, &ticks).await;

    let redis = RedisSink::connect(&redis_url, &prefix)
        .await
        .expect("redis");
    let want = expect_redis_equals_analyze(&redis, &running.http, path, &ticks, &topic, 60).await;

    // The stats topic, deduplicated by key and time, is the same changelog.
    let got = stats_topic_lines(
        &brokers,
        &stats_topic,
        &format!("{topic}_stats_reader"),
        want.len(),
    )
    .await;
    assert_eq!(got.len(), want.len(), "stats topic rows");
    assert!(got == want, "the stats topic equals analyze's changelog");

    // `gostocks check` passes against this pipeline, printing each hop.
    let check = |topic: &str, timeout: &str| {
        Command::new(env!("CARGO_BIN_EXE_gostocks"))
            .args([
                "check", "--kafka", &brokers, "--topic", topic, "--redis", &redis_url,
            ])
            .args(["--redis-prefix", &prefix, "--timeout", timeout])
            .arg("--http")
            .arg(format!("http://{}", running.http))
            .output()
            .expect("check runs")
    };
    let ok = check(&topic, "30s");
    let stdout = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for hop in ["kafka", "redis", "REST"] {
        assert!(stdout.contains(hop), "{stdout}");
    }
    // A topic nobody consumes: the check fails and names the hop.
    let other = format!("{topic}_unconsumed");
    ensure_topic(&brokers, &other, 1).await.expect("topic");
    let broken = check(&other, "3s");
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("FAILED hop dataflow → redis"), "{stderr}");
}

/// A private Redis (append-only file, fsync always) that the test can kill and restart.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    fn start(port: u16, dir: std::path::PathBuf) -> PrivateRedis {
        let mut r = PrivateRedis {
            port,
            dir,
            child: None,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (./scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the private redis starts");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The runner's resident memory, in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_delays_outputs_and_loses_none() {
    // Idle longer than the pause between the halves (see the kill -9 test).
    let Some(brokers) = common::brokers() else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let topic = common::unique_topic("outage");
    let dir = std::env::temp_dir().join(format!("{topic}_redis"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut redis_server = PrivateRedis::start(port, dir);
    let redis_url = format!("redis://127.0.0.1:{port}");
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    let group = format!("{topic}_group");
    // A small queue, so that the outage fills it; unready after 1 s of failures.
    const QUEUE: usize = 64;
    let running = common::start(&[
        "--kafka",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--idle",
        "10s",
        "--redis",
        &redis_url,
        "--sink-queue",
        &QUEUE.to_string(),
        "--sink-unready-after",
        "1s",
    ]);
    let (path, ticks) = common::recording();
    let half = ticks.len() / 2;
    produce(&brokers, &topic, &ticks[..half]).await;
    // Let the first half reach Redis, then take Redis away while the second half flows.
    let redis = RedisSink::connect(&redis_url, "").await.expect("redis");
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis
        .read_prices(&["AAPL"])
        .await
        .ok()
        .and_then(|p| p[0].clone())
        .is_none()
    {
        assert!(Instant::now() < deadline, "the first half reaches redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        common::get(&running.http, "/readyz").0,
        200,
        "ready before the outage"
    );
    let rss_before = rss_kb(running.child.id());
    redis_server.kill();
    produce(&brokers, &topic, &ticks[half..]).await;
    // While Redis is down: not ready, naming the sink; the queue and memory stay bounded.
    let down = Instant::now();
    let mut unready = None;
    let (mut rss_max, mut depth_max) = (0, 0.0f64);
    while down.elapsed() < Duration::from_secs(4) || unready.is_none() {
        assert!(
            down.elapsed() < Duration::from_secs(30),
            "/readyz never turned 503 while redis was down: {:?}",
            common::get(&running.http, "/readyz")
        );
        let (status, body) = common::get(&running.http, "/readyz");
        if status == 503 {
            unready = Some(body);
        }
        rss_max = rss_max.max(rss_kb(running.child.id()));
        let depth = metric(&running.http, "gostocks_sink_queue_depth{sink=\"redis\"}");
        depth_max = depth_max.max(depth.expect("the redis queue depth gauge"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unready = unready.expect("not ready");
    let reason = unready["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("sink redis"), "{unready}");
    assert_eq!(
        metric(&running.http, "gostocks_sink_state{sink=\"redis\"}"),
        Some(1.0),
        "the redis sink is degraded"
    );
    assert!(
        depth_max <= QUEUE as f64,
        "queue depth {depth_max} > {QUEUE}"
    );
    assert!(
        rss_max < rss_before + 64 * 1024,
        "memory grew during the outage: {rss_before} kB -> {rss_max} kB"
    );
    redis_server.up();
    let redis = RedisSink::connect(&redis_url, "")
        .await
        .expect("redis again");
    expect_redis_equals_analyze(&redis, &running.http, path, &ticks, &topic, 90).await;
    // Caught up: ready again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::get(&running.http, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "ready again after the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `--outputs-jsonl`: the file sink's stats rows are the changelog `gostocks analyze` writes,
/// line for line, and the same rows reach Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jsonl_sink_writes_what_analyze_writes() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let redis_url = redis_url();
    let Names {
        topic,
        prefix,
        group,
        ..
    } = Names::new("jsonl");
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    let file = std::env::temp_dir().join(format!("{topic}.jsonl"));
    let running = common::start(&[
        "--kafka",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--idle",
        "3s",
        "--redis",
        &redis_url,
        "--redis-prefix",
        &prefix,
        "--outputs-jsonl",
        file.to_str().expect("utf-8 path"),
    ]);
    let (path, ticks) = common::recording();
    produce(&brokers, &topic, &ticks).await;
    let redis = RedisSink::connect(&redis_url, &prefix)
        .await
        .expect("redis");
    let want = expect_redis_equals_analyze(&redis, &running.http, path, &ticks, &topic, 60).await;
    let closed = want
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["time_ns"].as_i64())
        .max()
        .expect("rows");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let got: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(r#"{"output":"stats","#))
            .map(|rest| format!("{{{rest}"))
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["time_ns"].as_i64().is_some_and(|t| t <= closed)
            })
            .collect();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the jsonl stats rows ({}) never equalled analyze's ({}); missing {:?}, extra {:?}",
            got.len(),
            want.len(),
            want.difference(&got).take(3).collect::<Vec<_>>(),
            got.difference(&want).take(3).collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = std::fs::read_to_string(&file).expect("file");
    for kind in ["price", "bar"] {
        assert!(
            text.contains(&format!(r#"{{"output":"{kind}","#)),
            "{kind} lines in the file"
        );
    }
    let _ = std::fs::remove_file(&file);
}

/// Three alerts on the recording through the REST gateway at `http`: rearming ones fire again
/// and again, a once-alert fires once. Their specs with their ids, as `analyze --alerts` reads.
fn create_alerts(http: &str, key: &str) -> Vec<serde_json::Value> {
    let mut ids = Vec::new();
    for body in [
        r#"{"symbol":"AAPL","condition":"crosses_above","threshold":191.5,"mode":"rearm"}"#,
        r#"{"symbol":"MSFT","condition":"crosses_below","threshold":415,"mode":"rearm","hysteresis":0.1}"#,
        r#"{"symbol":"TSLA","condition":"price_above","threshold":175.5}"#,
    ] {
        let (status, alert) = common::request(http, "POST", "/alerts", Some(key), body);
        assert_eq!(status, 201, "{alert}");
        let mut spec: serde_json::Value = serde_json::from_str(body).expect("json");
        spec["id"] = alert["id"].clone();
        ids.push(spec);
    }
    ids
}

/// Waits (up to 30 s) until the alert events in `schema` are exactly those `analyze` finds in
/// the file at `path` with the alerts `ids`: none missing, none doubled.
async fn expect_events_equal_analyze(
    pg: &str,
    schema: &str,
    path: &str,
    ids: Vec<serde_json::Value>,
    tag: &str,
) {
    let dir = std::env::temp_dir().join(format!("{tag}_alerts"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("alerts.json"),
        serde_json::Value::from(ids).to_string(),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["analyze", "--input", path, "--stats-out"])
        .arg(dir.join("s.jsonl"))
        .arg("--alerts")
        .arg(dir.join("alerts.json"))
        .arg("--events-out")
        .arg(dir.join("events.jsonl"))
        .output()
        .expect("analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want_events: Vec<String> = std::fs::read_to_string(dir.join("events.jsonl"))
        .expect("events")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            format!(
                "{} {} {}",
                v["alert_id"].as_str().unwrap(),
                v["time_ns"],
                v["seq"]
            )
        })
        .collect();
    want_events.sort();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(want_events.len() > 3, "the rules fire: {want_events:?}");
    let (pg2, schema2) = (pg.to_owned(), schema.to_owned());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (pg3, schema3) = (pg2.clone(), schema2.clone());
        let got = tokio::task::spawn_blocking(move || {
            psql(
                &pg3,
                &schema3,
                "SELECT alert_id || ' ' || tick_time_ns || ' ' || tick_seq FROM alert_events ORDER BY 1",
            )
        })
        .await
        .expect("query");
        let got: Vec<String> = got.lines().map(str::to_owned).collect();
        if got == want_events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alert events: {} in Postgres, {} from analyze",
            got.len(),
            want_events.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits up to 30 s for an alert event in `schema`; `what` names the wait on failure.
async fn wait_for_events(pg: &str, schema: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (pg, schema) = (pg.to_owned(), schema.to_owned());
        let n = tokio::task::spawn_blocking(move || {
            psql(&pg, &schema, "SELECT count(*)::text FROM alert_events")
        })
        .await
        .expect("query");
        if n.trim() != "0" {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn psql(url: &str, schema: &str, sql: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = gostocks_connectors::postgres::connect(url, Some(schema))
            .await
            .expect("postgres");
        let rows = c.query(sql, &[]).await.expect("query");
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A TCP proxy in front of Postgres that the test can take down (listener closed, every open
/// connection cut) and bring back on the same port: an outage as a client sees one.
struct PgProxy {
    port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PgProxy {
    async fn start(target: String) -> PgProxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut p = PgProxy {
            port,
            target,
            task: None,
        };
        p.up().await;
        p
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the proxy port is free again");
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when the task is aborted) cuts every connection it carries.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_delays_alert_events_and_loses_none() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let Some(pg) = common::postgres() else { return };
    let topic = common::unique_topic("pgdown");
    let schema = topic.clone();
    // The runner reaches Postgres only through the proxy.
    let (host, rest) = pg
        .rsplit_once('@')
        .map(|(user, rest)| (format!("{user}@"), rest.to_owned()))
        .expect("a postgres url with a user");
    let (addr, db) = rest
        .split_once('/')
        .expect("a postgres url with a database");
    let mut proxy = PgProxy::start(addr.to_owned()).await;
    let proxied = format!("{host}127.0.0.1:{}/{db}", proxy.port);
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    let group = format!("{topic}_group");
    let key = common::create_user(&pg, &schema, "outage");
    let running = common::start(&[
        "--kafka",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--idle",
        "10s",
        "--postgres",
        &proxied,
        "--postgres-schema",
        &schema,
    ]);
    let ids = create_alerts(&running.http, &key);
    let (path, ticks) = common::recording();
    let half = ticks.len() / 2;
    produce(&brokers, &topic, &ticks[..half]).await;
    // Let the first events reach Postgres, then take it away while the second half flows.
    wait_for_events(&pg, &schema, "events before the outage").await;
    proxy.down().await;
    produce(&brokers, &topic, &ticks[half..]).await;
    // The dataflow goes on without Postgres: every tick is taken in during the outage.
    let all = format!(
        "gostocks_ticks_total{{outcome=\"accepted\"}} {}",
        ticks.len()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics(&running.http).contains(&all) {
        assert!(
            Instant::now() < deadline,
            "ticks flow while Postgres is down: {}",
            metrics(&running.http)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.up().await;
    expect_events_equal_analyze(&pg, &schema, path, ids, &topic).await;
}

/// Waits until the runner at `http`, restarted at `restarted`, has taken in `n` ticks (it
/// replays its partitions from their beginning, so it counts every tick of the topic), at most
/// `secs` after its restart; returns how long after its restart that was.
async fn wait_for_ticks(
    http: &str,
    n: usize,
    restarted: Instant,
    secs: u64,
    what: &str,
) -> Duration {
    let want = format!("gostocks_ticks_total{{outcome=\"accepted\"}} {n} ");
    while !format!("{} ", metrics(http)).contains(&want) {
        assert!(
            restarted.elapsed() < Duration::from_secs(secs),
            "{what}: not all {n} ticks taken in {secs} s after the restart: {}",
            metrics(http)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    restarted.elapsed()
}

/// Sends `signal` (`STOP`, `KILL`) to the runner.
fn signal(running: &common::Running, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal}");
}

/// What a supervisor does to a crashed runner: it is killed with -9 (after hanging for `hung`,
/// silent to its group meanwhile, if not zero) and started again at once, with the same flags:
/// the same group and the same default instance id. Returns it and when it was restarted.
fn crash_and_restart(
    mut running: common::Running,
    hung: Duration,
    args: &[&str],
) -> (common::Running, Instant) {
    if !hung.is_zero() {
        signal(&running, "STOP");
        std::thread::sleep(hung);
    }
    signal(&running, "KILL");
    let _ = running.child.wait();
    let killed = Instant::now();
    let restarted = common::start(args);
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "restarted within a second (took {:?})",
        killed.elapsed()
    );
    (restarted, killed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_at_once_loses_nothing_and_doubles_nothing() {
    // The idle time is longer than the pause between the parts: a runner that saw the stream
    // go quiet for longer would close the split second, and the ticks of that second that come
    // later would be late by design, so the outputs would depend on timing.
    let Some(brokers) = common::brokers() else {
        return;
    };
    let Some(pg) = common::postgres() else { return };
    let redis_url = redis_url();
    let Names {
        topic,
        stats_topic,
        prefix,
        group,
    } = Names::new("crash");
    let schema = topic.clone();
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    let args = [
        "--kafka",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--workers",
        "2",
        "--idle",
        "10s",
        "--stats-topic",
        &stats_topic,
        "--redis",
        &redis_url,
        "--redis-prefix",
        &prefix,
        "--postgres",
        &pg,
        "--postgres-schema",
        &schema,
    ];
    let key = common::create_user(&pg, &schema, "crash");
    let first = common::start(&args);
    let ids = create_alerts(&first.http, &key);

    let (path, ticks) = common::recording();
    let thirds = [ticks.len() / 3, 2 * ticks.len() / 3];
    produce(&brokers, &topic, &ticks[..thirds[0]]).await;
    // Let outputs and commits happen, then kill -9 mid-stream.
    let redis = RedisSink::connect(&redis_url, &prefix)
        .await
        .expect("redis");
    wait_for_hash(&redis, "stats:AAPL:60s", "outputs before the crash").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Its supervisor restarts it at once, before the group could notice it died. A dynamic
    // member would wait for the dead one's session to expire (and, on tansu, might be formed
    // into the group with nothing); a static one takes its partitions back.
    let (second, restarted) = crash_and_restart(first, Duration::ZERO, &args);
    produce(&brokers, &topic, &ticks[thirds[0]..thirds[1]]).await;
    let took = wait_for_ticks(&second.http, thirds[1], restarted, 30, "after kill -9").await;
    eprintln!(
        "after kill -9 and a restart at once, every tick taken in {took:?} after the restart"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Hung, then killed: its last heartbeat is 3 s old when its successor joins. On tansu 0.6 a
    // dynamic successor then lands in the generation that evicts the dead leader but not
    // itself, and is formed into the group with no partition, for good.
    let (third, restarted) = crash_and_restart(second, Duration::from_secs(3), &args);
    let took = wait_for_ticks(
        &third.http,
        thirds[1],
        restarted,
        30,
        "after a hang and kill -9",
    )
    .await;
    eprintln!(
        "after a hang, kill -9 and a restart at once, every tick taken in {took:?} after the restart"
    );
    produce(&brokers, &topic, &ticks[thirds[1]..]).await;
    let want = expect_redis_equals_analyze(&redis, &third.http, path, &ticks, &topic, 60).await;

    // The stats topic, deduplicated by key and time, is exactly analyze's changelog.
    let got = stats_topic_lines(
        &brokers,
        &stats_topic,
        &format!("{topic}_reader"),
        want.len(),
    )
    .await;
    assert!(
        got == want,
        "stats topic: {} distinct rows, analyze {}",
        got.len(),
        want.len()
    );

    // The alert events in Postgres are those of a run without the crash: none missing, none
    // doubled.
    expect_events_equal_analyze(&pg, &schema, path, ids, &topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_joining_the_group_mid_stream_keeps_outputs_complete_and_exact() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let redis_url = redis_url();
    let Names {
        topic,
        stats_topic,
        prefix,
        group,
    } = Names::new("rebalance");
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    // The stream pauses between its halves while the group rebalances. A partition silent for
    // longer than --idle lets its last grid second close, and later ticks of that second would
    // be late by design; so the idle time here is longer than the pause.
    let args = [
        "--kafka",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--workers",
        "2",
        "--idle",
        "20s",
        "--stats-topic",
        &stats_topic,
        "--redis",
        &redis_url,
        "--redis-prefix",
        &prefix,
    ];
    let first = common::start(&args);
    // Each runner finalises up to the last grid time of its own partitions. A closing tick per
    // symbol, a second after the end, gives every partition the same last grid time, so the
    // union of both runners' outputs covers what analyze writes up to it.
    let (_, mut ticks) = common::recording();
    let end = ticks.iter().map(|t| t.time_ns).max().expect("ticks");
    let next_seq = ticks.iter().map(|t| t.seq).max().expect("ticks") + 1;
    let symbols: BTreeSet<String> = ticks.iter().map(|t| t.symbol.clone()).collect();
    for (i, symbol) in symbols.iter().enumerate() {
        let mut last = ticks
            .iter()
            .filter(|t| &t.symbol == symbol)
            .max_by_key(|t| (t.time_ns, t.seq))
            .expect("trades")
            .clone();
        last.time_ns = end + SEC;
        last.seq = next_seq + i as u64;
        ticks.push(last);
    }
    let file = std::env::temp_dir().join(format!("{topic}.jsonl"));
    let lines: Vec<String> = ticks
        .iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let half = ticks.len() / 2;
    produce(&brokers, &topic, &ticks[..half]).await;
    let redis = RedisSink::connect(&redis_url, &prefix)
        .await
        .expect("redis");
    wait_for_hash(&redis, "stats:AAPL:60s", "outputs from the first runner").await;
    // A second runner joins: the partitions are shared out between the two.
    let _second = common::start(&args);
    tokio::time::sleep(Duration::from_secs(8)).await;
    produce(&brokers, &topic, &ticks[half..]).await;
    // Each symbol's final state is exact, whichever runner owns it now; either gateway
    // answers from the shared Redis.
    let want = expect_redis_equals_analyze(&redis, &_second.http, path, &ticks, &topic, 90).await;
    drop(first);

    // The union of what both wrote to the stats topic is exactly analyze's changelog.
    expect_stats_topic(&brokers, &stats_topic, &topic, &want).await;
}

/// Borrowed flags.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The value of the runner's metric `name`, if it has it.
fn metric(http: &str, name: &str) -> Option<f64> {
    let all = metrics(http);
    let mut words = all.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next().and_then(|v| v.parse().ok());
        }
    }
    None
}

/// A runner of instance `first` is killed with -9 (after hanging for `hung`) and another, of
/// instance `second`, takes its place at once, while the dead one's partitions hold the rest of
/// the stream. Whatever the broker does with the dead member, the newcomer ends up consuming
/// every partition; while it holds none past the bound (its session timeout `session` plus
/// 15 s), it says so: `/readyz` is 503, the metrics show it, and it rejoins its group (after
/// waiting out its session plus 5 s, so that tansu forgets it).
async fn a_stuck_runner_rejoins(
    tag: &str,
    first: &str,
    second: &str,
    hung: Duration,
    session: u64,
) {
    let bound = session + 15;
    let Some(brokers) = common::brokers() else {
        return;
    };
    let redis_url = redis_url();
    let Names {
        topic,
        stats_topic,
        prefix,
        group,
    } = Names::new(tag);
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    let args = |instance: &str| -> Vec<String> {
        [
            "--kafka",
            &brokers,
            "--topic",
            &topic,
            "--group",
            &group,
            "--instance-id",
            instance,
            "--idle",
            "10s",
            "--stats-topic",
            &stats_topic,
            "--redis",
            &redis_url,
            "--redis-prefix",
            &prefix,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let (first_args, second_args) = (args(first), args(second));
    let dead = common::start(&strs(&first_args));
    let (path, ticks) = common::recording();
    let half = ticks.len() / 2;
    produce(&brokers, &topic, &ticks[..half]).await;
    let redis = RedisSink::connect(&redis_url, &prefix)
        .await
        .expect("redis");
    wait_for_hash(&redis, "stats:AAPL:60s", "outputs before the crash").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (running, restarted) = crash_and_restart(dead, hung, &strs(&second_args));
    produce(&brokers, &topic, &ticks[half..]).await;

    let (mut longest, mut not_ready) = (0.0f64, None);
    let deadline = Duration::from_secs(bound + session + 5 + 45);
    while metric(&running.http, "gostocks_ticks_total{outcome=\"accepted\"}")
        != Some(ticks.len() as f64)
    {
        assert!(
            restarted.elapsed() < deadline,
            "not every tick taken in {deadline:?} after the restart: {}",
            metrics(&running.http)
        );
        if metric(&running.http, "gostocks_kafka_assigned_partitions") == Some(0.0) {
            let unassigned = metric(&running.http, "gostocks_kafka_unassigned_seconds");
            longest = longest.max(unassigned.unwrap_or(0.0));
            let (status, body) = common::get(&running.http, "/readyz");
            if status == 503
                && body["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("no partition"))
            {
                not_ready.get_or_insert(body);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = restarted.elapsed();
    let rejoins = metric(&running.http, "gostocks_kafka_rejoins_total").unwrap_or(0.0);
    eprintln!(
        "{tag}: every tick taken in {took:?} after the restart; held no partition for up to {longest} s while records waited; {rejoins} rejoins; not ready: {not_ready:?}"
    );
    assert!(
        longest > 0.0,
        "it reported holding no partition while records waited"
    );
    // A broker that evicts the dead member itself (Kafka) hands its partitions over before the
    // bound; one that does not (tansu 0.6) leaves the newcomer stuck until it rejoins.
    if took > Duration::from_secs(bound) {
        assert!(
            rejoins >= 1.0,
            "stuck past the bound, it rejoined its group"
        );
        assert!(not_ready.is_some(), "stuck past the bound, /readyz said so");
    }
    let (status, _) = common::get(&running.http, "/readyz");
    assert_eq!(status, 200, "ready again");
    expect_redis_equals_analyze(&redis, &running.http, path, &ticks, &topic, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_restarted_under_another_instance_id_gets_the_dead_ones_partitions() {
    // A static member dies and its successor comes back under another id (a new host name): the
    // dead one's session must expire (Kafka), or the newcomer must rejoin (tansu, which never
    // evicts a static member).
    a_stuck_runner_rejoins("newid", "crashed-a", "successor-b", Duration::ZERO, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_member_formed_into_its_group_with_nothing_rejoins_it() {
    // Dynamic members (--instance-id ""), the dead one hung 3 s before its kill: tansu 0.6 forms
    // the group around the newcomer with an empty assignment, and never rebalances by itself.
    a_stuck_runner_rejoins("emptyassign", "", "", Duration::from_secs(3), 6).await;
}

/// `run --kafka` as a timely cluster of 2 processes × 2 workers: each reads its share of the
/// 2 partitions (one each; the other worker of each process follows the cluster's event time),
/// ticks are exchanged by symbol, and each process's sinks write the symbols its workers own.
/// One process is killed with `kill -9` mid-stream: the other exits on its own (status 70), as
/// timely does not re-form a cluster. Both are started again, as a supervisor does, and in the
/// end Redis, the `stats` topic (deduplicated) and the alert events in Postgres equal
/// `analyze`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_process_cluster_equals_analyze_through_a_kill_9_and_a_restart() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let Some(pg) = common::postgres() else { return };
    let redis_url = redis_url();
    let Names {
        topic,
        stats_topic,
        prefix,
        group,
    } = Names::new("cluster");
    // 2 partitions, both holding some of the 5 symbols: an empty one would hold event time back
    // for --idle, and then every partition, idle by then, would close the grid second the
    // first half ends in.
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    let schema = topic.clone();
    let key = common::create_user(&pg, &schema, "cluster");
    let hostfile = std::env::temp_dir().join(format!("{topic}.hosts"));
    common::hostfile(&hostfile, 2);
    let hostfile = hostfile.display().to_string();
    let args = |process: &'static str| {
        vec![
            "--kafka".to_owned(),
            brokers.clone(),
            "--topic".into(),
            topic.clone(),
            "--group".into(),
            group.clone(),
            // 2 × 2 workers: both processes own some of the recording's 5 symbols.
            "--workers".into(),
            "2".into(),
            "--processes".into(),
            "2".into(),
            "--process".into(),
            process.into(),
            "--hostfile".into(),
            hostfile.clone(),
            // Longer than the pauses between the parts (see the kill -9 test above).
            "--idle".into(),
            "20s".into(),
            "--stats-topic".into(),
            stats_topic.clone(),
            "--redis".into(),
            redis_url.clone(),
            "--redis-prefix".into(),
            prefix.clone(),
            "--postgres".into(),
            pg.clone(),
            "--postgres-schema".into(),
            schema.clone(),
        ]
    };
    let (zero, one) = (args("0"), args("1"));
    let (path, ticks) = common::recording();
    let half = ticks.len() / 2;
    let first = common::start(&strs(&zero));
    let second = common::start(&strs(&one));
    // Created through process 0: the rules are matched on their symbols' workers, and the
    // events recorded by the process that owns them, whichever created them.
    let ids = create_alerts(&first.http, &key);
    produce(&brokers, &topic, &ticks[..half]).await;
    let redis = RedisSink::connect(&redis_url, &prefix)
        .await
        .expect("redis");
    wait_for_hash(&redis, "stats:AAPL:60s", "outputs from the cluster").await;
    // Events of the first half are recorded before the crash, by process 1, which owns the
    // alerts' symbols but did not create the alerts.
    wait_for_events(&pg, &schema, "alert events recorded before the crash").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Process 1 dies; process 0 finds its connection gone and exits, with a reason.
    signal(&second, "KILL");
    let mut first = first;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = first.child.try_wait().expect("waits") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "process 0 still runs 30 s after process 1 died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(70), "process 0 exits with status 70");
    drop(second);

    // The supervisor starts both again; the rest of the ticks come.
    let first = common::start(&strs(&zero));
    let second = common::start(&strs(&one));
    produce(&brokers, &topic, &ticks[half..]).await;
    let want = expect_redis_equals_analyze(&redis, &first.http, path, &ticks, &topic, 90).await;
    // Each process wrote the symbols its workers own, and only those: its read model has
    // their prices.
    let owned = |http: &str| -> BTreeSet<String> {
        let (status, body) = common::get(http, "/symbols");
        assert_eq!(status, 200);
        body["symbols"]
            .as_array()
            .expect("symbols")
            .iter()
            .map(|s| s.as_str().expect("symbol").to_owned())
            .collect()
    };
    let (mine, theirs) = (owned(&first.http), owned(&second.http));
    let all: BTreeSet<String> = ticks.iter().map(|t| t.symbol.clone()).collect();
    assert!(
        !mine.is_empty() && !theirs.is_empty() && mine.is_disjoint(&theirs),
        "each process owns some symbols: {mine:?} and {theirs:?}"
    );
    assert_eq!(&mine | &theirs, all);
    expect_stats_topic(&brokers, &stats_topic, &topic, &want).await;
    // The alert events in Postgres are those of a run without the crash.
    expect_events_equal_analyze(&pg, &schema, path, ids, &topic).await;
}
