//! Many transactions at once on one user: the increments in SQL and the row lock make the
//! result the exact sum of the changes, whatever the interleaving.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use friendship_domain::{conversation_score_change, plan, rounds, ConversationMetadata, Limits};
use friendship_queries::events;
use sqlx::PgPool;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::{
    apply, apply_change, apply_changes, apply_on, claim_up_to, connect, ensure_user, ensure_users,
    get_event, history, insert_event, new_event, status, try_lock_users, utc, with_migrated_db,
    write, Change, ChangeExt, Locked,
};

const WRITERS: usize = 40;

/// The change of writer `i`: distinct score changes, turns and topics.
fn change_of(i: usize, user_id: &str, processing_id: Uuid) -> Change {
    let date = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    Change::conversation(user_id, processing_id, (i + 1) as f64 * 0.25, i as i64 + 1)
        .topic(
            &format!("topic-{}", i % 4),
            (i % 7) as f64 * 0.5,
            (i % 3) as u64 + 1,
            date,
        )
        .topic("shared", 1.0, 1, date)
}

/// The score, turns and per-topic `(score, turns)` that `changes` add up to.
fn sums(changes: &[Change]) -> (f64, i64, BTreeMap<String, (f64, u64)>) {
    let mut topics: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for change in changes {
        for (name, update) in &change.topics {
            let entry = topics.entry(name.clone()).or_default();
            entry.0 += update.score_change;
            entry.1 += update.turns_increment;
        }
    }
    (
        changes.iter().map(|c| c.score_change).sum(),
        changes.iter().map(|c| c.turns_increment).sum(),
        topics,
    )
}

/// Asserts that the user's history is one serial chain: each line starts where the
/// previous one ended, so no change was applied to a stale score.
async fn assert_serial_history(pool: &PgPool, user_id: &str, lines: usize) {
    let history = history(pool, user_id).await;
    assert_eq!(history.len(), lines);
    for pair in history.windows(2) {
        assert_eq!(pair[1].score_before, pair[0].score_after, "{pair:?}");
    }
}

#[test]
fn forty_concurrent_conversations_for_one_user_add_up_exactly() {
    with_migrated_db(|db| async move {
        // One connection per writer, so all of them hold a transaction at once.
        let pool = connect(&db.url, WRITERS as u32).await;
        let mut changes = Vec::new();
        for i in 0..WRITERS {
            changes.push(change_of(i, "user-1", new_event(&pool, "user-1").await));
        }
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut writers = JoinSet::new();
        for change in changes.clone() {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            writers.spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                // Every writer is inside its transaction before any touches the user.
                barrier.wait().await;
                // As the scorer: ENSURE_USERS, then LOCK_USERS, APPLY_CHANGES, GET_STATUS.
                ensure_user(&mut *tx, &change.user_id).await;
                let changed = apply_on(&mut tx, &change).await;
                tx.commit().await.unwrap();
                changed
            });
        }
        let mut seen = Vec::new();
        while let Some(done) = writers.join_next().await {
            seen.push(done.unwrap().status);
        }
        // Each writer's status, read after its change under the lock, is one distinct
        // step of the serial chain: 40 distinct turn totals.
        seen.sort_by_key(|s| s.total_turns);
        seen.dedup_by_key(|s| s.total_turns);
        assert_eq!(seen.len(), WRITERS, "each change saw its own result");

        let (score, turns, topics) = sums(&changes);
        let s = status(&pool, "user-1").await.unwrap();
        assert_eq!((s.friendship_score, s.total_turns), (score, turns));
        assert_eq!((score, turns), (205.0, 820), "the sums themselves");
        let got: BTreeMap<String, (f64, u64)> = s
            .metrics()
            .into_iter()
            .map(|(name, m)| (name, (m.score, m.total_turns)))
            .collect();
        assert_eq!(got, topics);
        assert_eq!(got["shared"], (40.0, 40));
        assert_serial_history(&pool, "user-1", WRITERS).await;
        pool.close().await;
    });
}

#[test]
fn forty_concurrent_service_updates_without_a_prior_lock_add_up_exactly() {
    with_migrated_db(|db| async move {
        let pool = connect(&db.url, WRITERS as u32).await;
        ensure_user(&pool, "user-1").await;
        apply(&pool, &Change::service("user-1", 1_000.0)).await;
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut writers = JoinSet::new();
        let changes: Vec<Change> = (0..WRITERS)
            .map(|i| Change::service("user-1", (i + 1) as f64 * 1.5 - 20.0))
            .collect();
        for change in changes.clone() {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            // ENSURE_USERS then APPLY_CHANGES alone, without LOCK_USERS first: the statement
            // locks the row itself, so the increments still add up.
            writers.spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                barrier.wait().await;
                ensure_user(&mut *tx, &change.user_id).await;
                // One row only for the change that moves the level.
                assert!(apply_change(&mut *tx, &change).await.unwrap() <= 1);
                tx.commit().await.unwrap();
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        let (score, _, _) = sums(&changes);
        assert_eq!(score, 430.0);
        let s = status(&pool, "user-1").await.unwrap();
        assert_eq!(s.friendship_score, 1_000.0 + score);
        assert_eq!(s.friendship_level, "friend");
        assert_serial_history(&pool, "user-1", WRITERS + 1).await;
        pool.close().await;
    });
}

/// The metadata of conversation `i`, in the domain's normalised form.
fn metadata(i: usize) -> ConversationMetadata {
    let emotions = ["interesting", "boring", "happy", "sad", "neutral"];
    serde_json::from_value(serde_json::json!({
        "total_turns": i % 9 + 1,
        "user_initiated_questions": i % 4,
        "emotion": emotions[i % emotions.len()],
        "new_memories_count": i % 2,
        "topics": [{ "name": format!("topic-{}", i % 3), "turns": i % 5 + 1, "user_questions": i % 2 }],
    }))
    .unwrap()
}

/// The default bounds with the daily cap off: these tests check exact sums.
const UNCAPPED: Limits = Limits {
    daily_score_cap: 0.0,
    ..Limits::DEFAULT
};

/// Events one scorer claims per transaction: small, so batches interleave.
const BATCH: i64 = 4;

/// One scorer, as `scorer::run_batch` works (its first pass; the careful one
/// runs each event as a round of its own): claim a batch, sort it by user, lock
/// all the batch's users at once (ENSURE_USERS, in the order every scorer uses,
/// then LOCK_USERS), and for each round of the domain's [`rounds`] plan every
/// event with the domain's [`plan`] against its user's row as the events before
/// left it and apply the round with one APPLY_CHANGES (which marks each event
/// processed, or scored when the level moved); commit; FINISH_SCORED; until
/// nothing is due. After each round the users' rows are read back and must be
/// what [`Locked::after`] carries to the user's next event.
/// Returns how many events it scored.
async fn scorer(pool: PgPool, limits: Limits) -> usize {
    let mut scored = 0;
    loop {
        let mut tx = pool.begin().await.unwrap();
        let mut batch = claim_up_to(&mut *tx, BATCH).await;
        if batch.is_empty() {
            tx.commit().await.unwrap();
            return scored;
        }
        assert!(batch.len() <= BATCH as usize);
        batch.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let mut level_moved = Vec::new();
        let ids: Vec<&str> = batch.iter().map(|c| c.user_id.as_str()).collect();
        ensure_users(&mut *tx, &ids).await;
        let mut users: BTreeMap<String, Locked> = try_lock_users(&mut *tx, &ids)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.user_id.clone(), row))
            .collect();
        for round in rounds(ids.iter().copied()) {
            let changes: Vec<Change> = round
                .iter()
                .map(|&i| {
                    let claimed = &batch[i];
                    let metadata: ConversationMetadata =
                        serde_json::from_str(&claimed.payload).unwrap();
                    let locked = &users[&claimed.user_id];
                    plan(
                        locked,
                        claimed.processing_id,
                        &metadata,
                        utc(claimed.now),
                        &limits,
                    )
                })
                .collect();
            let moved = apply_changes(&mut *tx, &changes).await.unwrap();
            let round_ids: Vec<&str> = round.iter().map(|&i| ids[i]).collect();
            let now = try_lock_users(&mut *tx, &round_ids).await.unwrap();
            assert_eq!(now.len(), round.len(), "one change per user in a round");
            let mut moved_here = 0;
            for ((&i, change), row) in round.iter().zip(&changes).zip(now) {
                let claimed = &batch[i];
                let before = &users[&claimed.user_id];
                assert_eq!(
                    row,
                    before.after(change, utc(claimed.now), row.friendship_level),
                    "Locked::after carries what APPLY_CHANGES did"
                );
                let moved = row.friendship_level != before.friendship_level;
                let marked: String = sqlx::query_scalar(
                    "SELECT status FROM conversation_events WHERE processing_id = $1",
                )
                .bind(claimed.processing_id)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
                assert_eq!(
                    marked,
                    if moved { "scored" } else { "processed" },
                    "APPLY_CHANGES marks the event it scores"
                );
                if moved {
                    moved_here += 1;
                    level_moved.push(claimed.processing_id);
                }
                users.insert(row.user_id.clone(), row);
            }
            assert_eq!(moved, moved_here, "one affected row per level that moved");
        }
        tx.commit().await.unwrap();
        // After the commit (and the cache invalidation): the scored events finish.
        let finished = write(&events::FINISH_SCORED)
            .bind(serde_json::to_string(&level_moved).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(finished.rows_affected(), level_moved.len() as u64);
        scored += batch.len();
    }
}

#[test]
fn concurrent_scorers_score_every_event_once_even_when_it_was_posted_twice() {
    with_migrated_db(|db| async move {
        const EVENTS: usize = 90;
        const SCORERS: usize = 6;
        let users = ["user-a", "user-b", "user-c"];
        let pool = connect(&db.url, SCORERS as u32 + 1).await;
        let mut expected: BTreeMap<&str, (f64, i64)> = BTreeMap::new();
        let mut ids = Vec::new();
        for i in 0..EVENTS {
            let user = users[i % users.len()];
            let m = metadata(i);
            let payload = serde_json::to_string(&m).unwrap();
            let id = insert_event(&pool, &format!("conv-{i}"), user, &payload)
                .await
                .unwrap();
            assert_eq!(
                insert_event(&pool, &format!("conv-{i}"), user, &payload).await,
                None
            );
            ids.push(id);
            let entry = expected.entry(user).or_default();
            entry.0 += conversation_score_change(&m);
            entry.1 += i64::from(m.total_turns.get());
        }

        let mut scorers = JoinSet::new();
        for _ in 0..SCORERS {
            scorers.spawn(scorer(pool.clone(), UNCAPPED));
        }
        let mut scored = 0;
        while let Some(done) = scorers.join_next().await {
            scored += done.unwrap();
        }
        assert_eq!(scored, EVENTS);

        for id in ids {
            assert_eq!(get_event(&pool, id).await.status, "processed");
        }
        for (user, (score, turns)) in expected {
            let s = status(&pool, user).await.unwrap();
            assert_eq!(
                (s.friendship_score, s.total_turns),
                (score, turns),
                "{user}"
            );
            assert_eq!(s.streak_day, 1, "all on one day");
            assert_serial_history(&pool, user, EVENTS / users.len()).await;
        }
        pool.close().await;
    });
}

#[test]
fn forty_concurrent_capped_conversations_for_one_user_apply_exactly_the_cap() {
    with_migrated_db(|db| async move {
        const CAP: f64 = 300.0;
        let pool = connect(&db.url, WRITERS as u32).await;
        let mut changes = Vec::new();
        for i in 0..WRITERS {
            // Each asks more than CAP / 40 (7.5): together 40 × 10.25 = 410.
            let id = new_event(&pool, "user-1").await;
            changes.push(Change {
                daily_score_cap: Some(CAP),
                ..Change::conversation("user-1", id, 10.0 + (i % 2) as f64 * 0.5, 1)
            });
        }
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut writers = JoinSet::new();
        for change in changes {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            writers.spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                barrier.wait().await;
                ensure_user(&mut *tx, &change.user_id).await;
                apply_on(&mut tx, &change).await;
                tx.commit().await.unwrap();
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        let lines = history(&pool, "user-1").await;
        assert_eq!(lines.len(), WRITERS);
        let asked: f64 = lines.iter().map(|l| l.score_change).sum();
        let applied: f64 = lines.iter().map(|l| l.score_applied).sum();
        assert_eq!((asked, applied), (410.0, CAP));
        assert_eq!(status(&pool, "user-1").await.unwrap().friendship_score, CAP);
        assert_serial_history(&pool, "user-1", WRITERS).await;
        pool.close().await;
    });
}
