//! Cross-origin requests (`--cors-origin`): which browser origins may call the API and open its
//! streams. Off by default: the dashboard is served from the same origin and needs none.

use warp::Reply;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};

/// The longest `--cors-origin` list, in bytes.
pub const MAX_LIST: usize = 4096;

/// The origins allowed, or any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// `*`: every origin (no credentials are involved: the API takes keys in a header).
    Any,
    /// These origins exactly (`scheme://host[:port]`).
    Origins(Vec<String>),
}

impl std::str::FromStr for Cors {
    type Err = String;

    /// `*`, or a comma-separated list of origins such as `https://app.example.com`.
    fn from_str(list: &str) -> Result<Cors, String> {
        if list.len() > MAX_LIST {
            return Err(format!("at most {MAX_LIST} bytes"));
        }
        if list.trim() == "*" {
            return Ok(Cors::Any);
        }
        let mut origins = Vec::new();
        for o in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            match rest {
                Some(host)
                    if !host.is_empty()
                        && !host.contains(['/', '?', '#', ' '])
                        && HeaderValue::from_str(o).is_ok() =>
                {
                    origins.push(o.to_owned())
                }
                _ => {
                    return Err(format!(
                        "{} is not an origin: give scheme://host[:port] without a path, e.g. https://app.example.com, or *",
                        gostocks_core::symbol::excerpt(o)
                    ));
                }
            }
        }
        if origins.is_empty() {
            return Err("name at least one origin, or *".into());
        }
        Ok(Cors::Origins(origins))
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request from `headers`, if it may.
    fn allow(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        match self {
            Cors::Any => Some(HeaderValue::from_static("*")),
            Cors::Origins(list) => list
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
                .then(|| origin.clone()),
        }
    }

    /// Whether this is a preflight (`OPTIONS` with `Access-Control-Request-Method`); if so, the
    /// answer: 204 with the methods and headers the API takes, for an allowed origin.
    pub fn preflight(
        &self,
        method: &warp::http::Method,
        headers: &HeaderMap,
    ) -> Option<warp::reply::Response> {
        if method != warp::http::Method::OPTIONS
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let mut res =
            warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
        let h = res.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(allow) = self.allow(headers) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, POST, DELETE"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, last-event-id"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        Some(res)
    }

    /// Adds `Access-Control-Allow-Origin` to a response for a request from an allowed origin.
    pub fn decorate(&self, request: &HeaderMap, res: &mut warp::reply::Response) {
        if let Some(allow) = self.allow(request) {
            let h = res.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_matched_exactly() {
        assert_eq!("*".parse::<Cors>(), Ok(Cors::Any));
        let c: Cors = "https://a.example, http://127.0.0.1:3000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:3000"),
        );
        assert_eq!(c.allow(&h).unwrap(), "http://127.0.0.1:3000");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(c.allow(&h).is_none());
        for bad in ["", "a.example", "https://a.example/path", "ftp://a"] {
            assert!(bad.parse::<Cors>().is_err(), "{bad}");
        }
    }
}
