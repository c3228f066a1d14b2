//! The outbox of level changes: every transition gets its outbox row in the statement
//! that records it (and none without one); the relay's claim takes unpublished rows
//! oldest first, skipping another relay's without waiting, and a rolled-back relay
//! leaves its rows unpublished; marking is once; retention prunes published rows past
//! their window and never an unpublished one.

use std::time::Duration;

use chrono::NaiveDateTime;
use friendship_queries::{level_changes, retention};
use serde::Deserialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::support::{
    apply, apply_changes, connect, ensure_user, ensure_users, new_event, read, transitions,
    with_migrated_db, write, Change, ChangeExt,
};

/// A row of [`level_changes::CLAIM_UNPUBLISHED`], decoded strictly as the relay does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claimed {
    id: i64,
    user_id: String,
    from_level: String,
    to_level: String,
    score: f64,
    cause: String,
    processing_id: Option<Uuid>,
    at: NaiveDateTime,
}

async fn claim(executor: impl PgExecutor<'_>, limit: i64) -> Vec<Claimed> {
    read(&level_changes::CLAIM_UNPUBLISHED)
        .bind(limit)
        .rows(executor)
        .await
}

async fn mark(executor: impl PgExecutor<'_>, ids: &[i64]) -> u64 {
    write(&level_changes::MARK_PUBLISHED)
        .bind(serde_json::to_string(ids).unwrap())
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

/// `(transition_id, published)` of every outbox row, by id.
async fn outbox(executor: impl PgExecutor<'_>) -> Vec<(i64, bool)> {
    sqlx::query_as(
        "SELECT transition_id, published_at IS NOT NULL FROM level_change_outbox
         ORDER BY transition_id",
    )
    .fetch_all(executor)
    .await
    .unwrap()
}

#[test]
fn every_transition_gets_its_outbox_row_in_the_statement_that_records_it() {
    with_migrated_db(|db| async move {
        ensure_users(&db.pool, &["user-1", "user-2"]).await;
        // No level moved: no transition, no outbox row.
        apply(&db.pool, &Change::service("user-1", 50.0)).await;
        assert!(outbox(&db.pool).await.is_empty());

        // Up for one user, up and over two boundaries for another, in one statement.
        let id = new_event(&db.pool, "user-2").await;
        let moved = apply_changes(
            &db.pool,
            &[
                Change::service("user-1", 60.0),
                Change::conversation("user-2", id, 600.0, 4),
            ],
        )
        .await
        .unwrap();
        assert_eq!(moved, 2, "one affected row per transition's outbox row");
        // Down, whatever the cause.
        apply(&db.pool, &Change::service("user-1", -200.0)).await;

        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM friendship_level_transitions ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(ids.len(), 3);
        assert_eq!(
            outbox(&db.pool).await,
            ids.iter().map(|id| (*id, false)).collect::<Vec<_>>()
        );

        // A change rolled back takes its outbox row with it.
        let mut tx = db.pool.begin().await.unwrap();
        apply_changes(&mut *tx, &[Change::service("user-1", 500.0)])
            .await
            .unwrap();
        assert_eq!(outbox(&mut *tx).await.len(), 4);
        tx.rollback().await.unwrap();
        assert_eq!(outbox(&db.pool).await.len(), 3);
    });
}

#[test]
fn the_relay_claims_oldest_first_skips_another_relays_rows_and_a_rollback_leaves_them_unpublished()
{
    with_migrated_db(|db| async move {
        let pool = connect(&db.url, 4).await;
        ensure_user(&pool, "user-1").await;
        let id = new_event(&pool, "user-1").await;
        apply(&pool, &Change::conversation("user-1", id, 120.0, 2)).await;
        for change in [-30.0, 30.0, -30.0, 30.0] {
            apply(&pool, &Change::service("user-1", change)).await;
        }
        let recorded = transitions(&pool, "user-1").await;
        assert_eq!(recorded.len(), 5);

        // The first relay holds the two oldest.
        let mut first = pool.begin().await.unwrap();
        let held = claim(&mut *first, 2).await;
        let first_ids: Vec<i64> = held.iter().map(|c| c.id).collect();
        let oldest = &held[0];
        assert_eq!(
            (
                oldest.user_id.as_str(),
                oldest.from_level.as_str(),
                oldest.to_level.as_str(),
                oldest.score,
                oldest.cause.as_str(),
                oldest.processing_id
            ),
            (
                "user-1",
                "stranger",
                "acquaintance",
                120.0,
                "conversation",
                Some(id)
            )
        );
        let committed: NaiveDateTime = sqlx::query_scalar(
            "SELECT created_at AT TIME ZONE 'UTC' FROM friendship_level_transitions WHERE id = $1",
        )
        .bind(oldest.id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(oldest.at, committed);
        assert_eq!(held[1].cause, "service_update");
        assert_eq!(held[1].processing_id, None);

        // A second relay skips them without waiting, and takes the rest in order.
        let mut second = pool.begin().await.unwrap();
        let rest = tokio::time::timeout(Duration::from_secs(5), claim(&mut *second, 100))
            .await
            .expect("a concurrent relay does not wait");
        let rest_ids: Vec<i64> = rest.iter().map(|c| c.id).collect();
        assert_eq!(rest_ids.len(), 3);
        assert!(rest_ids.windows(2).all(|w| w[0] < w[1]));
        assert!(rest_ids[0] > first_ids[1]);

        // The first published its entries; the second's Redis failed: rolled back.
        assert_eq!(mark(&mut *first, &first_ids).await, 2);
        first.commit().await.unwrap();
        second.rollback().await.unwrap();

        let published: Vec<bool> = outbox(&pool).await.iter().map(|(_, p)| *p).collect();
        assert_eq!(published, [true, true, false, false, false]);
        let again: Vec<i64> = claim(&pool, 100).await.iter().map(|c| c.id).collect();
        assert_eq!(
            again, rest_ids,
            "the rolled-back rows wait for the next relay"
        );
        // A row is marked once.
        assert_eq!(mark(&pool, &first_ids).await, 0);
        assert_eq!(mark(&pool, &again).await, 3);
        assert!(claim(&pool, 100).await.is_empty());
    });
}

#[test]
fn published_level_changes_leave_the_outbox_after_their_window_and_unpublished_ones_never() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        for change in [120.0, -30.0, 30.0, -30.0] {
            apply(&db.pool, &Change::service("user-1", change)).await;
        }
        let ids: Vec<i64> = outbox(&db.pool).await.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 4);
        // Three published 40 days ago, one of them only 10; the last never published
        // (its transition 40 days old too).
        mark(&db.pool, &ids[..3]).await;
        sqlx::query(
            "UPDATE level_change_outbox SET published_at = now() - make_interval(days => 40)
             WHERE transition_id = ANY($1)",
        )
        .bind(&ids[..2])
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE level_change_outbox SET published_at = now() - make_interval(days => 10)
             WHERE transition_id = $1",
        )
        .bind(ids[2])
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE friendship_level_transitions SET created_at = now() - make_interval(days => 40)",
        )
        .execute(&db.pool)
        .await
        .unwrap();

        let prune = |limit: i64| {
            write(&retention::PRUNE_PUBLISHED)
                .bind(30i32)
                .bind(limit)
                .execute(&db.pool)
        };
        assert_eq!(prune(1).await.unwrap().rows_affected(), 1, "bounded");
        assert_eq!(prune(100).await.unwrap().rows_affected(), 1);
        assert_eq!(prune(100).await.unwrap().rows_affected(), 0);
        assert_eq!(outbox(&db.pool).await, [(ids[2], true), (ids[3], false)]);
        // The transitions stay: they are the facts, the outbox only their delivery.
        assert_eq!(transitions(&db.pool, "user-1").await.len(), 4);
    });
}
