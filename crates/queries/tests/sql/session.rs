//! Telling a clean pooled connection from one left inside a transaction.

use friendship_queries::session;
use serde::Deserialize;
use sqlx::{Connection, PgExecutor};

use crate::support::{ensure_user, lock_user, read, with_migrated_db};

/// [`session::CLEAN`], read as `edge::db` reads it.
async fn clean(executor: impl PgExecutor<'_>) -> bool {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Clean {
        clean: bool,
    }
    read(&session::CLEAN).one::<Clean>(executor).await.clean
}

#[test]
fn a_connection_outside_a_transaction_is_clean() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        ensure_user(&mut *conn, "u-clean").await;
        assert!(clean(&mut *conn).await);
    });
}

#[test]
fn a_connection_inside_a_transaction_that_only_read_is_clean() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        assert!(
            clean(&mut *tx).await,
            "CLEAN itself assigns no transaction id"
        );
        assert!(clean(&mut *tx).await);
        tx.rollback().await.unwrap();
    });
}

#[test]
fn a_connection_left_inside_a_transaction_that_locked_rows_is_not_clean() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        ensure_user(&mut *conn, "u-stale").await;
        let mut tx = conn.begin().await.unwrap();
        lock_user(&mut *tx, "u-stale")
            .await
            .expect("u-stale exists");
        assert!(!clean(&mut *tx).await);
        tx.rollback().await.unwrap();
    });
}

#[test]
fn a_connection_left_inside_a_transaction_that_wrote_is_not_clean() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        ensure_user(&mut *tx, "u-written").await;
        assert!(!clean(&mut *tx).await);
        tx.rollback().await.unwrap();
    });
}
