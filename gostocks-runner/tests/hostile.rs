//! The REST and gRPC edges under hostile input, against the real binary on the embedded default
//! (in-memory alerts): abandoned watches hold no memory, long input never becomes a 5xx or a long
//! message, every malformed request is a named 4xx / INVALID_ARGUMENT, symbols follow one rule,
//! decimals are exact, and connections are bounded in time.

mod common;

use common::{authed, price_above};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_client::AlertServiceClient;
use gostocks_proto::v1::market_service_client::MarketServiceClient;
use tonic::Code;
use tonic::transport::Channel;

/// A keep-alive HTTP/1.1 connection: one request after another on the same socket.
struct Http {
    reader: BufReader<TcpStream>,
    addr: String,
}

impl Http {
    fn connect(addr: &str) -> Http {
        let s = TcpStream::connect(addr).expect("REST accepts connections");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Http {
            reader: BufReader::new(s),
            addr: addr.to_owned(),
        }
    }

    /// Sends raw `head` lines (without the final blank line) and `body`; returns the status, the
    /// headers (lower-case names) and the body.
    fn raw(&mut self, head: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        // One write: a request split over small writes waits on delayed ACKs.
        let mut request = Vec::with_capacity(head.len() + 2 + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        self.reader.get_mut().write_all(&request).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a status line, got {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_lowercase(), v.trim().to_owned()));
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let mut body = vec![0; if head.starts_with("HEAD ") { 0 } else { len }];
        self.reader.read_exact(&mut body).unwrap();
        (status, headers, body)
    }

    fn call(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: {}\r\n",
            self.addr,
            body.len()
        );
        let (status, _, body) = self.raw(&head, body.as_bytes());
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects")
}

/// A symbol the embedded recording trades, once the runner has a price for it.
fn a_symbol(http: &mut Http) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http.call("GET", "/symbols", None, "");
        if let Some(s) = body["symbols"].as_array().and_then(|a| a.first()) {
            return s.as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no symbols after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Defect 1: a watch ends when its client goes away. 20,000 abandoned REST long polls and
/// 20,000 opened-then-cancelled gRPC `WatchAlertEvents` streams leave RSS flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_watches_hold_no_memory() {
    let run = common::start(&["--speed", "50x"]);
    let key = run.demo_key.clone().expect("demo key");
    let pid = run.child.id();
    let mut http = Http::connect(&run.http);
    // No events come: a watch that waits for one to notice its client has gone never ends.

    let rest = |http: &mut Http, n: usize| {
        for _ in 0..n {
            let (status, body) = http.call(
                "GET",
                "/alerts/events?after=999999999&wait_ms=0",
                Some(&key),
                "",
            );
            assert_eq!(status, 200, "{body}");
        }
    };
    // A first round as long as the measured ones: what the allocator and the replay settle
    // into is not the watches'. A leak grows on every round, so a growth counts only when
    // the round after it grows as well (the replay and the allocator step now and then).
    rest(&mut http, 20_000);
    let mut rounds = Rounds::new("REST long polls", rss_kb(pid));
    for _ in 0..2 {
        rest(&mut http, 20_000);
        if !rounds.grew(rss_kb(pid)) {
            break;
        }
    }
    rounds.assert_flat();

    let mut client = AlertServiceClient::new(channel(&run.grpc).await);
    watch_and_leave(&mut client, &key, 20_000).await;
    let mut rounds = Rounds::new("gRPC watches", rss_kb(pid));
    for _ in 0..2 {
        watch_and_leave(&mut client, &key, 20_000).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !rounds.grew(rss_kb(pid)) {
            break;
        }
    }
    rounds.assert_flat();
}

/// RSS over rounds of 20,000 watches: a leak grows on every round, so a growth of 8 MB or more
/// counts only when the round after it grows as much.
struct Rounds {
    what: &'static str,
    before: u64,
    /// `(before, after)` of the rounds that grew, since the last one that did not.
    grown: Vec<(u64, u64)>,
}

impl Rounds {
    fn new(what: &'static str, before: u64) -> Rounds {
        Rounds {
            what,
            before,
            grown: Vec::new(),
        }
    }

    /// Records a round that ended at `after` kB; whether it grew by 8 MB or more.
    fn grew(&mut self, after: u64) -> bool {
        eprintln!(
            "{}: RSS {} kB -> {after} kB over 20,000",
            self.what, self.before
        );
        let grew = after >= self.before + 8_192;
        if grew {
            self.grown.push((self.before, after));
        } else {
            self.grown.clear();
        }
        self.before = after;
        grew
    }

    fn assert_flat(&self) {
        assert!(
            self.grown.len() < 2,
            "RSS grew by 8 MB or more on each of two rounds of 20,000 {}: {:?}",
            self.what,
            self.grown
        );
    }
}

/// Opens `n` watches one after another, each dropped as soon as it is open.
async fn watch_and_leave(client: &mut AlertServiceClient<Channel>, key: &str, n: usize) {
    for _ in 0..n {
        let stream = client
            .watch_alert_events(authed(
                v1::WatchAlertEventsRequest {
                    after_event_id: 0,
                    from_start: false,
                },
                key,
            ))
            .await
            .expect("watch opens");
        drop(stream);
    }
}

/// Defects 4 and 5: long input is refused with a short message, never a 5xx; 100,000
/// sequential long polls after an event exists give no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_input_and_many_polls_get_short_clear_answers() {
    let run = common::start(&["--speed", "50x"]);
    let key = run.demo_key.clone().expect("demo key");
    let mut http = Http::connect(&run.http);
    let symbol = a_symbol(&mut http);

    let long = "X".repeat(8_100);
    let body = format!(r#"{{"symbol":"{long}","condition":"price_above","threshold":"1"}}"#);
    let (status, err) = http.call("POST", "/alerts", Some(&key), &body);
    assert_eq!(status, 400, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.len() < 200 && message.contains("symbol"),
        "{message}"
    );

    let (status, err) = http.call(
        "DELETE",
        &format!("/alerts/{}", "a".repeat(20_000)),
        Some(&key),
        "",
    );
    assert_eq!(status, 414, "{err}");
    let (status, err) = http.call(
        "DELETE",
        &format!("/alerts/{}", "a".repeat(1_500)),
        Some(&key),
        "",
    );
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().len() < 200, "{err}");

    let mut client = AlertServiceClient::new(channel(&run.grpc).await);
    let mut req = price_above("A", 1);
    req.symbol = "Y".repeat(1_000_000);
    let err = client.create_alert(authed(req, &key)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().len() < 200, "{} bytes", err.message().len());
    let err = client
        .delete_alert(authed(
            v1::DeleteAlertRequest {
                id: "Z".repeat(1_000_000),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().len() < 200, "{} bytes", err.message().len());

    // An event exists, then 100,000 polls after it.
    let body = format!(r#"{{"symbol":"{symbol}","condition":"price_above","threshold":"0.01"}}"#);
    assert_eq!(http.call("POST", "/alerts", Some(&key), &body).0, 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let (_, body) = http.call("GET", "/alerts/events?after=0&wait_ms=1000", Some(&key), "");
        if let Some(id) = body["events"][0]["id"].as_i64() {
            break id;
        }
        assert!(Instant::now() < deadline, "the alert never fired");
    };
    // Defect 10: `wait_ms` is a deadline from the request's arrival, not a wait that starts
    // again after each event: with an event stored, the answer comes well before it.
    let t = Instant::now();
    let (_, body) = http.call("GET", "/alerts/events?after=0&wait_ms=5000", Some(&key), "");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "answered {:?} after a request with wait_ms=5000",
        t.elapsed()
    );
    let path = format!("/alerts/events?after={first}&wait_ms=0");
    let mut errors = 0;
    for _ in 0..100_000 {
        if http.call("GET", &path, Some(&key), "").0 != 200 {
            errors += 1;
        }
    }
    assert_eq!(errors, 0, "of 100,000 sequential polls");
}

/// Defects 6, 9, 10, 11 and 13 (REST): every malformed request is the 4xx that names it, one
/// rejection function for every route; decimals come back exact; `wait_ms` is a deadline;
/// HEAD works where GET does.
#[test]
fn every_malformed_request_is_a_named_4xx() {
    let run = common::start(&["--speed", "50x"]);
    let key = run.demo_key.clone().expect("demo key");
    let mut http = Http::connect(&run.http);
    let symbol = a_symbol(&mut http);
    let k = Some(key.as_str());
    let cases: &[(&str, &str, &str, Option<&str>, u16)] = &[
        (
            "page_size not a number",
            "GET",
            "/alerts?page_size=abc",
            k,
            400,
        ),
        ("page_size negative", "GET", "/alerts?page_size=-1", k, 400),
        (
            "page_size over u32",
            "GET",
            "/alerts?page_size=4294967296",
            k,
            400,
        ),
        (
            "page_size over the page",
            "GET",
            "/alerts?page_size=501",
            k,
            400,
        ),
        (
            "after not a number",
            "GET",
            "/alerts/events?after=abc",
            k,
            400,
        ),
        (
            "after over i64",
            "GET",
            "/alerts/events?after=9223372036854775808",
            k,
            400,
        ),
        ("after negative", "GET", "/alerts/events?after=-5", k, 400),
        (
            "wait_ms negative",
            "GET",
            "/alerts/events?wait_ms=-1",
            k,
            400,
        ),
        (
            "duplicate parameter",
            "GET",
            "/alerts?page_size=1&page_size=2",
            k,
            400,
        ),
        ("unknown parameter", "GET", "/alerts?pagesize=1", k, 400),
        (
            "page_token with NUL",
            "GET",
            "/alerts?page_token=%00",
            k,
            400,
        ),
        (
            "bad limit on a market route",
            "GET",
            "/bars/AAPL?limit=-1",
            None,
            400,
        ),
        ("no key", "GET", "/alerts", None, 401),
        ("not a key", "GET", "/alerts", Some("nope"), 401),
        ("wrong method on /alerts", "PUT", "/alerts", k, 405),
        (
            "wrong method on /alerts/events",
            "POST",
            "/alerts/events",
            k,
            405,
        ),
        ("wrong method on an alert", "GET", "/alerts/al_0", k, 405),
        (
            "wrong method on a market route",
            "DELETE",
            "/price/AAPL",
            None,
            405,
        ),
        ("unknown route", "GET", "/nothing/here", None, 404),
        (
            "unknown alert",
            "DELETE",
            "/alerts/al_0000000000000000",
            k,
            404,
        ),
        ("alert id with NUL", "DELETE", "/alerts/a%00b", k, 400),
    ];
    for (name, method, path, key, want) in cases {
        let (status, body) = http.call(method, path, *key, "");
        assert_eq!(status, *want, "{name}: {method} {path} -> {body}");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{name}: {body}"
        );
    }

    // An Authorization header with a byte that is not ASCII.
    let mut head = b"GET /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n".to_vec();
    head.extend_from_slice(b"Authorization: Bearer \xff\r\n");
    let s = http.reader.get_mut();
    s.write_all(&head).unwrap();
    let (status, _, _) = http.raw("", b"");
    assert_eq!(status, 401, "Authorization with byte 0xff");

    // Chunked bodies are taken, up to the limit; a declared length over it is 413.
    let alert = r#"{"symbol":"ZZZZ","condition":"price_above","threshold":"99999999.99999999","hysteresis":"92233720368.54775807"}"#;
    let chunked = format!("{:x}\r\n{alert}\r\n0\r\n\r\n", alert.len());
    let head = format!(
        "POST /alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n"
    );
    let (status, _, body) = http.raw(&head, chunked.as_bytes());
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 201, "chunked POST: {body}");
    // Defect 9: decimals are exact strings.
    assert_eq!(body["threshold"], "99999999.99999999", "{body}");
    assert_eq!(body["hysteresis"], "92233720368.54775807", "{body}");
    let big = "x".repeat(20_000);
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let (status, _, _) = http.raw(&head, chunked.as_bytes());
    assert_eq!(status, 413, "chunked body over the limit");
    let mut http = Http::connect(&run.http);
    let (status, _) = http.call("POST", "/alerts", Some(&key), &"y".repeat(20_000));
    assert_eq!(status, 413, "declared body over the limit");

    // Defect 11: a cooldown too long for the wire names the field the client sent.
    let body = format!(
        r#"{{"symbol":"{symbol}","condition":"price_above","threshold":"1","cooldown":"106752d"}}"#
    );
    let (status, err) = http.call("POST", "/alerts", Some(&key), &body);
    assert_eq!(status, 400, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.starts_with("cooldown:") && !message.contains("cooldown_ns"),
        "{message}"
    );

    // Defect 9: prices are exact strings too.
    let (status, price) = http.call("GET", &format!("/price/{symbol}"), None, "");
    assert_eq!(status, 200);
    assert!(price["price"].is_string(), "{price}");

    // Defect 13: HEAD works where GET does, without a body.
    for path in [
        "/healthz",
        "/symbols",
        &format!("/price/{symbol}"),
        "/metrics",
    ] {
        let (status, _, body) = http.raw(&format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n"), b"");
        assert_eq!((status, body.len()), (200, 0), "HEAD {path}");
    }

    // Defect 10: `wait_ms` is a deadline from the request's arrival.
    let t = Instant::now();
    let (status, body) = http.call(
        "GET",
        "/alerts/events?after=999999999&wait_ms=1500",
        Some(&key),
        "",
    );
    let waited = t.elapsed();
    assert_eq!((status, &body["events"]), (200, &serde_json::json!([])));
    assert!(
        waited >= Duration::from_millis(1500),
        "returned after {waited:?}"
    );
}

/// Defect 7: one symbol rule everywhere. A lower-case alert is stored in the canonical form and
/// fires like its upper-case twin; REST and gRPC find a symbol however it is cased or encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_symbol_rule_at_every_entry() {
    let run = common::start(&["--speed", "50x"]);
    let key = run.demo_key.clone().expect("demo key");
    let mut http = Http::connect(&run.http);
    let symbol = a_symbol(&mut http);
    let lower = symbol.to_lowercase();
    let mut ids = Vec::new();
    for s in [&symbol, &lower] {
        let body = format!(r#"{{"symbol":"{s}","condition":"price_above","threshold":"0.01"}}"#);
        let (status, alert) = http.call("POST", "/alerts", Some(&key), &body);
        assert_eq!(status, 201, "{alert}");
        assert_eq!(
            alert["symbol"],
            symbol.as_str(),
            "stored in the canonical form"
        );
        ids.push(alert["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http.call("GET", "/alerts/events?after=0&wait_ms=500", Some(&key), "");
        let fired: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["alert_id"].as_str().unwrap())
            .collect();
        if ids.iter().all(|id| fired.contains(&id.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both alerts fire; fired: {fired:?}"
        );
    }
    let encoded: String = symbol.bytes().map(|b| format!("%{b:02X}")).collect();
    for path in [format!("/price/{lower}"), format!("/price/{encoded}")] {
        let (status, body) = http.call("GET", &path, None, "");
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["symbol"], symbol.as_str());
    }
    let mut market = MarketServiceClient::new(channel(&run.grpc).await);
    let price = market
        .get_price(v1::GetPriceRequest {
            symbol: lower.clone(),
        })
        .await
        .expect("a lower-case symbol is found")
        .into_inner();
    assert_eq!(price.symbol, symbol);
    for bad in ["", "A B", &"Q".repeat(24)] {
        let err = market
            .get_price(v1::GetPriceRequest { symbol: bad.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
    }
    let body = r#"{"symbol":"A B","condition":"price_above","threshold":"1"}"#;
    assert_eq!(http.call("POST", "/alerts", Some(&key), body).0, 400);
}

/// A codec that sends raw bytes as the request message and ignores the response.
#[derive(Clone, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        bytes::Buf::advance(src, bytes::Buf::remaining(src));
        Ok(Some(()))
    }
}

/// Defects 8 and 13 (gRPC): undecodable protobuf is INVALID_ARGUMENT, an oversized message
/// RESOURCE_EXHAUSTED, a negative `after_event_id` and an id with a NUL byte INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_answers_bad_messages_with_the_spec_codes() {
    let run = common::start(&["--speed", "50x"]);
    let key = run.demo_key.clone().expect("demo key");
    let ch = channel(&run.grpc).await;
    let mut raw = tonic::client::Grpc::new(ch.clone()).max_encoding_message_size(64 << 20);
    let path = http::uri::PathAndQuery::from_static("/gostocks.v1.AlertService/DeleteAlert");
    for (name, body, want) in [
        (
            "undecodable",
            vec![0x0a, 0xff, 0xff, 0xff],
            Code::InvalidArgument,
        ),
        ("oversized", vec![0x0a; 5 << 20], Code::ResourceExhausted),
    ] {
        raw.ready().await.unwrap();
        let err = raw
            .unary(authed(body, &key), path.clone(), Raw)
            .await
            .unwrap_err();
        assert_eq!(err.code(), want, "{name}: {err:?}");
    }
    let mut client = AlertServiceClient::new(ch);
    let mut watch = client
        .watch_alert_events(authed(
            v1::WatchAlertEventsRequest {
                after_event_id: -5,
                from_start: false,
            },
            &key,
        ))
        .await;
    if let Ok(stream) = &mut watch {
        watch = stream
            .get_mut()
            .message()
            .await
            .map(|_| unreachable!("no event for -5"));
    }
    assert_eq!(
        watch.err().map(|e| e.code()),
        Some(Code::InvalidArgument),
        "after_event_id=-5"
    );
    let err = client
        .delete_alert(authed(v1::DeleteAlertRequest { id: "a\0b".into() }, &key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .get_alerts(authed(
            v1::GetAlertsRequest {
                page_size: 0,
                page_token: "\0".into(),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Defect 13: connections that hold partial headers, or send nothing, are closed.
#[test]
fn stalled_connections_are_closed() {
    let run = common::start(&["--header-read-timeout", "1s", "--idle-timeout", "2s"]);
    let open = |addr: &str, partial: &[u8]| {
        (0..50)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(partial).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s
            })
            .collect::<Vec<_>>()
    };
    let rest = open(&run.http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    let grpc = open(&run.grpc, b"PRI * HTTP/2.0\r\n");
    let t = Instant::now();
    for mut s in rest.into_iter().chain(grpc) {
        let mut buf = [0u8; 4096];
        // The server answers (408 or GOAWAY) or not, then closes: the read ends.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!(
                        "a stalled connection was still open after {:?}",
                        t.elapsed()
                    )
                }
                Err(_) => break,
            }
        }
    }
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        t.elapsed()
    );
    // The servers still serve.
    assert_eq!(common::get(&run.http, "/healthz").0, 200);
}

/// Defect 13: a server holds at most `--max-connections` at once; one more waits to be accepted
/// and is served as soon as another closes.
#[test]
fn connections_beyond_the_limit_wait_their_turn() {
    let run = common::start(&["--max-connections", "2"]);
    let mut held: Vec<Http> = (0..2).map(|_| Http::connect(&run.http)).collect();
    for h in &mut held {
        assert_eq!(h.call("GET", "/healthz", None, "").0, 200);
    }
    let mut third = TcpStream::connect(&run.http).expect("the kernel queues it");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 16];
    let waited = third.read(&mut buf);
    assert!(
        waited.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "a third connection is not served while two are open: {waited:?}"
    );
    drop(held.pop());
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    third
        .read_to_string(&mut answer)
        .expect("served once one closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
