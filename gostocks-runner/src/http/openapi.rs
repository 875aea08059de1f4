//! The OpenAPI 3.1 document of the REST API (`GET /openapi.json`, rendered at `/docs`),
//! generated with `utoipa` from the declarations below: one `#[utoipa::path]` per route with its
//! parameters, body, answers and examples, and the JSON shapes as schema types. The router
//! (`route` in `mod.rs`) matches paths by hand, so each declaration stands beside the route's
//! bounds (`MAX_*` constants) it quotes; the tests validate the document and run a
//! property-based client generated from it against the running server.

#![allow(dead_code)] // the declarations are read by the derive macros, not called

use serde_json::json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An error: every 4xx and 5xx answer has this body.
#[derive(ToSchema)]
#[schema(example = json!({"code": "bad_request", "message": "symbol: `a b` holds whitespace"}))]
struct Error {
    /// Machine-readable: `bad_request`, `invalid_argument`, `unauthenticated`, `not_found`,
    /// `method_not_allowed`, `failed_precondition`, `payload_too_large`, `uri_too_long`,
    /// `resource_exhausted`, `unavailable`.
    code: String,
    /// What went wrong and what to do about it (at most 512 bytes; input quoted as a short
    /// excerpt).
    message: String,
}

/// An exact decimal as a JSON string, e.g. `"414.94"` (at most 8 decimal places).
#[derive(ToSchema, serde::Serialize)]
#[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "414.94")]
struct Decimal(String);

/// A symbol's last price.
#[derive(ToSchema)]
#[schema(example = json!({"symbol": "MSFT", "price": "414.94", "time_ns": 1717421400810000000_i64}))]
struct Price {
    symbol: String,
    price: Decimal,
    /// Event time of the trade, ns since 1970.
    time_ns: i64,
}

/// The latest stats row of a window (an emptied window has `count` 0 and nulls).
#[derive(ToSchema)]
#[schema(example = json!({"symbol": "MSFT", "window": "60s", "time_ns": 1717421460000000000_i64,
    "count": 42, "volume": "4200", "last": "414.94", "min": "414.1", "max": "415.2", "sma": 414.7,
    "vwap": 414.69, "stddev": 0.31, "volatility": 0.00021}))]
struct Stats {
    symbol: String,
    /// The window's label, e.g. `60s`.
    window: String,
    /// The grid time of the row, ns since 1970.
    time_ns: i64,
    count: i64,
    volume: Decimal,
    last: Option<Decimal>,
    min: Option<Decimal>,
    max: Option<Decimal>,
    sma: Option<f64>,
    vwap: Option<f64>,
    /// Sample standard deviation of prices (n − 1).
    stddev: Option<f64>,
    /// Sample standard deviation of log returns.
    volatility: Option<f64>,
}

/// A final bar with the EMA of closes.
#[derive(ToSchema)]
#[schema(example = json!({"symbol": "MSFT", "bar": "1m", "start_ns": 1717421400000000000_i64,
    "open": "414.5", "high": "415.2", "low": "414.1", "close": "414.94", "volume": "4200",
    "count": 42, "vwap": 414.69, "ema": 414.8}))]
struct Bar {
    symbol: String,
    /// The bar size's label, e.g. `1m`.
    bar: String,
    /// The bar covers `[start_ns, start_ns + size)`.
    start_ns: i64,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
    count: i64,
    vwap: Option<f64>,
    ema: Option<f64>,
}

/// The latest quote statistics row of a window (see the README's quotes contract): the book in
/// force at `time_ns` and its time-weighted means over `[time_ns - W, time_ns]`.
#[derive(ToSchema)]
#[schema(example = json!({"symbol": "AAPL", "window": "60s", "time_ns": 1340285450000000000_i64,
    "quotes": 485, "bid": "585.35", "bid_size": "18", "ask": "585.71", "ask_size": "100",
    "mid": "585.53", "spread": "0.36", "mean_spread": 0.231, "mean_spread_bps": 3.945,
    "mean_mid": 585.5, "two_sided_ns": 50000000000_i64, "crossed_share": 0, "locked_share": 0}))]
struct QuoteStats {
    symbol: String,
    /// The window's label, e.g. `60s`.
    window: String,
    /// The grid time of the row, ns since 1970.
    time_ns: i64,
    /// Quotes in `(time_ns - W, time_ns]`.
    quotes: i64,
    /// Best bid in force (null: no bid).
    bid: Option<Decimal>,
    bid_size: Decimal,
    /// Best ask in force (null: no ask).
    ask: Option<Decimal>,
    ask_size: Decimal,
    /// `(bid + ask) / 2`, exact (may have a ninth decimal).
    mid: Option<Decimal>,
    /// `ask - bid` (negative when crossed).
    spread: Option<Decimal>,
    /// Time-weighted mean spread.
    mean_spread: Option<f64>,
    /// `10⁴ × ∫ spread dt / ∫ mid dt`.
    mean_spread_bps: Option<f64>,
    /// Time-weighted mean mid.
    mean_mid: Option<f64>,
    /// ns in the window with both sides.
    two_sided_ns: i64,
    /// Share of `two_sided_ns` with bid > ask.
    crossed_share: Option<f64>,
    /// Share of `two_sided_ns` with bid = ask.
    locked_share: Option<f64>,
}

/// The symbols with a last price.
#[derive(ToSchema)]
#[schema(example = json!({"symbols": ["AAPL", "AMZN", "GOOG", "MSFT", "TSLA"]}))]
struct Symbols {
    symbols: Vec<String>,
}

/// Liveness.
#[derive(ToSchema)]
#[schema(example = json!({"status": "ok", "ticks": 1200, "rejected": 0, "symbols": 5}))]
struct Health {
    /// Always `ok`.
    status: String,
    ticks: i64,
    rejected: i64,
    symbols: i64,
}

/// Readiness.
#[derive(ToSchema)]
#[schema(example = json!({"status": "not_ready", "reason": "sink redis: failing for 12 s, retrying: connection refused"}))]
struct Ready {
    /// `ready` or `not_ready`.
    status: String,
    /// Why not, when not ready.
    reason: Option<String>,
}

/// One sink's state.
#[derive(ToSchema)]
struct SinkStatus {
    /// `read_model`, `alert_store`, `push`, `redis`, `kafka`, `jsonl`.
    name: String,
    /// `ok`, `degraded` (retrying) or `failed` (stopped).
    state: String,
    /// The latest failure, when not `ok`.
    error: Option<String>,
    queue_depth: i64,
    queue_capacity: i64,
}

/// The pipeline at a glance (what the dashboard's health panel shows).
#[derive(ToSchema)]
#[schema(example = json!({"ticks": 1200, "rejected": 0, "late": 0, "dead_letters": 0,
    "stats_rows": 2400, "bar_rows": 600, "alert_events": 3, "symbols": 5, "ready": true,
    "reason": null, "sinks": [{"name": "read_model", "state": "ok", "error": null,
    "queue_depth": 0, "queue_capacity": 65536}], "streams": 1, "streams_dropped": 0,
    "windows": ["60s", "300s"], "bars": ["1s", "1m"], "quote_symbols": null}))]
struct Status {
    /// Ticks accepted.
    ticks: i64,
    rejected: i64,
    late: i64,
    dead_letters: i64,
    stats_rows: i64,
    bar_rows: i64,
    alert_events: i64,
    symbols: i64,
    /// What `/readyz` says.
    ready: bool,
    reason: Option<String>,
    sinks: Vec<SinkStatus>,
    /// `GET /stream` clients connected now.
    streams: i64,
    /// Stream clients dropped for falling behind.
    streams_dropped: i64,
    /// The windows this run computes.
    windows: Vec<String>,
    /// The bar sizes this run computes.
    bars: Vec<String>,
    /// With `--quotes-topic`: the symbols with quote statistics (`GET /quotes`), sorted; null
    /// without quotes.
    quote_symbols: Option<Vec<String>>,
}

/// A condition (see the README's table).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
enum Condition {
    PriceAbove,
    PriceBelow,
    CrossesAbove,
    CrossesBelow,
    SmaCrossAbove,
    SmaCrossBelow,
    VolatilityAbove,
    ChangePctAbove,
    ChangePctBelow,
    VolumeAbove,
    VwapCrossAbove,
    VwapCrossBelow,
    EntersChannel,
    ExitsChannel,
    Inside,
    Outside,
    SpreadAbove,
}

/// How often an alert may fire.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
enum Mode {
    Once,
    Rearm,
    OncePerBar,
    OncePerBarClose,
    OncePerInterval,
}

/// A storm guard: at most `max_events` within `within` of event time (defaults 15 and `3m`).
#[derive(ToSchema, serde::Serialize)]
struct StormGuard {
    /// 1 to 10,000.
    #[schema(minimum = 1, maximum = 10000)]
    max_events: Option<i64>,
    /// A duration such as `3m`.
    within: Option<String>,
}

/// No storm guard.
#[derive(ToSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Off {
    Off,
}

/// The storm guard: a guard, or `"off"`.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
enum Storm {
    Off(Off),
    Guard(StormGuard),
}

/// A decimal given as a string (exact) or a JSON number (read from its text, exactly).
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
enum DecimalIn {
    Text(Decimal),
    Number(f64),
}

/// An alert's storm guard as it stands.
#[derive(ToSchema, serde::Serialize)]
struct GuardNow {
    max_events: i64,
    within_ns: i64,
}

/// An alert's storm guard, or `"off"`.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
enum StormNow {
    Off(Off),
    Guard(GuardNow),
}

/// A new alert.
#[derive(ToSchema)]
#[schema(example = json!({"symbol": "AAPL", "condition": "crosses_above", "threshold": "190.5",
    "mode": "rearm", "hysteresis": "0.2", "cooldown": "10s"}))]
struct NewAlert {
    /// The symbol rule: 1 to 23 bytes, no whitespace; folded to upper case.
    symbol: String,
    condition: Condition,
    /// Positive. For the channel conditions, the channel's lower edge.
    threshold: DecimalIn,
    /// For `enters_channel`, `exits_channel`, `inside` and `outside` (required there, refused
    /// elsewhere): the channel's upper edge, above `threshold`.
    upper: Option<DecimalIn>,
    /// Default `once`.
    mode: Option<Mode>,
    /// `rearm` only; not negative.
    hysteresis: Option<DecimalIn>,
    /// `rearm` and `once_per_interval` (required there): a duration such as `30s`.
    cooldown: Option<String>,
    /// For `sma_cross_*` and `volatility_above`: one of the run's windows.
    window: Option<String>,
    /// For the bar modes: one of the run's bar sizes.
    bar: Option<String>,
    storm: Option<Storm>,
    /// Notification channel ids, at most 5.
    channels: Option<Vec<String>>,
}

/// An alert.
#[derive(ToSchema)]
#[schema(example = json!({"id": "al_0123456789abcdef", "symbol": "AAPL", "condition": "crosses_above",
    "threshold": "190.5", "upper": null, "mode": "rearm", "hysteresis": "0.2", "cooldown_ns": 10000000000_i64,
    "window": null, "created_ns": 1717421400810000001_i64, "channels": [], "state": "active",
    "bar": null, "storm": {"max_events": 15, "within_ns": 180000000000_i64}, "paused_reason": null}))]
struct Alert {
    id: String,
    symbol: String,
    condition: Condition,
    threshold: Decimal,
    /// The channel conditions' upper edge; null for the others.
    upper: Option<Decimal>,
    mode: Mode,
    hysteresis: Option<Decimal>,
    cooldown_ns: i64,
    window: Option<String>,
    created_ns: i64,
    channels: Vec<String>,
    /// `active`, `triggered` or `paused`.
    state: String,
    bar: Option<String>,
    storm: StormNow,
    /// Why it is paused (`storm`).
    paused_reason: Option<String>,
    /// Only in the answer to a create: null, or for a storm-prone `rearm` alert what to change.
    warning: Option<String>,
}

/// A page of alerts.
#[derive(ToSchema)]
struct AlertPage {
    alerts: Vec<Alert>,
    /// Give it as `page_token` for the next page; null on the last.
    next_page_token: Option<String>,
}

/// What was deleted.
#[derive(ToSchema)]
#[schema(example = json!({"deleted": "al_0123456789abcdef"}))]
struct Deleted {
    deleted: String,
}

/// An alert event.
#[derive(ToSchema)]
#[schema(example = json!({"id": 42, "alert_id": "al_0123456789abcdef", "symbol": "AAPL",
    "time_ns": 1717421400810000000_i64, "seq": 7, "price": "190.6", "value": 190.6,
    "kind": "fired", "reason": null}))]
struct AlertEvent {
    id: i64,
    alert_id: String,
    symbol: String,
    time_ns: i64,
    seq: i64,
    price: Option<Decimal>,
    value: f64,
    /// `fired` or `paused`.
    kind: String,
    /// Why paused (`storm`).
    reason: Option<String>,
}

/// Alert events, oldest first.
#[derive(ToSchema)]
struct Events {
    events: Vec<AlertEvent>,
}

/// How a delivery to one channel stands.
#[derive(ToSchema)]
struct Delivery {
    channel_id: String,
    /// `pending`, `delivered` or `failed`.
    state: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
}

/// An event's deliveries.
#[derive(ToSchema)]
struct Deliveries {
    event_id: i64,
    deliveries: Vec<Delivery>,
}

/// A new notification channel.
#[derive(ToSchema)]
#[schema(example = json!({"kind": "webhook", "url": "https://example.com/hook"}))]
struct NewChannel {
    /// `webhook`, `slack`, `discord` or `teams`.
    kind: String,
    /// `http` or `https`, at most 2048 bytes.
    url: String,
    /// 16 to 128 visible ASCII characters; generated when left out (webhooks).
    secret: Option<String>,
}

/// A notification channel.
#[derive(ToSchema)]
struct Channel {
    id: String,
    kind: String,
    url: String,
    /// The secret's last characters.
    secret_hint: Option<String>,
    created_ms: i64,
    /// Only in the answer to its creation.
    secret: Option<String>,
}

/// The caller's channels.
#[derive(ToSchema)]
struct Channels {
    channels: Vec<Channel>,
}

/// A token for `GET /alerts/stream`.
#[derive(ToSchema)]
#[schema(example = json!({"token": "gst_00112233445566778899aabbccddeeff", "expires_in_s": 60}))]
struct StreamToken {
    token: String,
    /// It opens streams for this long.
    expires_in_s: i64,
}

#[utoipa::path(get, path = "/price/{symbol}", tag = "market",
    summary = "A symbol's last price",
    params(("symbol" = String, Path, description = "The symbol (percent-encoded; folded to upper case)", example = "MSFT")),
    responses(
        (status = 200, description = "The last price", body = Price),
        (status = 400, description = "Not a symbol", body = Error),
        (status = 404, description = "No trade of it seen", body = Error,
            example = json!({"code": "not_found", "message": "no trades seen for symbol `NOPE`; GET /symbols lists the symbols with prices"})),
        (status = 503, description = "Redis (when configured) is down", body = Error),
    ))]
fn price() {}

#[utoipa::path(get, path = "/stats/{symbol}", tag = "market",
    summary = "The latest stats row of a window",
    params(
        ("symbol" = String, Path, description = "The symbol", example = "MSFT"),
        ("window" = Option<String>, Query, description = "A window this run computes (default: the first)", example = "60s"),
    ),
    responses(
        (status = 200, description = "The latest row", body = Stats),
        (status = 400, description = "Bad symbol or a window not computed", body = Error,
            example = json!({"code": "bad_request", "message": "window: `7s` is not computed; this run computes windows 60s, 300s"})),
        (status = 404, description = "No row yet", body = Error),
    ))]
fn stats() {}

#[utoipa::path(get, path = "/bars/{symbol}", tag = "market",
    summary = "The latest final bars, oldest first",
    description = "`[]` for a symbol seen without a final bar yet.",
    params(
        ("symbol" = String, Path, description = "The symbol", example = "MSFT"),
        ("bar" = Option<String>, Query, description = "A bar size this run computes (default: the first)", example = "1m"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "How many (default 100)"),
    ),
    responses(
        (status = 200, description = "The bars", body = Vec<Bar>),
        (status = 400, description = "Bad symbol, bar or limit", body = Error),
        (status = 404, description = "No trade of it seen", body = Error),
    ))]
fn bars() {}

#[utoipa::path(get, path = "/quotes/{symbol}", tag = "market",
    summary = "The latest quote statistics row of a window",
    description = "From Redis, where `run --kafka --quotes-topic ... --redis ...` keeps the statistics of the quotes topic; a runner without them answers 404.",
    params(
        ("symbol" = String, Path, description = "The symbol", example = "AAPL"),
        ("window" = Option<String>, Query, description = "A window this run computes (default: the first)", example = "60s"),
    ),
    responses(
        (status = 200, description = "The latest row", body = QuoteStats),
        (status = 400, description = "Bad symbol or a window not computed", body = Error),
        (status = 404, description = "No quote statistics for the symbol", body = Error),
        (status = 503, description = "Redis is down", body = Error),
    ))]
fn quotes() {}

#[utoipa::path(get, path = "/symbols", tag = "market", summary = "The symbols with a last price",
    responses((status = 200, description = "Sorted", body = Symbols), (status = 400, description = "A query parameter", body = Error)))]
fn symbols() {}

#[utoipa::path(get, path = "/stream", tag = "push",
    summary = "Server-sent events: prices as taken in, stats rows and bars once final",
    description = "Events `price`, `stats` and `bar` carry the JSON of `/price`, `/stats` and `/bars` with an SSE id (`<epoch>-<n>`). \
A client that reconnects with `Last-Event-ID` gets every event after it (from a replay buffer of 16,384 events), or a `reset` event \
(`{reason: too_far_behind | unknown_id, message}`) when it cannot, after which it should reload the state over REST. A client more \
than 4,096 of its events behind the live feed (it stopped reading, or reads too slowly) gets the events held for it, then a `dropped` event \
(`{reason: slow_client, message}`), and the stream ends. A comment is sent \
after 15 s without an event. At most 4,096 streams at once (503 beyond).",
    params(
        ("symbols" = Option<String>, Query, description = "Comma-separated, at most 100 (default: all)", example = "AAPL,MSFT"),
        ("kinds" = Option<String>, Query, description = "Comma-separated of `price`, `stats`, `bars` (default: all)", example = "price,stats,bars"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last id received, to resume after it"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad symbol, kind or Last-Event-ID", body = Error),
        (status = 503, description = "Too many streams", body = Error),
    ))]
fn stream() {}

#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness",
    responses((status = 200, description = "The process lives", body = Health), (status = 400, description = "A query parameter", body = Error)))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness",
    responses(
        (status = 200, description = "Ready", body = Ready, example = json!({"status": "ready"})),
        (status = 400, description = "A query parameter", body = Error),
        (status = 503, description = "Not ready, and why", body = Ready),
    ))]
fn readyz() {}

#[utoipa::path(get, path = "/status", tag = "operations", summary = "Counters, readiness, sinks and streams as JSON",
    responses((status = 200, description = "Now", body = Status), (status = 400, description = "A query parameter", body = Error)))]
fn status() {}

#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics (OpenMetrics text)",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String), (status = 400, description = "A query parameter", body = Error)))]
fn metrics() {}

#[utoipa::path(post, path = "/alerts", tag = "alerts", summary = "Create an alert",
    security(("bearer" = [])),
    request_body(content = NewAlert, description = "At most 16 KiB"),
    responses(
        (status = 201, description = "Created; `warning` set for a storm-prone alert", body = Alert),
        (status = 400, description = "A field is wrong; the message starts with it", body = Error,
            example = json!({"code": "invalid_argument", "message": "threshold: must be positive"})),
        (status = 401, description = "No valid key", body = Error),
        (status = 413, description = "Body over 16 KiB", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn create_alert() {}

#[utoipa::path(get, path = "/alerts", tag = "alerts", summary = "The caller's alerts, paged",
    security(("bearer" = [])),
    params(
        ("page_size" = Option<i64>, Query, minimum = 0, maximum = 500, description = "0: the default, 50"),
        ("page_token" = Option<String>, Query, description = "From `next_page_token`"),
    ),
    responses(
        (status = 200, description = "A page", body = AlertPage),
        (status = 400, description = "A bad parameter", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn list_alerts() {}

#[utoipa::path(delete, path = "/alerts/{id}", tag = "alerts", summary = "Delete one of the caller's alerts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Alert id: 1 to 64 of A-Z a-z 0-9 _ -", example = "al_0123456789abcdef")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Not an alert id", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 404, description = "No such alert of the caller's", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn delete_alert() {}

#[utoipa::path(post, path = "/alerts/{id}/resume", tag = "alerts",
    summary = "Make a paused or triggered alert active again from the next tick",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Alert id", example = "al_0123456789abcdef")),
    responses(
        (status = 200, description = "Active again", body = Alert),
        (status = 400, description = "Not an alert id", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 404, description = "No such alert of the caller's", body = Error),
        (status = 409, description = "Already active", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn resume_alert() {}

#[utoipa::path(get, path = "/alerts/events", tag = "alerts",
    summary = "The caller's events with ids above `after` (a long poll)",
    security(("bearer" = [])),
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Event id; default 0"),
        ("wait_ms" = Option<i64>, Query, minimum = 0, description = "Wait this long for a first event (default 200; at most 30 s is waited)"),
    ),
    responses(
        (status = 200, description = "At most 1,000 events, oldest first", body = Events),
        (status = 400, description = "A bad parameter", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn events() {}

#[utoipa::path(get, path = "/alerts/events/{id}/deliveries", tag = "alerts",
    summary = "How an event's notifications stand",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Event id")),
    responses(
        (status = 200, description = "Per channel", body = Deliveries),
        (status = 400, description = "Not an event id", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 404, description = "No such event of the caller's", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn deliveries() {}

#[utoipa::path(post, path = "/alerts/stream-token", tag = "push",
    summary = "A short-lived token for `GET /alerts/stream`",
    description = "`EventSource` cannot send an Authorization header: this authenticated call issues a token that opens the caller's alert stream for 60 s. At most 10,000 outstanding (429 beyond).",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token", body = StreamToken),
        (status = 400, description = "A query parameter", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 429, description = "Too many tokens outstanding", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn stream_token() {}

#[utoipa::path(get, path = "/alerts/stream", tag = "push",
    summary = "Server-sent events: the caller's alert events and delivery updates",
    description = "Events `alert` (the JSON of `/alerts/events`, with the event id as SSE id) and `delivery` (`{event_id, channel_id, state, attempts, last_status, last_error}`). With `after` or `Last-Event-ID`, the stored events after it come first.",
    params(
        ("token" = String, Query, description = "From `POST /alerts/stream-token`"),
        ("after" = Option<i64>, Query, minimum = 0, description = "Replay stored events after this id first"),
        ("Last-Event-ID" = Option<String>, Header, description = "As `after` (sent by a reconnecting EventSource)"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad parameter", body = Error),
        (status = 401, description = "Missing, unknown or expired token", body = Error),
    ))]
fn alert_stream() {}

#[utoipa::path(post, path = "/channels", tag = "alerts", summary = "Create a notification channel",
    security(("bearer" = [])),
    request_body(content = NewChannel, description = "At most 16 KiB"),
    responses(
        (status = 201, description = "Created; `secret` shown this once", body = Channel),
        (status = 400, description = "A field is wrong", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 409, description = "The caller has 20 channels", body = Error),
        (status = 413, description = "Body over 16 KiB", body = Error),
        (status = 429, description = "Limit reached", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn create_channel() {}

#[utoipa::path(get, path = "/channels", tag = "alerts", summary = "The caller's channels",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channels", body = Channels),
        (status = 400, description = "A query parameter", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn list_channels() {}

#[utoipa::path(delete, path = "/channels/{id}", tag = "alerts", summary = "Delete one of the caller's channels",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Channel id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Not a channel id", body = Error),
        (status = 401, description = "No valid key", body = Error),
        (status = 404, description = "No such channel of the caller's", body = Error),
        (status = 503, description = "The alert store is down", body = Error),
    ))]
fn delete_channel() {}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gostocks",
        description = "Real-time market monitoring: prices, window stats, bars and price alerts. Decimals are JSON strings holding the exact decimal. Errors are `{code, message}`. Every request is bounded: path and query 2 KiB (414), body 16 KiB (413), Authorization 256 bytes (401); unknown or repeated query parameters are 400. HEAD works wherever GET does.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(price, stats, bars, quotes, symbols, stream, healthz, readyz, status, metrics,
        create_alert, list_alerts, delete_alert, resume_alert, events, deliveries,
        stream_token, alert_stream, create_channel, list_channels, delete_channel),
    modifiers(&Bearer),
    tags(
        (name = "market", description = "Prices, stats and bars from the dataflow"),
        (name = "push", description = "Server-sent event streams"),
        (name = "alerts", description = "Users' alerts, events and notification channels (Authorization: Bearer <key>)"),
        (name = "operations", description = "Health, status and metrics"),
    ),
)]
struct ApiDoc;

/// The document, as JSON text.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|e| json!({"error": e.to_string()}).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/price/{symbol}",
            "/stats/{symbol}",
            "/bars/{symbol}",
            "/quotes/{symbol}",
            "/symbols",
            "/stream",
            "/healthz",
            "/readyz",
            "/status",
            "/metrics",
            "/alerts",
            "/alerts/{id}",
            "/alerts/{id}/resume",
            "/alerts/events",
            "/alerts/events/{id}/deliveries",
            "/alerts/stream-token",
            "/alerts/stream",
            "/channels",
            "/channels/{id}",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        assert_eq!(paths.len(), 19);
    }
}
