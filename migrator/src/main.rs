//! `migrator up | down [N|all] | status | seed`: the command line over the `migrator` library.
//! Prints one line per action; on failure prints `error: <one line>` and exits with 1.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use migrator::{DownCount, MigrationStatus};

#[derive(Debug, Parser)]
#[command(
    name = "migrator",
    version,
    about = "Migrate and seed the friendship service's Postgres schema"
)]
struct Cli {
    /// Postgres connection string, e.g. postgres://user@127.0.0.1:5432/db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// Seconds to wait for Postgres to accept the connection.
    #[arg(long, default_value_t = 10, global = true)]
    connect_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply every pending migration.
    Up,
    /// Revert the latest applied migrations (`all`, or more than are applied, reverts everything).
    Down {
        #[arg(default_value = "1")]
        count: DownCount,
    },
    /// List each migration as applied or pending.
    Status,
    /// Insert the default agent catalogue rows that are missing (idempotent).
    Seed,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}");
            eprintln!(
                "error: {}",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let Some(url) = cli.database_url else {
        anyhow::bail!("no database: set DATABASE_URL or pass --database-url");
    };
    let mut conn = migrator::connect(&url, Duration::from_secs(cli.connect_timeout)).await?;
    match cli.command {
        Command::Up => {
            let applied = migrator::up(&mut conn).await?;
            report(
                &applied,
                "applied",
                "nothing to apply: the schema is up to date",
            );
        }
        Command::Down { count } => {
            let reverted = migrator::down(&mut conn, count).await?;
            report(&reverted, "reverted", "nothing to revert");
        }
        Command::Status => {
            for line in migrator::status(&mut conn).await? {
                println!("{} {:<8} {}", line.version, line.state, line.description);
            }
        }
        Command::Seed => {
            let seeded = migrator::seed(&mut conn).await?;
            if seeded.inserted == 0 {
                println!(
                    "catalogue already seeded: {} agents present, nothing changed",
                    seeded.already_present
                );
            } else {
                println!(
                    "seeded {} agents ({} already present)",
                    seeded.inserted, seeded.already_present
                );
            }
        }
    }
    Ok(())
}

fn report(migrations: &[MigrationStatus], verb: &str, nothing: &str) {
    if migrations.is_empty() {
        println!("{nothing}");
    }
    for m in migrations {
        println!("{verb} {} {}", m.version, m.description);
    }
}
