//! `gostocks analyze` as a timely cluster and on several workers: every output byte for byte
//! the same as one process with one worker, on the real tapes, with inputs read in parts (late
//! and rejected records across the parts' boundaries included).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gostocks-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// The output files of one run.
const OUTPUTS: [&str; 5] = ["stats", "bars", "late", "errors", "events"];

/// The flags of every run: the inputs, a lateness, the alerts, and every output in `out`.
fn flags(inputs: &[PathBuf], alerts: &Path, out: &Path) -> Vec<String> {
    let mut flags = vec![
        "--log".into(),
        "warn".into(),
        "analyze".into(),
        "--input".into(),
    ];
    flags.extend(inputs.iter().map(|p| p.display().to_string()));
    flags.extend(["--lateness".into(), "2s".into(), "--alerts".into()]);
    flags.push(alerts.display().to_string());
    for name in OUTPUTS {
        flags.push(format!("--{name}-out"));
        flags.push(out.join(format!("{name}.jsonl")).display().to_string());
    }
    flags
}

fn checked(output: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{what} failed: {stderr}");
    stderr
}

/// Runs `processes` processes of `workers` workers each, on free ports of 127.0.0.1; returns
/// process 0's summary line.
fn run(inputs: &[PathBuf], alerts: &Path, name: &str, processes: usize, workers: usize) -> String {
    let out = tmp(name);
    std::fs::create_dir_all(&out).expect("output dir");
    let mut base = flags(inputs, alerts, &out);
    base.extend(["--workers".into(), workers.to_string()]);
    if processes == 1 {
        let stderr = checked(
            Command::new(env!("CARGO_BIN_EXE_gostocks"))
                .args(&base)
                .output()
                .expect("gostocks runs"),
            name,
        );
        return summary(&stderr);
    }
    let hostfile = tmp(&format!("{name}.hosts"));
    common::hostfile(&hostfile, processes);
    let children: Vec<_> = (0..processes)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_gostocks"))
                .args(&base)
                .args([
                    "--processes",
                    &processes.to_string(),
                    "--process",
                    &i.to_string(),
                ])
                .arg("--hostfile")
                .arg(&hostfile)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("gostocks starts")
        })
        .collect();
    let mut stderrs: Vec<String> = children
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            checked(
                c.wait_with_output().expect("waits"),
                &format!("{name} process {i}"),
            )
        })
        .collect();
    assert!(
        stderrs[1].contains("process 1 of 2: done"),
        "process 1 says it is done: {}",
        stderrs[1]
    );
    summary(&stderrs.swap_remove(0))
}

fn summary(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("analyzed "))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    // The totals, without the time it took.
    let (counts, _) = line.split_once(" in ").expect("a summary");
    let (_, rows) = line.split_once("; wrote ").expect("a summary");
    format!("{counts}; {rows}")
}

/// A real Binance tape, disordered (every 7th trade swapped with one up to 40 later, so some
/// are late by more than the lateness) and with a malformed line every 997: late and rejected
/// records throughout, across the boundaries of the parts.
fn disordered(tape: &Path) -> PathBuf {
    let text = std::fs::read_to_string(tape).expect("the tape");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = lines.remove(0);
    let mut state = 7u64;
    for i in (0..lines.len().saturating_sub(50)).step_by(7) {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let j = i + (state >> 33) as usize % 41;
        lines.swap(i, j);
    }
    for k in (0..lines.len()).step_by(997) {
        lines.insert(k, format!("garbage,line,{k}"));
    }
    let path = tmp("disordered.trades.csv");
    std::fs::write(&path, format!("{header}\n{}\n", lines.join("\n"))).expect("written");
    path
}

/// Alerts on every symbol of the inputs, some re-arming, so that events come from every worker.
fn alerts() -> PathBuf {
    let path = tmp("alerts.json");
    let rules = serde_json::json!([
        {"id": "aapl-up", "symbol": "AAPL", "condition": "price_above", "threshold": "585", "mode": "rearm", "hysteresis": "0.5"},
        {"id": "aapl-down", "symbol": "AAPL", "condition": "price_below", "threshold": "578", "mode": "rearm", "hysteresis": "0.5"},
        {"id": "goog-up", "symbol": "GOOG", "condition": "price_above", "threshold": "580"},
        {"id": "btc-up", "symbol": "BTCUSDT", "condition": "price_above", "threshold": "61800", "mode": "rearm", "hysteresis": "2"},
    ]);
    std::fs::write(&path, rules.to_string()).expect("alerts written");
    path
}

#[test]
fn a_two_process_cluster_and_two_workers_write_what_one_worker_writes() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let inputs = vec![
        dir.join("lobster/AAPL_2012-06-21_34200000_57600000_message_1.csv"),
        dir.join("lobster/GOOG_2012-06-21_34200000_57600000_message_10.csv"),
        disordered(&dir.join("crypto/trades/binance_usdm_btcusdt_20240808.trades.csv")),
        dir.join("crypto/raw_hftbacktest/spot_btcusdt_20230405.dat.gz"),
    ];
    for input in &inputs {
        assert!(input.exists(), "{} is there", input.display());
    }
    let alerts = alerts();
    let one = run(&inputs, &alerts, "one", 1, 1);
    let read = |name: &str, file: &str| {
        std::fs::read(tmp(name).join(format!("{file}.jsonl"))).expect("an output")
    };
    for name in OUTPUTS {
        assert!(
            !read("one", name).is_empty(),
            "the reference run wrote {name}"
        );
    }
    assert!(
        one.contains(" late") && !one.contains("(0 rejected"),
        "{one}"
    );
    for (name, processes, workers) in [
        ("two-workers", 1, 2),
        ("cluster", 2, 1),
        ("cluster-2x2", 2, 2),
    ] {
        let theirs = run(&inputs, &alerts, name, processes, workers);
        assert_eq!(theirs, one, "{name}: the summary");
        for file in OUTPUTS {
            assert!(
                read(name, file) == read("one", file),
                "{name}: {file}.jsonl differs from one process with one worker"
            );
        }
    }
}

#[test]
fn a_cluster_process_that_is_misconfigured_says_what_to_fix() {
    let input = tmp("tiny.csv");
    std::fs::write(
        &input,
        "symbol,time_ns,seq,price,size\nAAPL,1,0,585.33,100\n",
    )
    .expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["analyze", "--processes", "2", "--process", "2", "--input"])
        .arg(&input)
        .arg("--stats-out")
        .arg(tmp("tiny.stats"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--process 2 is not below --processes 2"),
        "{stderr}"
    );
}

/// A synthetic tape long enough to be killed in the middle of: 600,000 trades of 50 symbols, a
/// millisecond apart.
fn long_tape() -> PathBuf {
    let path = tmp("long.csv");
    let mut text = String::from("symbol,time_ns,seq,price,size\n");
    for i in 0..600_000u64 {
        let t = 1_700_000_000_000_000_000 + i * 1_000_000;
        let price = 100 + (i * 7919 % 1000);
        text.push_str(&format!("S{},{t},{i},{price}.25,{}\n", i % 50, 1 + i % 9));
    }
    std::fs::write(&path, text).expect("written");
    path
}

#[test]
fn a_process_killed_takes_the_cluster_down_with_an_error_and_a_restart_completes() {
    let input = long_tape();
    let hostfile = tmp("kill.hosts");
    common::hostfile(&hostfile, 2);
    let out = tmp("kill");
    std::fs::create_dir_all(&out).expect("dir");
    let process = |i: usize, stats: &Path| {
        Command::new(env!("CARGO_BIN_EXE_gostocks"))
            .env("RUST_BACKTRACE", "0")
            .args([
                "--log",
                "warn",
                "analyze",
                "--workers",
                "1",
                "--processes",
                "2",
            ])
            .args(["--process", &i.to_string(), "--hostfile"])
            .arg(&hostfile)
            .arg("--input")
            .arg(&input)
            .arg("--stats-out")
            .arg(stats)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("gostocks starts")
    };
    let stats = out.join("stats.jsonl");
    let mut first = process(0, &stats);
    let mut second = process(1, &out.join("unused.jsonl"));
    // Once process 0 has written some of its output, process 1 dies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::metadata(&stats).map_or(0, |m| m.len()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "process 0 wrote nothing"
        );
        assert!(
            first.try_wait().expect("waits").is_none(),
            "process 0 ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    second.kill().expect("kill -9 of process 1");
    let _ = second.wait();
    let output = first.wait_with_output().expect("process 0 ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "process 0 fails: {stderr}");
    assert!(
        stderr.contains("the cluster lost a process")
            && stderr.contains("start every process again"),
        "process 0 says what happened and what to do: {stderr}"
    );
    // Started again, the cluster writes what one process writes.
    let again = process(0, &stats);
    let other = process(1, &out.join("unused.jsonl"));
    checked(other.wait_with_output().expect("waits"), "process 1, again");
    checked(again.wait_with_output().expect("waits"), "process 0, again");
    let alone = out.join("alone.jsonl");
    checked(
        Command::new(env!("CARGO_BIN_EXE_gostocks"))
            .args(["--log", "warn", "analyze", "--input"])
            .arg(&input)
            .arg("--stats-out")
            .arg(&alone)
            .output()
            .expect("runs"),
        "one process",
    );
    assert!(
        std::fs::read(&stats).expect("stats") == std::fs::read(&alone).expect("stats"),
        "the restarted cluster's stats equal one process's"
    );
}
