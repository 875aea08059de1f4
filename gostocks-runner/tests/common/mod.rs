//! Helpers shared by the runner's integration tests: the real binary on ephemeral ports, a plain
//! HTTP client, and the broker address (a failure under the test command, a skip otherwise).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Running {
    pub child: Child,
    pub http: String,
    pub grpc: String,
    /// The in-memory store's `demo` user key, when no Postgres is configured.
    pub demo_key: Option<String>,
    /// What it printed at start-up.
    pub banner: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on ephemeral ports and reads the addresses it prints.
pub fn start(extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        // The test command exports service addresses for the tests themselves; a runner uses a
        // service only when its test passes the flag.
        .env_remove("GOSTOCKS_POSTGRES_URL")
        .env_remove("GOSTOCKS_POSTGRES_SCHEMA")
        .env_remove("GOSTOCKS_REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gostocks starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut http, mut grpc, mut demo_key) = (None, None, None);
    let mut banner = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("gostocks prints its addresses")
            .expect("utf-8");
        banner.push(line.clone());
        if line.starts_with("press Ctrl-C") {
            break;
        }
        if line.contains("API key") {
            demo_key = line.split_whitespace().last().map(str::to_owned);
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("REST"), Some(url)) => http = Some(url.trim_start_matches("http://").to_owned()),
            (Some("gRPC"), Some(addr)) => grpc = Some(addr.to_owned()),
            _ => {}
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Running {
        child,
        http: http.unwrap_or_default(),
        grpc: grpc.unwrap_or_default(),
        demo_key,
        banner,
    }
}

/// Reads a `gostocks run` banner from `stdout` up to its last line: the REST address. The rest
/// of the output is drained on a thread.
pub fn rest_address(stdout: std::process::ChildStdout) -> String {
    addresses(stdout).0
}

/// Reads a `gostocks run` banner from `stdout` up to its last line: the REST and gRPC
/// addresses. The rest of the output is drained on a thread.
pub fn addresses(stdout: std::process::ChildStdout) -> (String, String) {
    let mut lines = BufReader::new(stdout).lines();
    let (mut http, mut grpc) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("utf-8");
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("REST"), Some(url)) => http = url.trim_start_matches("http://").to_owned(),
            (Some("gRPC"), Some(addr)) => grpc = addr.to_owned(),
            _ => {}
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert!(!http.is_empty(), "gostocks printed its REST address");
    (http, grpc)
}

/// A plain HTTP/1.1 GET of `path`: the body as text.
pub fn get_text(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("the server accepts connections");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response read");
    raw.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// `/metrics` of `addr`, parsed by a Prometheus text parser.
pub fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let body = get_text(addr, "/metrics");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

/// A plain HTTP/1.1 GET: status and body.
pub fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    request(addr, "GET", path, None, "")
}

/// A plain HTTP/1.1 request with an optional bearer key and a body: status and JSON body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).expect("REST accepts connections");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The Postgres URL (`GOSTOCKS_POSTGRES_URL`), if reachable (a failure under the test command).
pub fn postgres() -> Option<String> {
    let url = std::env::var("GOSTOCKS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let host = url
        .rsplit('@')
        .next()
        .and_then(|h| h.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let up = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !up {
        let required = std::env::var("GOSTOCKS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "postgres at {host} is unreachable, and the test command requires it"
        );
        eprintln!("SKIP: postgres at {host} is unreachable; run ./scripts/test to provision it");
        return None;
    }
    Some(url)
}

pub fn brokers() -> Option<String> {
    let brokers =
        std::env::var("GOSTOCKS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let addr = brokers.split(',').next().unwrap_or_default().to_owned();
    let up = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("host:port"),
        Duration::from_secs(2),
    )
    .is_ok();
    if !up {
        let required = std::env::var("GOSTOCKS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "kafka at {brokers} is unreachable, and the test command requires it"
        );
        eprintln!("SKIP: kafka at {brokers} is unreachable; run ./scripts/test to provision it");
        return None;
    }
    Some(brokers)
}

/// Writes a timely hostfile for `processes` processes on free ports of 127.0.0.1 to `path`.
pub fn hostfile(path: &std::path::Path, processes: usize) {
    // All bound at once, so that no two are the same; freed when written.
    let listeners: Vec<_> = (0..processes)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let hosts: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("address").to_string())
        .collect();
    std::fs::write(path, hosts.join("\n")).expect("hostfile");
}

/// A topic name no other run uses.
pub fn unique_topic(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("gostocks_test_{kind}_{}_{nanos}", std::process::id())
}

/// The shared market data folder (`GOSTOCKS_DATA_DIR`, else `../shared/data`), or `None` with the
/// reason printed.
pub fn data_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("GOSTOCKS_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
        });
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: no market data at {}; set GOSTOCKS_DATA_DIR",
            dir.display()
        );
        None
    }
}

/// The bundled recording's path and its ticks.
pub fn recording() -> (&'static str, Vec<gostocks_core::Tick>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/ticks.jsonl");
    let ticks = std::fs::read_to_string(path)
        .expect("the recording")
        .lines()
        .map(|l| serde_json::from_str(l).expect("canonical json"))
        .collect();
    (path, ticks)
}

/// A gRPC request carrying `authorization: Bearer <key>`.
pub fn authed<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    r
}

/// A `price_above` alert request, `once`, on `symbol` at a whole-number threshold.
pub fn price_above(symbol: &str, threshold: i64) -> gostocks_proto::v1::CreateAlertRequest {
    gostocks_proto::v1::CreateAlertRequest {
        symbol: symbol.into(),
        condition: gostocks_proto::v1::AlertCondition::PriceAbove as i32,
        threshold: Some(gostocks_proto::v1::Decimal {
            mantissa: threshold,
            scale: 0,
        }),
        mode: gostocks_proto::v1::AlertMode::Once as i32,
        hysteresis: None,
        cooldown_ns: 0,
        window: String::new(),
        channels: Vec::new(),
        bar: String::new(),
        storm: None,
        storm_off: false,
        upper: None,
    }
}

/// Creates user `name` in the Postgres `schema` with `gostocks users create`; its API key.
pub fn create_user(url: &str, schema: &str, name: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args([
            "users",
            "create",
            name,
            "--postgres",
            url,
            "--postgres-schema",
            schema,
        ])
        .output()
        .expect("gostocks runs");
    assert!(
        out.status.success(),
        "users create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A folder of test tools the test command installs (`env`, else `~/.cache/gostocks/<default>`),
/// if `ready` finds them there; a failure under the test command, a skip (saying why) otherwise.
/// playwright-core's `node_modules` and chromium, for the browser tests.
#[allow(dead_code)]
pub fn node_modules() -> Option<std::path::PathBuf> {
    let chromium = std::env::var_os("CHROMIUM").map_or_else(
        || std::path::PathBuf::from("/usr/bin/chromium"),
        std::path::PathBuf::from,
    );
    tool_dir(
        "GOSTOCKS_NODE_MODULES",
        "node/node_modules",
        |dir| dir.join("playwright-core").is_dir() && chromium.exists(),
        &format!("playwright-core, and chromium at {},", chromium.display()),
    )
}

/// Runs a browser script of `tests/browser` with `args`, failing the test if it fails.
#[allow(dead_code)]
pub fn browser_script(modules: &std::path::Path, script: &str, args: &[&str]) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let status = Command::new("node")
        .arg(&path)
        .args(args)
        .env("NODE_PATH", modules)
        .current_dir(modules.parent().expect("the npm folder"))
        .status()
        .expect("node runs");
    assert!(status.success(), "{script} failed (its output is above)");
}

pub fn tool_dir(
    env: &str,
    default: &str,
    ready: impl Fn(&std::path::Path) -> bool,
    what: &str,
) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os(env)
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                std::path::PathBuf::from(h)
                    .join(".cache/gostocks")
                    .join(default)
            })
        })?;
    if ready(&dir) {
        return Some(dir);
    }
    let why = format!(
        "needs {what} in {} (./scripts/test installs it)",
        dir.display()
    );
    assert!(
        std::env::var_os("GOSTOCKS_REQUIRE_SERVICES").is_none(),
        "{why}"
    );
    println!("SKIP: {why}");
    None
}

/// Reads the first `n` records of `topic` (from its beginning, in a group of its own) as
/// (key, payload), then checks that no other comes within 2 s.
pub async fn read_records(brokers: &str, topic: &str, n: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use futures::StreamExt;
    use rdkafka::Message;
    let consumer = gostocks_connectors::kafka::TickConsumer::subscribe(
        &gostocks_connectors::kafka::KafkaConfig::new(brokers, format!("{topic}_reader")),
        &[topic],
    )
    .expect("consumer");
    let mut stream = consumer.consumer.stream();
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{topic}: {} of {n} records, then none for 60 s", got.len()))
            .expect("stream open")
            .expect("no kafka error");
        got.push((
            msg.key().map(<[u8]>::to_vec),
            msg.payload().unwrap_or_default().to_vec(),
        ));
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .is_err(),
        "{topic}: more than {n} records"
    );
    got
}
