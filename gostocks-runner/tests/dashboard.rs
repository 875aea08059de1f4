//! The dashboard in a real browser: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/dashboard.mjs`) against a running `gostocks run`. The test command installs
//! chromium (apt) and playwright-core (npm, into the cache outside the clone) and says where
//! with `GOSTOCKS_NODE_MODULES`; without them this test skips, saying why (a failure under the
//! test command). Screenshots go to the test's output folder.

mod common;

use std::path::PathBuf;

#[test]
fn the_dashboard_shows_live_prices_bars_and_alert_events_in_chromium() {
    let Some(modules) = common::node_modules() else {
        return;
    };
    let running = common::start(&["--speed", "5x"]);
    let key = running.demo_key.clone().expect("the demo key");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let (base, dir) = (
        format!("http://{}/", running.http),
        out.display().to_string(),
    );
    common::browser_script(&modules, "dashboard.mjs", &[&base, &key, &dir]);
    let shot = out.join("dashboard.png");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real PNG"
    );
    println!("screenshot: {}", shot.display());
}
