//! Friendship status and a change as the components make it ([`friendship::LOCK_USERS`],
//! [`friendship::APPLY_CHANGES`], then [`friendship::GET_STATUS`]): increments in SQL, the
//! floor at 0, the generated level, the level before, the history and level transitions,
//! topic merging, the keep-when-NULL parameters, and the exactly-once guard.

use chrono::{DateTime, TimeZone, Utc};
use friendship_domain::{Level, TopicMetric};
use friendship_queries::friendship;
use serde::Deserialize;

use crate::support::{
    apply, apply_change, apply_changes, db_now, ensure_user, ensure_users, history, lock_user,
    new_event, read, sqlstate, status, transitions, try_apply, try_lock_user, try_lock_users, utc,
    with_migrated_db, Change, ChangeExt, HistoryLine, Locked, Transition, LOCK_NOT_AVAILABLE,
    UNIQUE_VIOLATION,
};

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap()
}

fn metric(score: f64, total_turns: u64, last_date: DateTime<Utc>) -> TopicMetric {
    TopicMetric {
        score,
        total_turns,
        last_date,
    }
}

/// [`friendship::GET_LEVEL`].
async fn level_of(pool: &sqlx::PgPool, user_id: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Row {
        friendship_level: String,
    }
    read(&friendship::GET_LEVEL)
        .bind(user_id)
        .optional::<Row>(pool)
        .await
        .map(|row| row.friendship_level)
}

/// The `name type` pairs of [`friendship::APPLY_CHANGES`]'s `jsonb_to_recordset` column list.
fn apply_changes_columns() -> Vec<(String, String)> {
    let sql = friendship::APPLY_CHANGES.sql;
    let start = sql
        .find("jsonb_to_recordset($1::text::jsonb) AS c(")
        .expect("APPLY_CHANGES reads its changes with jsonb_to_recordset")
        + "jsonb_to_recordset($1::text::jsonb) AS c(".len();
    let end = start + sql[start..].find(')').unwrap();
    sql[start..end]
        .split(',')
        .map(|column| {
            let mut words = column.split_whitespace();
            let name = words.next().unwrap().to_owned();
            (name, words.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// `jsonb_to_recordset` silently ignores a key its column list does not name (and
/// reads NULL for a column the JSON lacks): a field added to the domain's `Change`
/// and not to the statement, or the other way round, fails here, as does a type
/// that cannot hold the field's JSON value.
#[test]
fn apply_changes_reads_exactly_the_fields_a_change_writes() {
    let change = Change {
        streak_day: Some(1),
        last_emotion: Some(friendship_domain::Emotion::Happy),
        daily_score_cap: Some(450.0),
        ..Change::conversation("u", uuid::Uuid::nil(), 1.5, 2).topic("music", 1.0, 1, day(1))
    };
    let written = serde_json::to_value(&change).unwrap();
    let written = written.as_object().unwrap();
    let columns = apply_changes_columns();
    let mut names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let mut fields: Vec<&str> = written.keys().map(String::as_str).collect();
    names.sort_unstable();
    fields.sort_unstable();
    assert_eq!(
        names, fields,
        "APPLY_CHANGES's column list and Change's fields"
    );
    for (name, sql_type) in &columns {
        let value = &written[name.as_str()];
        let fits = match value {
            serde_json::Value::String(_) => ["text", "uuid"].contains(&sql_type.as_str()),
            serde_json::Value::Number(n) if n.is_f64() => sql_type == "float8",
            serde_json::Value::Number(_) => ["int4", "int8", "float8"].contains(&sql_type.as_str()),
            serde_json::Value::Bool(_) => sql_type == "bool",
            serde_json::Value::Object(_) => sql_type == "jsonb",
            _ => false,
        };
        assert!(
            fits,
            "{name}: {value} does not fit the column type {sql_type}"
        );
    }
}

#[test]
fn ensure_user_creates_a_stranger_with_no_history_once() {
    with_migrated_db(|db| async move {
        assert!(status(&db.pool, "user-1").await.is_none());
        assert_eq!(level_of(&db.pool, "user-1").await, None);
        assert!(lock_user(&db.pool, "user-1").await.is_none());
        assert_eq!(
            ensure_user(&db.pool, "user-1").await,
            1,
            "a new user: one row"
        );
        apply(&db.pool, &Change::service("user-1", 42.0)).await;
        assert_eq!(
            ensure_user(&db.pool, "user-1").await,
            1,
            "a known user: its row, locked by a no-op update"
        );

        let s = status(&db.pool, "user-1").await.unwrap();
        assert_eq!(
            s.friendship_score, 42.0,
            "a second ENSURE_USERS resets nothing"
        );
        assert_eq!(s.friendship_level, "stranger");
        assert_eq!(
            level_of(&db.pool, "user-1").await.as_deref(),
            Some("stranger")
        );

        ensure_user(&db.pool, "user-2").await;
        assert_eq!(
            lock_user(&db.pool, "user-2").await,
            Some(Locked {
                user_id: "user-2".into(),
                last_interaction: None,
                streak_day: 0,
                friendship_level: Level::Stranger,
            })
        );
        let fresh = status(&db.pool, "user-2").await.unwrap();
        assert_eq!(fresh.user_id, "user-2");
        assert_eq!(
            (
                fresh.friendship_score,
                fresh.friendship_level.as_str(),
                fresh.streak_day,
                fresh.total_turns
            ),
            (0.0, "stranger", 0, 0)
        );
        assert_eq!(
            (fresh.last_interaction_date, fresh.last_emotion.as_deref()),
            (None, None)
        );
        assert!(fresh.metrics().is_empty());
        assert!(history(&db.pool, "user-2").await.is_empty());
    });
}

#[test]
fn a_change_adds_to_the_score_and_turns_and_returns_the_previous_level() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let first = apply(
            &db.pool,
            &Change::conversation("user-1", new_event(&db.pool, "user-1").await, 30.5, 4),
        )
        .await;
        assert_eq!(
            (first.status.friendship_score, first.status.total_turns),
            (30.5, 4)
        );
        assert_eq!(first.previous_level, "stranger");

        let second = apply(
            &db.pool,
            &Change::conversation("user-1", new_event(&db.pool, "user-1").await, 80.0, 6),
        )
        .await;
        assert_eq!(
            (second.status.friendship_score, second.status.total_turns),
            (110.5, 10)
        );
        assert_eq!(
            (
                second.previous_level.as_str(),
                second.status.friendship_level.as_str()
            ),
            ("stranger", "acquaintance")
        );

        let third = apply(&db.pool, &Change::service("user-1", 1.0)).await;
        assert_eq!(
            (third.status.friendship_score, third.status.total_turns),
            (111.5, 10)
        );
        assert_eq!(third.previous_level, "acquaintance");

        let read = status(&db.pool, "user-1").await.unwrap();
        assert_eq!(read.friendship_score, 111.5);
        assert_eq!(read.friendship_level, "acquaintance");
        assert_eq!(read.topic_metrics, third.status.topic_metrics);
    });
}

#[test]
fn a_big_negative_change_floors_the_score_at_zero_and_the_history_keeps_the_request() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        apply(&db.pool, &Change::service("user-1", 120.0)).await;
        let floored = apply(&db.pool, &Change::service("user-1", -1_000.0)).await;
        assert_eq!(floored.status.friendship_score, 0.0);
        assert_eq!(floored.status.friendship_level, "stranger");
        assert_eq!(floored.previous_level, "acquaintance");
        let again = apply(&db.pool, &Change::service("user-1", -5.0)).await;
        assert_eq!(again.status.friendship_score, 0.0, "never negative");
        assert_eq!(
            history(&db.pool, "user-1").await[1..],
            [
                HistoryLine {
                    cause: "service_update".into(),
                    processing_id: None,
                    score_change: -1_000.0,
                    score_applied: -1_000.0,
                    score_before: 120.0,
                    score_after: 0.0
                },
                HistoryLine {
                    cause: "service_update".into(),
                    processing_id: None,
                    score_change: -5.0,
                    score_applied: -5.0,
                    score_before: 0.0,
                    score_after: 0.0
                },
            ]
        );
    });
}

#[test]
fn every_change_writes_one_history_line_and_a_transition_only_when_the_level_changes() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let e1 = new_event(&db.pool, "user-1").await;
        let e2 = new_event(&db.pool, "user-1").await;
        let e3 = new_event(&db.pool, "user-1").await;
        let steps = [
            (Change::conversation("user-1", e1, 150.0, 1), "acquaintance"),
            (Change::conversation("user-1", e2, 10.0, 1), "acquaintance"),
            (Change::service("user-1", 400.0), "friend"),
            (Change::conversation("user-1", e3, 0.0, 1), "friend"),
            (Change::service("user-1", -1_000.0), "stranger"),
        ];
        for (change, level) in &steps {
            assert_eq!(
                apply(&db.pool, change).await.status.friendship_level,
                *level
            );
        }

        assert_eq!(
            transitions(&db.pool, "user-1").await,
            [
                Transition {
                    from_level: "stranger".into(),
                    to_level: "acquaintance".into(),
                    score: 150.0,
                    cause: "conversation".into(),
                    processing_id: Some(e1)
                },
                Transition {
                    from_level: "acquaintance".into(),
                    to_level: "friend".into(),
                    score: 560.0,
                    cause: "service_update".into(),
                    processing_id: None
                },
                Transition {
                    from_level: "friend".into(),
                    to_level: "stranger".into(),
                    score: 0.0,
                    cause: "service_update".into(),
                    processing_id: None
                },
            ]
        );
        let lines = history(&db.pool, "user-1").await;
        let summary: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l.processing_id,
                    l.score_change,
                    l.score_before,
                    l.score_after,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Some(e1), 150.0, 0.0, 150.0),
                (Some(e2), 10.0, 150.0, 160.0),
                (None, 400.0, 160.0, 560.0),
                (Some(e3), 0.0, 560.0, 560.0),
                (None, -1_000.0, 560.0, 0.0),
            ]
        );
        assert!(transitions(&db.pool, "user-2").await.is_empty());
    });
}

#[test]
fn topic_metrics_merge_per_topic_and_leave_other_topics_alone() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let first = Change::service("user-1", 0.0)
            .topic("music", 4.5, 3, day(1))
            .topic("games", 2.0, 1, day(1));
        apply(&db.pool, &first).await;
        let second = Change::service("user-1", 0.0)
            .topic("music", 1.25, 2, day(2))
            .topic("art", 3.0, 5, day(2));
        let changed = apply(&db.pool, &second).await;
        let expected = [
            ("art".to_owned(), metric(3.0, 5, day(2))),
            ("games".to_owned(), metric(2.0, 1, day(1))),
            ("music".to_owned(), metric(5.75, 5, day(2))),
        ]
        .into();
        assert_eq!(changed.status.metrics(), expected);

        let untouched = apply(&db.pool, &Change::service("user-1", 1.0)).await;
        assert_eq!(untouched.status.metrics(), expected, "no topic, no change");
        assert_eq!(
            status(&db.pool, "user-1").await.unwrap().metrics(),
            expected
        );
        // Only the three documented keys per topic, so the strict domain decoder accepts them.
        let raw: serde_json::Value = serde_json::from_str(&untouched.status.topic_metrics).unwrap();
        let keys: Vec<_> = raw["music"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["last_date", "score", "total_turns"]);
    });
}

#[test]
fn topic_scores_floor_at_zero_while_their_turns_still_add_up() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        apply(
            &db.pool,
            &Change::service("user-1", 0.0).topic("music", 4.5, 3, day(1)),
        )
        .await;
        let floored = apply(
            &db.pool,
            &Change::service("user-1", 0.0).topic("music", -10.0, 2, day(2)),
        )
        .await;
        assert_eq!(floored.status.metrics()["music"], metric(0.0, 5, day(2)));
        let fresh = apply(
            &db.pool,
            &Change::service("user-1", 0.0).topic("chess", -3.0, 1, day(3)),
        )
        .await;
        assert_eq!(
            fresh.status.metrics()["chess"],
            metric(0.0, 1, day(3)),
            "a new topic floors too"
        );
        let after = apply(
            &db.pool,
            &Change::service("user-1", 0.0).topic("music", 1.0, 0, day(4)),
        )
        .await;
        assert_eq!(
            after.status.metrics()["music"],
            metric(1.0, 5, day(4)),
            "counted from 0, not -5.5"
        );
    });
}

#[test]
fn null_streak_and_emotion_keep_the_stored_values() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let set = Change {
            streak_day: Some(3),
            last_emotion: Some(friendship_domain::Emotion::Happy),
            ..Change::conversation("user-1", new_event(&db.pool, "user-1").await, 1.0, 1)
        };
        let s = apply(&db.pool, &set).await.status;
        assert_eq!(
            (s.streak_day, s.last_emotion.as_deref()),
            (3, Some("happy"))
        );

        let s = apply(&db.pool, &Change::service("user-1", 1.0))
            .await
            .status;
        assert_eq!(
            (s.streak_day, s.last_emotion.as_deref()),
            (3, Some("happy")),
            "NULL keeps"
        );

        let reset = Change {
            streak_day: Some(0),
            last_emotion: Some(friendship_domain::Emotion::Sad),
            ..Change::service("user-1", 1.0)
        };
        let s = apply(&db.pool, &reset).await.status;
        assert_eq!((s.streak_day, s.last_emotion.as_deref()), (0, Some("sad")));
    });
}

#[test]
fn an_interaction_sets_last_interaction_date_and_a_service_update_leaves_it() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let s = apply(&db.pool, &Change::service("user-1", 1.0))
            .await
            .status;
        assert_eq!(s.last_interaction_date, None);

        let mut tx = db.pool.begin().await.unwrap();
        let event = new_event(&mut *tx, "user-1").await;
        let s = apply(&mut *tx, &Change::conversation("user-1", event, 1.0, 1))
            .await
            .status;
        let set = s
            .last_interaction_date
            .expect("a conversation is an interaction");
        assert_eq!(
            utc(set),
            db_now(&mut *tx).await,
            "the transaction's now(), in UTC"
        );
        tx.commit().await.unwrap();

        let s = apply(&db.pool, &Change::service("user-1", 1.0))
            .await
            .status;
        assert_eq!(s.last_interaction_date, Some(set));
        let mut tx = db.pool.begin().await.unwrap();
        assert_eq!(
            lock_user(&mut *tx, "user-1").await,
            Some(Locked {
                user_id: "user-1".into(),
                last_interaction: Some(utc(set)),
                streak_day: 0,
                friendship_level: Level::Stranger,
            })
        );
    });
}

#[test]
fn applying_the_same_event_twice_fails_with_a_unique_violation_and_changes_nothing() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let event = new_event(&db.pool, "user-1").await;
        let change = Change::conversation("user-1", event, 25.0, 3).topic("music", 2.0, 3, day(1));
        let first = apply(&db.pool, &change).await.status;

        let mut tx = db.pool.begin().await.unwrap();
        assert_eq!(
            sqlstate(try_apply(&mut *tx, &change).await),
            UNIQUE_VIOLATION
        );
        tx.rollback().await.unwrap();
        assert_eq!(
            sqlstate(try_apply(&db.pool, &change).await),
            UNIQUE_VIOLATION
        );

        let now = status(&db.pool, "user-1").await.unwrap();
        assert_eq!(
            (now.friendship_score, now.total_turns, now.metrics()),
            (first.friendship_score, first.total_turns, first.metrics())
        );
        assert_eq!(history(&db.pool, "user-1").await.len(), 1);
        // Service updates carry no event and are never deduplicated.
        apply(&db.pool, &Change::service("user-1", 1.0)).await;
        apply(&db.pool, &Change::service("user-1", 1.0)).await;
        assert_eq!(
            status(&db.pool, "user-1").await.unwrap().friendship_score,
            27.0
        );
    });
}

#[test]
fn a_change_to_an_unknown_user_writes_nothing() {
    with_migrated_db(|db| async move {
        // The affected-row count of APPLY_CHANGES is its level transition: none here.
        let affected = apply_change(&db.pool, &Change::service("nobody", 500.0))
            .await
            .unwrap();
        assert_eq!(affected, 0);
        assert!(status(&db.pool, "nobody").await.is_none());
        assert!(history(&db.pool, "nobody").await.is_empty());
        assert!(transitions(&db.pool, "nobody").await.is_empty());
    });
}

/// A transaction that gives up waiting for a row lock after 200 ms.
async fn impatient(pool: &sqlx::PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '200ms'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[test]
fn lock_user_holds_the_user_row_until_the_transaction_ends() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        ensure_user(&db.pool, "user-2").await;
        let mut holder = db.pool.begin().await.unwrap();
        lock_user(&mut *holder, "user-1")
            .await
            .expect("user-1 exists");

        let mut other = impatient(&db.pool).await;
        // APPLY_CHANGES alone waits for the row (its own FOR UPDATE)...
        let blocked = apply_change(&mut *other, &Change::service("user-1", 1.0)).await;
        assert_eq!(sqlstate(blocked), LOCK_NOT_AVAILABLE);
        other.rollback().await.unwrap();
        // ...so does ENSURE_USERS, which is where the components wait (a write,
        // whose timeout reaches them with its SQLSTATE on every Spin version)...
        let mut other = impatient(&db.pool).await;
        let blocked = sqlx::query(friendship::ENSURE_USERS.sql)
            .bind(r#"["user-1"]"#)
            .execute(&mut *other)
            .await;
        assert_eq!(sqlstate(blocked), LOCK_NOT_AVAILABLE);
        other.rollback().await.unwrap();
        // ...and so does another LOCK_USERS.
        let mut other = impatient(&db.pool).await;
        let blocked = try_lock_user(&mut *other, "user-1").await;
        assert_eq!(sqlstate(blocked), LOCK_NOT_AVAILABLE);
        other.rollback().await.unwrap();
        apply(&db.pool, &Change::service("user-2", 1.0)).await;

        apply(&mut *holder, &Change::service("user-1", 2.0)).await;
        holder.commit().await.unwrap();
        assert_eq!(
            apply(&db.pool, &Change::service("user-1", 1.0))
                .await
                .status
                .friendship_score,
            3.0
        );
    });
}

#[test]
fn lock_user_answers_the_level_before_the_change_and_get_status_the_one_after() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let mut tx = db.pool.begin().await.unwrap();
        let before = lock_user(&mut *tx, "user-1").await.unwrap();
        assert_eq!(before.friendship_level, Level::Stranger);
        assert_eq!(
            apply_change(&mut *tx, &Change::service("user-1", 600.0))
                .await
                .unwrap(),
            1,
            "stranger to friend: one transition"
        );
        let after = status(&mut *tx, "user-1").await.unwrap();
        assert_eq!(
            (after.friendship_score, after.friendship_level.as_str()),
            (600.0, "friend"),
            "read in the same transaction, the change is there"
        );
        // Within the transaction, LOCK_USERS now sees the new level: the level before a
        // change is only the one read before it.
        assert_eq!(
            lock_user(&mut *tx, "user-1")
                .await
                .unwrap()
                .friendship_level,
            Level::Friend
        );
        tx.rollback().await.unwrap();
        assert_eq!(
            status(&db.pool, "user-1").await.unwrap().friendship_score,
            0.0,
            "rolled back with its transaction"
        );
        assert!(history(&db.pool, "user-1").await.is_empty());
    });
}

#[test]
fn apply_change_affects_a_row_exactly_when_the_level_moves() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        for (change, moved) in [
            (50.0, 0),
            (49.0, 0),
            (1.0, 1),
            (-0.5, 1),
            (0.5, 1),
            (400.0, 1),
        ] {
            let mut tx = db.pool.begin().await.unwrap();
            lock_user(&mut *tx, "user-1").await.unwrap();
            let affected = apply_change(&mut *tx, &Change::service("user-1", change))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            assert_eq!(affected, moved, "a change of {change}");
        }
        let levels: Vec<(String, String)> = transitions(&db.pool, "user-1")
            .await
            .into_iter()
            .map(|t| (t.from_level, t.to_level))
            .collect();
        assert_eq!(levels.len(), 4);
    });
}

#[test]
fn ensure_users_creates_the_new_and_locks_all_and_lock_users_answers_them_in_byte_order() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-b").await;
        let mut tx = db.pool.begin().await.unwrap();
        assert_eq!(
            ensure_users(&mut *tx, &["user-c", "user-b", "User-a", "user-c"]).await,
            3,
            "one row per distinct user"
        );
        let locked = try_lock_users(&mut *tx, &["user-c", "User-a", "user-b", "nobody"])
            .await
            .unwrap();
        let ids: Vec<&str> = locked.iter().map(|l| l.user_id.as_str()).collect();
        assert_eq!(
            ids,
            ["User-a", "user-b", "user-c"],
            "byte order, unknown ids absent"
        );
        // Every listed user is locked until the transaction ends.
        for user in ["User-a", "user-b", "user-c"] {
            let mut other = impatient(&db.pool).await;
            let blocked = sqlx::query(friendship::ENSURE_USERS.sql)
                .bind(serde_json::to_string(&[user]).unwrap())
                .execute(&mut *other)
                .await;
            assert_eq!(sqlstate(blocked), LOCK_NOT_AVAILABLE, "{user}");
        }
        tx.commit().await.unwrap();
        assert_eq!(ensure_users(&db.pool, &[]).await, 0);
    });
}

/// Two users, first and second in byte order, that the `SELECT DISTINCT` of
/// [`friendship::ENSURE_USERS`] would return the other way round without its
/// `ORDER BY … COLLATE "C"` (in its hash order), from either input order.
async fn users_whose_hash_order_is_not_their_byte_order(pool: &sqlx::PgPool) -> (String, String) {
    let distinct = "SELECT DISTINCT u.user_id \
                    FROM jsonb_array_elements_text($1::text::jsonb) AS u(user_id)";
    for i in 0..200 {
        let (x, y) = (format!("u-{i:03}"), format!("u-{:03}", i + 1));
        let mut reversed = true;
        for input in [[&x, &y], [&y, &x]] {
            let out: Vec<String> = sqlx::query_scalar(distinct)
                .bind(serde_json::to_string(&input).unwrap())
                .fetch_all(pool)
                .await
                .unwrap();
            reversed &= out == [y.clone(), x.clone()];
        }
        if reversed {
            return (x, y);
        }
    }
    panic!("no pair of users whose hash order differs from their byte order");
}

/// Invariant 20: every locker of users takes them in byte order, so batches of
/// overlapping users never deadlock. Deterministic: another transaction holds the
/// byte-first user and, once [`friendship::ENSURE_USERS`] waits, takes the second;
/// if ENSURE_USERS had locked the second first (as it would in its hash order
/// without the `ORDER BY`), the two would deadlock and Postgres would fail one
/// with 40P01.
#[test]
fn batches_of_overlapping_users_in_any_order_never_deadlock() {
    with_migrated_db(|db| async move {
        let (first, second) = users_whose_hash_order_is_not_their_byte_order(&db.pool).await;
        ensure_users(&db.pool, &[&first, &second]).await;
        let lock = "SELECT user_id FROM friendship_status WHERE user_id = $1 FOR UPDATE";
        for input in [[&first, &second], [&second, &first]] {
            let mut holder = db.pool.begin().await.unwrap();
            sqlx::query(lock)
                .bind(&first)
                .execute(&mut *holder)
                .await
                .unwrap();
            let pool = db.pool.clone();
            let ids = serde_json::to_string(&input).unwrap();
            let ensure = tokio::spawn(async move {
                let mut tx = pool.begin().await?;
                sqlx::query(friendship::ENSURE_USERS.sql)
                    .bind(ids)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            });
            // Until ENSURE_USERS waits for the first user's lock.
            let mut waited = false;
            for _ in 0..500 {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND datname = current_database()",
                )
                .fetch_one(&db.pool)
                .await
                .unwrap();
                if waiting > 0 {
                    waited = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(waited, "ENSURE_USERS waits for the held user");
            let second_lock = sqlx::query(lock).bind(&second).execute(&mut *holder).await;
            assert!(
                second_lock.is_ok(),
                "{input:?}: the holder takes the second user: {second_lock:?}"
            );
            holder.commit().await.unwrap();
            let ensured = ensure.await.unwrap();
            assert!(ensured.is_ok(), "{input:?}: ENSURE_USERS: {ensured:?}");
        }
    });
}

#[test]
fn one_statement_applies_a_round_of_changes_each_as_if_alone() {
    with_migrated_db(|db| async move {
        for user in ["user-a", "user-b", "user-c"] {
            ensure_user(&db.pool, user).await;
        }
        apply(&db.pool, &Change::service("user-b", 10.0)).await;
        let events = [
            new_event(&db.pool, "user-a").await,
            new_event(&db.pool, "user-b").await,
            new_event(&db.pool, "user-c").await,
        ];
        let changes = [
            Change::conversation("user-a", events[0], 120.0, 3).topic("music", 2.5, 3, day(2)),
            // floored at 0 on its own, whatever the others add
            Change::conversation("user-b", events[1], -30.0, 1),
            Change::conversation("user-c", events[2], 4.5, 2),
        ];
        let mut tx = db.pool.begin().await.unwrap();
        assert_eq!(
            apply_changes(&mut *tx, &changes).await.unwrap(),
            1,
            "one change moved its user's level"
        );
        tx.commit().await.unwrap();

        let a = status(&db.pool, "user-a").await.unwrap();
        assert_eq!((a.friendship_score, a.total_turns), (120.0, 3));
        assert_eq!(a.friendship_level, "acquaintance");
        assert_eq!(a.metrics()["music"], metric(2.5, 3, day(2)));
        let b = status(&db.pool, "user-b").await.unwrap();
        assert_eq!((b.friendship_score, b.total_turns), (0.0, 1));
        let c = status(&db.pool, "user-c").await.unwrap();
        assert_eq!((c.friendship_score, c.total_turns), (4.5, 2));

        assert_eq!(history(&db.pool, "user-b").await.len(), 2);
        let line = &history(&db.pool, "user-b").await[1];
        assert_eq!(
            (line.processing_id, line.score_before, line.score_after),
            (Some(events[1]), 10.0, 0.0)
        );
        assert_eq!(transitions(&db.pool, "user-a").await.len(), 1);
        assert!(transitions(&db.pool, "user-c").await.is_empty());
        let marks: Vec<(String,)> = sqlx::query_as(
            "SELECT status FROM conversation_events WHERE processing_id = ANY($1) ORDER BY user_id",
        )
        .bind(&events[..])
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let marks: Vec<&str> = marks.iter().map(|(s,)| s.as_str()).collect();
        assert_eq!(marks, ["scored", "processed", "processed"]);
    });
}

// ----- bounds: topics per user, the daily score cap ---------------------------

/// A conversation of event `processing_id` asking `score_change` points,
/// capped at `cap` points a day.
fn capped(user_id: &str, processing_id: uuid::Uuid, score_change: f64, cap: f64) -> Change {
    Change {
        daily_score_cap: Some(cap),
        ..Change::conversation(user_id, processing_id, score_change, 1)
    }
}

/// `(daily_gain, daily_gain_date = today in UTC)` of a user (not read by any
/// statement, so read directly).
async fn daily_gain(pool: &sqlx::PgPool, user_id: &str) -> (f64, Option<bool>) {
    sqlx::query_as(
        "SELECT daily_gain::float8, daily_gain_date = (now() AT TIME ZONE 'UTC')::date
         FROM friendship_status WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[test]
fn a_user_keeps_at_most_max_topics_the_least_recently_engaged_going_first_ties_by_name() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let bounded = |change: Change| Change {
            max_topics: 3,
            ..change
        };
        // Four topics on three days: "old" goes, the rest stay.
        let mut first = Change::service("user-1", 0.0);
        for (name, d) in [("old", 1), ("mid", 2), ("new-b", 3), ("new-a", 3)] {
            first = first.topic(name, 1.0, 1, day(d));
        }
        apply(&db.pool, &bounded(first)).await;
        let names: Vec<String> = status(&db.pool, "user-1")
            .await
            .unwrap()
            .metrics()
            .into_keys()
            .collect();
        assert_eq!(names, ["mid", "new-a", "new-b"]);

        // An update of "mid" makes it the most recent; two new topics of the
        // same day as "new-a" and "new-b": among the four of day 3 the two
        // that sort last ("new-b", "z") go.
        let second = Change::conversation("user-1", new_event(&db.pool, "user-1").await, 1.0, 1)
            .topic("mid", 1.0, 1, day(4))
            .topic("z", 1.0, 1, day(3))
            .topic("a", 1.0, 1, day(3));
        apply(&db.pool, &bounded(second)).await;
        let metrics = status(&db.pool, "user-1").await.unwrap().metrics();
        let names: Vec<&str> = metrics.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "mid", "new-a"]);
        assert_eq!(metrics["mid"], metric(2.0, 2, day(4)), "merged, then kept");

        // The default bound: 100, whatever a change brings.
        let mut flood = Change::service("user-1", 0.0);
        for i in 0..150 {
            flood = flood.topic(&format!("t{i:03}"), 1.0, 1, day(5));
        }
        assert_eq!(flood.max_topics, 100);
        apply(&db.pool, &flood).await;
        let metrics = status(&db.pool, "user-1").await.unwrap().metrics();
        assert_eq!(metrics.len(), 100);
        assert!(
            metrics.keys().all(|k| k.as_str() < "t100"),
            "the names that sort last went: {:?}",
            metrics.keys().last()
        );
    });
}

#[test]
fn the_daily_cap_lets_through_what_is_left_of_the_day_and_the_history_keeps_both() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        for asked in [40.0, 50.0, 30.0, 0.0] {
            let id = new_event(&db.pool, "user-1").await;
            apply(&db.pool, &capped("user-1", id, asked, 100.0)).await;
        }
        let lines = history(&db.pool, "user-1").await;
        let figures: Vec<_> = lines
            .iter()
            .map(|l| (l.score_change, l.score_applied, l.score_after))
            .collect();
        assert_eq!(
            figures,
            [
                (40.0, 40.0, 40.0),
                (50.0, 50.0, 90.0),
                (30.0, 10.0, 100.0),
                (0.0, 0.0, 100.0)
            ]
        );
        assert_eq!(daily_gain(&db.pool, "user-1").await, (100.0, Some(true)));

        // A service update is neither capped nor counted.
        apply(&db.pool, &Change::service("user-1", 250.0)).await;
        assert_eq!(
            status(&db.pool, "user-1").await.unwrap().friendship_score,
            350.0
        );
        assert_eq!(daily_gain(&db.pool, "user-1").await, (100.0, Some(true)));

        // An uncapped conversation (the cap off) still counts towards the day.
        let id = new_event(&db.pool, "user-1").await;
        apply(&db.pool, &Change::conversation("user-1", id, 7.0, 1)).await;
        assert_eq!(daily_gain(&db.pool, "user-1").await, (107.0, Some(true)));
        let id = new_event(&db.pool, "user-1").await;
        apply(&db.pool, &capped("user-1", id, 5.0, 100.0)).await;
        let last = history(&db.pool, "user-1").await.pop().unwrap();
        assert_eq!((last.score_change, last.score_applied), (5.0, 0.0));
        assert_eq!(
            status(&db.pool, "user-1").await.unwrap().friendship_score,
            357.0
        );
    });
}

#[test]
fn the_daily_cap_resets_on_the_next_utc_day() {
    with_migrated_db(|db| async move {
        ensure_user(&db.pool, "user-1").await;
        let id = new_event(&db.pool, "user-1").await;
        apply(&db.pool, &capped("user-1", id, 500.0, 100.0)).await;
        assert_eq!(daily_gain(&db.pool, "user-1").await, (100.0, Some(true)));

        // The budget was spent yesterday (UTC): today's is whole again.
        sqlx::query(
            "UPDATE friendship_status
             SET daily_gain_date = (now() AT TIME ZONE 'UTC')::date - 1 WHERE user_id = $1",
        )
        .bind("user-1")
        .execute(&db.pool)
        .await
        .unwrap();
        let id = new_event(&db.pool, "user-1").await;
        apply(&db.pool, &capped("user-1", id, 60.0, 100.0)).await;
        let id = new_event(&db.pool, "user-1").await;
        apply(&db.pool, &capped("user-1", id, 60.0, 100.0)).await;
        let applied: Vec<f64> = history(&db.pool, "user-1")
            .await
            .iter()
            .map(|l| l.score_applied)
            .collect();
        assert_eq!(applied, [100.0, 60.0, 40.0]);
        assert_eq!(daily_gain(&db.pool, "user-1").await, (100.0, Some(true)));
        assert_eq!(
            status(&db.pool, "user-1").await.unwrap().friendship_score,
            200.0
        );
    });
}
