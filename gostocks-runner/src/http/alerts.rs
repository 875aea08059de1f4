//! `POST /alerts`, `GET /alerts`, `DELETE /alerts/:id`, `POST /alerts/:id/resume`,
//! `GET /alerts/events?after=&wait_ms=`,
//! `GET /alerts/events/:id/deliveries`:
//! each handler checks its input, then calls the AlertService in process (the same calls a
//! gateway in its own process makes over gRPC) and maps gRPC codes to HTTP statuses.

use std::time::Duration;

use futures::StreamExt;
use gostocks_core::Span;
use gostocks_core::alerts::{AlertSpec, Condition, MAX_COOLDOWN_NS, Mode, StormSpec};
use gostocks_core::symbol::excerpt;
use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_server::AlertService;
use serde_json::Value;
use warp::Reply;
use warp::http::{Method, StatusCode, header};

use super::{ApiError, MAX_AUTH, Req, json_body};
use crate::alerts::service::{Alerts, MAX_PAGE};

/// Request bodies above this are refused with 413 (with or without a `Content-Length`).
pub const MAX_BODY: usize = 16 * 1024;
/// The most events one `GET /alerts/events` answers with.
pub const MAX_EVENTS: usize = 1_000;
/// The longest `wait_ms` of `GET /alerts/events`; longer waits are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The alert routes under `/alerts`: `rest` is the path after it.
pub(super) async fn route(
    alerts: &Alerts,
    rest: &[&str],
    req: Req,
) -> Result<warp::reply::Response, ApiError> {
    let m = &req.method;
    match rest {
        [] if *m == Method::POST => {
            req.query.only(&[])?;
            create(alerts, req).await
        }
        [] if *m == Method::GET || *m == Method::HEAD => {
            req.query.only(&["page_size", "page_token"])?;
            list(alerts, req).await
        }
        [] => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
        ["events"] if *m == Method::GET || *m == Method::HEAD => {
            req.query.only(&["after", "wait_ms"])?;
            events(alerts, req).await
        }
        ["events"] => Err(ApiError::method_not_allowed("GET, HEAD")),
        ["events", id, "deliveries"] if *m == Method::GET || *m == Method::HEAD => {
            req.query.only(&[])?;
            let event_id: i64 = id
                .parse()
                .ok()
                .filter(|i| *i > 0)
                .ok_or_else(|| bad(format!("event id: {} is not an event id", excerpt(id))))?;
            let call = request(v1::GetDeliveriesRequest { event_id }, &req)?;
            drop(req);
            let found = alerts
                .get_deliveries(call)
                .await
                .map_err(status)?
                .into_inner();
            let out: Vec<Value> = found
                .deliveries
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "channel_id": d.channel_id,
                        "state": d.state,
                        "attempts": d.attempts,
                        "last_status": if d.last_status == 0 { Value::Null } else { Value::from(d.last_status) },
                        "last_error": if d.last_error.is_empty() { Value::Null } else { Value::from(d.last_error.clone()) },
                    })
                })
                .collect();
            Ok(json_body(
                serde_json::json!({ "event_id": event_id, "deliveries": out }).to_string(),
            ))
        }
        ["events", _, "deliveries"] => Err(ApiError::method_not_allowed("GET, HEAD")),
        [id] if *m == Method::DELETE => {
            req.query.only(&[])?;
            let call = request(
                v1::DeleteAlertRequest {
                    id: (*id).to_owned(),
                },
                &req,
            )?;
            drop(req);
            delete(alerts, call).await
        }
        [_] => Err(ApiError::method_not_allowed("DELETE")),
        [id, "resume"] if *m == Method::POST => {
            req.query.only(&[])?;
            let call = request(
                v1::ResumeAlertRequest {
                    id: (*id).to_owned(),
                },
                &req,
            )?;
            drop(req);
            let alert = alerts
                .resume_alert(call)
                .await
                .map_err(status)?
                .into_inner();
            Ok(json_body(alert_json(&alert).to_string()))
        }
        [_, "resume"] => Err(ApiError::method_not_allowed("POST")),
        _ => Err(super::no_route()),
    }
}

/// A tonic request carrying the caller's bearer key, checked for size and charset first.
pub(super) fn request<T>(msg: T, req: &Req) -> Result<tonic::Request<T>, ApiError> {
    let mut out = tonic::Request::new(msg);
    if let Some(value) = req.headers.get(header::AUTHORIZATION) {
        let unusable = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!(
                    "the Authorization header must be at most {MAX_AUTH} bytes of visible ASCII: send `Authorization: Bearer <key>`"
                ),
            )
        };
        let bytes = value.as_bytes();
        if bytes.len() > MAX_AUTH || !bytes.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
            return Err(unusable());
        }
        let value = tonic::metadata::MetadataValue::try_from(bytes).map_err(|_| unusable())?;
        out.metadata_mut().insert("authorization", value);
    }
    Ok(out)
}

/// A gRPC status as an HTTP problem.
pub(super) fn status(s: tonic::Status) -> ApiError {
    use tonic::Code;
    let (http, code) = match s.code() {
        Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    ApiError::new(http, code, s.message())
}

pub(super) fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

/// A decimal as a JSON string holding its exact text (as in the canonical tick form).
fn decimal(d: Option<&v1::Decimal>) -> Value {
    d.and_then(|d| gostocks_core::Fixed::try_from(d).ok())
        .map_or(Value::Null, |f| Value::from(f.to_string()))
}

fn alert_json(a: &v1::Alert) -> Value {
    let name = |c: i32| {
        v1::AlertCondition::try_from(c)
            .map(|c| {
                c.as_str_name()
                    .trim_start_matches("ALERT_CONDITION_")
                    .to_lowercase()
            })
            .unwrap_or_default()
    };
    serde_json::json!({
        "id": a.id,
        "symbol": a.symbol,
        "condition": name(a.condition),
        "threshold": decimal(a.threshold.as_ref()),
        "upper": decimal(a.upper.as_ref()),
        "mode": v1::AlertMode::try_from(a.mode)
            .map(|m| m.as_str_name().trim_start_matches("ALERT_MODE_").to_lowercase())
            .unwrap_or_default(),
        "hysteresis": decimal(a.hysteresis.as_ref()),
        "cooldown_ns": a.cooldown_ns,
        "window": if a.window.is_empty() { Value::Null } else { Value::from(a.window.clone()) },
        "created_ns": a.created_ns,
        "channels": a.channels,
        "state": v1::AlertState::try_from(a.state)
            .map(|s| s.as_str_name().trim_start_matches("ALERT_STATE_").to_lowercase())
            .unwrap_or_default(),
        "bar": if a.bar.is_empty() { Value::Null } else { Value::from(a.bar.clone()) },
        "storm": a.storm.as_ref().map_or_else(
            || Value::from("off"),
            |g| serde_json::json!({ "max_events": g.max_events, "within_ns": g.within_ns }),
        ),
        "paused_reason": if a.paused_reason.is_empty() { Value::Null } else { Value::from(a.paused_reason.clone()) },
    })
}

pub(super) fn event_json(e: &v1::AlertEvent) -> Value {
    serde_json::json!({
        "id": e.id,
        "alert_id": e.alert_id,
        "symbol": e.symbol,
        "time_ns": e.time_ns,
        "seq": e.seq,
        "price": decimal(e.price.as_ref()),
        "value": e.value,
        "kind": e.kind,
        "reason": if e.reason.is_empty() { Value::Null } else { Value::from(e.reason.clone()) },
    })
}

/// The body, at most [`MAX_BODY`] bytes whether its length is declared or it comes chunked.
pub(super) async fn body(req: &mut Req) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over {MAX_BODY} bytes"),
        )
    };
    if let Some(len) = req.headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| ApiError::bad_request("Content-Length: not a byte count"))?;
        if len > MAX_BODY as u64 {
            return Err(too_large());
        }
    }
    let mut out = Vec::new();
    while let Some(chunk) = req.body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body failed: {e}")))?;
        if out.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn create(alerts: &Alerts, mut req: Req) -> Result<warp::reply::Response, ApiError> {
    let body = body(&mut req).await?;
    // `channels` is the service's, not the rule's: taken out before the rule is read. The
    // other fields stay raw text, so decimals stay exact.
    let mut fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(&body).unwrap_or_default();
    let (body, channels) = match fields.remove("channels") {
        None => (body, Vec::new()),
        Some(raw) => {
            let ids: Option<Vec<String>> = serde_json::from_str(raw.get())
                .map_err(|_| bad("channels: a list of channel ids (strings)".into()))?;
            let ids = ids.unwrap_or_default();
            let max = crate::notify::MAX_CHANNELS_PER_ALERT;
            if ids.len() > max {
                return Err(bad(format!("channels: at most {max} per alert")));
            }
            (serde_json::to_vec(&fields).unwrap_or_default(), ids)
        }
    };
    create_spec(alerts, req, &body, channels).await
}

async fn create_spec(
    alerts: &Alerts,
    req: Req,
    body: &[u8],
    channels: Vec<String>,
) -> Result<warp::reply::Response, ApiError> {
    let spec: AlertSpec = serde_json::from_slice(body).map_err(|e| {
        let why = e.to_string();
        bad(format!(
            "the body must be a JSON object {{\"symbol\",\"condition\",\"threshold\"[,\"upper\",\"mode\",\"hysteresis\",\"cooldown\",\"window\",\"bar\",\"storm\",\"channels\"]}}: {}",
            excerpt(&why).trim_matches('`')
        ))
    })?;
    if spec.id.is_some() {
        return Err(bad("id: assigned by the service; leave it out".into()));
    }
    // Lengths and spelling first: nothing below echoes more than an excerpt of the input.
    gostocks_core::Symbol::new(&spec.symbol).map_err(|e| bad(format!("symbol: {e}")))?;
    let condition: Condition = spec.condition.parse().map_err(|e| bad(format!("{e}")))?;
    let cooldown_ns = match &spec.cooldown {
        Some(c) => {
            let ns = c
                .parse::<Span>()
                .map_err(|e| bad(format!("cooldown: {e}")))?
                .ns();
            i64::try_from(ns).map_err(|_| {
                bad(format!(
                    "cooldown: {} is longer than the longest cooldown, {MAX_COOLDOWN_NS} ns (about 106751d)",
                    excerpt(c)
                ))
            })?
        }
        None => 0,
    };
    let mode = match spec.mode.as_deref() {
        None => Mode::Once,
        Some(m) => m.parse::<Mode>().map_err(|e| bad(e.to_string()))?,
    };
    let mode =
        v1::AlertMode::from_str_name(&format!("ALERT_MODE_{}", mode.as_str().to_uppercase()))
            .unwrap_or(v1::AlertMode::Once);
    let (storm, storm_off) = match &spec.storm {
        None => (None, false),
        Some(StormSpec::Off) => (None, true),
        Some(StormSpec::Guard { max_events, within }) => {
            let within_ns =
                match within {
                    Some(w) => {
                        let ns = w
                            .parse::<Span>()
                            .map_err(|e| bad(format!("storm: within: {e}")))?
                            .ns();
                        Some(i64::try_from(ns).map_err(|_| {
                            bad(format!("storm: within: {} is too long", excerpt(w)))
                        })?)
                    }
                    None => None,
                };
            (
                Some(v1::StormGuard {
                    max_events: *max_events,
                    within_ns,
                }),
                false,
            )
        }
    };
    let condition = v1::AlertCondition::from_str_name(&format!(
        "ALERT_CONDITION_{}",
        condition.as_str().to_uppercase()
    ))
    .unwrap_or(v1::AlertCondition::Unspecified);
    let msg = v1::CreateAlertRequest {
        symbol: spec.symbol,
        condition: condition as i32,
        threshold: Some(spec.threshold.into()),
        mode: mode as i32,
        hysteresis: spec.hysteresis.map(Into::into),
        cooldown_ns,
        window: spec.window.unwrap_or_default(),
        channels,
        bar: spec.bar.unwrap_or_default(),
        storm,
        storm_off,
        upper: spec.upper.map(Into::into),
    };
    let call = request(msg, &req)?;
    drop(req);
    let alert = alerts
        .create_alert(call)
        .await
        .map_err(status)?
        .into_inner();
    let mut body = alert_json(&alert);
    body["warning"] = if alert.warning.is_empty() {
        Value::Null
    } else {
        Value::from(alert.warning)
    };
    Ok(warp::reply::with_status(json_body(body.to_string()), StatusCode::CREATED).into_response())
}

async fn list(alerts: &Alerts, req: Req) -> Result<warp::reply::Response, ApiError> {
    let msg = v1::GetAlertsRequest {
        page_size: req.query.int("page_size", 0..=MAX_PAGE)?.unwrap_or(0),
        page_token: req.query.get("page_token").unwrap_or_default().to_owned(),
    };
    let call = request(msg, &req)?;
    drop(req);
    let page = alerts.get_alerts(call).await.map_err(status)?.into_inner();
    let body = serde_json::json!({
        "alerts": page.alerts.iter().map(alert_json).collect::<Vec<_>>(),
        "next_page_token": if page.next_page_token.is_empty() { Value::Null } else { Value::from(page.next_page_token) },
    });
    Ok(json_body(body.to_string()))
}

async fn delete(
    alerts: &Alerts,
    call: tonic::Request<v1::DeleteAlertRequest>,
) -> Result<warp::reply::Response, ApiError> {
    let id = call.get_ref().id.clone();
    alerts.delete_alert(call).await.map_err(status)?;
    Ok(json_body(serde_json::json!({ "deleted": id }).to_string()))
}

async fn events(alerts: &Alerts, req: Req) -> Result<warp::reply::Response, ApiError> {
    let after = req.query.int("after", 0..=i64::MAX)?.unwrap_or(0);
    let wait_ms = req.query.int("wait_ms", 0..=u64::MAX)?.unwrap_or(200);
    // A deadline from the request's arrival, whatever comes meanwhile.
    let deadline = req.arrival + Duration::from_millis(wait_ms).min(MAX_WAIT);
    let call = request((), &req)?;
    drop(req);
    let found = alerts
        .poll_events(&call, after, deadline, MAX_EVENTS)
        .await
        .map_err(status)?;
    let out: Vec<Value> = found.iter().map(event_json).collect();
    Ok(json_body(serde_json::json!({ "events": out }).to_string()))
}
