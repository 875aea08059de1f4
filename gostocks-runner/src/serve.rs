//! Accepting the REST and gRPC servers' connections, bounded: at most `max_connections` open at
//! once (further connections wait to be accepted), a REST client must send a request's headers
//! within `header_read_timeout`, and a connection on which no byte moves either way for
//! `idle_timeout` is closed (gRPC clients answer the server's HTTP/2 pings, sent at a third of
//! it, and event streams send heartbeats, so a live connection is never idle). On shutdown, open connections get `drain` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower_service::Service;

/// The most characters of a request's path the access log shows.
const MAX_LOGGED_PATH: usize = 200;

/// The bounds of one server's connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to send a request's headers (HTTP/1).
    pub header_read_timeout: Duration,
    /// Time a connection may send nothing.
    pub idle_timeout: Duration,
    /// How long open connections get to finish on shutdown.
    pub drain: Duration,
}

/// Which protocol a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 and HTTP/2 (the REST gateway).
    Http,
    /// HTTP/2 only (gRPC).
    Grpc,
}

/// Serves `service` on `listener` within `limits` until `shutdown` resolves, then lets open
/// connections finish for at most `limits.drain`.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    protocol: Protocol,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle_timeout / 3))
        .keep_alive_timeout(limits.idle_timeout / 3);
    if protocol == Protocol::Grpc {
        builder = builder.http2_only();
    }
    let builder = Arc::new(builder);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned = false;
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !warned {
                    tracing::warn!(
                        limit = limits.max_connections,
                        "connection limit reached; new connections wait (raise --max-connections)"
                    );
                    warned = true;
                }
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(Idle::new(tcp, limits.idle_timeout));
        let svc = service.clone();
        // Every access-log line of the connection carries its peer and protocol. HTTP/2 runs
        // each request on a task of its own, so the request's future is instrumented too.
        let span = tracing::debug_span!("connection", %peer, protocol = ?protocol);
        let request_span = span.clone();
        let hyper_svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut svc = svc.clone();
            let fut = async move {
                // The access log, at debug: the path without its query (which may hold keys),
                // cut to a bounded excerpt.
                let started = std::time::Instant::now();
                let method = req.method().clone();
                let path: String = req.uri().path().chars().take(MAX_LOGGED_PATH).collect();
                let res = svc.call(req).await;
                if let Ok(r) = &res {
                    tracing::debug!(
                        %method,
                        path,
                        status = r.status().as_u16(),
                        grpc_status = r.headers().get("grpc-status").and_then(|v| v.to_str().ok()),
                        micros = started.elapsed().as_micros() as u64,
                        "request"
                    );
                }
                res
            };
            tracing::Instrument::instrument(fut, request_span.clone())
        });
        let builder = Arc::clone(&builder);
        let conn = builder
            .serve_connection_with_upgrades(io, hyper_svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                if let Err(error) = conn.await {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                drop(permit);
            },
            span,
        ));
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(drain = ?limits.drain, "connections still open after the drain time; closing them");
    }
}

/// A connection that fails with `TimedOut` once no byte has moved either way for `idle`: a
/// client that sends nothing while it receives (a server-sent event stream, which hyper reads
/// from to notice a close) is not idle, while one that stalls both ways is closed.
struct Idle<T> {
    io: T,
    idle: Duration,
    last: tokio::time::Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<T> Idle<T> {
    fn new(io: T, idle: Duration) -> Idle<T> {
        let last = tokio::time::Instant::now();
        Idle {
            io,
            idle,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + idle)),
        }
    }

    /// With the io pending: `TimedOut` if idle too long, else a wake-up at the deadline.
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        loop {
            let deadline = self.last + self.idle;
            if tokio::time::Instant::now() >= deadline {
                return true;
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Idle<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.io).poll_read(cx, buf) {
            std::task::Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last = tokio::time::Instant::now();
                }
                std::task::Poll::Ready(r)
            }
            std::task::Poll::Pending if this.expired(cx) => std::task::Poll::Ready(Err(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection"),
            )),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = std::pin::Pin::new(&mut this.io).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.last = tokio::time::Instant::now();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// gRPC answers with the codes the gRPC spec gives: a request that is not a valid protobuf
/// message of its method is INVALID_ARGUMENT (tonic says INTERNAL), one over the size limit is
/// RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE). The status is in the headers of a
/// trailers-only response, or in the trailers: both are mended.
pub fn grpc_codes(res: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let (mut parts, body) = res.into_parts();
    mend_status(&mut parts.headers);
    let body = http_body_util::BodyExt::map_frame(body, |frame| match frame.into_trailers() {
        Ok(mut trailers) => {
            mend_status(&mut trailers);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    });
    http::Response::from_parts(parts, tonic::body::Body::new(body))
}

fn mend_status(headers: &mut http::HeaderMap) {
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let message = percent_encoding::percent_decode_str(message).decode_utf8_lossy();
    let mended = match code {
        Some("13") if message.starts_with("failed to decode Protobuf message") => Some((
            "3",
            "the request is not a valid protobuf message of this method",
        )),
        Some("11") if message.starts_with("Error, decoded message length too large") => {
            Some(("8", "the request is over the 4 MiB message limit"))
        }
        _ => None,
    };
    if let Some((code, message)) = mended {
        headers.insert("grpc-status", http::HeaderValue::from_static(code));
        headers.insert("grpc-message", http::HeaderValue::from_static(message));
    }
}
