//! `POST /alerts`, `GET /alerts`, `DELETE /alerts/:id`, `GET /alerts/events?after=`: each
//! handler calls the AlertService through a tonic client, as a gateway in its own process
//! would, and maps gRPC codes to HTTP statuses.

use std::time::Duration;

use gostocks_core::alerts::{AlertSpec, Condition};
use gostocks_core::{Fixed, Span};
use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_client::AlertServiceClient;
use serde_json::Value;
use serde_json::value::RawValue;
use tonic::transport::Channel;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{json_body, problem};

/// Request bodies above this are refused with 413.
pub const MAX_BODY: u64 = 16 * 1024;
/// The most events one `GET /alerts/events` answers with.
const MAX_EVENTS: usize = 1_000;

type Client = AlertServiceClient<Channel>;

/// The alert routes over a client of the AlertService.
pub fn routes(client: Client) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let with_client = warp::any().map(move || client.clone());
    let auth = warp::header::optional::<String>("authorization");
    let create = warp::path!("alerts")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(auth)
        .and(with_client.clone())
        .and_then(create);
    let list = warp::path!("alerts")
        .and(warp::get())
        .and(warp::query::<ListQuery>())
        .and(auth)
        .and(with_client.clone())
        .and_then(list);
    let events = warp::path!("alerts" / "events")
        .and(warp::get())
        .and(warp::query::<EventsQuery>())
        .and(auth)
        .and(with_client.clone())
        .and_then(events);
    let delete = warp::path!("alerts" / String)
        .and(warp::delete())
        .and(auth)
        .and(with_client)
        .and_then(delete);
    create.or(list).or(events).or(delete)
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    page_size: Option<u32>,
    page_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct EventsQuery {
    /// Events with ids above this (default 0: all of the caller's events).
    after: Option<i64>,
    /// How long to wait for more events once none are pending, in ms (default 200, max 30000).
    wait_ms: Option<u64>,
}

/// A tonic request carrying the caller's bearer key.
fn request<T>(msg: T, auth: Option<String>) -> Result<tonic::Request<T>, Rejection> {
    let mut req = tonic::Request::new(msg);
    if let Some(a) = auth {
        let value = a.parse().map_err(|_| {
            problem(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the Authorization header is not valid text; send `Authorization: Bearer <key>`"
                    .into(),
            )
        })?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(req)
}

/// A gRPC status as an HTTP problem.
fn status(s: tonic::Status) -> Rejection {
    use tonic::Code;
    let (http, code) = match s.code() {
        Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    problem(http, code, s.message().to_owned())
}

fn bad(message: String) -> Rejection {
    problem(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

fn number(d: Option<&v1::Decimal>) -> Value {
    d.and_then(|d| Fixed::try_from(d).ok())
        .and_then(|f| RawValue::from_string(f.to_string()).ok())
        .and_then(|raw| serde_json::to_value(raw).ok())
        .unwrap_or(Value::Null)
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
        "threshold": number(a.threshold.as_ref()),
        "mode": if a.mode == v1::AlertMode::Rearm as i32 { "rearm" } else { "once" },
        "hysteresis": number(a.hysteresis.as_ref()),
        "cooldown_ns": a.cooldown_ns,
        "window": if a.window.is_empty() { Value::Null } else { Value::from(a.window.clone()) },
        "created_ns": a.created_ns,
        "state": v1::AlertState::try_from(a.state)
            .map(|s| s.as_str_name().trim_start_matches("ALERT_STATE_").to_lowercase())
            .unwrap_or_default(),
    })
}

fn event_json(e: &v1::AlertEvent) -> Value {
    serde_json::json!({
        "id": e.id,
        "alert_id": e.alert_id,
        "symbol": e.symbol,
        "time_ns": e.time_ns,
        "seq": e.seq,
        "price": number(e.price.as_ref()),
        "value": e.value,
    })
}

async fn create(
    body: bytes::Bytes,
    auth: Option<String>,
    mut client: Client,
) -> Result<warp::reply::Response, Rejection> {
    let spec: AlertSpec = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body must be a JSON object {{\"symbol\",\"condition\",\"threshold\"[,\"mode\",\"hysteresis\",\"cooldown\",\"window\"]}}: {e}"
        ))
    })?;
    if spec.id.is_some() {
        return Err(bad("id: assigned by the service; leave it out".into()));
    }
    let condition: Condition = spec.condition.parse().map_err(|e| bad(format!("{e}")))?;
    let cooldown_ns = match &spec.cooldown {
        Some(c) => c
            .parse::<Span>()
            .map_err(|e| bad(format!("cooldown: {e}")))?
            .ns() as i64,
        None => 0,
    };
    let mode = match spec.mode.as_deref() {
        None | Some("once") => v1::AlertMode::Once,
        Some("rearm") => v1::AlertMode::Rearm,
        Some(other) => {
            return Err(bad(format!(
                "mode: `{other}` is not a mode; use once or rearm"
            )));
        }
    };
    let condition = v1::AlertCondition::from_str_name(&format!(
        "ALERT_CONDITION_{}",
        condition.as_str().to_uppercase()
    ))
    .unwrap_or(v1::AlertCondition::Unspecified);
    let req = v1::CreateAlertRequest {
        symbol: spec.symbol,
        condition: condition as i32,
        threshold: Some(spec.threshold.into()),
        mode: mode as i32,
        hysteresis: spec.hysteresis.map(Into::into),
        cooldown_ns,
        window: spec.window.unwrap_or_default(),
    };
    let alert = client
        .create_alert(request(req, auth)?)
        .await
        .map_err(status)?
        .into_inner();
    Ok(warp::reply::with_status(
        json_body(alert_json(&alert).to_string()),
        StatusCode::CREATED,
    )
    .into_response())
}

async fn list(
    q: ListQuery,
    auth: Option<String>,
    mut client: Client,
) -> Result<warp::reply::Response, Rejection> {
    let req = v1::GetAlertsRequest {
        page_size: q.page_size.unwrap_or(0),
        page_token: q.page_token.unwrap_or_default(),
    };
    let page = client
        .get_alerts(request(req, auth)?)
        .await
        .map_err(status)?
        .into_inner();
    let body = serde_json::json!({
        "alerts": page.alerts.iter().map(alert_json).collect::<Vec<_>>(),
        "next_page_token": if page.next_page_token.is_empty() { Value::Null } else { Value::from(page.next_page_token) },
    });
    Ok(json_body(body.to_string()))
}

async fn delete(
    id: String,
    auth: Option<String>,
    mut client: Client,
) -> Result<warp::reply::Response, Rejection> {
    client
        .delete_alert(request(v1::DeleteAlertRequest { id: id.clone() }, auth)?)
        .await
        .map_err(status)?;
    Ok(json_body(serde_json::json!({ "deleted": id }).to_string()))
}

async fn events(
    q: EventsQuery,
    auth: Option<String>,
    mut client: Client,
) -> Result<warp::reply::Response, Rejection> {
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(bad("after: an event id, 0 or more".into()));
    }
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(200).min(30_000));
    let req = v1::WatchAlertEventsRequest {
        after_event_id: after,
        from_start: after == 0,
    };
    let mut stream = client
        .watch_alert_events(request(req, auth)?)
        .await
        .map_err(status)?
        .into_inner();
    let mut out = Vec::new();
    while out.len() < MAX_EVENTS {
        match tokio::time::timeout(wait, stream.message()).await {
            Ok(Ok(Some(e))) => out.push(event_json(&e)),
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(s)) => return Err(status(s)),
        }
    }
    Ok(json_body(serde_json::json!({ "events": out }).to_string()))
}
