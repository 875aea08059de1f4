//! The REST gateway (warp). `routes(state)` builds the whole API so tests can call it without a
//! server; errors are JSON `{code, message}` from one `recover`.

use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::state::MarketState;

pub mod alerts;

/// A JSON error body.
#[derive(Debug, Serialize)]
pub struct ApiError {
    /// Machine-readable code, e.g. `not_found`.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug)]
struct Problem(StatusCode, ApiError);
impl warp::reject::Reject for Problem {}

fn problem(status: StatusCode, code: &'static str, message: String) -> Rejection {
    warp::reject::custom(Problem(status, ApiError { code, message }))
}

/// Every route of the REST API: the market routes over `state`, the alert routes through a
/// client of the AlertService.
pub fn app(
    state: Arc<MarketState>,
    alerts: gostocks_proto::v1::alert_service_client::AlertServiceClient<tonic::transport::Channel>,
    redis: Option<gostocks_connectors::redis::RedisSink>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let with_redis = warp::any().map(move || redis.clone());
    // With Redis configured, prices come from the speed layer (as a gateway in its own process
    // would read them); the in-process state answers otherwise.
    let redis_price = warp::path!("price" / String)
        .and(warp::get())
        .and(with_redis)
        .and_then(get_price_redis);
    alerts::routes(alerts)
        .or(redis_price)
        .or(market(state))
        .recover(recover)
}

async fn get_price_redis(
    symbol: String,
    redis: Option<gostocks_connectors::redis::RedisSink>,
) -> Result<warp::reply::Response, Rejection> {
    let Some(redis) = redis else {
        return Err(warp::reject::not_found());
    };
    let symbol = symbol.trim().to_uppercase();
    match redis.read_prices(&[symbol.as_str()]).await {
        Ok(found) => match found.into_iter().next().flatten() {
            Some((price, time_ns)) => {
                let price = serde_json::value::RawValue::from_string(price)
                    .ok()
                    .and_then(|raw| serde_json::to_value(raw).ok())
                    .unwrap_or(serde_json::Value::Null);
                let body =
                    serde_json::json!({"symbol": symbol, "price": price, "time_ns": time_ns});
                Ok(json_body(body.to_string()))
            }
            None => Err(problem(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no trades seen for symbol `{symbol}`; GET /symbols lists the symbols with prices"
                ),
            )),
        },
        Err(error) => {
            tracing::warn!(error = %error, "reading a price from redis");
            Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the speed layer (Redis) is unavailable; retry shortly".into(),
            ))
        }
    }
}

/// The market routes alone, with JSON errors.
#[cfg(test)]
pub fn routes(
    state: Arc<MarketState>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    market(state).recover(recover)
}

fn market(
    state: Arc<MarketState>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let with_state = warp::any().map(move || Arc::clone(&state));
    let healthz = warp::path!("healthz").and(warp::get()).and(with_state.clone()).map(|s: Arc<MarketState>| {
        let (accepted, rejected) = s.counts();
        warp::reply::json(&serde_json::json!({
            "status": "ok", "ticks": accepted, "rejected": rejected, "symbols": s.symbols().len()
        }))
    });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: Arc<MarketState>| {
            warp::reply::with_header(s.metrics(), "content-type", "text/plain; version=0.0.4")
        });
    let price = warp::path!("price" / String)
        .and(warp::get())
        .and(with_state.clone())
        .and_then(get_price);
    let stats = warp::path!("stats" / String)
        .and(warp::get())
        .and(warp::query::<StatsQuery>())
        .and(with_state.clone())
        .and_then(get_stats);
    let bars = warp::path!("bars" / String)
        .and(warp::get())
        .and(warp::query::<BarsQuery>())
        .and(with_state.clone())
        .and_then(get_bars);
    let symbols =
        warp::path!("symbols")
            .and(warp::get())
            .and(with_state)
            .map(|s: Arc<MarketState>| {
                warp::reply::json(&serde_json::json!({ "symbols": s.symbols() }))
            });
    healthz.or(metrics).or(price).or(stats).or(bars).or(symbols)
}

/// `GET /stats/:symbol?window=60s` (default: the first configured window).
#[derive(Debug, serde::Deserialize)]
struct StatsQuery {
    window: Option<String>,
}

/// `GET /bars/:symbol?bar=1m&limit=100` (defaults: the first configured bar, 100 bars).
#[derive(Debug, serde::Deserialize)]
struct BarsQuery {
    bar: Option<String>,
    limit: Option<usize>,
}

/// The index of `label` among the configured `labels` (the first when absent), or a 400 that
/// lists them.
fn pick(what: &'static str, label: Option<&str>, labels: &[String]) -> Result<u8, Rejection> {
    match label {
        None => Ok(0),
        Some(l) => labels
            .iter()
            .position(|x| x == l)
            .map(|i| i as u8)
            .ok_or_else(|| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!(
                        "unknown {what} `{l}`; this run computes {what}s {}",
                        labels.join(", ")
                    ),
                )
            }),
    }
}

fn json_body(body: String) -> warp::reply::Response {
    warp::reply::with_header(body, "content-type", "application/json").into_response()
}

async fn get_stats(
    symbol: String,
    q: StatsQuery,
    state: Arc<MarketState>,
) -> Result<warp::reply::Response, Rejection> {
    let symbol = symbol.trim().to_uppercase();
    let window = pick("window", q.window.as_deref(), &state.windows)?;
    let row = state.stats(&symbol, window).ok_or_else(|| {
        problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no stats yet for symbol `{symbol}`; GET /symbols lists the symbols seen"),
        )
    })?;
    let mut body = String::new();
    row.write_json(&mut body, &state.windows[window as usize]);
    Ok(json_body(body))
}

async fn get_bars(
    symbol: String,
    q: BarsQuery,
    state: Arc<MarketState>,
) -> Result<warp::reply::Response, Rejection> {
    let symbol = symbol.trim().to_uppercase();
    let bar = pick("bar", q.bar.as_deref(), &state.bar_sizes)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > crate::state::BARS_KEPT {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "limit must be between 1 and {}, got {limit}",
                crate::state::BARS_KEPT
            ),
        ));
    }
    let rows = state.bars(&symbol, bar, limit).ok_or_else(|| {
        problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no final bars yet for symbol `{symbol}`"),
        )
    })?;
    let mut body = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        row.write_json(&mut body, &state.bar_sizes[bar as usize]);
    }
    body.push(']');
    Ok(json_body(body))
}

async fn get_price(symbol: String, state: Arc<MarketState>) -> Result<impl Reply, Rejection> {
    let symbol = symbol.trim().to_uppercase();
    match state.price(&symbol) {
        Some(p) => Ok(warp::reply::json(&serde_json::json!({
            "symbol": symbol,
            // A decimal of up to 15 significant digits prints as its exact text.
            "price": p.price.to_f64(),
            "time_ns": p.time_ns,
        }))),
        None => Err(problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no trades seen for symbol `{symbol}`; GET /symbols lists the symbols with prices"
            ),
        )),
    }
}

async fn recover(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, body) = if let Some(Problem(status, body)) = err.find::<Problem>() {
        (
            *status,
            ApiError {
                code: body.code,
                message: body.message.clone(),
            },
        )
    } else if err.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            ApiError {
                code: "not_found",
                message: "no such route; see the README for the endpoints".into(),
            },
        )
    } else if let Some(e) = err.find::<warp::reject::PayloadTooLarge>() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiError {
                code: "payload_too_large",
                message: e.to_string(),
            },
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            ApiError {
                code: "method_not_allowed",
                message: "this route does not take that method".into(),
            },
        )
    } else if let Some(e) = err.find::<warp::reject::InvalidQuery>() {
        (
            StatusCode::BAD_REQUEST,
            ApiError {
                code: "bad_request",
                message: format!("{e}: check the query parameters' names and types"),
            },
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            ApiError {
                code: "bad_request",
                message: format!("{err:?}"),
            },
        )
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gostocks_core::Symbol;
    use gostocks_core::operators::Point;

    fn state() -> Arc<MarketState> {
        let s = Arc::new(MarketState::new(
            16,
            &gostocks_core::stats::AnalyticsConfig::default(),
        ));
        let point = Point {
            time_ns: 7,
            seq: 1,
            price: "585.33".parse().unwrap(),
        };
        s.apply_last(&Symbol::new("AAPL").unwrap(), &point);
        s
    }

    #[tokio::test]
    async fn price_of_a_known_symbol() {
        let res = warp::test::request()
            .path("/price/AAPL")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"symbol": "AAPL", "price": 585.33, "time_ns": 7})
        );
    }

    #[tokio::test]
    async fn unknown_symbol_is_a_json_404() {
        let res = warp::test::request()
            .path("/price/NOPE")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(body["code"], "not_found");
        assert!(body["message"].as_str().unwrap().contains("NOPE"));
    }

    #[tokio::test]
    async fn stats_and_bars_validate_their_parameters() {
        let s = state();
        let p = |x: &str| x.parse::<gostocks_core::Fixed>().unwrap();
        let agg = gostocks_core::indicators::Agg::tick(p("585.33"), p("100"), 7, None);
        let core = gostocks_core::stats::WindowCore {
            agg,
            min: p("585.33"),
            max: p("585.33"),
        };
        let sym = Symbol::new("AAPL").unwrap();
        s.apply_stats(&gostocks_core::stats::StatsRow {
            time_ns: 1_000,
            symbol: sym,
            window: 1,
            core: Some(core),
            last: Some(p("585.33")),
        });
        let res = warp::test::request()
            .path("/stats/AAPL?window=300s")
            .reply(&routes(Arc::clone(&s)))
            .await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            (
                body["window"].as_str(),
                body["count"].as_i64(),
                body["last"].as_f64()
            ),
            (Some("300s"), Some(1), Some(585.33))
        );
        let res = warp::test::request()
            .path("/stats/AAPL?window=7s")
            .reply(&routes(Arc::clone(&s)))
            .await;
        assert_eq!(res.status(), 400);
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("60s, 300s"),
            "{body}"
        );
        let res = warp::test::request()
            .path("/stats/AAPL")
            .reply(&routes(Arc::clone(&s)))
            .await;
        assert_eq!(res.status(), 404, "no 60s stats yet");
        let res = warp::test::request()
            .path("/bars/AAPL?limit=abc")
            .reply(&routes(Arc::clone(&s)))
            .await;
        assert_eq!(res.status(), 400);
        let res = warp::test::request()
            .path("/bars/AAPL?limit=0")
            .reply(&routes(s))
            .await;
        assert_eq!(res.status(), 400);
    }

    #[tokio::test]
    async fn healthz_and_unknown_routes() {
        let res = warp::test::request()
            .path("/healthz")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 200);
        let res = warp::test::request()
            .path("/metrics")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 200);
        let text = String::from_utf8_lossy(res.body()).into_owned();
        assert!(text.contains("\ngostocks_symbols 1\n"), "{text}");
        let res = warp::test::request()
            .path("/nothing")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 404);
        let res = warp::test::request()
            .method("POST")
            .path("/price/AAPL")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 405);
    }
}
