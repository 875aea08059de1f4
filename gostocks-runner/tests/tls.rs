//! TLS to the services: the alert round trip over Postgres with `sslmode=require` (the local
//! server has SSL on), and the speed layer over `rediss://` to a `redis-server` this test starts
//! with only its TLS port, on a certificate the test makes with the openssl command; a plaintext
//! connection to it fails with a message that names the fix.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gostocks_proto::v1::alert_service_client::AlertServiceClient;

fn gostocks() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gostocks"));
    for var in [
        "GOSTOCKS_POSTGRES_URL",
        "GOSTOCKS_REDIS_URL",
        "GOSTOCKS_CONFIG",
    ] {
        c.env_remove(var);
    }
    c
}

/// `url` with `params` added to its query.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_round_trip_over_postgres_with_sslmode_require() {
    let Some(url) = common::postgres() else {
        return;
    };
    let schema = common::unique_topic("tls");
    let app = format!("gostocks_tls_{}", std::process::id());
    let tls_url = with_params(&url, &format!("sslmode=require&application_name={app}"));
    let key = common::create_user(&tls_url, &schema, "tls");
    let run = common::start(&[
        "--speed",
        "20x",
        "--postgres",
        &tls_url,
        "--postgres-schema",
        &schema,
    ]);
    assert!(
        run.banner.iter().any(|l| l.contains("alerts: Postgres")),
        "{:?}",
        run.banner
    );
    let mut c = AlertServiceClient::connect(format!("http://{}", run.grpc))
        .await
        .expect("gRPC connects");
    let alert = c
        .create_alert(common::authed(common::price_above("AAPL", 1), &key))
        .await
        .expect("create")
        .into_inner();
    // The event is stored through the TLS connection, and read back through another.
    let db = gostocks_connectors::postgres::connect(&tls_url, Some(&schema))
        .await
        .expect("postgres over TLS");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM alert_events WHERE alert_id::text = $1",
                &[&alert.id],
            )
            .await
            .expect("query")
            .get(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no alert event stored in 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every connection of the runner and of this test is encrypted.
    let row = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_stat_ssl");
    let (all, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 2, "the runner's and the test's connections: {all}");
    assert_eq!(encrypted, all, "every connection uses TLS");

    // verify-full checks the server's certificate: the local server's is not signed by a CA
    // of the Mozilla roots, and the refusal says so.
    let strict = with_params(&url, "sslmode=verify-full");
    let Err(e) = gostocks_connectors::postgres::connect(&strict, None).await else {
        panic!("verify-full accepted a self-signed certificate");
    };
    let chain = format!("{:#}", anyhow::Error::from(e));
    assert!(
        chain.contains("certificate") || chain.contains("Certificate"),
        "{chain}"
    );
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command in `dir`:
/// (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=gostocks test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_cli(port: u16, ca: &Path, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--tls",
            "--cacert",
        ])
        .arg(ca)
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn speed_layer_over_rediss_and_a_clear_error_in_plaintext() {
    let has = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(has("redis-server", "--version")
        && has("redis-cli", "--version")
        && has("openssl", "version"))
    {
        let required = std::env::var("GOSTOCKS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "redis-server, redis-cli and openssl are required"
        );
        eprintln!("SKIP: redis-server, redis-cli or openssl is missing");
        return;
    }
    let dir = std::env::temp_dir().join(common::unique_topic("rediss"));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, cert, key) = certificates(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = RedisServer(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .args(["--tls-auth-clients", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis_cli(port, &ca, &["ping"]) != "PONG" {
        assert!(
            Instant::now() < deadline,
            "redis-server with TLS did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Over TLS: the speed layer is written.
    let rediss = format!("rediss://127.0.0.1:{port}");
    let mut run = gostocks()
        .args(["run", "--http-addr=127.0.0.1:0", "--grpc-addr=127.0.0.1:0"])
        .args([
            "--speed=max",
            "--no-loop",
            "--redis",
            &rediss,
            "--redis-ca-file",
        ])
        .arg(&ca)
        .stdout(Stdio::null())
        .spawn()
        .expect("gostocks starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let price = loop {
        let p = redis_cli(port, &ca, &["get", "price:AAPL"]);
        if !p.is_empty() {
            break p;
        }
        if let Some(status) = run.try_wait().expect("wait") {
            panic!("gostocks exited: {status}");
        }
        assert!(Instant::now() < deadline, "no price:AAPL over TLS in 30 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(price.parse::<f64>().is_ok(), "{price}");
    let _ = run.kill();
    let _ = run.wait();

    // In plaintext to the TLS-only server: a clear error, naming rediss://.
    let out = gostocks()
        .args(["run", "--http-addr=127.0.0.1:0", "--grpc-addr=127.0.0.1:0"])
        .args(["--no-loop", "--redis", &format!("redis://127.0.0.1:{port}")])
        .output()
        .expect("gostocks runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connecting to Redis") && err.contains("rediss://"),
        "{err}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
