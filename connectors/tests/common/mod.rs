//! Service addresses for integration tests, and the skip-or-fail rule: under the test command
//! (`GOSTOCKS_REQUIRE_SERVICES=1`) an unreachable service fails the test; under plain
//! `cargo test` it skips with a printed reason.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Postgres URL (`GOSTOCKS_POSTGRES_URL`).
pub fn postgres_url() -> String {
    std::env::var("GOSTOCKS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Redis URL (`GOSTOCKS_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("GOSTOCKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Kafka bootstrap servers (`GOSTOCKS_KAFKA_BROKERS`).
pub fn kafka_brokers() -> String {
    std::env::var("GOSTOCKS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Whether the test command demands real services.
pub fn required() -> bool {
    std::env::var("GOSTOCKS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether `host:port` accepts TCP connections; when not, fails under the test command or
/// prints why the test skips.
pub fn reachable(service: &str, addr: &str) -> bool {
    let ok = addr
        .split(',')
        .next()
        .and_then(|a| std::net::ToSocketAddrs::to_socket_addrs(a).ok())
        .and_then(|mut it| it.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
        });
    if !ok {
        assert!(
            !required(),
            "{service} at {addr} is unreachable, and the test command requires it"
        );
        eprintln!("SKIP: {service} at {addr} is unreachable; run ./scripts/test to provision it");
    }
    ok
}

/// A name no other test run uses: for topics, key prefixes and schemas.
pub fn unique(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("gostocks_test_{kind}_{}_{nanos}", std::process::id())
}

/// `host:port` of a URL like `scheme://user@host:port/db`.
pub fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}
