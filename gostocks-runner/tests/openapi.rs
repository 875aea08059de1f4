//! The OpenAPI document (`GET /openapi.json`) validates as OpenAPI 3.1
//! (`openapi-spec-validator`), and a property-based client generated from it (`schemathesis`)
//! finds no 5xx and no answer that breaks the document's schemas against a running
//! `gostocks run`. Both come from PyPI; the test command installs them into a venv in the cache
//! outside the clone and says where with `GOSTOCKS_PY_VENV`. Without them this test skips,
//! saying why (a failure under the test command).

mod common;

use std::path::PathBuf;
use std::process::Command;

fn venv() -> Option<PathBuf> {
    common::tool_dir(
        "GOSTOCKS_PY_VENV",
        "venv",
        |dir| {
            ["openapi-spec-validator", "schemathesis"]
                .iter()
                .all(|tool| dir.join("bin").join(tool).exists())
        },
        "a venv with openapi-spec-validator and schemathesis",
    )
}

#[test]
fn the_openapi_document_validates_and_the_server_keeps_to_it() {
    let Some(venv) = venv() else {
        return;
    };
    let running = common::start(&["--speed", "20x"]);
    let key = running.demo_key.clone().expect("the demo key");
    let (status, doc) = common::get(&running.http, "/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openapi");
    std::fs::create_dir_all(&out).expect("output folder");
    let file = out.join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("written");

    let status = Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&file)
        .status()
        .expect("openapi-spec-validator runs");
    assert!(
        status.success(),
        "the document does not validate (see above)"
    );

    // The streams never end, so they are left out; `wait_ms` is pinned to 0 by the hook so
    // that long polls answer at once.
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let status = Command::new(venv.join("bin/schemathesis"))
        .args([
            "--no-color",
            "run",
            &format!("http://{}/openapi.json", running.http),
        ])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
        ])
        .args([
            "--exclude-path",
            "/stream",
            "--exclude-path",
            "/alerts/stream",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "40", "--seed", "23", "--workers", "1"])
        .args(["--request-timeout", "10"])
        .arg("--report-dir")
        .arg(out.join("schemathesis"))
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &hooks)
        .status()
        .expect("schemathesis runs");
    assert!(
        status.success(),
        "schemathesis found answers that break the document (see above)"
    );
}
