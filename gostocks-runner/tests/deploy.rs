//! The deployment files, checked as far as this machine can without pulling images: the compose
//! file parses (`docker compose config` or `docker-compose config`); every `gostocks` command,
//! flag and `GOSTOCKS_*` variable in it and in the Dockerfile exists (against the binary's
//! `--help`); the Dockerfile builds with the README's `cargo build`; the Grafana dashboard and
//! the alert rules use only metrics the README lists, and the README lists every metric family
//! a runner serves.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(args)
        .arg("--help")
        .output()
        .expect("gostocks runs");
    assert!(out.status.success(), "gostocks {args:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks a `gostocks` command line: its subcommand and every flag exist.
fn check_command(what: &str, argv: &[String]) {
    let sub = argv
        .first()
        .unwrap_or_else(|| panic!("{what}: no subcommand"));
    let top = help(&[]);
    assert!(
        top.lines()
            .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
        "{what}: `gostocks {sub}` is no command:\n{top}"
    );
    let text = help(&[sub]);
    for flag in argv.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or_default();
        assert!(
            text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
            "{what}: `gostocks {sub}` has no {flag}"
        );
    }
}

/// Checks that `var` is read by `gostocks sub`.
fn check_env(what: &str, sub: &str, var: &str) {
    assert!(
        help(&[sub]).contains(&format!("[env: {var}=")),
        "{what}: `gostocks {sub}` reads no {var}"
    );
}

#[test]
fn the_compose_file_parses_and_its_gostocks_commands_exist() {
    let compose = repo("docker-compose.yml");
    let candidates: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    let mut parsed = None;
    for c in candidates {
        let out = Command::new(c[0])
            .args(&c[1..])
            .arg("-f")
            .arg(&compose)
            .args(["config", "-q"])
            .output();
        if let Ok(out) = out {
            if out.status.success() {
                parsed = Some(c.join(" "));
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            // A docker without the compose plugin says so; anything else is a real error.
            assert!(
                err.contains("is not a docker command") || err.contains("unknown"),
                "{} config: {err}",
                c.join(" ")
            );
        }
    }
    match parsed {
        Some(tool) => eprintln!("docker-compose.yml parses with `{tool} config`"),
        None => {
            let required = std::env::var("GOSTOCKS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "neither `docker compose` nor `docker-compose` is installed"
            );
            eprintln!(
                "SKIP: the compose parse: no docker compose here (apt install docker-compose)"
            );
        }
    }

    // The services built from this repository: their command and GOSTOCKS_* variables.
    let text = read("docker-compose.yml");
    let mut services = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent == 2 && line.trim_end().ends_with(':') && !line.trim().starts_with('#') {
            services.extend(current.take());
            current = Some((line.trim().trim_end_matches(':').to_owned(), Vec::new()));
        } else if indent == 0 && !line.trim().is_empty() && !line.starts_with('#') {
            services.extend(current.take());
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line.trim().to_owned());
        }
    }
    services.extend(current);
    let ours: Vec<_> = services
        .iter()
        .filter(|(_, lines)| lines.iter().any(|l| l == "build: ."))
        .collect();
    let names: BTreeSet<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["gostocks", "ingest"]));
    for (name, lines) in ours {
        let command = lines
            .iter()
            .find_map(|l| l.strip_prefix("command: "))
            .unwrap_or_else(|| panic!("service {name} has a command"));
        let argv: Vec<String> = serde_json::from_str(command)
            .unwrap_or_else(|e| panic!("service {name}: the command is one flow list: {e}"));
        check_command(&format!("service {name}"), &argv);
        for var in lines
            .iter()
            .filter_map(|l| l.split_once(':').map(|(k, _)| k))
            .filter(|k| k.starts_with("GOSTOCKS_"))
        {
            check_env(&format!("service {name}"), &argv[0], var);
        }
    }
}

#[test]
fn the_dockerfile_builds_like_the_readme_and_runs_commands_that_exist() {
    let dockerfile = read("Dockerfile");
    let readme = read("README.md");
    let build = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("RUN cargo build"))
        .map(|rest| format!("cargo build{rest}"))
        .expect("the build stage runs cargo build");
    let section = readme
        .split("## Running in production")
        .nth(1)
        .expect("the README has a Running in production section");
    assert!(
        section.lines().any(|l| l.trim() == build),
        "the README's production build is `{build}`"
    );
    assert!(
        dockerfile.contains("\nUSER "),
        "the runtime image runs as a non-root user"
    );
    assert!(
        dockerfile.matches("\nFROM ").count() >= 2,
        "a multi-stage build"
    );
    for line in dockerfile.lines() {
        if let Some(rest) = line.strip_prefix("CMD ") {
            let argv: Vec<String> = serde_json::from_str(rest).expect("CMD is a JSON list");
            check_command("Dockerfile CMD", &argv);
        }
    }
    for var in dockerfile
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("GOSTOCKS_"))
    {
        check_env("Dockerfile ENV", "run", var);
    }
}

/// The metric names (`gostocks_...`) in `text`, without histogram and counter suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("gostocks_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.insert(base.to_owned());
    }
    out
}

#[test]
fn dashboards_and_alert_rules_use_documented_metrics_and_the_readme_lists_every_family() {
    let readme = read("README.md");
    let section = readme
        .split("### Metrics")
        .nth(1)
        .expect("the README lists the metrics")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let documented = metric_names(section);
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/gostocks.json"))
            .expect("the dashboard is JSON");
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push_str(target["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    let rules = read("deploy/prometheus/alerts.yml");
    for rule in [
        "GostocksNoTicks",
        "GostocksConsumerLagGrowing",
        "GostocksSinkDown",
    ] {
        assert!(rules.contains(&format!("alert: {rule}")), "{rule}");
    }
    let rule_exprs: String = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .collect::<Vec<_>>()
        .join("\n");
    for (what, text) in [("dashboard", &exprs), ("alert rules", &rule_exprs)] {
        let used = metric_names(text);
        assert!(!used.is_empty(), "{what}");
        let missing: Vec<_> = used.difference(&documented).collect();
        assert!(missing.is_empty(), "{what} uses undocumented {missing:?}");
    }

    // A runner's families, from its /metrics: each one in the README.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["run", "--http-addr=127.0.0.1:0", "--grpc-addr=127.0.0.1:0"])
        .args(["--speed=max", "--no-loop"])
        .env_remove("GOSTOCKS_CONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gostocks starts");
    let http = common::rest_address(child.stdout.take().expect("stdout"));
    let raw = common::get_text(&http, "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    let families: BTreeSet<String> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(families.len() > 10, "{raw}");
    let undocumented: Vec<_> = families
        .iter()
        .filter(|f| !documented.contains(*f) && !documented.contains(&format!("{f}_total")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "the README lists no {undocumented:?}"
    );
}
