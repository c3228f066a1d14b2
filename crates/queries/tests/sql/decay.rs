//! Inactivity decay: [`friendship::CLAIM_DECAY`] claims a user once for each whole day
//! of absence past the grace (one day per claim, each counted on the row by
//! [`friendship::APPLY_CHANGES`]), skips users without points or without any
//! interaction, skips another scorer's users without waiting; a decay change floors at
//! 0, writes its history line and transition (cause `decay`) with its outbox row; an
//! interaction starts the count again.

use std::time::Duration;

use friendship_queries::friendship;
use sqlx::PgExecutor;

use crate::support::{
    apply, apply_changes, connect, ensure_users, history, new_event, read, status, transitions,
    with_migrated_db, Change, ChangeExt, Locked,
};

const GRACE_DAYS: i32 = 2;

fn decay(user_id: &str, points: f64) -> Change {
    Change::decay(
        user_id,
        &friendship_domain::Decay {
            after_days: GRACE_DAYS as u16,
            points_per_day: points,
        },
        100,
    )
}

/// [`friendship::CLAIM_DECAY`] with [`GRACE_DAYS`]: the users claimed.
async fn claim(executor: impl PgExecutor<'_>, limit: i64) -> Vec<String> {
    let rows: Vec<Locked> = read(&friendship::CLAIM_DECAY)
        .bind(GRACE_DAYS)
        .bind(limit)
        .rows(executor)
        .await;
    let mut users: Vec<String> = rows.into_iter().map(|row| row.user_id).collect();
    users.sort();
    users
}

/// Moves a user's last interaction `hours` back from now.
async fn last_talked_hours_ago(executor: impl PgExecutor<'_>, user_id: &str, hours: i32) {
    sqlx::query(
        "UPDATE friendship_status SET last_interaction_date = now() - make_interval(hours => $2)
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(hours)
    .execute(executor)
    .await
    .unwrap();
}

async fn days_applied(executor: impl PgExecutor<'_>, user_id: &str) -> i32 {
    sqlx::query_scalar("SELECT decay_days_applied FROM friendship_status WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(executor)
        .await
        .unwrap()
}

/// A user who talked once, `score` points, `hours` ago.
async fn talked(pool: &sqlx::PgPool, user_id: &str, score: f64, hours: i32) {
    let id = new_event(pool, user_id).await;
    apply(pool, &Change::conversation(user_id, id, score, 1)).await;
    last_talked_hours_ago(pool, user_id, hours).await;
}

#[test]
fn each_day_past_the_grace_is_claimed_once_and_applied_with_its_history_and_transition() {
    with_migrated_db(|db| async move {
        ensure_users(&db.pool, &["user-1", "user-2", "user-3", "user-4"]).await;
        // Grace 2 days: user-1 away 4 days and an hour (2 days due), user-2 away 2
        // days and 23 hours (none: its first day begins at 3), user-3 away long but at
        // 0 points, user-4 never talked (a service update only).
        talked(&db.pool, "user-1", 120.0, 4 * 24 + 1).await;
        talked(&db.pool, "user-2", 50.0, 3 * 24 - 1).await;
        talked(&db.pool, "user-3", 0.0, 30 * 24).await;
        apply(&db.pool, &Change::service("user-4", 80.0)).await;
        assert_eq!(claim(&db.pool, 100).await, ["user-1"]);

        for expected_days in 1..=2 {
            let mut tx = db.pool.begin().await.unwrap();
            assert_eq!(claim(&mut *tx, 100).await, ["user-1"]);
            apply_changes(&mut *tx, &[decay("user-1", 50.0)])
                .await
                .unwrap();
            tx.commit().await.unwrap();
            assert_eq!(days_applied(&db.pool, "user-1").await, expected_days);
        }
        // Both days applied: nothing is due until the third begins.
        assert!(claim(&db.pool, 100).await.is_empty());
        last_talked_hours_ago(&db.pool, "user-1", 5 * 24 + 1).await;
        assert_eq!(claim(&db.pool, 100).await, ["user-1"]);
        let before = status(&db.pool, "user-1").await.unwrap();
        apply(&db.pool, &decay("user-1", 50.0)).await;
        // Decay is no interaction: the last interaction, streak and turns stay.
        let after = status(&db.pool, "user-1").await.unwrap();
        assert_eq!(
            (
                after.last_interaction_date,
                after.streak_day,
                after.total_turns
            ),
            (
                before.last_interaction_date,
                before.streak_day,
                before.total_turns
            )
        );

        // 120 → 70 (down to stranger) → 20 → 0: floored, the history keeps the request.
        let lines: Vec<(String, f64, f64, f64)> = history(&db.pool, "user-1")
            .await
            .into_iter()
            .skip(1)
            .map(|l| (l.cause, l.score_change, l.score_applied, l.score_after))
            .collect();
        assert_eq!(
            lines,
            [
                ("decay".to_owned(), -50.0, -50.0, 70.0),
                ("decay".to_owned(), -50.0, -50.0, 20.0),
                ("decay".to_owned(), -50.0, -50.0, 0.0),
            ]
        );
        let moved: Vec<(String, String, String)> = transitions(&db.pool, "user-1")
            .await
            .into_iter()
            .map(|t| (t.from_level, t.to_level, t.cause))
            .collect();
        assert_eq!(
            moved[1],
            ("acquaintance".into(), "stranger".into(), "decay".into())
        );
        let outbox: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM level_change_outbox o
             JOIN friendship_level_transitions t ON t.id = o.transition_id
             WHERE t.cause = 'decay' AND o.published_at IS NULL",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(outbox, 1, "published like any transition");
        // At 0 points nothing is due any more, however long the absence.
        last_talked_hours_ago(&db.pool, "user-1", 50 * 24).await;
        assert!(claim(&db.pool, 100).await.is_empty());
    });
}

#[test]
fn an_interaction_starts_the_days_of_decay_again() {
    with_migrated_db(|db| async move {
        ensure_users(&db.pool, &["user-1"]).await;
        talked(&db.pool, "user-1", 300.0, 5 * 24 + 1).await;
        apply(&db.pool, &decay("user-1", 10.0)).await;
        apply(&db.pool, &decay("user-1", 10.0)).await;
        assert_eq!(days_applied(&db.pool, "user-1").await, 2);

        // The user comes back: nothing is due, and the count starts from 0.
        let id = new_event(&db.pool, "user-1").await;
        apply(&db.pool, &Change::conversation("user-1", id, 5.0, 1)).await;
        assert_eq!(days_applied(&db.pool, "user-1").await, 0);
        assert!(claim(&db.pool, 100).await.is_empty());
        // A service update is no interaction: it neither resets nor counts a day.
        last_talked_hours_ago(&db.pool, "user-1", 3 * 24 + 1).await;
        apply(&db.pool, &Change::service("user-1", 1.0)).await;
        assert_eq!(days_applied(&db.pool, "user-1").await, 0);
        // Away again past the grace: its first day is due, once.
        assert_eq!(claim(&db.pool, 100).await, ["user-1"]);
        apply(&db.pool, &decay("user-1", 10.0)).await;
        assert!(claim(&db.pool, 100).await.is_empty());
    });
}

#[test]
fn scorers_deciding_at_once_take_disjoint_users_without_waiting_and_apply_each_day_once() {
    with_migrated_db(|db| async move {
        let pool = connect(&db.url, 4).await;
        let users: Vec<String> = (1..=5).map(|n| format!("user-{n}")).collect();
        let ids: Vec<&str> = users.iter().map(String::as_str).collect();
        ensure_users(&pool, &ids).await;
        for user in &users {
            talked(&pool, user, 100.0, 3 * 24 + 1).await;
        }

        let mut first = pool.begin().await.unwrap();
        let mine = claim(&mut *first, 2).await;
        assert_eq!(mine.len(), 2);
        let mut second = pool.begin().await.unwrap();
        let theirs = tokio::time::timeout(Duration::from_secs(5), claim(&mut *second, 100))
            .await
            .expect("a concurrent claim does not wait");
        assert_eq!(theirs.len(), 3);
        assert!(theirs.iter().all(|u| !mine.contains(u)));
        for (tx, claimed) in [(&mut first, &mine), (&mut second, &theirs)] {
            let changes: Vec<Change> = claimed.iter().map(|u| decay(u, 1.0)).collect();
            apply_changes(&mut **tx, &changes).await.unwrap();
        }
        first.commit().await.unwrap();
        second.commit().await.unwrap();

        // The day is applied: no scorer finds it due again.
        assert!(claim(&pool, 100).await.is_empty());
        for user in &users {
            let decays = history(&pool, user)
                .await
                .iter()
                .filter(|l| l.cause == "decay")
                .count();
            assert_eq!(decays, 1, "{user}");
            assert_eq!(status(&pool, user).await.unwrap().friendship_score, 99.0);
        }
    });
}
