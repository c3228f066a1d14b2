//! Telling a clean pooled connection from one left inside a transaction.

use friendship_queries::{friendship, session};
use sqlx::Connection;

use crate::support::with_migrated_db;

#[test]
fn a_connection_outside_a_transaction_is_clean() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::query(friendship::ENSURE_USER)
            .bind("u-clean")
            .execute(&mut *conn)
            .await
            .unwrap();
        let clean: bool = sqlx::query_scalar(session::CLEAN)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert!(clean);
    });
}

#[test]
fn a_connection_left_inside_a_transaction_that_locked_rows_is_not_clean() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::query(friendship::ENSURE_USER)
            .bind("u-stale")
            .execute(&mut *conn)
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(friendship::LOCK_FOR_CONVERSATION)
            .bind("u-stale")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let clean: bool = sqlx::query_scalar(session::CLEAN)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert!(!clean);
        tx.rollback().await.unwrap();
    });
}
