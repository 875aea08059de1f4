//! Cutting a plain tick file into parts at line starts, so that several threads (or the
//! processes of a cluster) can each parse some of it while line numbers, and LOBSTER's row
//! numbers, stay those of the whole file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::Error;

/// A part of a file: the lines that start in `start..end`, with the number of the first one.
/// Read it with [`Opener::open_part`](super::Opener::open_part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Part {
    /// The byte offset of its first line (0 for the first part).
    pub start: u64,
    /// The byte offset just past its last line.
    pub end: u64,
    /// The 1-based number of its first line in the file.
    pub first_line: u64,
    /// Records a LOBSTER decoder has numbered before it: lines before `start` that are neither
    /// blank nor over-long (a LOBSTER trade's `seq` is its row).
    pub first_row: u64,
}

impl Part {
    /// The whole of a file of `len` bytes, as one part.
    pub fn whole(len: u64) -> Part {
        Part {
            start: 0,
            end: len,
            first_line: 1,
            first_row: 0,
        }
    }
}

/// Cuts `path` into parts of about `part_bytes` each, at line starts, in one pass over its
/// bytes. A gzip file cannot be cut (its bytes are not lines): it is one part. Lines longer
/// than `max_record_bytes` are counted as a [`TickFile`](super::TickFile) counts them.
///
/// ```
/// use gostocks_connectors::file::split;
/// let path = std::env::temp_dir().join(format!("gostocks-split-{}.csv", std::process::id()));
/// std::fs::write(&path, "symbol,time_ns,seq,price,size\nA,1,0,1,1\nA,2,1,1,1\nA,3,2,1,1\n").unwrap();
/// let parts = split(&path, 1 << 20, 40).unwrap();
/// assert_eq!(parts.len(), 2);
/// assert_eq!((parts[1].start, parts[1].first_line), (40, 3));
/// assert_eq!(parts.last().unwrap().end, std::fs::metadata(&path).unwrap().len());
/// ```
pub fn split(path: &Path, max_record_bytes: usize, part_bytes: u64) -> Result<Vec<Part>, Error> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let part_bytes = part_bytes.max(1);
    let mut block = vec![0u8; 8 << 20];
    let mut parts = Vec::new();
    let mut part = Part::whole(len);
    // The scan: the offset of the block, where the current line started, and whether it is
    // (so far) all whitespace.
    let (mut offset, mut line_start, mut blank) = (0u64, 0u64, true);
    let (mut lines, mut rows) = (0u64, 0u64);
    // The byte before the block (a `\r` may end one block and its `\n` start the next), and
    // the length of a byte order mark at the start of the file (a `TickFile` consumes it).
    let (mut before, mut bom) = (0u8, 0u64);
    loop {
        let n = read_full(&mut file, &mut block).map_err(io)?;
        let bytes = &block[..n];
        let mut from = 0usize;
        if offset == 0 {
            if bytes.starts_with(&[0x1f, 0x8b]) {
                return Ok(vec![part]);
            }
            if bytes.starts_with(b"\xEF\xBB\xBF") {
                (bom, from) = (3, 3);
            }
        }
        if n == 0 {
            break;
        }
        for nl in memchr::memchr_iter(b'\n', bytes) {
            blank &= bytes[from..nl].iter().all(u8::is_ascii_whitespace);
            let cr = if nl > 0 { bytes[nl - 1] } else { before } == b'\r';
            let skipped = if line_start == 0 { bom } else { 0 };
            let length = offset + nl as u64 - line_start - u64::from(cr) - skipped;
            lines += 1;
            if !blank && length <= max_record_bytes as u64 {
                rows += 1;
            }
            line_start = offset + nl as u64 + 1;
            blank = true;
            from = nl + 1;
            if line_start - part.start >= part_bytes && line_start < len {
                part.end = line_start;
                parts.push(part);
                part = Part {
                    start: line_start,
                    end: len,
                    first_line: lines + 1,
                    first_row: rows,
                };
            }
        }
        blank &= bytes[from..].iter().all(u8::is_ascii_whitespace);
        before = bytes[n - 1];
        offset += n as u64;
    }
    parts.push(part);
    Ok(parts)
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
