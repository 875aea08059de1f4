//! `--record`: every frame with its local receive time, `<ns since the epoch> <frame>` per line,
//! the layout of the recorded Binance sessions, so `replay` and `analyze` read it back.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::Error;

/// A session recording being written.
#[derive(Debug)]
pub struct Recorder {
    out: BufWriter<File>,
    path: String,
}

impl Recorder {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Recorder, Error> {
        let shown = path.as_ref().display().to_string();
        let file = File::create(path.as_ref()).map_err(|source| Error::Io {
            path: shown.clone(),
            source,
        })?;
        Ok(Recorder {
            out: BufWriter::new(file),
            path: shown,
        })
    }

    /// Appends one frame. Line breaks inside it become spaces: outside strings they are JSON
    /// whitespace, and inside strings JSON does not allow them raw, so the frame means the same.
    /// Each line is flushed, so a recording stopped by a crash still ends on a whole frame.
    pub fn write(&mut self, recv_ns: i64, frame: &str) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        write!(self.out, "{recv_ns} ").map_err(io)?;
        if frame.contains(['\n', '\r']) {
            self.out
                .write_all(frame.replace(['\n', '\r'], " ").as_bytes())
                .map_err(io)?;
        } else {
            self.out.write_all(frame.as_bytes()).map_err(io)?;
        }
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}
