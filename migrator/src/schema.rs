//! Connecting to Postgres and moving the schema up and down [`MIGRATOR`]'s migrations.
//!
//! All functions take one `PgConnection`: sqlx takes an advisory lock on it while it
//! migrates, so two migrators started together apply each migration once. The futures of
//! `up` and `down` are not `Send` (sqlx's generic `Acquire` bound trips rustc's
//! higher-ranked lifetime check), so await them directly rather than `tokio::spawn` them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

use crate::error::describe;
use crate::{MigratorError, MIGRATOR};

/// Opens one connection, giving up after `timeout` (a blackholed host would otherwise
/// hang for the OS's TCP timeout). Errors name `host:port` only, never the credentials.
pub async fn connect(url: &str, timeout: Duration) -> Result<PgConnection, MigratorError> {
    let options =
        PgConnectOptions::from_str(url).map_err(|e| MigratorError::InvalidUrl(describe(&e)))?;
    let target = format!("{}:{}", options.get_host(), options.get_port());
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(MigratorError::Connect {
            target,
            reason: describe(&error),
        }),
        Err(_) => Err(MigratorError::Connect {
            target,
            reason: format!("no answer within {} s", timeout.as_secs_f64()),
        }),
    }
}

/// Where one migration stands in a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    Applied,
    Pending,
    /// Started and did not finish: sqlx refuses to go on until someone repairs it by hand.
    Failed,
    /// Applied, but the file changed since (applied migrations must never be edited).
    Modified,
    /// Recorded in the database but unknown to this build (a newer migrator applied it).
    Unknown,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Modified => "modified",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `migrator status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The timestamp prefix of the migration's file names.
    pub version: i64,
    /// The file name's suffix, underscores read as spaces (sqlx's convention).
    pub description: String,
    pub state: MigrationState,
}

/// Every migration of this build in order, then any version only the database knows.
/// Read-only: unlike sqlx's own helpers it does not create `_sqlx_migrations`.
pub async fn status(conn: &mut PgConnection) -> Result<Vec<MigrationStatus>, MigratorError> {
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    let recorded: Vec<(i64, String, bool, Vec<u8>)> = if has_table {
        sqlx::query_as(
            "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await?
    } else {
        Vec::new()
    };

    let mut lines: Vec<MigrationStatus> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| {
            let state = match recorded.iter().find(|r| r.0 == m.version) {
                None => MigrationState::Pending,
                Some((_, _, false, _)) => MigrationState::Failed,
                Some((_, _, true, checksum)) if checksum[..] != m.checksum[..] => {
                    MigrationState::Modified
                }
                Some(_) => MigrationState::Applied,
            };
            MigrationStatus {
                version: m.version,
                description: m.description.to_string(),
                state,
            }
        })
        .collect();
    lines.extend(
        recorded
            .into_iter()
            .filter(|r| !MIGRATOR.version_exists(r.0))
            .map(|(version, description, _, _)| MigrationStatus {
                version,
                description,
                state: MigrationState::Unknown,
            }),
    );
    Ok(lines)
}

/// Applies every pending migration, each in its own transaction, and returns those it applied.
pub async fn up(conn: &mut PgConnection) -> Result<Vec<MigrationStatus>, MigratorError> {
    let before = status(conn).await?;
    MIGRATOR.run(&mut *conn).await?;
    Ok(newly(
        before,
        MigrationState::Pending,
        status(conn).await?,
        MigrationState::Applied,
    ))
}

/// How many of the latest applied migrations `down` reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCount {
    Last(usize),
    All,
}

impl FromStr for DownCount {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        text.parse()
            .map(Self::Last)
            .map_err(|_| format!("expected a number of migrations or `all`, got `{text}`"))
    }
}

/// Reverts the latest `count` applied migrations, newest first, each with its `.down.sql`
/// in its own transaction, and returns those it reverted (newest first). Asking for more
/// than are applied reverts them all.
pub async fn down(
    conn: &mut PgConnection,
    count: DownCount,
) -> Result<Vec<MigrationStatus>, MigratorError> {
    let before = status(conn).await?;
    let mut applied: Vec<i64> = before
        .iter()
        .filter(|m| m.state != MigrationState::Pending)
        .map(|m| m.version)
        .collect();
    applied.sort_unstable_by(|a, b| b.cmp(a));
    // sqlx reverts every applied version above the target: keep the (count+1)-th newest.
    let target = match count {
        DownCount::All => 0,
        DownCount::Last(0) => return Ok(Vec::new()),
        DownCount::Last(n) => applied.get(n).copied().unwrap_or(0),
    };
    MIGRATOR.undo(&mut *conn, target).await?;
    let mut reverted = newly(
        before,
        MigrationState::Applied,
        status(conn).await?,
        MigrationState::Pending,
    );
    reverted.reverse();
    Ok(reverted)
}

/// The migrations that were in state `from` before and are in state `to` after.
fn newly(
    before: Vec<MigrationStatus>,
    from: MigrationState,
    after: Vec<MigrationStatus>,
    to: MigrationState,
) -> Vec<MigrationStatus> {
    after
        .into_iter()
        .filter(|m| {
            m.state == to
                && before
                    .iter()
                    .any(|b| b.version == m.version && b.state == from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_is_reversible() {
        for up in MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
        {
            assert!(
                MIGRATOR
                    .iter()
                    .any(|m| m.version == up.version && m.migration_type.is_down_migration()),
                "migration {} has no down file",
                up.version
            );
        }
    }

    #[test]
    fn the_migrations_come_in_the_documented_order() {
        let names: Vec<_> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.description.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "friendship status",
                "friendship agent mapping",
                "conversation events",
                "friendship history",
                "rejected messages",
                "catalogue version on change only",
                "scored before processed",
                "scorer doorbell",
                "metrics",
                "retention",
                "planned once",
                "idempotency per user",
                "event trace id",
                "daily score cap",
                "level change outbox",
                "inactivity decay",
                "user data"
            ]
        );
    }

    #[test]
    fn down_count_reads_numbers_and_all() {
        assert_eq!("3".parse(), Ok(DownCount::Last(3)));
        assert_eq!("ALL".parse(), Ok(DownCount::All));
        assert!("-1".parse::<DownCount>().is_err());
        assert!("two".parse::<DownCount>().is_err());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_without_its_password() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("postgres://someone:hunter2@127.0.0.1:{port}/db");
        let message = connect(&url, Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!("cannot connect to postgres at 127.0.0.1:{port}: connection refused")
        );
    }

    #[tokio::test]
    async fn a_malformed_url_is_refused_without_echoing_it() {
        let message = connect(
            "postgres://someone:hunter2@127.0.0.1:notaport/db",
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("invalid database URL: "), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
