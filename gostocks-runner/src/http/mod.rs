//! The REST gateway (warp). [`app`] builds the whole API as one filter, so tests can call it
//! without a server: a request's path is matched first (percent-decoded), then its method, then
//! its query, headers and body, each checked against a documented bound. Every refusal is an
//! [`ApiError`], turned into a JSON `{code, message}` response by one function ([`ApiError::reply`]):
//! a bad request is a 4xx naming the part at fault, never a 5xx.
//!
//! Limits (answered with the status in brackets):
//! - path: at most [`MAX_PATH`] bytes (414), each segment valid UTF-8 once percent-decoded (400);
//! - query: at most [`MAX_QUERY`] bytes (414), each parameter known to the route and given once,
//!   its value of the documented type and range (400);
//! - `Authorization`: at most [`MAX_AUTH`] bytes of visible ASCII (401);
//! - body: at most [`alerts::MAX_BODY`] bytes, with a `Content-Length` or chunked (413).

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use gostocks_core::stats::JsonDecimals;
use serde::Serialize;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::{Filter, Reply};

use crate::alerts::service::Alerts;
use crate::state::MarketState;

pub mod alerts;
pub mod channels;
pub mod cors;
mod dashboard;
pub mod openapi;
pub mod stream;

/// The longest request path, in bytes.
pub const MAX_PATH: usize = 2048;
/// The longest query string, in bytes.
pub const MAX_QUERY: usize = 2048;
/// The longest `Authorization` header, in bytes.
pub const MAX_AUTH: usize = 256;
/// The longest message of an error response, in bytes: messages quote untrusted input only as a
/// short excerpt, and this bounds them whatever they quote.
pub const MAX_MESSAGE: usize = 512;

/// A JSON error body, and the status it is sent with.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// Machine-readable code, e.g. `not_found`.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    #[serde(skip)]
    allow: Option<&'static str>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        ApiError {
            status,
            code,
            message,
            allow: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn method_not_allowed(allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this route takes {allow}"),
            )
        }
    }

    /// The one place an error becomes a response.
    pub fn reply(self) -> warp::reply::Response {
        let mut res =
            warp::reply::with_status(warp::reply::json(&self), self.status).into_response();
        if let Some(allow) = self.allow {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        res
    }
}

/// What the routes serve from.
#[derive(Clone)]
pub struct Api {
    state: Arc<MarketState>,
    shutdown: crate::shutdown::Shutdown,
    alerts: Option<Arc<Alerts>>,
    redis: Option<gostocks_connectors::redis::RedisSink>,
    push: Option<Arc<crate::sinks::push::PushHub>>,
    tokens: Arc<stream::Tokens>,
    cors: Option<Arc<cors::Cors>>,
}

impl Api {
    /// The API with `GET /stream` served from `push` (without it, that route answers 404).
    pub fn with_push(mut self, push: Arc<crate::sinks::push::PushHub>) -> Api {
        self.push = Some(push);
        self
    }

    /// The API answering cross-origin requests from `cors`'s origins (`--cors-origin`).
    pub fn with_cors(mut self, cors: Option<cors::Cors>) -> Api {
        self.cors = cors.map(Arc::new);
        self
    }

    /// The API, not ready once `shutdown` has started.
    pub fn with_shutdown(mut self, shutdown: crate::shutdown::Shutdown) -> Api {
        self.shutdown = shutdown;
        self
    }

    /// The API over the market state, the alert service (`None`: the alert routes answer 404)
    /// and, when configured, the Redis speed layer (prices are then read from it, as a gateway in
    /// its own process would).
    pub fn new(
        state: Arc<MarketState>,
        alerts: Option<Arc<Alerts>>,
        redis: Option<gostocks_connectors::redis::RedisSink>,
    ) -> Api {
        Api {
            state,
            shutdown: crate::shutdown::Shutdown::default(),
            alerts,
            redis,
            push: None,
            tokens: Arc::default(),
            cors: None,
        }
    }
}

/// One request, taken apart.
pub struct Req {
    /// When the request arrived (deadlines count from it).
    arrival: tokio::time::Instant,
    method: Method,
    /// The path's segments, percent-decoded.
    segments: Vec<String>,
    query: Query,
    headers: HeaderMap,
    body: Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send + Unpin>,
}

impl Req {
    /// GET and HEAD read; any other method on a read-only route is a 405.
    fn read_only(&self) -> Result<(), ApiError> {
        if self.method == Method::GET || self.method == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed("GET, HEAD"))
        }
    }
}

/// A query string's parameters, each given at most once.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Result<Query, ApiError> {
        if raw.len() > MAX_QUERY {
            return Err(ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the query string is over {MAX_QUERY} bytes"),
            ));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if k.is_empty() {
                continue;
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(ApiError::bad_request(format!(
                    "query: {} is given more than once",
                    gostocks_core::symbol::excerpt(&k)
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Query(pairs))
    }

    /// Refuses any parameter the route does not take.
    fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "query: unknown parameter {}; this route takes {}",
                gostocks_core::symbol::excerpt(k),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter in `range`; `None` when absent.
    fn int<T>(&self, name: &str, range: std::ops::RangeInclusive<T>) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.parse::<T>() {
            Ok(v) if range.contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::bad_request(format!(
                "{name}: an integer from {} to {}, got {}",
                range.start(),
                range.end(),
                gostocks_core::symbol::excerpt(text)
            ))),
        }
    }
}

/// Every route of the REST API, as one filter: see the module docs for the limits.
pub fn app(
    api: Api,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let api = Arc::new(api);
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: warp::path::FullPath, query: String, headers, body| {
                let api = Arc::clone(&api);
                let arrival = tokio::time::Instant::now();
                async move {
                    let cors = api.cors.clone();
                    let mut origin = HeaderMap::new();
                    if let Some(cors) = &cors {
                        if let Some(res) = cors.preflight(&method, &headers) {
                            return res;
                        }
                        if let Some(o) = headers.get(header::ORIGIN) {
                            origin.insert(header::ORIGIN, o.clone());
                        }
                    }
                    let mut res = match parse(arrival, method, path.as_str(), &query, headers, body)
                    {
                        Ok(req) => route(&api, req).await.unwrap_or_else(ApiError::reply),
                        Err(e) => e.reply(),
                    };
                    if let Some(cors) = &cors {
                        cors.decorate(&origin, &mut res);
                    }
                    res
                }
            },
        )
}

fn parse(
    arrival: tokio::time::Instant,
    method: Method,
    path: &str,
    query: &str,
    headers: HeaderMap,
    body: impl Stream<Item = Result<impl warp::Buf + Send + 'static, warp::Error>> + Send + 'static,
) -> Result<Req, ApiError> {
    if path.len() > MAX_PATH {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the path is over {MAX_PATH} bytes"),
        ));
    }
    let segments = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| {
                    ApiError::bad_request(
                        "path: a segment is not UTF-8 once percent-decoded; encode symbols as UTF-8",
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let body = body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())));
    Ok(Req {
        arrival,
        method,
        segments,
        query: Query::parse(query)?,
        headers,
        body: Box::new(Box::pin(body)),
    })
}

async fn route(api: &Api, mut req: Req) -> Result<warp::reply::Response, ApiError> {
    let owned = std::mem::take(&mut req.segments);
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["healthz"] => {
            req.read_only()?;
            req.query.only(&[])?;
            let s = &api.state;
            let (accepted, rejected) = s.counters.counts();
            Ok(warp::reply::json(&serde_json::json!({
                "status": "ok", "ticks": accepted, "rejected": rejected, "symbols": s.read.symbols().len()
            }))
            .into_response())
        }
        ["readyz"] => {
            req.read_only()?;
            req.query.only(&[])?;
            // Readiness: whether this runner does its part (see `MarketState::readiness`).
            let readiness = if api.shutdown.started() {
                Err("shutting down".to_owned())
            } else {
                api.state.readiness()
            };
            let (status, body) = match readiness {
                Ok(()) => (StatusCode::OK, serde_json::json!({ "status": "ready" })),
                Err(reason) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({ "status": "not_ready", "reason": reason }),
                ),
            };
            Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
        }
        ["metrics"] => {
            req.read_only()?;
            req.query.only(&[])?;
            Ok(warp::reply::with_header(
                api.state.metrics(),
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .into_response())
        }
        ["symbols"] => {
            req.read_only()?;
            req.query.only(&[])?;
            Ok(
                warp::reply::json(&serde_json::json!({ "symbols": api.state.read.symbols() }))
                    .into_response(),
            )
        }
        ["price", symbol] => {
            req.read_only()?;
            req.query.only(&[])?;
            get_price(api, &symbol_of(symbol)?).await
        }
        ["stats", symbol] => {
            req.read_only()?;
            req.query.only(&["window"])?;
            get_stats(api, &symbol_of(symbol)?, &req.query)
        }
        ["bars", symbol] => {
            req.read_only()?;
            req.query.only(&["bar", "limit"])?;
            get_bars(api, &symbol_of(symbol)?, &req.query)
        }
        ["quotes", symbol] => {
            req.read_only()?;
            req.query.only(&["window"])?;
            get_quotes(api, &symbol_of(symbol)?, &req.query).await
        }
        [""] | ["docs"] | ["assets", _] => {
            req.read_only()?;
            req.query.only(&[])?;
            dashboard::serve(&segments).ok_or_else(no_route)
        }
        ["openapi.json"] => {
            req.read_only()?;
            req.query.only(&[])?;
            Ok(json_body(openapi::document()))
        }
        ["status"] => {
            req.read_only()?;
            req.query.only(&[])?;
            Ok(status(api))
        }
        ["stream"] => stream::market(api, &req),
        ["alerts", "stream-token"] => match &api.alerts {
            Some(alerts) if req.method == Method::POST => {
                stream::token(alerts, &api.tokens, req).await
            }
            Some(_) => Err(ApiError::method_not_allowed("POST")),
            None => Err(no_route()),
        },
        ["alerts", "stream"] => match &api.alerts {
            Some(alerts) => stream::alert_stream(api, alerts, &api.tokens, &req),
            None => Err(no_route()),
        },
        ["alerts", ..] => match &api.alerts {
            Some(alerts) => alerts::route(alerts, &segments[1..], req).await,
            None => Err(no_route()),
        },
        ["channels", ..] => match &api.alerts {
            Some(alerts) => channels::route(alerts, &segments[1..], req).await,
            None => Err(no_route()),
        },
        _ => Err(no_route()),
    }
}

fn no_route() -> ApiError {
    ApiError::not_found("no such route; GET /docs (or /openapi.json) lists the endpoints")
}

/// `GET /status`: the counters, readiness, each sink's state and the push streams, as JSON
/// (what the dashboard's health panel shows).
fn status(api: &Api) -> warp::reply::Response {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &api.state;
    let c = &s.counters;
    let readiness = if api.shutdown.started() {
        Err("shutting down".to_owned())
    } else {
        s.readiness()
    };
    let sinks: Vec<serde_json::Value> = s
        .progress
        .each()
        .iter()
        .map(|h| {
            let (state, error) = match h.health() {
                crate::sinks::driver::Health::Ok => ("ok", None),
                crate::sinks::driver::Health::Degraded { error, .. } => ("degraded", Some(error)),
                crate::sinks::driver::Health::Failed(error) => ("failed", Some(error)),
            };
            let (depth, capacity) = h.queue();
            serde_json::json!({
                "name": h.name(), "state": state, "error": error,
                "queue_depth": depth, "queue_capacity": capacity,
            })
        })
        .collect();
    let (streams, dropped) = api
        .push
        .as_ref()
        .map_or((0, 0), |p| (p.streams(), p.dropped.load(Relaxed)));
    let body = serde_json::json!({
        "ticks": c.accepted.load(Relaxed),
        "rejected": c.rejected.load(Relaxed),
        "late": c.late.load(Relaxed),
        "dead_letters": c.dead_letters.load(Relaxed),
        "stats_rows": c.stats_rows.load(Relaxed),
        "bar_rows": c.bar_rows.load(Relaxed),
        "alert_events": c.alert_events.load(Relaxed),
        "symbols": s.read.symbols().len(),
        "ready": readiness.is_ok(),
        "reason": readiness.err(),
        "sinks": sinks,
        "streams": streams,
        "streams_dropped": dropped,
        "windows": s.read.windows,
        "bars": s.read.bar_sizes,
        "quote_symbols": s
            .quote_symbols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|set| set.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
    });
    json_body(body.to_string())
}

/// A path's symbol, by the canonical rule ([`gostocks_core::Symbol::new`]).
fn symbol_of(text: &str) -> Result<String, ApiError> {
    gostocks_core::Symbol::new(text)
        .map(|s| s.as_str().to_owned())
        .map_err(|e| ApiError::bad_request(format!("symbol: {e}")))
}

/// The index of `label` among the configured `labels` (the first when absent), or a 400 that
/// lists them.
fn pick(what: &'static str, label: Option<&str>, labels: &[String]) -> Result<u8, ApiError> {
    match label {
        None => Ok(0),
        Some(l) => labels
            .iter()
            .position(|x| x == l)
            .map(|i| i as u8)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{what}: {} is not computed; this run computes {what}s {}",
                    gostocks_core::symbol::excerpt(l),
                    labels.join(", ")
                ))
            }),
    }
}

fn json_body(body: String) -> warp::reply::Response {
    warp::reply::with_header(body, "content-type", "application/json").into_response()
}

fn get_stats(api: &Api, symbol: &str, q: &Query) -> Result<warp::reply::Response, ApiError> {
    let state = &api.state;
    let window = pick("window", q.get("window"), &state.read.windows)?;
    let row = state.read.stats(symbol, window).ok_or_else(|| {
        ApiError::not_found(format!(
            "no stats yet for symbol `{symbol}`; GET /symbols lists the symbols seen"
        ))
    })?;
    let mut body = String::new();
    row.write_json_as(
        &mut body,
        &state.read.windows[window as usize],
        JsonDecimals::Strings,
    );
    Ok(json_body(body))
}

fn get_bars(api: &Api, symbol: &str, q: &Query) -> Result<warp::reply::Response, ApiError> {
    let state = &api.state;
    let bar = pick("bar", q.get("bar"), &state.read.bar_sizes)?;
    let limit = q
        .int("limit", 1..=crate::read_model::BARS_KEPT)?
        .unwrap_or(100);
    // A symbol seen but without a final bar yet has none: `[]`; an unseen one is a 404.
    let rows = match state.read.bars(symbol, bar, limit) {
        Some(rows) => rows,
        None if state.read.price(symbol).is_some() => Vec::new(),
        None => {
            return Err(ApiError::not_found(format!(
                "no trades seen for symbol `{symbol}`; GET /symbols lists the symbols seen"
            )));
        }
    };
    let mut body = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        row.write_json_as(
            &mut body,
            &state.read.bar_sizes[bar as usize],
            JsonDecimals::Strings,
        );
    }
    body.push(']');
    Ok(json_body(body))
}

/// The latest quote statistics row of a window, from the hash the quote feed keeps in Redis
/// (`run --kafka --quotes-topic --redis`): decimals as strings, counts as integers, means as
/// numbers, absent values as null.
async fn get_quotes(api: &Api, symbol: &str, q: &Query) -> Result<warp::reply::Response, ApiError> {
    let windows = &api.state.read.windows;
    let window = &windows[usize::from(pick("window", q.get("window"), windows)?)];
    let not_found = || {
        ApiError::not_found(format!(
            "no quote statistics for symbol `{symbol}`: quotes come from `run --kafka --quotes-topic` with --redis"
        ))
    };
    let Some(redis) = &api.redis else {
        return Err(not_found());
    };
    let key = format!("{}{symbol}:{window}", crate::quote_feed::QUOTE_PREFIX);
    let fields = match redis.read_hash(&key).await {
        Ok(found) => found.ok_or_else(not_found)?,
        Err(error) => {
            tracing::warn!(error = %error, "reading quote statistics from redis");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the speed layer (Redis) is unavailable; retry shortly",
            ));
        }
    };
    let mut body = serde_json::Map::new();
    for (field, text) in fields {
        let value = match field.as_str() {
            _ if text.is_empty() => serde_json::Value::Null,
            "time_ns" | "quotes" | "two_sided_ns" => text
                .parse::<u64>()
                .map_or(serde_json::Value::Null, serde_json::Value::from),
            "mean_spread" | "mean_spread_bps" | "mean_mid" | "crossed_share" | "locked_share" => {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            _ => serde_json::Value::String(text),
        };
        body.insert(field, value);
    }
    Ok(json_body(serde_json::Value::Object(body).to_string()))
}

async fn get_price(api: &Api, symbol: &str) -> Result<warp::reply::Response, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "no trades seen for symbol `{symbol}`; GET /symbols lists the symbols with prices"
        ))
    };
    // With Redis configured, prices come from the speed layer; the in-process state otherwise.
    let (price, time_ns) = match &api.redis {
        Some(redis) => match redis.read_prices(&[symbol]).await {
            Ok(found) => found.into_iter().next().flatten().ok_or_else(not_found)?,
            Err(error) => {
                tracing::warn!(error = %error, "reading a price from redis");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the speed layer (Redis) is unavailable; retry shortly",
                ));
            }
        },
        None => {
            let p = api.state.read.price(symbol).ok_or_else(not_found)?;
            (p.price.to_string(), p.time_ns as i64)
        }
    };
    Ok(json_body(
        serde_json::json!({"symbol": symbol, "price": price, "time_ns": time_ns}).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gostocks_core::Symbol;

    fn state() -> Arc<MarketState> {
        let s = Arc::new(MarketState::new(
            16,
            &gostocks_core::stats::AnalyticsConfig::default(),
        ));
        for (symbol, price) in [
            ("AAPL", "585.33"),
            ("BTC/USD", "60000.5"),
            ("ÄPFEL", "99999999.99999999"),
        ] {
            let last = crate::read_model::LastPrice {
                time_ns: 7,
                seq: 1,
                price: price.parse().unwrap(),
            };
            s.read.apply_price(&Symbol::new(symbol).unwrap(), last);
        }
        s
    }

    fn routes(
        state: Arc<MarketState>,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
        app(Api::new(state, None, None))
    }

    async fn call(method: &str, path: &str) -> (u16, serde_json::Value) {
        let res = warp::test::request()
            .method(method)
            .path(path)
            .reply(&routes(state()))
            .await;
        let body = serde_json::from_slice(res.body()).unwrap_or(serde_json::Value::Null);
        (res.status().as_u16(), body)
    }

    #[tokio::test]
    async fn price_of_a_known_symbol_with_an_exact_decimal() {
        let (status, body) = call("GET", "/price/AAPL").await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            serde_json::json!({"symbol": "AAPL", "price": "585.33", "time_ns": 7})
        );
        let (_, body) = call("GET", "/price/%C3%84PFEL").await;
        assert_eq!(body["price"], "99999999.99999999", "{body}");
    }

    #[tokio::test]
    async fn path_symbols_are_percent_decoded_and_case_folded() {
        for path in [
            "/price/BTC%2FUSD",
            "/price/btc%2fusd",
            "/price/%C3%84PFEL",
            "/price/%C3%A4pfel",
            "/price/%41APL",
            "/price/aapl",
        ] {
            let (status, body) = call("GET", path).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        let (status, body) = call("GET", "/price/%FF").await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = call("GET", &format!("/price/{}", "X".repeat(30))).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().len() < 200, "{body}");
    }

    #[tokio::test]
    async fn unknown_symbol_is_a_json_404() {
        let (status, body) = call("GET", "/price/NOPE").await;
        assert_eq!(status, 404);
        assert_eq!(body["code"], "not_found");
        assert!(body["message"].as_str().unwrap().contains("NOPE"));
    }

    #[tokio::test]
    async fn stats_and_bars_validate_their_parameters() {
        let s = state();
        let p = |x: &str| x.parse::<gostocks_core::Fixed>().unwrap();
        let agg = gostocks_core::indicators::Agg::tick(p("585.33"), p("100"), 7, None);
        let core = gostocks_core::stats::WindowCore::new(agg, p("585.33"), p("585.33"));
        let sym = Symbol::new("AAPL").unwrap();
        s.read.apply_stats(&gostocks_core::stats::StatsRow::new(
            1_000,
            sym,
            1,
            Some(core),
            Some(p("585.33")),
        ));
        let get = |path: &'static str| {
            let s = Arc::clone(&s);
            async move {
                let res = warp::test::request().path(path).reply(&routes(s)).await;
                let body: serde_json::Value =
                    serde_json::from_slice(res.body()).unwrap_or_default();
                (res.status().as_u16(), body)
            }
        };
        let (status, body) = get("/stats/AAPL?window=300s").await;
        assert_eq!(status, 200);
        assert_eq!(
            (
                body["window"].as_str(),
                body["count"].as_i64(),
                body["last"].as_str()
            ),
            (Some("300s"), Some(1), Some("585.33"))
        );
        let (status, body) = get("/stats/AAPL?window=7s").await;
        assert_eq!(status, 400);
        assert!(
            body["message"].as_str().unwrap().contains("60s, 300s"),
            "{body}"
        );
        assert_eq!(get("/stats/AAPL").await.0, 404, "no 60s stats yet");
        assert_eq!(get("/bars/AAPL?limit=abc").await.0, 400);
        assert_eq!(get("/bars/AAPL?limit=0").await.0, 400);
        assert_eq!(get("/bars/AAPL?limit=1&limit=2").await.0, 400);
        assert_eq!(get("/stats/AAPL?windw=60s").await.0, 400);
    }

    #[tokio::test]
    async fn the_dashboard_docs_status_and_openapi_are_served() {
        for (path, media) in [
            ("/", "text/html; charset=utf-8"),
            ("/docs", "text/html; charset=utf-8"),
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            (
                "/assets/lightweight-charts.js",
                "text/javascript; charset=utf-8",
            ),
            ("/openapi.json", "application/json"),
        ] {
            let res = warp::test::request()
                .path(path)
                .reply(&routes(state()))
                .await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.headers()["content-type"], media, "{path}");
        }
        assert_eq!(call("GET", "/assets/nothing.js").await.0, 404);
        let (status, body) = call("GET", "/status").await;
        assert_eq!(status, 200);
        assert_eq!(
            (&body["symbols"], &body["windows"], &body["ready"]),
            (
                &serde_json::json!(3),
                &serde_json::json!(["60s", "300s"]),
                &serde_json::json!(true)
            )
        );
        // Without a push hub the stream is not served; with one, its parameters are checked.
        assert_eq!(call("GET", "/stream").await.0, 404);
        let push = Arc::new(crate::sinks::push::PushHub::new(vec![], vec![]));
        let api = Api::new(state(), None, None).with_push(push);
        let res = warp::test::request()
            .path("/stream?kinds=ticks")
            .reply(&app(api))
            .await;
        assert_eq!(res.status(), 400);
    }

    #[tokio::test]
    async fn cors_answers_preflights_and_marks_allowed_origins_only() {
        let api =
            Api::new(state(), None, None).with_cors(Some("http://127.0.0.1:3000".parse().unwrap()));
        let cors_routes = app(api);
        let res = warp::test::request()
            .method("OPTIONS")
            .path("/alerts")
            .header("origin", "http://127.0.0.1:3000")
            .header("access-control-request-method", "POST")
            .reply(&cors_routes)
            .await;
        assert_eq!(res.status(), 204);
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "http://127.0.0.1:3000"
        );
        assert!(
            res.headers()["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
        let res = warp::test::request()
            .path("/symbols")
            .header("origin", "https://elsewhere.example")
            .reply(&cors_routes)
            .await;
        assert_eq!(res.status(), 200);
        assert!(!res.headers().contains_key("access-control-allow-origin"));
        let res = warp::test::request()
            .path("/symbols")
            .header("origin", "http://127.0.0.1:3000")
            .reply(&cors_routes)
            .await;
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "http://127.0.0.1:3000"
        );
        // Off by default: no CORS headers at all.
        let res = warp::test::request()
            .path("/symbols")
            .header("origin", "http://127.0.0.1:3000")
            .reply(&routes(state()))
            .await;
        assert!(!res.headers().contains_key("access-control-allow-origin"));
    }

    #[tokio::test]
    async fn healthz_metrics_head_and_unknown_routes() {
        assert_eq!(call("GET", "/healthz").await.0, 200);
        let (status, body) = call("GET", "/readyz").await;
        assert_eq!(
            (status, &body["status"]),
            (200, &serde_json::json!("ready"))
        );
        let res = warp::test::request()
            .path("/metrics")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 200);
        let text = String::from_utf8_lossy(res.body()).into_owned();
        assert!(text.contains("\ngostocks_symbols 3\n"), "{text}");
        assert_eq!(call("GET", "/nothing").await.0, 404);
        assert_eq!(call("HEAD", "/price/AAPL").await.0, 200);
        let res = warp::test::request()
            .method("POST")
            .path("/price/AAPL")
            .reply(&routes(state()))
            .await;
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers()["allow"], "GET, HEAD");
        let (status, body) = call("GET", &format!("/price/{}", "A".repeat(MAX_PATH))).await;
        assert_eq!(status, 414, "{body}");
        let (status, _) = call("GET", &format!("/symbols?{}", "a=1&".repeat(MAX_QUERY))).await;
        assert_eq!(status, 414);
    }
}
