//! Server-sent events (`GET /stream`) against a running `gostocks run`: a client that
//! disconnects and resumes with `Last-Event-ID` gets every final stats row exactly once across
//! the gap; bad parameters are 400s; a client that stops reading is dropped with a reason; and
//! 1,000 clients held for 20 s leave memory bounded (the RSS figures are printed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{get, start};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One server-sent event.
#[derive(Clone, Debug, Default)]
struct Sse {
    id: Option<String>,
    event: String,
    data: String,
}

/// An open event stream: HTTP/1.0, so the body is the events as they are written.
struct Client {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
}

impl Client {
    /// Opens `path`; the status and the client (which reads events after the headers).
    async fn open(addr: &str, path: &str, last: Option<&str>) -> (u16, Client) {
        let mut s = TcpStream::connect(addr)
            .await
            .expect("REST accepts connections");
        let last = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
        s.write_all(
            format!(
                "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{last}\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("request sent");
        let mut lines = BufReader::new(s).lines();
        let status_line = lines.next_line().await.expect("read").expect("status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        while let Some(l) = lines.next_line().await.expect("read") {
            if l.is_empty() {
                break;
            }
        }
        (status, Client { lines })
    }

    /// The next event (comments, i.e. heartbeats, are passed over); `None` when the stream ends.
    async fn next(&mut self) -> Option<Sse> {
        let mut e = Sse::default();
        let mut any = false;
        loop {
            let line = self.lines.next_line().await.ok()??;
            if line.is_empty() {
                if any {
                    return Some(e);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => e.id = Some(value.to_owned()),
                "event" => e.event = value.to_owned(),
                "data" => e.data.push_str(value),
                _ => {}
            }
        }
    }

    /// Every event within `d` (or until the stream ends).
    async fn collect(&mut self, d: Duration) -> Vec<Sse> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.next()).await {
            out.push(e);
        }
        out
    }
}

/// One test at a time: the load test's figures and the slow client's pace assume the machine
/// is not also running another runner flat out.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn n_of(id: &str) -> u64 {
    id.split_once('-')
        .expect("<epoch>-<n>")
        .1
        .parse()
        .expect("n")
}

/// A stats row's identity: (symbol, window, time_ns).
fn row_key(e: &Sse) -> (String, String, u64) {
    let v: serde_json::Value = serde_json::from_str(&e.data).expect("JSON data");
    (
        v["symbol"].as_str().expect("symbol").to_owned(),
        v["window"].as_str().expect("window").to_owned(),
        v["time_ns"].as_u64().expect("time_ns"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_stream_gets_every_final_stats_row_exactly_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let running = start(&["--speed", "20x"]);
    let addr = running.http.clone();
    // The reference: one client connected the whole time.
    let (status, mut whole) = Client::open(&addr, "/stream?kinds=stats", None).await;
    assert_eq!(status, 200);
    let reference = tokio::spawn(async move { whole.collect(Duration::from_secs(12)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (_, mut first) = Client::open(&addr, "/stream?kinds=stats", None).await;
    let before = first.collect(Duration::from_secs(3)).await;
    drop(first);
    // Rows go on being computed while the client is away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = before
        .last()
        .and_then(|e| e.id.clone())
        .expect("stats rows within 3 s");
    let (status, mut resumed) = Client::open(&addr, "/stream?kinds=stats", Some(&last)).await;
    assert_eq!(status, 200);
    let after = resumed.collect(Duration::from_secs(3)).await;
    let reference = reference.await.expect("reference client");

    let got: Vec<&Sse> = before.iter().chain(&after).collect();
    assert!(
        got.iter().all(|e| e.event == "stats"),
        "only stats asked for"
    );
    let ids: Vec<u64> = got
        .iter()
        .map(|e| n_of(e.id.as_deref().expect("an id")))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase across the gap"
    );
    let (lo, hi) = (ids[0], *ids.last().expect("rows"));
    // Exactly the rows the uninterrupted client saw over the same span of ids, each once.
    let want: Vec<(String, String, u64)> = reference
        .iter()
        .filter(|e| (lo..=hi).contains(&n_of(e.id.as_deref().expect("id"))))
        .map(row_key)
        .collect();
    let got_rows: Vec<(String, String, u64)> = got.iter().map(|e| row_key(e)).collect();
    let unique: BTreeSet<_> = got_rows.iter().collect();
    assert_eq!(unique.len(), got_rows.len(), "a row came twice");
    assert_eq!(
        got_rows, want,
        "the resumed client's rows differ from the reference's"
    );
    // The resume starts with the first row after Last-Event-ID, made while the client was away.
    let next = reference
        .iter()
        .map(|e| n_of(e.id.as_deref().expect("id")))
        .find(|n| *n > n_of(&last))
        .expect("the reference saw rows after the gap");
    assert_eq!(n_of(after[0].id.as_deref().expect("id")), next);
    assert!(
        after.len() > 10,
        "rows kept coming after the resume: {}",
        after.len()
    );
    println!(
        "resume: {} rows before the gap, {} after it, ids {lo}..={hi}, each once",
        before.len(),
        after.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_resets_and_bad_requests() {
    let _one = ONE_AT_A_TIME.lock().await;
    let running = start(&["--speed", "20x"]);
    let addr = running.http.clone();
    let (status, mut msft) =
        Client::open(&addr, "/stream?symbols=msft&kinds=price,bars", None).await;
    assert_eq!(status, 200);
    let events = msft.collect(Duration::from_secs(4)).await;
    assert!(events.iter().any(|e| e.event == "price"), "prices come");
    assert!(events.iter().any(|e| e.event == "bar"), "1s bars come");
    for e in &events {
        assert!(e.event == "price" || e.event == "bar", "{e:?}");
        let v: serde_json::Value = serde_json::from_str(&e.data).expect("JSON");
        assert_eq!(v["symbol"], "MSFT", "{e:?}");
        if e.event == "price" {
            assert!(v["price"].is_string(), "exact decimal strings: {e:?}");
        }
    }
    // An id of another process (or from the future): a reset, then live events.
    let (status, mut other) = Client::open(&addr, "/stream", Some("1-5")).await;
    assert_eq!(status, 200);
    let first = other.next().await.expect("an event");
    assert_eq!(first.event, "reset");
    assert!(first.data.contains("unknown_id"), "{first:?}");
    assert!(other.next().await.is_some(), "live events follow the reset");

    for (path, last, field) in [
        ("/stream?kinds=trades", None, "kinds"),
        ("/stream?kinds=", None, "kinds"),
        ("/stream?symbols=a%20b", None, "symbols"),
        ("/stream?color=red", None, "query"),
        ("/stream", Some("not-an-id"), "Last-Event-ID"),
        ("/stream", Some("12"), "Last-Event-ID"),
    ] {
        let (status, mut c) = Client::open(&addr, path, last).await;
        let mut body = String::new();
        while let Ok(Some(l)) = c.lines.next_line().await {
            body.push_str(&l);
        }
        assert_eq!(status, 400, "{path} {last:?}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
        assert!(
            v["message"].as_str().is_some_and(|m| m.starts_with(field)),
            "{path}: {v}"
        );
    }
    let many = (0..101)
        .map(|i| format!("S{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let (status, _) = get(&addr, &format!("/stream?symbols={many}"));
    assert_eq!(status, 400, "over 100 symbols");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_dropped_with_a_reason() {
    let _one = ONE_AT_A_TIME.lock().await;
    let running = start(&["--speed", "max"]);
    let addr = running.http.clone();
    let (status, mut slow) = Client::open(&addr, "/stream", None).await;
    assert_eq!(status, 200);
    // Not reading: the socket buffers fill, then the live feed leaves the client behind.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = get(&addr, "/status");
        if s["streams_dropped"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow client was never dropped: {s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // What was buffered, then the reason, then the end of the stream.
    let mut last = None;
    while let Some(e) = slow.next().await {
        last = Some(e);
    }
    let last = last.expect("events");
    assert_eq!(last.event, "dropped", "{last:?}");
    assert!(last.data.contains("slow_client"), "{last:?}");
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_clients_for_twenty_seconds_in_bounded_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    const CLIENTS: usize = 1_000;
    let running = start(&["--max-connections", "1100"]);
    let addr = running.http.clone();
    let pid = running.child.id();
    // Warm: the first bars and stats are out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = rss_kb(pid);
    let stop = tokio::time::Instant::now() + Duration::from_secs(23);
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let addr = addr.clone();
        let path = if i % 2 == 0 {
            "/stream"
        } else {
            "/stream?symbols=MSFT,AAPL&kinds=price,stats"
        };
        tasks.push(tokio::spawn(async move {
            let (status, mut c) = Client::open(&addr, path, None).await;
            assert_eq!(status, 200);
            let mut n = 0u64;
            while let Ok(Some(e)) = tokio::time::timeout_at(stop, c.next()).await {
                assert_ne!(e.event, "dropped", "a reading client was dropped: {e:?}");
                n += 1;
            }
            n
        }));
    }
    // All connected: held for 20 s, RSS sampled every 2 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, s) = get(&addr, "/status");
        if s["streams"].as_u64() == Some(CLIENTS as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "not every client connected: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held = Instant::now();
    let mut samples = BTreeMap::new();
    while held.elapsed() < Duration::from_secs(20) {
        samples.insert(held.elapsed().as_secs(), rss_kb(pid));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (_, s) = get(&addr, "/status");
    assert_eq!(s["streams"].as_u64(), Some(CLIENTS as u64), "{s}");
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.expect("client"));
    }
    let peak = samples.values().copied().max().unwrap_or(0);
    let total: u64 = counts.iter().sum();
    println!(
        "sse load: {CLIENTS} clients held 20 s; RSS baseline {} MB, peak {} MB (+{} MB, {:.1} KB per client); samples (s: MB) {}",
        baseline / 1024,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024,
        peak.saturating_sub(baseline) as f64 / CLIENTS as f64,
        samples
            .iter()
            .map(|(t, kb)| format!("{t}: {}", kb / 1024))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "sse load: {total} events delivered, min {} / max {} per client",
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0)
    );
    assert!(counts.iter().all(|n| *n > 0), "every client got events");
    // Bounded: the replay buffer and live feed are shared, and each client holds a socket and
    // its place in the feed. 256 KB per client would be a leak of whole frames per client.
    assert!(
        peak.saturating_sub(baseline) < 256 * CLIENTS as u64,
        "RSS grew {} KB for {CLIENTS} clients",
        peak - baseline
    );
    // The last samples do not climb: memory does not grow with time held.
    let last: Vec<u64> = samples.values().copied().collect();
    let (mid, end) = (last[last.len() / 2], last[last.len() - 1]);
    assert!(
        end < mid + 32 * 1024,
        "RSS still climbing: {mid} KB -> {end} KB"
    );
    // Gone once they close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, s) = get(&addr, "/status");
        if s["streams"].as_u64() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "streams still counted: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A webhook receiver on 127.0.0.1 that answers every request 200; its address.
fn receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead, Read, Write};
                let mut r = std::io::BufReader::new(conn);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let _ = r.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alert_stream_takes_a_token_and_resumes_after_an_event_id() {
    let _one = ONE_AT_A_TIME.lock().await;
    let running = start(&["--speed", "20x", "--notify-allow-private"]);
    let addr = running.http.clone();
    let key = running.demo_key.clone().expect("the demo key");
    let post =
        |path: &str, key: Option<&str>, body: &str| common::request(&addr, "POST", path, key, body);
    assert_eq!(
        post("/alerts/stream-token", None, "").0,
        401,
        "a key is needed"
    );
    let (status, _) = get(
        &addr,
        "/alerts/stream?token=gst_00000000000000000000000000000000",
    );
    assert_eq!(status, 401, "an unknown token");
    let (status, t) = post("/alerts/stream-token", Some(&key), "");
    assert_eq!(status, 200, "{t}");
    let token = t["token"].as_str().expect("token").to_owned();
    assert_eq!(t["expires_in_s"], 60);

    let (status, ch) = post(
        "/channels",
        Some(&key),
        &format!(r#"{{"kind":"webhook","url":"http://{}/hook"}}"#, receiver()),
    );
    assert_eq!(status, 201, "{ch}");
    let (status, mut live) =
        Client::open(&addr, &format!("/alerts/stream?token={token}"), None).await;
    assert_eq!(status, 200);
    // Fires at the next MSFT tick, and every second of event time after it.
    let (status, a) = post(
        "/alerts",
        Some(&key),
        &format!(
            r#"{{"symbol":"MSFT","condition":"price_above","threshold":"1","mode":"once_per_interval","cooldown":"1s","storm":"off","channels":["{}"]}}"#,
            ch["id"].as_str().expect("channel id")
        ),
    );
    assert_eq!(status, 201, "{a}");
    let (mut alerts, mut deliveries) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while alerts.len() < 3 || deliveries.is_empty() {
        let e = tokio::time::timeout_at(deadline, live.next())
            .await
            .expect("alert events and deliveries within 30 s")
            .expect("the stream goes on");
        let v: serde_json::Value = serde_json::from_str(&e.data).expect("JSON");
        match e.event.as_str() {
            "alert" => {
                assert_eq!(v["alert_id"], a["id"], "{v}");
                assert_eq!(
                    e.id.as_deref(),
                    Some(v["id"].to_string().as_str()),
                    "the SSE id is the event id"
                );
                alerts.push(v);
            }
            "delivery" => {
                assert_eq!(v["state"], "delivered", "{v}");
                deliveries.push(v);
            }
            other => panic!("unexpected event {other}: {}", e.data),
        }
    }
    drop(live);
    // Resuming after the first event replays the stored ones after it, in order, then goes on.
    let first = alerts[0]["id"].as_i64().expect("id");
    let (status, mut resumed) = Client::open(
        &addr,
        &format!("/alerts/stream?token={token}"),
        Some(&first.to_string()),
    )
    .await;
    assert_eq!(status, 200);
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(30), resumed.next())
            .await
            .expect("events")
            .expect("the stream goes on");
        if e.event == "alert" {
            ids.push(e.id.expect("id").parse::<i64>().expect("an event id"));
        }
    }
    assert_eq!(
        ids[..2],
        [
            alerts[1]["id"].as_i64().unwrap(),
            alerts[2]["id"].as_i64().unwrap()
        ]
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let (status, _) = get(&addr, &format!("/alerts/stream?token={token}&after=-1"));
    assert_eq!(status, 400, "after is an event id");
}
