//! A JSON-lines file of the outputs (`--outputs-jsonl PATH`): the smallest real [`Sink`], and
//! the example of adding one.
//!
//! Each line is one output with its kind first: `{"output":"stats",...}` continues with the
//! fields of the line `gostocks analyze --stats-out` writes for the row (likewise `bar`), then
//! `price` (`symbol`, `price`, `time_ns`, `seq`) and `event` (the alert event). A batch retried
//! after a failure may repeat lines: read the file as a changelog (the newest line per key and
//! time wins).

use std::path::Path;

use tokio::io::AsyncWriteExt;

use super::{Output, Sink, SinkError};

/// Appends outputs to a file.
pub struct JsonLines {
    file: tokio::io::BufWriter<tokio::fs::File>,
    windows: Vec<String>,
    bars: Vec<String>,
    line: String,
}

impl JsonLines {
    /// Creates (or truncates) `path`; `windows` and `bars` are the labels by index.
    pub async fn create(
        path: &Path,
        windows: Vec<String>,
        bars: Vec<String>,
    ) -> std::io::Result<JsonLines> {
        let file = tokio::fs::File::create(path).await?;
        Ok(JsonLines {
            file: tokio::io::BufWriter::new(file),
            windows,
            bars,
            line: String::new(),
        })
    }
}

/// `{"symbol":...}` becomes `{"output":"<kind>","symbol":...}`.
fn tagged(out: &mut String, kind: &str, json: &str) {
    out.push_str("{\"output\":\"");
    out.push_str(kind);
    out.push_str("\",");
    out.push_str(json.strip_prefix('{').unwrap_or(json));
    out.push('\n');
}

impl Sink for JsonLines {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn write(&mut self, batch: &[Output]) -> Result<(), SinkError> {
        let mut text = String::new();
        for o in batch {
            self.line.clear();
            match o {
                Output::Stats(row) => {
                    row.write_json(&mut self.line, &self.windows[row.window as usize]);
                    tagged(&mut text, "stats", &self.line);
                }
                Output::Bar(row) => {
                    row.write_json(&mut self.line, &self.bars[row.bar as usize]);
                    tagged(&mut text, "bar", &self.line);
                }
                Output::Price(symbol, p) => {
                    let json = serde_json::json!({
                        "symbol": symbol.as_str(),
                        "price": p.price.to_string(),
                        "time_ns": p.time_ns,
                        "seq": p.seq,
                    });
                    tagged(&mut text, "price", &json.to_string());
                }
                Output::Event(e) => tagged(&mut text, "event", &e.to_json()),
                Output::Mark(_) => {}
            }
        }
        // A full disk or a removed mount may come back: worth retrying.
        self.file.write_all(text.as_bytes()).await.map_err(|e| {
            SinkError::Transient(anyhow::Error::new(e).context("writing --outputs-jsonl"))
        })
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.file.flush().await.map_err(|e| {
            SinkError::Transient(anyhow::Error::new(e).context("flushing --outputs-jsonl"))
        })
    }
}
