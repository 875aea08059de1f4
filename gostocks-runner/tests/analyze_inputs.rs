//! `gostocks analyze` on awkward inputs: what it says about the records it refuses, how much one
//! over-long record may cost, and files that lack a header or start with a byte order mark.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gostocks-analyze-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Runs analyze on `input` with `extra` flags; returns its closing summary and errors file.
fn analyze(input: &Path, extra: &[&str]) -> (String, String) {
    let stats = input.with_extension("stats.jsonl");
    let errors = input.with_extension("errors.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "analyze", "--input"])
        .arg(input)
        .args(extra)
        .arg("--stats-out")
        .arg(&stats)
        .arg("--errors-out")
        .arg(&errors)
        .output()
        .expect("gostocks runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "analyze {input:?} failed: {stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("analyzed "))
        .unwrap_or_else(|| panic!("no summary in {stderr}"))
        .to_owned();
    (
        summary,
        std::fs::read_to_string(&errors).expect("errors written"),
    )
}

#[test]
fn rejected_records_name_their_source_line_and_text() {
    let input = tmp("refused.csv");
    std::fs::write(
        &input,
        "symbol,time_ns,seq,price,size\n\
         AAPL,1,0,585.33,100\n\
         AAPL,2,1,-5,100\n\
         AAPL,x,2,585,100\n\
         ,3,3,585,100\n",
    )
    .expect("input written");
    let (summary, errors) = analyze(&input, &[]);
    assert!(
        summary.starts_with("analyzed 1 ticks (3 rejected"),
        "{summary}"
    );
    let errors: Vec<serde_json::Value> = errors
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let got: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["raw"].as_str().unwrap()))
        .collect();
    // Invalid ticks (line 3, 5) used to come out as line 0 with the tick serialized again.
    assert_eq!(
        got,
        [
            (3, "AAPL,2,1,-5,100"),
            (4, "AAPL,x,2,585,100"),
            (5, ",3,3,585,100")
        ]
    );
    assert_eq!(errors[0]["reason"], "price must be > 0, got -5");
}

#[test]
fn a_gzip_of_64_mib_of_nul_bytes_is_one_short_rejection() {
    // 1 GiB of these took 11.6 GB of memory and wrote a 6.4 GB errors file.
    let input = tmp("nul.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(std::fs::File::create(&input).expect("input")),
        flate2::Compression::fast(),
    );
    let zeros = vec![0u8; 1 << 16];
    for _ in 0..(64 << 20) / zeros.len() {
        gz.write_all(&zeros).expect("written");
    }
    gz.finish().expect("gzip").flush().expect("flushed");
    let (summary, errors) = analyze(&input, &["--format", "jsonl"]);
    assert!(
        summary.starts_with("analyzed 0 ticks (1 rejected"),
        "{summary}"
    );
    assert_eq!(errors.lines().count(), 1);
    assert!(
        errors.len() < 32 << 10,
        "errors file of {} bytes",
        errors.len()
    );
    let e: serde_json::Value = serde_json::from_str(errors.trim_end()).expect("JSON");
    assert_eq!(
        (e["line"].as_u64(), e["bytes"].as_u64()),
        (Some(1), Some(64 << 20))
    );
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains("exceeds the limit of 1048576 bytes"),
        "{reason}"
    );
    // The limit is a flag.
    let (summary, errors) = analyze(&input, &["--format", "jsonl", "--max-record-bytes", "100"]);
    assert!(
        summary.starts_with("analyzed 0 ticks (1 rejected"),
        "{summary}"
    );
    assert!(
        errors.contains("exceeds the limit of 100 bytes"),
        "{errors}"
    );
}

/// The first 1,000 trades of a recorded Binance trade file, without its header (or made-up
/// ones when the shared data is not here).
fn headerless_trades() -> String {
    let dir = std::env::var("GOSTOCKS_DATA_DIR").unwrap_or_else(|_| "../shared/data".into());
    let path = Path::new(&dir).join("crypto/trades/binance_spot_btcusdt_20240808.trades.csv");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .skip(1)
            .take(1000)
            .map(|l| format!("{l}\n"))
            .collect(),
        Err(e) => {
            eprintln!("note: {} ({e}): using made-up trades", path.display());
            (0..1000)
                .map(|i| {
                    format!(
                        "1,1,{},BTCUSDT,{i},61837.63,0.02,true\n",
                        1_723_161_255_342u64 + i
                    )
                })
                .collect()
        }
    }
}

#[test]
fn a_headerless_binance_trade_file_of_1000_lines_gives_1000_ticks() {
    let input = tmp("headerless.trades.csv");
    std::fs::write(&input, headerless_trades()).expect("input written");
    // It used to drop the first line, unseen and uncounted: 999 ticks.
    let (summary, errors) = analyze(&input, &["--format", "binance-trades"]);
    assert!(
        summary.starts_with("analyzed 1000 ticks (0 rejected"),
        "{summary}"
    );
    assert_eq!(errors, "");
}

#[test]
fn a_byte_order_mark_does_not_hide_the_header_or_the_first_record() {
    let csv = tmp("bom.csv");
    std::fs::write(
        &csv,
        "\u{feff}symbol,time_ns,seq,price,size\nAAPL,1,0,585.33,100\n",
    )
    .expect("input written");
    let (summary, _) = analyze(&csv, &[]);
    assert!(
        summary.starts_with("analyzed 1 ticks (0 rejected"),
        "{summary}"
    );
    let jsonl = tmp("bom.jsonl");
    std::fs::write(
        &jsonl,
        "\u{feff}{\"symbol\":\"AAPL\",\"price\":\"1\",\"size\":\"1\",\"time_ns\":1,\"seq\":0}\n",
    )
    .expect("input written");
    let (summary, _) = analyze(&jsonl, &[]);
    assert!(
        summary.starts_with("analyzed 1 ticks (0 rejected"),
        "{summary}"
    );
}
