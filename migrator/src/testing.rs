//! Test support, not used by the migrator itself: a fresh Postgres database per test,
//! shared by the migrator's own database tests, those of `friendship-queries` and the
//! end-to-end suite.
//!
//! Each test gets its own database, created from `DATABASE_URL` (or the local trust-auth
//! default) and dropped afterwards, even when the test panics: a [`ScratchDatabase`]
//! drops its database when it is dropped. Not `#[sqlx::test]`: that one insists on
//! `DATABASE_URL` being set, and the CLI tests need the new database's URL as a string to
//! hand to the binary.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::MIGRATOR;

/// Used when `DATABASE_URL` is unset: the trust-auth Postgres of a developer machine.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long creating or dropping a database may take, connection included.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestDb {
    /// Connection string of this test's own database, for extra pools or the binary.
    pub url: String,
    pub pool: PgPool,
}

/// A database of its own on the server of an admin URL, dropped when this is dropped,
/// even while a panic unwinds (connections still open to it are ended: `WITH (FORCE)`).
///
/// The drop runs on a thread and runtime of its own, so it works from synchronous code,
/// inside an async runtime and at process exit alike.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    dropped: bool,
}

impl ScratchDatabase {
    /// Creates an empty database `<prefix>_<uuid>` on the server of `admin_url`.
    ///
    /// # Panics
    /// When no Postgres answers at `admin_url`, or it refuses to create the database.
    pub async fn create(admin_url: &str, prefix: &str) -> ScratchDatabase {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let created = tokio::time::timeout(ADMIN_TIMEOUT, async {
            let mut admin = PgConnection::connect(admin_url).await?;
            sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
                .execute(&mut admin)
                .await?;
            admin.close().await
        })
        .await;
        match created {
            Ok(Ok(())) => ScratchDatabase {
                admin_url: admin_url.to_owned(),
                name,
                dropped: false,
            },
            Ok(Err(e)) => panic!(
                "tests need a Postgres at {admin_url} (DATABASE_URL, else {DEFAULT_ADMIN_URL}) \
                 that lets them create databases: {e}"
            ),
            Err(_) => panic!("creating database {name} at {admin_url} took over {ADMIN_TIMEOUT:?}"),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL: the admin URL with its database replaced, parameters kept.
    pub fn url(&self) -> String {
        database_url(&self.admin_url, &self.name)
    }

    /// Drops the database now, saying why when it could not; for callers that must not
    /// panic (dropping a `ScratchDatabase` panics on failure unless already panicking).
    pub fn drop_now(mut self) -> Result<(), String> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if std::mem::replace(&mut self.dropped, true) {
            return;
        }
        if let Err(e) = drop_database(&self.admin_url, &self.name) {
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

/// `DROP DATABASE IF EXISTS "name" WITH (FORCE)` on the server of `admin_url`, on a
/// thread of its own (a runtime cannot be entered from within another).
fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let on_its_own_thread = || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("dropping database {name}: no runtime: {e}"))?;
        let statement = async {
            let mut admin = PgConnection::connect(admin_url).await?;
            sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                .execute(&mut admin)
                .await?;
            admin.close().await
        };
        match runtime.block_on(async { tokio::time::timeout(ADMIN_TIMEOUT, statement).await }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("dropping database {name} at {admin_url}: {e}")),
            Err(_) => Err(format!(
                "dropping database {name} at {admin_url} took over {ADMIN_TIMEOUT:?}"
            )),
        }
    };
    std::thread::scope(|scope| scope.spawn(on_its_own_thread).join())
        .unwrap_or_else(|_| Err(format!("dropping database {name}: the thread panicked")))
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
    // Dropped when this function returns or unwinds.
    let database = runtime.block_on(ScratchDatabase::create(&admin_url, "migrator_test"));
    let url = database.url();
    runtime.block_on(async {
        let pool = connect(&url, 8).await;
        body(TestDb {
            url: url.clone(),
            pool: pool.clone(),
        })
        .await;
        pool.close().await;
    });
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
    let mut parsed =
        url::Url::parse(url).unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a URL: {e}"));
    parsed.set_path(name);
    parsed.into()
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
    use super::*;

    /// Whether a database of that name exists on the server of `admin_url`.
    async fn exists(admin_url: &str, name: &str) -> bool {
        let mut admin = PgConnection::connect(admin_url).await.unwrap();
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        admin.close().await.unwrap();
        found
    }

    #[tokio::test]
    async fn a_scratch_database_is_dropped_with_it_even_by_a_panic_and_with_connections_open() {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());

        let database = ScratchDatabase::create(&admin_url, "migrator_test").await;
        let name = database.name().to_owned();
        assert!(exists(&admin_url, &name).await, "created");
        // A pool still connected to it does not keep it alive.
        let pool = connect(&database.url(), 2).await;
        sqlx::query("SELECT 1").execute(&pool).await.unwrap();
        drop(database);
        assert!(!exists(&admin_url, &name).await, "dropped with its guard");

        let database = ScratchDatabase::create(&admin_url, "migrator_test").await;
        let name = database.name().to_owned();
        let unwound = std::thread::spawn(move || {
            let _database = database;
            panic!("a failing test");
        })
        .join();
        assert!(unwound.is_err());
        assert!(
            !exists(&admin_url, &name).await,
            "dropped while the panic unwound"
        );

        let database = ScratchDatabase::create(&admin_url, "migrator_test").await;
        let name = database.name().to_owned();
        database.drop_now().unwrap();
        assert!(!exists(&admin_url, &name).await, "dropped by drop_now");
    }

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
