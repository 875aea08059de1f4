//! The dashboard at `/` and the API page at `/docs`: static files embedded in the binary, so
//! `gostocks run` is the whole set-up (no Node.js, no network). The page reads the REST API and
//! the server-sent event streams like any other client; see `dashboard/app.js`.

use warp::Reply;
use warp::http::{HeaderValue, header};

/// The page's content security policy: everything from this origin only.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// A page or asset by its path, with its media type.
fn file(path: &[&str]) -> Option<(&'static [u8], &'static str)> {
    Some(match path {
        [""] => (
            include_bytes!("dashboard/index.html"),
            "text/html; charset=utf-8",
        ),
        ["docs"] => (
            include_bytes!("dashboard/docs.html"),
            "text/html; charset=utf-8",
        ),
        ["assets", "app.js"] => (
            include_bytes!("dashboard/app.js"),
            "text/javascript; charset=utf-8",
        ),
        ["assets", "docs.js"] => (
            include_bytes!("dashboard/docs.js"),
            "text/javascript; charset=utf-8",
        ),
        ["assets", "app.css"] => (
            include_bytes!("dashboard/app.css"),
            "text/css; charset=utf-8",
        ),
        ["assets", "lightweight-charts.js"] => (
            include_bytes!("dashboard/vendor/lightweight-charts.standalone.production.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return None,
    })
}

/// The response for a dashboard path, if it is one.
pub(super) fn serve(path: &[&str]) -> Option<warp::reply::Response> {
    let (body, media) = file(path)?;
    let mut res = warp::reply::Response::new(body.into());
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(res.into_response())
}
