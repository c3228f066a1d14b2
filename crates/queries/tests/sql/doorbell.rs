//! The doorbell mark: one conversation end in a quiet period marks it and
//! publishes, the others find it and skip, a wake-up clears it, and a mark
//! nobody cleared lapses.

use friendship_queries::doorbell;
use sqlx::{Connection, PgExecutor};

use crate::support::{with_migrated_db, write};

/// The lifetime the service passes, milliseconds.
const LIFETIME_MS: i64 = 1_000;

async fn ring(executor: impl PgExecutor<'_>) -> u64 {
    write(&doorbell::RING)
        .bind(LIFETIME_MS)
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

async fn clear(executor: impl PgExecutor<'_>) -> u64 {
    write(&doorbell::CLEAR)
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

#[test]
fn the_first_ring_of_a_quiet_period_publishes_and_the_next_ones_skip_until_a_wake_up_clears() {
    with_migrated_db(|db| async move {
        assert_eq!(ring(&db.pool).await, 1, "a fresh database has no mark");
        assert_eq!(ring(&db.pool).await, 0);
        assert_eq!(ring(&db.pool).await, 0);
        assert_eq!(clear(&db.pool).await, 1);
        assert_eq!(clear(&db.pool).await, 0, "nothing left to clear");
        assert_eq!(ring(&db.pool).await, 1, "the wake-up started: ring again");
        assert_eq!(ring(&db.pool).await, 0);
    });
}

#[test]
fn a_mark_that_nobody_cleared_lapses_after_its_lifetime() {
    with_migrated_db(|db| async move {
        assert_eq!(ring(&db.pool).await, 1);
        sqlx::query("UPDATE scorer_doorbell SET rung_at = rung_at - interval '500 milliseconds'")
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(ring(&db.pool).await, 0, "still within its lifetime");
        sqlx::query("UPDATE scorer_doorbell SET rung_at = rung_at - interval '600 milliseconds'")
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(ring(&db.pool).await, 1, "lapsed: publish again");
    });
}

/// The transaction id `statement` left its transaction with: none when it wrote nothing.
async fn writes_of(
    conn: &mut sqlx::PgConnection,
    statement: impl AsyncFnOnce(&mut sqlx::PgConnection) -> u64,
) -> (u64, Option<i64>) {
    let mut tx = conn.begin().await.unwrap();
    let affected = statement(&mut tx).await;
    let assigned: Option<i64> = sqlx::query_scalar("SELECT txid_current_if_assigned()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    (affected, assigned)
}

#[test]
fn a_ring_that_finds_a_mark_and_a_clear_that_finds_none_write_nothing() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        assert_eq!(ring(&mut *conn).await, 1);
        // Inside a transaction, a statement that wrote is given a
        // transaction id: these were not, so they wrote no row and no WAL.
        assert_eq!(
            writes_of(&mut conn, async |c| ring(c).await).await,
            (0, None)
        );
        assert_eq!(clear(&mut *conn).await, 1);
        assert_eq!(
            writes_of(&mut conn, async |c| clear(c).await).await,
            (0, None)
        );
    });
}

#[test]
fn inside_a_transaction_that_has_written_a_ring_always_marks() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        assert_eq!(ring(&mut *conn).await, 1);
        assert_eq!(
            ring(&mut *conn).await,
            0,
            "a fresh mark, outside any transaction"
        );
        // What a write on a connection left inside a crashed instance's
        // transaction looks like: the ring that follows it reveals it.
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("INSERT INTO friendship_status (user_id) VALUES ('u-stale-ring')")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            ring(&mut *tx).await,
            1,
            "a fresh mark, inside a transaction that wrote"
        );
        tx.rollback().await.unwrap();
        // Inside one that only began, it does not: which is why the ring
        // follows the caller's write, which gives that transaction an id.
        let mut tx = conn.begin().await.unwrap();
        assert_eq!(ring(&mut *tx).await, 0);
        tx.rollback().await.unwrap();
    });
}
