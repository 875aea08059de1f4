//! `gostocks users create NAME` and `gostocks migrate`.

use anyhow::Context;

use crate::alerts::Store;
use crate::cli::{PostgresArgs, UsersArgs, UsersCommand};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn url(db: &PostgresArgs) -> anyhow::Result<&str> {
    db.postgres.as_deref().context(
        "users and migrations live in Postgres: pass --postgres URL or set GOSTOCKS_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)",
    )
}

/// Runs `gostocks users ...`.
pub fn users(args: UsersArgs) -> anyhow::Result<()> {
    match args.command {
        UsersCommand::Create { name, db } => {
            let url = url(&db)?;
            runtime()?.block_on(async {
                let store = Store::postgres_with_ca(
                    url,
                    db.postgres_schema.as_deref(),
                    db.postgres_ca_file.as_deref(),
                )
                .await?;
                let (id, key) = store.create_user(&name).await?;
                eprintln!(
                    "created user `{name}` (id {id}); its API key follows, shown only this once:"
                );
                println!("{key}");
                Ok(())
            })
        }
    }
}

/// Runs `gostocks migrate`.
pub fn migrate(args: PostgresArgs) -> anyhow::Result<()> {
    let url = url(&args)?;
    runtime()?.block_on(async {
        Store::postgres_with_ca(
            url,
            args.postgres_schema.as_deref(),
            args.postgres_ca_file.as_deref(),
        )
        .await?;
        eprintln!("migrations are applied");
        Ok(())
    })
}
