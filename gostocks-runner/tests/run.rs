//! End to end: start `gostocks run` with no services, read a live price over REST and gRPC,
//! check gRPC health and reflection, then stop it with SIGTERM and see it exit cleanly.

mod common;

use common::{get, start};

use std::process::Command;
use std::time::{Duration, Instant};

use gostocks_proto::v1;
use gostocks_proto::v1::market_service_client::MarketServiceClient;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread")]
async fn serves_live_prices_over_rest_and_grpc_and_stops_on_sigterm() {
    let mut running = start(&["--speed", "20x"]);

    // Prices appear as the replay advances past the first grid times.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get(&running.http, "/price/MSFT");
        if status == 200 {
            break body;
        }
        assert_eq!(
            status, 404,
            "before the first MSFT trade the answer is a JSON 404: {body}"
        );
        assert_eq!(body["code"], "not_found");
        assert!(Instant::now() < deadline, "no MSFT price within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(body["symbol"], "MSFT");
    // Decimals are exact strings in REST answers.
    let price: gostocks_core::Fixed = body["price"]
        .as_str()
        .expect("a string")
        .parse()
        .expect("a decimal");
    assert!(price.is_positive(), "{body}");
    assert!(body["time_ns"].as_u64().is_some_and(|t| t > 0), "{body}");
    let (status, body) = get(&running.http, "/price/NOSUCH");
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, _) = get(&running.http, "/healthz");
    assert_eq!(status, 200);

    // Window stats and final bars, computed by the analytics dataflow, as the replay runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let (status, body) = get(&running.http, "/stats/MSFT?window=60s");
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no MSFT stats within 30 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["window"], "60s");
    assert!(stats["count"].as_i64().is_some_and(|c| c > 0), "{stats}");
    assert!(stats["vwap"].as_f64().is_some_and(|v| v > 0.0), "{stats}");
    let (status, body) = get(&running.http, "/stats/MSFT?window=13s");
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let bars = loop {
        let (status, body) = get(&running.http, "/bars/MSFT?bar=1s&limit=5");
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no MSFT bars within 30 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let bars = bars.as_array().expect("an array of bars");
    assert!(!bars.is_empty() && bars.len() <= 5);
    assert!(
        bars.iter()
            .all(|b| b["bar"] == "1s" && b["count"].as_i64() > Some(0))
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC accepts connections");
    let health = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers");
    assert_eq!(health.into_inner().status, ServingStatus::Serving as i32);

    let price = MarketServiceClient::new(channel.clone())
        .get_price(v1::GetPriceRequest {
            symbol: "msft".into(),
        })
        .await
        .expect("GetPrice answers")
        .into_inner();
    assert_eq!(price.symbol, "MSFT");
    assert!(price.price.is_some_and(|p| p.mantissa > 0));
    let stats = MarketServiceClient::new(channel.clone())
        .get_stats(v1::GetStatsRequest {
            symbol: "MSFT".into(),
            window: "300s".into(),
        })
        .await
        .expect("GetStats answers")
        .into_inner();
    assert_eq!(stats.window, "300s");
    assert!(
        stats.count > 0 && stats.vwap.is_some_and(|v| v > 0.0),
        "{stats:?}"
    );
    let bad = MarketServiceClient::new(channel.clone())
        .get_stats(v1::GetStatsRequest {
            symbol: "MSFT".into(),
            window: "13s".into(),
        })
        .await
        .expect_err("unknown window");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let missing = MarketServiceClient::new(channel.clone())
        .get_price(v1::GetPriceRequest {
            symbol: "NOSUCH".into(),
        })
        .await
        .expect_err("unknown symbol");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("a reply")
        .expect("not empty");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("expected a service list, got {reply:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"gostocks.v1.MarketService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let pid = running.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "gostocks did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}
