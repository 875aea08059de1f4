//! Local WebSocket servers for the ingest tests: a listener on an ephemeral port whose
//! connections are handed, in order, to a test's handler (which plays Finnhub, Alpaca or Binance),
//! plus what clients sent. Nothing reaches the internet.
#![allow(dead_code)]

use std::future::Future;
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    /// Connections accepted (handshakes passed).
    pub connections: AtomicUsize,
    /// Handshakes refused by the check.
    pub refused: AtomicUsize,
    /// Text frames clients sent, with their connection index.
    pub received: Mutex<Vec<(usize, String)>>,
    /// Request paths (with query) of the handshakes.
    pub paths: Mutex<Vec<String>>,
}

impl Seen {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<(usize, String)> {
        self.received.lock().expect("lock").clone()
    }
}

/// A running server.
pub struct WsServer {
    /// `ws://127.0.0.1:port`.
    pub url: String,
    pub seen: Arc<Seen>,
}

/// One accepted connection.
pub struct Conn {
    /// 0 for the first connection, 1 after the first reconnect, ...
    pub index: usize,
    /// The handshake's path and query.
    pub path: String,
    pub ws: WebSocketStream<TcpStream>,
    pub seen: Arc<Seen>,
}

impl Conn {
    pub async fn send(&mut self, text: impl Into<String>) {
        let _ = self.ws.send(Message::text(text.into())).await;
    }

    /// Sends many frames quickly: queued, flushed every few hundred.
    pub async fn send_all<'a>(&mut self, frames: impl IntoIterator<Item = &'a String>) -> bool {
        for (i, frame) in frames.into_iter().enumerate() {
            if self.ws.feed(Message::text(frame.as_str())).await.is_err() {
                return false;
            }
            if i % 256 == 255 && self.ws.flush().await.is_err() {
                return false;
            }
        }
        self.ws.flush().await.is_ok()
    }

    /// The next text frame from the client (pings are answered meanwhile), or None when closed.
    pub async fn recv(&mut self) -> Option<String> {
        while let Some(Ok(m)) = self.ws.next().await {
            if let Message::Text(t) = m {
                let t = t.as_str().to_owned();
                self.seen
                    .received
                    .lock()
                    .expect("lock")
                    .push((self.index, t.clone()));
                return Some(t);
            }
        }
        None
    }

    /// Keeps the connection open, answering pings and recording frames, until the client leaves.
    pub async fn hold(mut self) {
        while self.recv().await.is_some() {}
    }

    /// Stops reading (so pings go unanswered) and stays silent, holding the socket open.
    pub async fn stall(self) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(self);
    }

    /// Ends the TCP connection without a WebSocket close handshake, as a network failure would.
    /// The frames already sent still arrive (FIN, not RST): what the client misses is decided by
    /// the test, not by the kernel's timing.
    pub async fn cut(mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = self.ws.flush().await;
        let tcp = self.ws.get_mut();
        let _ = tcp.shutdown().await;
        // Drain until the client leaves, so the socket never closes with unread bytes (an RST).
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
        }
    }
}

/// Starts a server. `check` sees each handshake's path and query and may refuse it with HTTP 401;
/// `handler` plays the protocol on each accepted connection.
// The handshake callback's signature, with its large error type, is tungstenite's.
#[allow(clippy::result_large_err)]
pub async fn spawn<H, F>(check: fn(&str) -> bool, handler: H) -> WsServer
where
    H: Fn(Conn) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Seen::default());
    let handler = Arc::new(handler);
    tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, handler) = (Arc::clone(&seen), Arc::clone(&handler));
                tokio::spawn(async move {
                    let path = Arc::new(Mutex::new(String::new()));
                    let callback = {
                        let path = Arc::clone(&path);
                        move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                            let p = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default();
                            *path.lock().expect("lock") = p.clone();
                            if check(&p) {
                                Ok(resp)
                            } else {
                                let mut refusal = ErrorResponse::new(Some("unauthorized".into()));
                                *refusal.status_mut() = StatusCode::UNAUTHORIZED;
                                Err(refusal)
                            }
                        }
                    };
                    match tokio_tungstenite::accept_hdr_async(stream, callback).await {
                        Ok(ws) => {
                            let index = seen.connections.fetch_add(1, Ordering::SeqCst);
                            let path = path.lock().expect("lock").clone();
                            seen.paths.lock().expect("lock").push(path.clone());
                            handler(Conn {
                                index,
                                path,
                                ws,
                                seen,
                            })
                            .await;
                        }
                        Err(_) => {
                            seen.refused.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        }
    });
    WsServer { url, seen }
}

/// The frames of a recorded session (`<local ts> <frame>` per line, gzip or plain), in order.
pub fn session_frames(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            file,
        )))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    reader
        .lines()
        .map(|l| l.expect("session line"))
        .filter_map(|l| l.split_once(' ').map(|(_, frame)| frame.to_owned()))
        .collect()
}
