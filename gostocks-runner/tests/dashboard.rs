//! The dashboard in a real browser: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/dashboard.mjs`) against a running `gostocks run`. The test command installs
//! chromium (apt) and playwright-core (npm, into the cache outside the clone) and says where
//! with `GOSTOCKS_NODE_MODULES`; without them this test skips, saying why (a failure under the
//! test command). Screenshots go to the test's output folder.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn node_modules() -> Option<PathBuf> {
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    common::tool_dir(
        "GOSTOCKS_NODE_MODULES",
        "node/node_modules",
        |dir| dir.join("playwright-core").is_dir() && chromium.exists(),
        &format!("playwright-core, and chromium at {},", chromium.display()),
    )
}

#[test]
fn the_dashboard_shows_live_prices_bars_and_alert_events_in_chromium() {
    let Some(modules) = node_modules() else {
        return;
    };
    let running = common::start(&["--speed", "5x"]);
    let key = running.demo_key.clone().expect("the demo key");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let status = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}/", running.http))
        .arg(&key)
        .arg(&out)
        .env("NODE_PATH", &modules)
        .current_dir(modules.parent().expect("the npm folder"))
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the browser test failed (its output is above)"
    );
    let shot = out.join("dashboard.png");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real PNG"
    );
    println!("screenshot: {}", shot.display());
}
