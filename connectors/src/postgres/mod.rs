//! Postgres: users, alerts and alert events. Migrations from `migrations/` are embedded and
//! applied in order, each once, recorded in `schema_migrations`.

pub mod alerts;
pub mod notify;
pub mod tls;

use std::path::Path;

use tokio_postgres::Client;

use crate::error::Error;

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_notifications",
        include_str!("../../migrations/0002_notifications.sql"),
    ),
    (
        3,
        "0003_alert_storms",
        include_str!("../../migrations/0003_alert_storms.sql"),
    ),
    (
        4,
        "0004_alert_channels",
        include_str!("../../migrations/0004_alert_channels.sql"),
    ),
];

/// Connects to `url` (e.g. `postgres://postgres@127.0.0.1:5432/test`) and drives the connection
/// on the current tokio runtime. With `schema`, every statement runs in that schema (created if
/// missing), which is how tests isolate themselves. TLS as the URL's `sslmode` says (see
/// [`tls`]), trusting the Mozilla roots.
pub async fn connect(url: &str, schema: Option<&str>) -> Result<Client, Error> {
    connect_with_ca(url, schema, None).await
}

/// [`connect`], trusting the CA certificates of `ca_file` (PEM) for `sslmode=verify-ca`,
/// `verify-full` or `require`.
pub async fn connect_with_ca(
    url: &str,
    schema: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<Client, Error> {
    let (url, verify) = tls::sslmode(url, ca_file.is_some());
    let connector = tls::connector(verify, ca_file)?;
    let (client, connection) =
        tokio_postgres::connect(&url, connector)
            .await
            .map_err(|source| Error::Postgres {
                context: "connecting".into(),
                source,
            })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgres connection closed");
        }
    });
    if let Some(schema) = schema {
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {quoted}; SET search_path TO {quoted}"
            ))
            .await
            .map_err(|source| Error::Postgres {
                context: format!("selecting schema {schema}"),
                source,
            })?;
    }
    Ok(client)
}

/// Applies every migration not yet applied, each in its own transaction; returns how many ran.
pub async fn migrate(client: &mut Client) -> Result<usize, Error> {
    let err = |context: String| move |source| Error::Postgres { context, source };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(err("creating schema_migrations".into()))?;
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS {
        let tx = client
            .transaction()
            .await
            .map_err(err("starting a migration".into()))?;
        // Serialises concurrent start-ups: the second waits, then sees the version applied.
        tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            .await
            .map_err(err("locking schema_migrations".into()))?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await
            .map_err(err(format!("checking migration {name}")))?
            .is_some();
        if !done {
            tx.batch_execute(sql)
                .await
                .map_err(err(format!("applying migration {name}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(err(format!("recording migration {name}")))?;
            ran += 1;
        }
        tx.commit()
            .await
            .map_err(err(format!("committing migration {name}")))?;
    }
    Ok(ran)
}
