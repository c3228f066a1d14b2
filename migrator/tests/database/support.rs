//! Helpers of the migrator's database tests; the fresh database per test itself is
//! [`migrator::testing`].

use sqlx::PgPool;

pub use migrator::testing::{
    sqlstate, with_db, with_migrated_db, CHECK_VIOLATION, GENERATED_ALWAYS, UNIQUE_VIOLATION,
};

/// How many migrations `migrator/migrations` holds.
pub const MIGRATIONS: usize = 17;

/// The application tables of the public schema (sqlx's bookkeeping table excluded).
pub async fn tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

pub async fn catalogue_version(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT version FROM catalogue_version")
        .fetch_one(pool)
        .await
        .unwrap()
}
