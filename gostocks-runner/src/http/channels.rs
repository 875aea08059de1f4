//! `POST /channels`, `GET /channels`, `DELETE /channels/:id`: notification channels, through
//! the AlertService in process like the alert routes.

use gostocks_core::symbol::excerpt;
use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_server::AlertService;
use serde::Deserialize;
use serde_json::Value;
use warp::Reply;
use warp::http::{Method, StatusCode};

use super::alerts::{bad, body, request, status};
use super::{ApiError, Req, json_body};
use crate::alerts::service::Alerts;

/// The body of `POST /channels`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChannel {
    /// `webhook`, `slack`, `discord` or `teams`.
    kind: String,
    /// Where to POST.
    url: String,
    /// A webhook's signing secret; left out, one is made (and returned once).
    #[serde(default)]
    secret: Option<String>,
}

fn channel_json(c: &v1::Channel) -> Value {
    let mut v = serde_json::json!({
        "id": c.id,
        "kind": c.kind,
        "url": c.url,
        "secret_hint": if c.secret_hint.is_empty() { Value::Null } else { Value::from(c.secret_hint.clone()) },
        "created_ms": c.created_ms,
    });
    if !c.secret.is_empty() {
        v["secret"] = Value::from(c.secret.clone());
    }
    v
}

/// The channel routes under `/channels`: `rest` is the path after it.
pub(super) async fn route(
    alerts: &Alerts,
    rest: &[&str],
    mut req: Req,
) -> Result<warp::reply::Response, ApiError> {
    let m = req.method.clone();
    match rest {
        [] if m == Method::POST => {
            req.query.only(&[])?;
            let raw = body(&mut req).await?;
            let c: NewChannel = serde_json::from_slice(&raw).map_err(|e| {
                bad(format!(
                    "the body must be a JSON object {{\"kind\",\"url\"[,\"secret\"]}}: {}",
                    excerpt(&e.to_string()).trim_matches('`')
                ))
            })?;
            let call = request(
                v1::CreateChannelRequest {
                    kind: c.kind,
                    url: c.url,
                    secret: c.secret.unwrap_or_default(),
                },
                &req,
            )?;
            drop(req);
            let made = alerts
                .create_channel(call)
                .await
                .map_err(status)?
                .into_inner();
            Ok(warp::reply::with_status(
                json_body(channel_json(&made).to_string()),
                StatusCode::CREATED,
            )
            .into_response())
        }
        [] if m == Method::GET || m == Method::HEAD => {
            req.query.only(&[])?;
            let call = request(v1::ListChannelsRequest {}, &req)?;
            drop(req);
            let list = alerts
                .list_channels(call)
                .await
                .map_err(status)?
                .into_inner();
            let out: Vec<Value> = list.channels.iter().map(channel_json).collect();
            Ok(json_body(
                serde_json::json!({ "channels": out }).to_string(),
            ))
        }
        [] => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
        [id] if m == Method::DELETE => {
            req.query.only(&[])?;
            let call = request(
                v1::DeleteChannelRequest {
                    id: (*id).to_owned(),
                },
                &req,
            )?;
            drop(req);
            alerts.delete_channel(call).await.map_err(status)?;
            Ok(json_body(serde_json::json!({ "deleted": id }).to_string()))
        }
        [_] => Err(ApiError::method_not_allowed("DELETE")),
        _ => Err(super::no_route()),
    }
}
