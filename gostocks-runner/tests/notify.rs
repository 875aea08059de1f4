//! Webhook notifications end to end: a running `gostocks run` on Postgres pushes its alert
//! events to a receiver on 127.0.0.1 written here, which verifies signatures and can be down,
//! answer 503, 400, or hang. Every event arrives once by event id, across outages and a kill -9.

mod common;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::authed;
use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_client::AlertServiceClient;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

/// How the receiver answers a path.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Ok,
    Status(u16),
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    event_id: String,
    signature: Option<String>,
    body: Value,
    raw: Vec<u8>,
    at: SystemTime,
}

#[derive(Default)]
struct Inner {
    answers: HashMap<String, Answer>,
    got: Vec<Got>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Inner>>);

impl Receiver {
    fn set(&self, path: &str, a: Answer) {
        self.0.lock().unwrap().answers.insert(path.into(), a);
    }

    fn got(&self, path: &str) -> Vec<Got> {
        self.0
            .lock()
            .unwrap()
            .got
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }

    /// Serves on `addr` (a port of 0: any) until the test ends; returns the address.
    async fn serve(&self, addr: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("receiver binds");
        let local = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { me.answer(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        local
    }

    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path().to_owned();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (event_id, signature) = (
            header("x-gostocks-event-id"),
            header("x-gostocks-signature"),
        );
        let raw = req.into_body().collect().await.unwrap().to_bytes().to_vec();
        let answer = self
            .0
            .lock()
            .unwrap()
            .answers
            .get(&path)
            .copied()
            .unwrap_or(Answer::Ok);
        if answer == Answer::Hang {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let code = match answer {
            Answer::Status(c) => c,
            _ => 200,
        };
        if code == 200 {
            self.0.lock().unwrap().got.push(Got {
                path,
                event_id: event_id.unwrap_or_default(),
                signature,
                body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                raw,
                at: SystemTime::now(),
            });
        }
        Ok(hyper::Response::builder()
            .status(code)
            .body(Full::new(Bytes::from_static(b"ok")))
            .unwrap())
    }
}

/// Verifies `t=<unix>,v1=<hex>` over `t.body` with `secret`, as the README shows.
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A receiver also rejects old timestamps (replays); five minutes here.
    want == v1 && t.parse::<u64>().is_ok_and(|t| now.abs_diff(t) < 300)
}

fn start(url: &str, schema: &str, extra: &[&str]) -> common::Running {
    let mut args = vec![
        "--speed",
        "50x",
        "--postgres",
        url,
        "--postgres-schema",
        schema,
        "--notify-allow-private",
        "--notify-backoff",
        "200ms",
        "--notify-timeout",
        "1s",
    ];
    args.extend_from_slice(extra);
    common::start(&args)
}

fn post(run: &common::Running, key: &str, path: &str, body: Value) -> (u16, Value) {
    common::request(&run.http, "POST", path, Some(key), &body.to_string())
}

fn channel(run: &common::Running, key: &str, kind: &str, url: &str) -> Value {
    let (status, c) = post(
        run,
        key,
        "/channels",
        serde_json::json!({"kind": kind, "url": url}),
    );
    assert_eq!(status, 201, "{c}");
    c
}

/// A rearming crossing alert on TSLA's median price (14 crossings per pass of the recording).
fn crossing_alert(run: &common::Running, key: &str, channels: &[&str]) -> String {
    let (status, a) = post(
        run,
        key,
        "/alerts",
        serde_json::json!({"symbol": "TSLA", "condition": "crosses_above", "threshold": "175.36",
            "mode": "rearm", "channels": channels}),
    );
    assert_eq!(status, 201, "{a}");
    a["id"].as_str().unwrap().to_owned()
}

/// Every event of the user so far (ids).
fn events(run: &common::Running, key: &str) -> Vec<Value> {
    let (status, body) = common::request(
        &run.http,
        "GET",
        "/alerts/events?after=0&wait_ms=0",
        Some(key),
        "",
    );
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

fn deliveries(run: &common::Running, key: &str, event: i64) -> Vec<Value> {
    let (status, body) = common::request(
        &run.http,
        "GET",
        &format!("/alerts/events/{event}/deliveries"),
        Some(key),
        "",
    );
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

/// Waits (generously) until `done` holds.
async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn delete(run: &common::Running, key: &str, path: &str) {
    let (status, body) = common::request(&run.http, "DELETE", path, Some(key), "");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_signed_and_presets_fit_their_shapes() {
    let Some(url) = common::postgres() else {
        return;
    };
    let schema = common::unique_topic("notify");
    let key = common::create_user(&url, &schema, "alice");
    let rx = Receiver::default();
    let addr = rx.serve("127.0.0.1:0".parse().unwrap()).await;
    let run = start(&url, &schema, &[]);
    assert!(run.banner.iter().any(|l| l.contains("Postgres outbox")));

    let hook = channel(&run, &key, "webhook", &format!("http://{addr}/hook"));
    let secret = hook["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert!(secret.len() >= 32);
    let slack = channel(&run, &key, "slack", &format!("http://{addr}/slack"));
    let discord = channel(&run, &key, "discord", &format!("http://{addr}/discord"));
    let teams = channel(&run, &key, "teams", &format!("http://{addr}/teams"));
    // Later, only a hint of the secret: over REST and gRPC.
    let (_, list) = common::request(&run.http, "GET", "/channels", Some(&key), "");
    let listed = list["channels"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|c| c.get("secret").is_none()), "{list}");
    assert!(list.to_string().contains(&secret[secret.len() - 4..]));
    assert!(!list.to_string().contains(&secret));
    let mut grpc = AlertServiceClient::connect(format!("http://{}", run.grpc))
        .await
        .unwrap();
    let over_grpc = grpc
        .list_channels(authed(v1::ListChannelsRequest {}, &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(over_grpc.channels.len(), 4);
    assert!(over_grpc.channels.iter().all(|c| c.secret.is_empty()));

    let ids: Vec<&str> = [&hook, &slack, &discord, &teams]
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let alert = crossing_alert(&run, &key, &ids);
    // About two passes of the recording, then no more events.
    until("a few events", 60, || events(&run, &key).len() >= 10).await;
    delete(&run, &key, &format!("/alerts/{alert}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = events(&run, &key);
    until("every event delivered to the webhook", 60, || {
        rx.got("/hook").len() >= stored.len()
    })
    .await;
    until("every event delivered to every channel", 60, || {
        stored.iter().all(|e| {
            deliveries(&run, &key, e["id"].as_i64().unwrap())
                .iter()
                .all(|d| d["state"] == "delivered")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let hooks = rx.got("/hook");
    let mut seen = HashSet::new();
    for g in &hooks {
        assert!(seen.insert(g.event_id.clone()), "{} twice", g.event_id);
        assert!(
            verify(&secret, g.signature.as_deref().unwrap_or(""), &g.raw),
            "signature of {}",
            g.event_id
        );
        assert_eq!(g.body["event_id"], g.event_id);
        assert_eq!(g.body["symbol"], "TSLA");
        assert_eq!(g.body["condition"], "crosses_above");
        assert_eq!(g.body["threshold"], "175.36");
        assert!(g.body["price"].is_string(), "decimals as strings");
    }
    let want: HashSet<String> = stored
        .iter()
        .map(|e| format!("evt_{}", e["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(seen, want, "every stored event once, nothing else");
    for (path, field) in [
        ("/slack", "text"),
        ("/discord", "content"),
        ("/teams", "text"),
    ] {
        let got = rx.got(path);
        assert_eq!(got.len(), stored.len(), "{path}");
        for g in &got {
            let text = g.body[field].as_str().expect(field);
            assert!(
                text.contains("TSLA") && text.contains("175.36"),
                "{path}: {text}"
            );
            assert!(g.signature.is_none(), "presets are not signed");
        }
    }
    let (_, metrics) = {
        let mut s = std::net::TcpStream::connect(&run.http).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        ((), raw)
    };
    assert!(metrics.contains("gostocks_notify_deliveries_total{outcome=\"delivered\"}"));
    assert!(metrics.contains("gostocks_notify_outbox_depth 0"));

    // Figures: event stored -> delivered at the receiver.
    let client = gostocks_connectors::postgres::connect(&url, Some(&schema))
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT id, extract(epoch FROM created_at)::float8 FROM alert_events",
            &[],
        )
        .await
        .unwrap();
    let created: HashMap<String, f64> = rows
        .iter()
        .map(|r| (format!("evt_{}", r.get::<_, i64>(0)), r.get::<_, f64>(1)))
        .collect();
    let mut lat: Vec<f64> = hooks
        .iter()
        .map(|g| g.at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() - created[&g.event_id])
        .collect();
    lat.sort_by(f64::total_cmp);
    eprintln!(
        "FIGURES: {} events, event stored -> webhook received: p50 {:.1} ms, p99 {:.1} ms",
        lat.len(),
        lat[lat.len() / 2] * 1e3,
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)] * 1e3
    );

    // Deleting a channel detaches it from alerts.
    delete(&run, &key, &format!("/channels/{}", ids[1]));
    let (_, list) = common::request(&run.http, "GET", "/channels", Some(&key), "");
    assert_eq!(list["channels"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_then_503_then_200_delivers_each_once_and_400_fails_and_a_hang_is_retried() {
    let Some(url) = common::postgres() else {
        return;
    };
    let schema = common::unique_topic("notify_outage");
    let key = common::create_user(&url, &schema, "alice");
    // A port to come back on: reserved, then released (the receiver is down).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = start(&url, &schema, &[]);
    let hook = channel(&run, &key, "webhook", &format!("http://{addr}/hook"));
    let bad = channel(&run, &key, "webhook", &format!("http://{addr}/bad"));
    let hang = channel(&run, &key, "webhook", &format!("http://{addr}/hang"));
    let ids = [
        hook["id"].as_str().unwrap(),
        bad["id"].as_str().unwrap(),
        hang["id"].as_str().unwrap(),
    ];
    let alert = crossing_alert(&run, &key, &ids);
    until("events while the receiver is down", 60, || {
        events(&run, &key).len() >= 3
    })
    .await;
    // Down for 5 s from the first event (its deliveries are attempted and refused meanwhile).
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Up, but 503 for a while; 400 on /bad; /hang hangs.
    let rx = Receiver::default();
    rx.set("/hook", Answer::Status(503));
    rx.set("/bad", Answer::Status(400));
    rx.set("/hang", Answer::Hang);
    rx.serve(addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    delete(&run, &key, &format!("/alerts/{alert}"));
    let first = events(&run, &key)[0]["id"].as_i64().unwrap();
    until("a 400 failed at once and a hang retried", 60, || {
        let d = deliveries(&run, &key, first);
        let by = |id: &str| d.iter().find(|x| x["channel_id"] == id).cloned().unwrap();
        let (b, h) = (by(ids[1]), by(ids[2]));
        b["state"] == "failed"
            && h["attempts"].as_i64().unwrap_or(0) >= 3
            && h["last_error"].as_str().unwrap_or("").contains("timed out")
    })
    .await;
    let d = deliveries(&run, &key, first);
    let b = d.iter().find(|x| x["channel_id"] == ids[1]).unwrap();
    assert_eq!(b["last_status"], 400, "{b}");
    // Its attempts while the receiver was down were retried; the 400 ends them at once.
    let failed_after = b["attempts"].clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = deliveries(&run, &key, first);
    let b = again.iter().find(|x| x["channel_id"] == ids[1]).unwrap();
    assert_eq!(b["attempts"], failed_after, "a 400 is not retried: {b}");
    assert_eq!(b["state"], "failed", "{b}");
    let h = d.iter().find(|x| x["channel_id"] == ids[0]).unwrap();
    assert!(h["attempts"].as_i64().unwrap() >= 2, "retried: {h}");
    assert_eq!(h["state"], "pending", "{h}");
    // Now 200: every event delivered, none twice.
    rx.set("/hook", Answer::Ok);
    rx.set("/hang", Answer::Ok);
    let stored = events(&run, &key);
    until("every event delivered after the outage", 90, || {
        let got: HashSet<String> = rx.got("/hook").into_iter().map(|g| g.event_id).collect();
        got.len() >= stored.len()
    })
    .await;
    until("the hanging channel delivered too", 90, || {
        rx.got("/hang").len() >= stored.len()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for path in ["/hook", "/hang"] {
        let got = rx.got(path);
        let unique: HashSet<&str> = got.iter().map(|g| g.event_id.as_str()).collect();
        assert_eq!(unique.len(), got.len(), "{path}: none twice");
        assert_eq!(unique.len(), stored.len(), "{path}: all");
    }
    assert!(rx.got("/bad").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_pending_deliveries_then_restart_delivers_them_all() {
    let Some(url) = common::postgres() else {
        return;
    };
    let schema = common::unique_topic("notify_kill");
    let key = common::create_user(&url, &schema, "alice");
    let rx = Receiver::default();
    rx.set("/hook", Answer::Status(503));
    let addr = rx.serve("127.0.0.1:0".parse().unwrap()).await;
    let mut run = start(&url, &schema, &[]);
    let hook = channel(&run, &key, "webhook", &format!("http://{addr}/hook"));
    let alert = crossing_alert(&run, &key, &[hook["id"].as_str().unwrap()]);
    until("events pending behind a 503", 60, || {
        events(&run, &key).len() >= 4
    })
    .await;
    delete(&run, &key, &format!("/alerts/{alert}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = events(&run, &key);
    // SIGKILL: no shutdown, whatever was in flight stays claimed until its lease ends.
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    drop(run);
    rx.set("/hook", Answer::Ok);
    let run = start(&url, &schema, &[]);
    until("every pending delivery after the restart", 90, || {
        let got: HashSet<String> = rx.got("/hook").into_iter().map(|g| g.event_id).collect();
        got.len() >= stored.len()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = rx.got("/hook");
    let unique: HashSet<&str> = got.iter().map(|g| g.event_id.as_str()).collect();
    assert_eq!(unique.len(), stored.len(), "none lost");
    assert_eq!(unique.len(), got.len(), "none twice");
    for e in &stored {
        let d = deliveries(&run, &key, e["id"].as_i64().unwrap());
        assert_eq!(d[0]["state"], "delivered", "{d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_always_answers_503_is_given_up_after_the_max_age() {
    let Some(url) = common::postgres() else {
        return;
    };
    let schema = common::unique_topic("notify_max_age");
    let key = common::create_user(&url, &schema, "alice");
    let rx = Receiver::default();
    rx.set("/hook", Answer::Status(503));
    let addr = rx.serve("127.0.0.1:0".parse().unwrap()).await;
    let run = start(&url, &schema, &["--notify-max-age", "3s"]);
    let hook = channel(&run, &key, "webhook", &format!("http://{addr}/hook"));
    let alert = crossing_alert(&run, &key, &[hook["id"].as_str().unwrap()]);
    until("an event", 60, || !events(&run, &key).is_empty()).await;
    delete(&run, &key, &format!("/alerts/{alert}"));
    let stored = events(&run, &key);
    until("every delivery given up", 90, || {
        stored.iter().all(|e| {
            deliveries(&run, &key, e["id"].as_i64().unwrap())
                .iter()
                .all(|d| d["state"] == "failed")
        })
    })
    .await;
    for e in &stored {
        let d = deliveries(&run, &key, e["id"].as_i64().unwrap());
        assert_eq!(d.len(), 1, "{d:?}");
        let d = &d[0];
        assert_eq!(d["last_status"], 503, "the last status is kept: {d}");
        assert!(d["attempts"].as_i64().unwrap() >= 2, "retried first: {d}");
        let error = d["last_error"].as_str().unwrap_or("");
        assert!(
            error.starts_with("gave up after") && error.contains("503"),
            "the last error is kept: {d}"
        );
    }
    assert!(rx.got("/hook").is_empty());
}

#[test]
fn private_and_metadata_destinations_are_refused_at_creation() {
    // No --notify-allow-private; the in-memory store. Nothing here connects anywhere: address
    // literals are checked without a lookup.
    let run = common::start(&["--speed", "20x"]);
    assert!(run.banner.iter().any(|l| l.contains("in-memory outbox")));
    let key = run.demo_key.clone().expect("demo key");
    let long = format!("http://example.com/{}", "a".repeat(3000));
    for (body, field) in [
        (
            serde_json::json!({"kind": "webhook", "url": "http://169.254.169.254/latest/meta-data"}),
            "url",
        ),
        (
            serde_json::json!({"kind": "webhook", "url": "http://10.0.0.1/hook"}),
            "url",
        ),
        (
            serde_json::json!({"kind": "slack", "url": "http://127.0.0.1:9/hook"}),
            "url",
        ),
        (
            serde_json::json!({"kind": "webhook", "url": "http://[::1]/hook"}),
            "url",
        ),
        (
            serde_json::json!({"kind": "webhook", "url": "ftp://example.com/x"}),
            "url",
        ),
        (serde_json::json!({"kind": "webhook", "url": long}), "url"),
        (
            serde_json::json!({"kind": "pager", "url": "http://10.0.0.1/"}),
            "kind",
        ),
        (
            serde_json::json!({"kind": "webhook", "url": "http://10.0.0.1/", "secret": "short"}),
            "secret",
        ),
    ] {
        let (status, e) = post(&run, &key, "/channels", body.clone());
        assert_eq!(status, 400, "{body}: {e}");
        assert!(
            e["message"].as_str().unwrap_or("").starts_with(field),
            "names {field}: {e}"
        );
    }
    let (_, list) = common::request(&run.http, "GET", "/channels", Some(&key), "");
    assert_eq!(list["channels"].as_array().unwrap().len(), 0);
    // An alert naming a channel that does not exist is refused, naming the field.
    let (status, e) = post(
        &run,
        &key,
        "/alerts",
        serde_json::json!({"symbol": "TSLA", "condition": "price_above", "threshold": "1", "channels": ["ch_0000000000000000"]}),
    );
    assert_eq!(status, 400, "{e}");
    assert!(
        e["message"].as_str().unwrap().starts_with("channels"),
        "{e}"
    );
}
