//! Test support, not used by the migrator itself: a fresh Postgres database per test,
//! shared by the migrator's own database tests and those of `friendship-queries`.
//!
//! Each test gets its own database, created from `DATABASE_URL` (or the local trust-auth
//! default) and dropped afterwards, even when the test panics. Not `#[sqlx::test]`: that
//! one insists on `DATABASE_URL` being set, and the CLI tests need the new database's URL
//! as a string to hand to the binary.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::MIGRATOR;

/// Used when `DATABASE_URL` is unset: the trust-auth Postgres of a developer machine.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDb {
    /// Connection string of this test's own database, for extra pools or the binary.
    pub url: String,
    pub pool: PgPool,
}

/// Runs `body` against a new, empty database (no migration applied), then drops it.
///
/// Each test gets its own two-worker runtime: tasks spawned by concurrency tests run in
/// parallel, and `body` itself need not be `Send` (the migrator's futures are not).
pub fn with_db<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    let name = format!("migrator_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = runtime
        .block_on(PgConnection::connect(&admin_url))
        .unwrap_or_else(|e| {
            panic!("tests need a Postgres at DATABASE_URL (or {DEFAULT_ADMIN_URL}): {e}")
        });
    runtime
        .block_on(sqlx::query(&format!(r#"CREATE DATABASE "{name}""#)).execute(&mut admin))
        .unwrap();

    let url = database_url(&admin_url, &name);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async {
            let pool = connect(&url, 8).await;
            body(TestDb {
                url: url.clone(),
                pool: pool.clone(),
            })
            .await;
            pool.close().await;
        })
    }));

    runtime
        .block_on(
            sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                .execute(&mut admin),
        )
        .unwrap();
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

/// Runs `body` against a new database with every migration of [`MIGRATOR`] applied.
pub fn with_migrated_db<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    with_db(|db| async move {
        MIGRATOR.run(&db.pool).await.unwrap();
        body(db).await;
    });
}

/// A pool of at most `size` connections to `url`. A statement that waits more than
/// 10 s for a lock fails (SQLSTATE 55P03), so a deadlock fails its test instead of
/// hanging it.
pub async fn connect(url: &str, size: u32) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("lock_timeout", "10s")]);
    PgPoolOptions::new()
        .max_connections(size)
        .connect_with(options)
        .await
        .unwrap()
}

/// `url` with its database (the path) replaced by `name`; query parameters are kept.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    match query {
        Some(query) => format!("{}/{name}?{query}", &base[..path]),
        None => format!("{}/{name}", &base[..path]),
    }
}

/// The SQLSTATE a statement failed with; panics when it succeeded.
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, sqlx::Error>) -> String {
    match result {
        Err(sqlx::Error::Database(db)) => db
            .code()
            .expect("database errors carry a SQLSTATE")
            .into_owned(),
        other => panic!("expected a database error, got {other:?}"),
    }
}

/// SQLSTATE of a CHECK constraint violation.
pub const CHECK_VIOLATION: &str = "23514";
/// SQLSTATE of a unique-key violation.
pub const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE of a foreign-key violation.
pub const FOREIGN_KEY_VIOLATION: &str = "23503";
/// SQLSTATE of writing a `GENERATED ALWAYS` column.
pub const GENERATED_ALWAYS: &str = "428C9";
/// SQLSTATE of a relation that does not exist (an unmigrated database).
pub const UNDEFINED_TABLE: &str = "42P01";
/// SQLSTATE of `lock_timeout` expiring.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_only_the_path() {
        assert_eq!(
            database_url("postgres://u:p@h:5/postgres", "t1"),
            "postgres://u:p@h:5/t1"
        );
        assert_eq!(database_url("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(
            database_url("postgres://h/db?sslmode=disable", "t1"),
            "postgres://h/t1?sslmode=disable"
        );
    }
}
