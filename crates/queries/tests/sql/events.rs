//! The durable event record: accepting once, reading, claiming with
//! `FOR UPDATE SKIP LOCKED`, retrying, dead-lettering and redriving.

use chrono::TimeDelta;
use friendship_queries::events;
use serde::Deserialize;
use uuid::Uuid;

use crate::support::{
    apply, claim, claim_up_to, db_now, due_in_seconds, ensure_user, find_event, get_event,
    insert_event, insert_events, mark_processed, new_event, read, record_failure, sqlstate,
    try_insert_event_as, utc, with_migrated_db, write, Change, ChangeExt, PAYLOAD,
    UNIQUE_VIOLATION,
};

/// A row of [`events::FIND_EVENT_BY_CONVERSATION`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Existing {
    processing_id: Uuid,
    user_id: String,
    same_payload: bool,
}

/// [`events::FIND_EVENT_BY_CONVERSATION`]: `(processing_id, user_id, same_payload)`.
/// Of `user-1` unless [`find_of`] names the user.
async fn find(pool: &sqlx::PgPool, conversation_id: &str, payload: &str) -> (Uuid, String, bool) {
    find_of(pool, conversation_id, payload, "user-1").await
}

async fn find_of(
    pool: &sqlx::PgPool,
    conversation_id: &str,
    payload: &str,
    user_id: &str,
) -> (Uuid, String, bool) {
    let row: Existing = read(&events::FIND_EVENT_BY_CONVERSATION)
        .bind(conversation_id)
        .bind(payload)
        .bind(user_id)
        .one(pool)
        .await;
    (row.processing_id, row.user_id, row.same_payload)
}

async fn count_events(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM conversation_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Ages an event by `seconds` (its acceptance and due time), as if recorded earlier.
async fn age(pool: &sqlx::PgPool, processing_id: Uuid, seconds: f64) {
    sqlx::query(
        "UPDATE conversation_events
         SET accepted_at = accepted_at - make_interval(secs => $2),
             next_attempt_at = next_attempt_at - make_interval(secs => $2)
         WHERE processing_id = $1",
    )
    .bind(processing_id)
    .bind(seconds)
    .execute(pool)
    .await
    .unwrap();
}

/// [`events::REDRIVE`]: how many events it requeued.
async fn redrive(pool: &sqlx::PgPool, older_than_seconds: f64) -> u64 {
    write(&events::REDRIVE)
        .bind(older_than_seconds)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

/// [`events::MARK_UNPROCESSABLE`]: the number of rows it changed.
async fn mark_unprocessable(pool: &sqlx::PgPool, processing_id: Uuid, error: &str) -> u64 {
    write(&events::MARK_UNPROCESSABLE)
        .bind(processing_id)
        .bind(error)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

/// `updated_at` of an event (not part of any statement's result, so read directly).
async fn updated_at(pool: &sqlx::PgPool, processing_id: Uuid) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT updated_at FROM conversation_events WHERE processing_id = $1")
        .bind(processing_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[test]
fn a_conversation_recorded_twice_creates_one_event_and_the_repeat_affects_no_row() {
    with_migrated_db(|db| async move {
        let first = insert_event(&db.pool, "conv-1", "user-1", PAYLOAD).await;
        let repeat = insert_event(&db.pool, "conv-1", "user-1", PAYLOAD).await;
        assert!(first.is_some());
        assert_eq!(repeat, None);
        assert_eq!(count_events(&db.pool).await, 1);

        let (processing_id, user_id, _) = find(&db.pool, "conv-1", PAYLOAD).await;
        assert_eq!(Some(processing_id), first);
        assert_eq!(user_id, "user-1", "the first record stays");
    });
}

#[test]
fn the_same_conversation_id_from_another_user_is_another_conversation() {
    with_migrated_db(|db| async move {
        let other_first = insert_event(&db.pool, "conv-1", "user-2", PAYLOAD).await;
        let first = insert_event(&db.pool, "conv-1", "user-1", PAYLOAD).await;
        let repeat = insert_event(&db.pool, "conv-1", "user-1", PAYLOAD).await;
        assert!(other_first.is_some() && first.is_some() && other_first != first);
        assert_eq!(repeat, None);
        assert_eq!(count_events(&db.pool).await, 2);
        assert_eq!(find(&db.pool, "conv-1", PAYLOAD).await.0, first.unwrap());
        assert_eq!(
            find_of(&db.pool, "conv-1", PAYLOAD, "user-2").await.0,
            other_first.unwrap()
        );
    });
}

#[test]
fn the_event_is_recorded_under_the_processing_id_the_caller_generated() {
    with_migrated_db(|db| async move {
        let id = Uuid::new_v4();
        assert_eq!(
            try_insert_event_as(&db.pool, id, "conv-1", "user-1", PAYLOAD)
                .await
                .unwrap(),
            1,
            "a new event affects one row"
        );
        let event = get_event(&db.pool, id).await;
        assert_eq!(
            (
                event.processing_id,
                event.conversation_id.as_str(),
                event.user_id.as_str()
            ),
            (id, "conv-1", "user-1")
        );

        // A repeat under another generated id affects nothing: that id names no event,
        // and the conversation still answers the first one.
        let repeat_id = Uuid::new_v4();
        assert_eq!(
            try_insert_event_as(&db.pool, repeat_id, "conv-1", "user-1", PAYLOAD)
                .await
                .unwrap(),
            0
        );
        assert!(find_event(&db.pool, repeat_id).await.is_none());
        assert_eq!(find(&db.pool, "conv-1", PAYLOAD).await.0, id);

        // A processing id already taken by another conversation is an error, never
        // mistaken for a repeat.
        assert_eq!(
            sqlstate(try_insert_event_as(&db.pool, id, "conv-2", "user-1", PAYLOAD).await),
            UNIQUE_VIOLATION
        );
        assert_eq!(count_events(&db.pool).await, 1);
    });
}

#[test]
fn the_same_json_in_another_key_order_and_spacing_is_the_same_payload() {
    with_migrated_db(|db| async move {
        insert_event(&db.pool, "conv-1", "user-1", PAYLOAD)
            .await
            .unwrap();
        let reordered = r#"{ "topics": [ {"user_questions": 1, "turns": 3, "name": "music"} ],
                             "new_memories_count": 0, "emotion": "happy",
                             "user_initiated_questions": 1, "total_turns": 4 }"#;
        assert!(find(&db.pool, "conv-1", reordered).await.2);

        for different in [
            PAYLOAD.replace(r#""total_turns":4"#, r#""total_turns":5"#),
            PAYLOAD.replace("happy", "sad"),
            PAYLOAD.replace(
                r#","topics":[{"name":"music","turns":3,"user_questions":1}]"#,
                "",
            ),
        ] {
            assert!(!find(&db.pool, "conv-1", &different).await.2, "{different}");
        }
    });
}

#[test]
fn get_event_reads_utc_timestamps_whatever_the_session_time_zone() {
    with_migrated_db(|db| async move {
        let id = new_event(&db.pool, "user-1").await;
        let mut conn = db.pool.acquire().await.unwrap();
        // A session far from UTC: a `timestamp` read without AT TIME ZONE would be 10 h off.
        sqlx::query("SET TIME ZONE 'Pacific/Kiritimati'")
            .execute(&mut *conn)
            .await
            .unwrap();
        let now = db_now(&mut *conn).await;
        let event = get_event(&mut *conn, id).await;
        assert_eq!(event.processing_id, id);
        assert_eq!(event.user_id, "user-1");
        assert!(event.conversation_id.starts_with("conv-"));
        assert_eq!(event.status, "pending");
        assert_eq!(event.attempts, 0);
        assert_eq!(event.last_error, None);
        assert_eq!(event.processed_at, None);
        let skew = now - utc(event.accepted_at);
        assert!(
            skew >= TimeDelta::zero() && skew < TimeDelta::seconds(60),
            "accepted_at {} is a UTC time shortly before {now}",
            event.accepted_at
        );

        assert_eq!(mark_processed(&mut *conn, id).await, 1);
        let processed = get_event(&mut *conn, id).await;
        let processed_at = utc(processed.processed_at.expect("processed_at is set"));
        assert!((processed_at - db_now(&mut *conn).await).abs() < TimeDelta::seconds(60));
        assert!(processed_at >= utc(processed.accepted_at));
    });
}

#[test]
fn get_event_of_an_unknown_id_answers_an_empty_array() {
    with_migrated_db(|db| async move {
        new_event(&db.pool, "user-1").await;
        let json = read(&events::GET_EVENT)
            .bind(Uuid::new_v4())
            .json(&db.pool)
            .await;
        assert_eq!(json, "[]");
        assert!(find_event(&db.pool, Uuid::new_v4()).await.is_none());
    });
}

#[test]
fn a_claim_returns_the_oldest_due_event_with_its_payload_and_the_database_clock() {
    with_migrated_db(|db| async move {
        let newer = new_event(&db.pool, "user-2").await;
        let older = new_event(&db.pool, "user-1").await;
        age(&db.pool, older, 30.0).await;

        let mut tx = db.pool.begin().await.unwrap();
        let claimed = claim(&mut *tx).await.expect("an event is due");
        assert_eq!(claimed.processing_id, older);
        assert_eq!(claimed.user_id, "user-1");
        assert_eq!(claimed.attempts, 0);
        let payload: serde_json::Value = serde_json::from_str(&claimed.payload).unwrap();
        assert_eq!(
            payload,
            serde_json::from_str::<serde_json::Value>(PAYLOAD).unwrap()
        );
        let now = db_now(&mut *tx).await;
        assert_eq!(
            utc(claimed.now),
            now,
            "`now` is the transaction's clock, in UTC"
        );
        tx.rollback().await.unwrap();

        let mut tx = db.pool.begin().await.unwrap();
        assert_eq!(
            claim(&mut *tx).await.unwrap().processing_id,
            older,
            "a rolled-back claim is released"
        );
        assert_eq!(mark_processed(&mut *tx, older).await, 1);
        tx.commit().await.unwrap();
        let mut tx = db.pool.begin().await.unwrap();
        assert_eq!(
            claim(&mut *tx).await.unwrap().processing_id,
            newer,
            "processed events are never claimed"
        );
    });
}

#[test]
fn two_concurrent_scorers_claim_different_events() {
    with_migrated_db(|db| async move {
        let a = new_event(&db.pool, "user-1").await;
        let b = new_event(&db.pool, "user-1").await;
        let mut first = db.pool.begin().await.unwrap();
        let mut second = db.pool.begin().await.unwrap();
        let mut third = db.pool.begin().await.unwrap();
        let one = claim(&mut *first)
            .await
            .expect("the first scorer claims an event");
        let two = claim(&mut *second)
            .await
            .expect("the second scorer claims the other");
        let mut claimed = [one.processing_id, two.processing_id];
        claimed.sort();
        let mut recorded = [a, b];
        recorded.sort();
        assert_eq!(claimed, recorded);
        assert!(claim(&mut *third).await.is_none(), "both events are locked");
        first.commit().await.unwrap();
        second.commit().await.unwrap();
        third.commit().await.unwrap();
    });
}

#[test]
fn an_event_locked_by_one_scorer_is_skipped_by_another_until_released() {
    with_migrated_db(|db| async move {
        let id = new_event(&db.pool, "user-1").await;
        let mut holder = db.pool.begin().await.unwrap();
        assert_eq!(claim(&mut *holder).await.unwrap().processing_id, id);

        let mut other = db.pool.begin().await.unwrap();
        // SKIP LOCKED answers at once: a statement that waited would hit this timeout.
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *other)
            .await
            .unwrap();
        assert!(claim(&mut *other).await.is_none());
        other.rollback().await.unwrap();

        holder.rollback().await.unwrap();
        let mut other = db.pool.begin().await.unwrap();
        assert_eq!(claim(&mut *other).await.unwrap().processing_id, id);
    });
}

#[test]
fn events_not_yet_due_are_not_claimed() {
    with_migrated_db(|db| async move {
        let id = new_event(&db.pool, "user-1").await;
        assert_eq!(
            record_failure(&db.pool, id, "boom", 3, 3600.0).await,
            Some(("pending".to_owned(), 1))
        );
        let mut tx = db.pool.begin().await.unwrap();
        assert!(claim(&mut *tx).await.is_none(), "due in an hour");
        tx.rollback().await.unwrap();

        age(&db.pool, id, 3601.0).await;
        let mut tx = db.pool.begin().await.unwrap();
        let claimed = claim(&mut *tx).await.expect("due once its time has come");
        assert_eq!((claimed.processing_id, claimed.attempts), (id, 1));
    });
}

#[test]
fn a_failure_before_the_last_attempt_keeps_the_event_pending_and_due_later() {
    with_migrated_db(|db| async move {
        let id = new_event(&db.pool, "user-1").await;
        assert_eq!(
            record_failure(&db.pool, id, "first", 3, 1.5).await,
            Some(("pending".to_owned(), 1))
        );
        let due = due_in_seconds(&db.pool, id).await;
        assert!(
            due > 1.0 && due <= 1.5,
            "due in {due} s, about the 1.5 s asked for"
        );
        assert_eq!(
            record_failure(&db.pool, id, "second", 3, 0.25).await,
            Some(("pending".to_owned(), 2))
        );
        let event = get_event(&db.pool, id).await;
        assert_eq!((event.status.as_str(), event.attempts), ("pending", 2));
        assert_eq!(event.last_error.as_deref(), Some("second"));
        assert_eq!(event.processed_at, None);
    });
}

#[test]
fn the_last_failed_attempt_marks_the_event_failed_with_its_error() {
    with_migrated_db(|db| async move {
        let id = new_event(&db.pool, "user-1").await;
        for attempt in 1..=2 {
            assert_eq!(
                record_failure(&db.pool, id, &format!("failure {attempt}"), 3, 0.0).await,
                Some(("pending".to_owned(), attempt))
            );
        }
        assert_eq!(
            record_failure(&db.pool, id, "failure 3", 3, 0.0).await,
            Some(("failed".to_owned(), 3))
        );
        let event = get_event(&db.pool, id).await;
        assert_eq!((event.status.as_str(), event.attempts), ("failed", 3));
        assert_eq!(event.last_error.as_deref(), Some("failure 3"));

        assert_eq!(
            record_failure(&db.pool, id, "late", 3, 0.0).await,
            None,
            "a failed event is not failed again"
        );
        let mut tx = db.pool.begin().await.unwrap();
        assert!(
            claim(&mut *tx).await.is_none(),
            "a failed event is never claimed"
        );
    });
}

#[test]
fn mark_processed_only_touches_pending_events() {
    with_migrated_db(|db| async move {
        let pending = new_event(&db.pool, "user-1").await;
        let failed = new_event(&db.pool, "user-1").await;
        record_failure(&db.pool, failed, "dead", 1, 0.0)
            .await
            .unwrap();

        assert_eq!(mark_processed(&db.pool, pending).await, 1);
        let event = get_event(&db.pool, pending).await;
        assert_eq!((event.status.as_str(), event.attempts), ("processed", 1));
        let processed_at = event.processed_at.expect("processed_at is set");

        assert_eq!(mark_processed(&db.pool, pending).await, 0, "processed once");
        assert_eq!(
            get_event(&db.pool, pending).await.processed_at,
            Some(processed_at)
        );
        assert_eq!(
            mark_processed(&db.pool, failed).await,
            0,
            "a failed event stays failed"
        );
        let event = get_event(&db.pool, failed).await;
        assert_eq!(
            (event.status.as_str(), event.processed_at),
            ("failed", None)
        );
        assert_eq!(mark_processed(&db.pool, Uuid::new_v4()).await, 0);
    });
}

#[test]
fn an_unprocessable_event_fails_at_once_and_only_when_pending() {
    with_migrated_db(|db| async move {
        let pending = new_event(&db.pool, "user-1").await;
        let processed = new_event(&db.pool, "user-1").await;
        mark_processed(&db.pool, processed).await;
        assert_eq!(
            mark_unprocessable(&db.pool, pending, "payload does not decode").await,
            1
        );
        assert_eq!(
            mark_unprocessable(&db.pool, processed, "payload does not decode").await,
            0,
            "only a pending event"
        );
        assert_eq!(
            mark_unprocessable(&db.pool, pending, "again").await,
            0,
            "a failed event is not failed again"
        );
        let event = get_event(&db.pool, pending).await;
        assert_eq!((event.status.as_str(), event.attempts), ("failed", 1));
        assert_eq!(event.last_error.as_deref(), Some("payload does not decode"));
        let event = get_event(&db.pool, processed).await;
        assert_eq!(
            (event.status.as_str(), event.last_error),
            ("processed", None)
        );
    });
}

#[test]
fn redrive_requeues_failed_and_old_pending_events_but_not_recent_pending_nor_processed() {
    with_migrated_db(|db| async move {
        let failed = new_event(&db.pool, "user-1").await;
        for _ in 0..3 {
            record_failure(&db.pool, failed, "dead", 3, 0.0)
                .await
                .unwrap();
        }
        let old_pending = new_event(&db.pool, "user-1").await;
        record_failure(&db.pool, old_pending, "retrying", 3, 3600.0)
            .await
            .unwrap();
        age(&db.pool, old_pending, 120.0).await;
        let recent_pending = new_event(&db.pool, "user-1").await;
        let processed = new_event(&db.pool, "user-1").await;
        age(&db.pool, processed, 120.0).await;
        mark_processed(&db.pool, processed).await;

        let untouched = [
            (recent_pending, updated_at(&db.pool, recent_pending).await),
            (processed, updated_at(&db.pool, processed).await),
        ];
        assert_eq!(
            redrive(&db.pool, 60.0).await,
            2,
            "the failed and the old pending event, nothing else"
        );
        for (id, before) in untouched {
            assert_eq!(updated_at(&db.pool, id).await, before, "{id} untouched");
        }

        let event = get_event(&db.pool, failed).await;
        assert_eq!(
            (event.status.as_str(), event.attempts),
            ("pending", 0),
            "a fresh set of attempts"
        );
        let event = get_event(&db.pool, old_pending).await;
        assert_eq!(
            (event.status.as_str(), event.attempts),
            ("pending", 1),
            "attempts kept"
        );
        for id in [failed, old_pending] {
            assert!(due_in_seconds(&db.pool, id).await <= 0.0, "due now");
        }
        assert_eq!(get_event(&db.pool, recent_pending).await.status, "pending");
        assert_eq!(get_event(&db.pool, processed).await.status, "processed");
        assert_eq!(
            redrive(&db.pool, 60.0).await,
            1,
            "the old pending one again"
        );
        assert_eq!(redrive(&db.pool, 3_600.0).await, 0, "nothing that old");

        // Both are claimable again, next to the recent one: three scorers claim all three.
        let mut scorers = Vec::new();
        let mut claimed = Vec::new();
        for _ in 0..4 {
            let mut tx = db.pool.begin().await.unwrap();
            if let Some(event) = claim(&mut *tx).await {
                claimed.push(event.processing_id);
            }
            scorers.push(tx);
        }
        claimed.sort();
        let mut due = vec![failed, old_pending, recent_pending];
        due.sort();
        assert_eq!(claimed, due);
    });
}

/// A row of [`events::LIST_EVENTS`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listed {
    processing_id: Uuid,
    conversation_id: String,
    user_id: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    accepted_at: chrono::NaiveDateTime,
    processed_at: Option<chrono::NaiveDateTime>,
    next_attempt_at: chrono::NaiveDateTime,
}

/// [`events::LIST_EVENTS`]: a page of one status, newest first.
async fn list(pool: &sqlx::PgPool, status: &str, limit: i64, offset: i64) -> Vec<Listed> {
    read(&events::LIST_EVENTS)
        .bind(status)
        .bind(limit)
        .bind(offset)
        .rows(pool)
        .await
}

/// [`events::COUNT_EVENTS`].
async fn count_listed(pool: &sqlx::PgPool, status: &str) -> i64 {
    #[derive(Deserialize)]
    struct Total {
        total: i64,
    }
    let total: Total = read(&events::COUNT_EVENTS).bind(status).one(pool).await;
    total.total
}

/// [`events::REDRIVE_SELECTED`]: how many events it requeued.
async fn redrive_selected(pool: &sqlx::PgPool, ids: &[Uuid]) -> u64 {
    write(&events::REDRIVE_SELECTED)
        .bind(serde_json::to_string(ids).unwrap())
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

/// Fails an event for good, with `error`.
async fn dead_letter(pool: &sqlx::PgPool, processing_id: Uuid, error: &str) {
    for _ in 0..3 {
        record_failure(pool, processing_id, error, 3, 0.0)
            .await
            .unwrap();
    }
}

#[test]
fn events_are_listed_by_status_newest_first_with_attempts_errors_and_times() {
    with_migrated_db(|db| async move {
        let oldest = new_event(&db.pool, "user-1").await;
        age(&db.pool, oldest, 30.0).await;
        let middle = new_event(&db.pool, "user-2").await;
        age(&db.pool, middle, 20.0).await;
        let newest = new_event(&db.pool, "user-1").await;
        for (id, error) in [(oldest, "first"), (middle, "second"), (newest, "third")] {
            dead_letter(&db.pool, id, error).await;
        }
        let retrying = new_event(&db.pool, "user-3").await;
        record_failure(&db.pool, retrying, "once", 3, 60.0)
            .await
            .unwrap();
        let processed = new_event(&db.pool, "user-3").await;
        mark_processed(&db.pool, processed).await;

        let failed = list(&db.pool, "failed", 10, 0).await;
        let ids: Vec<_> = failed.iter().map(|e| e.processing_id).collect();
        assert_eq!(ids, [newest, middle, oldest], "newest first");
        let first = &failed[0];
        assert_eq!(
            (
                first.status.as_str(),
                first.attempts,
                first.last_error.as_deref()
            ),
            ("failed", 3, Some("third"))
        );
        assert_eq!(
            (first.user_id.as_str(), first.processed_at),
            ("user-1", None)
        );
        assert!(first.conversation_id.starts_with("conv-"), "{first:?}");
        assert!(failed[1].accepted_at < first.accepted_at);
        assert_eq!(count_listed(&db.pool, "failed").await, 3);

        let page: Vec<_> = list(&db.pool, "failed", 1, 1).await;
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].processing_id, middle, "limit and offset");
        assert!(list(&db.pool, "failed", 10, 3).await.is_empty());

        let pending = list(&db.pool, "pending", 10, 0).await;
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].processing_id, pending[0].attempts),
            (retrying, 1)
        );
        assert!(
            pending[0].next_attempt_at > pending[0].accepted_at,
            "retried later"
        );
        assert_eq!(count_listed(&db.pool, "pending").await, 1);
        assert_eq!(count_listed(&db.pool, "processed").await, 1);
    });
}

#[test]
fn a_scored_event_is_listed_as_pending() {
    with_migrated_db(|db| async move {
        let scored = new_event(&db.pool, "user-1").await;
        sqlx::query("UPDATE conversation_events SET status = 'scored' WHERE processing_id = $1")
            .bind(scored)
            .execute(&db.pool)
            .await
            .unwrap();
        let pending = list(&db.pool, "pending", 10, 0).await;
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].processing_id, pending[0].status.as_str()),
            (scored, "pending")
        );
        assert_eq!(count_listed(&db.pool, "pending").await, 1);
    });
}

#[test]
fn a_selective_redrive_requeues_only_the_chosen_failed_events() {
    with_migrated_db(|db| async move {
        let chosen = new_event(&db.pool, "user-1").await;
        let other = new_event(&db.pool, "user-1").await;
        for id in [chosen, other] {
            dead_letter(&db.pool, id, "dead").await;
        }
        let processed = new_event(&db.pool, "user-2").await;
        mark_processed(&db.pool, processed).await;
        let pending = new_event(&db.pool, "user-2").await;
        let before = updated_at(&db.pool, pending).await;

        let requeued =
            redrive_selected(&db.pool, &[chosen, processed, pending, Uuid::new_v4()]).await;
        assert_eq!(requeued, 1, "only the chosen failed event");
        let event = get_event(&db.pool, chosen).await;
        assert_eq!((event.status.as_str(), event.attempts), ("pending", 0));
        assert!(due_in_seconds(&db.pool, chosen).await <= 0.0, "due now");
        assert_eq!(get_event(&db.pool, other).await.status, "failed");
        assert_eq!(get_event(&db.pool, processed).await.status, "processed");
        assert_eq!(
            updated_at(&db.pool, pending).await,
            before,
            "pending untouched"
        );
        assert_eq!(redrive_selected(&db.pool, &[]).await, 0, "an empty choice");
    });
}

#[test]
fn a_batch_claim_takes_the_oldest_due_events_up_to_its_limit_in_order() {
    with_migrated_db(|db| async move {
        let mut ids = Vec::new();
        for i in 0..5 {
            let id = new_event(&db.pool, &format!("user-{i}")).await;
            // Oldest first: event i was due (50 - 10 i) seconds ago.
            age(&db.pool, id, 50.0 - 10.0 * f64::from(i)).await;
            ids.push(id);
        }
        let later = new_event(&db.pool, "user-9").await;
        record_failure(&db.pool, later, "retry later", 3, 3600.0)
            .await
            .unwrap();

        let mut tx = db.pool.begin().await.unwrap();
        let claimed: Vec<Uuid> = claim_up_to(&mut *tx, 3)
            .await
            .into_iter()
            .map(|c| c.processing_id)
            .collect();
        assert_eq!(claimed, ids[..3], "the three oldest, oldest first");
        tx.rollback().await.unwrap();

        let mut tx = db.pool.begin().await.unwrap();
        let all = claim_up_to(&mut *tx, 100).await;
        let claimed: Vec<Uuid> = all.iter().map(|c| c.processing_id).collect();
        assert_eq!(claimed, ids, "every due event and no other");
        let now = db_now(&mut *tx).await;
        assert!(
            all.iter().all(|c| utc(c.now) == now),
            "one clock for the batch"
        );
        assert!(all
            .iter()
            .all(|c| c.attempts == 0 && c.payload.contains("music")));

        let mut other = db.pool.begin().await.unwrap();
        assert!(
            claim_up_to(&mut *other, 100).await.is_empty(),
            "a batch locks every event it claimed"
        );
        other.rollback().await.unwrap();
        tx.rollback().await.unwrap();

        let mut tx = db.pool.begin().await.unwrap();
        assert!(
            claim_up_to(&mut *tx, 0).await.is_empty(),
            "a limit of 0 claims nothing"
        );
        let mut other = db.pool.begin().await.unwrap();
        assert_eq!(
            claim_up_to(&mut *other, 100).await.len(),
            5,
            "and locks nothing"
        );
    });
}

#[test]
fn concurrent_batch_claims_are_disjoint_and_together_take_every_due_event() {
    with_migrated_db(|db| async move {
        let mut recorded = Vec::new();
        for i in 0..10 {
            recorded.push(new_event(&db.pool, &format!("user-{}", i % 3)).await);
        }
        let mut scorers = Vec::new();
        let mut claimed = Vec::new();
        for _ in 0..4 {
            let mut tx = db.pool.begin().await.unwrap();
            let batch = claim_up_to(&mut *tx, 3).await;
            assert!(batch.len() <= 3);
            claimed.extend(batch.into_iter().map(|c| c.processing_id));
            scorers.push(tx);
        }
        assert_eq!(
            claimed.len(),
            10,
            "3 + 3 + 3 + 1, no event twice: {claimed:?}"
        );
        claimed.sort();
        recorded.sort();
        assert_eq!(claimed, recorded);
    });
}

#[test]
fn a_batch_insert_records_each_new_conversation_once_in_the_order_given() {
    with_migrated_db(|db| async move {
        let before = insert_event(&db.pool, "conv-old", "user-1", PAYLOAD)
            .await
            .unwrap();
        let row = |id: Uuid, conversation: &str, user: &str| {
            serde_json::json!({
                "processing_id": id,
                "conversation_id": conversation,
                "user_id": user,
                "payload": serde_json::from_str::<serde_json::Value>(PAYLOAD).unwrap(),
            })
        };
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        let rows = [
            row(ids[0], "conv-a", "user-1"),
            row(ids[1], "conv-old", "user-1"),
            row(ids[2], "conv-b", "user-2"),
            row(ids[3], "conv-a", "user-2"),
            row(ids[4], "conv-c", "user-1"),
            row(ids[5], "conv-a", "user-1"),
        ];
        assert_eq!(
            insert_events(&db.pool, &rows).await.unwrap(),
            4,
            "conv-old was recorded before and user-1's conv-a earlier in the batch; \
             user-2's conv-a is their own"
        );
        assert_eq!(count_events(&db.pool).await, 5);
        assert_eq!(find(&db.pool, "conv-old", PAYLOAD).await.0, before);
        let (first, user, _) = find(&db.pool, "conv-a", PAYLOAD).await;
        assert_eq!(
            (first, user.as_str()),
            (ids[0], "user-1"),
            "the first one wins"
        );
        assert!(find_event(&db.pool, ids[3]).await.is_some());
        assert!(find_event(&db.pool, ids[5]).await.is_none());

        // Scored in the order they came, each user's first before anyone's
        // second (accepted_at follows the array): user-1's `before`, user-2's
        // conv-b, then user-1's conv-a and user-2's conv-a, then user-1's conv-c.
        let mut tx = db.pool.begin().await.unwrap();
        let claimed: Vec<Uuid> = claim_up_to(&mut *tx, 10)
            .await
            .into_iter()
            .map(|c| c.processing_id)
            .collect();
        assert_eq!(claimed, [before, ids[2], ids[0], ids[3], ids[4]]);
        tx.rollback().await.unwrap();

        assert_eq!(insert_events(&db.pool, &[]).await.unwrap(), 0);
    });
}

#[test]
fn a_batch_insert_is_one_statement_all_or_nothing() {
    with_migrated_db(|db| async move {
        let payload = serde_json::from_str::<serde_json::Value>(PAYLOAD).unwrap();
        let rows = [
            serde_json::json!({"processing_id": Uuid::new_v4(), "conversation_id": "conv-a",
                               "user_id": "user-1", "payload": payload}),
            // user_id shorter than the table allows
            serde_json::json!({"processing_id": Uuid::new_v4(), "conversation_id": "conv-b",
                               "user_id": "u", "payload": payload}),
        ];
        assert!(insert_events(&db.pool, &rows).await.is_err());
        assert_eq!(
            count_events(&db.pool).await,
            0,
            "nothing of the batch is kept"
        );
    });
}

/// A row of [`events::SCORED_EVENTS`].
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scored {
    processing_id: Uuid,
    user_id: String,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Due {
    due: bool,
    unfinished: bool,
    unpublished: bool,
}

#[test]
fn an_event_that_moves_the_level_stays_scored_and_pending_to_clients_until_finished() {
    with_migrated_db(|db| async move {
        let calm = new_event(&db.pool, "user-1").await;
        let moving = new_event(&db.pool, "user-2").await;
        ensure_user(&db.pool, "user-1").await;
        ensure_user(&db.pool, "user-2").await;
        apply(&db.pool, &Change::conversation("user-1", calm, 5.0, 1)).await;
        let changed = apply(&db.pool, &Change::conversation("user-2", moving, 150.0, 1)).await;
        assert_eq!(changed.status.friendship_level, "acquaintance");

        // The event that left the level alone is processed at once.
        assert_eq!(get_event(&db.pool, calm).await.status, "processed");
        // The one that moved it is `scored`: clients still see it pending...
        let shown = get_event(&db.pool, moving).await;
        assert_eq!((shown.status.as_str(), shown.attempts), ("pending", 1));
        assert!(shown.processed_at.is_some(), "its effect has committed");
        let due: Due = read(&events::ANY_DUE).one(&db.pool).await;
        assert_eq!(
            due,
            Due {
                due: false,
                unfinished: true,
                unpublished: true
            }
        );
        let scored: Vec<Scored> = read(&events::SCORED_EVENTS)
            .bind(10_i64)
            .rows(&db.pool)
            .await;
        assert_eq!(
            scored,
            [Scored {
                processing_id: moving,
                user_id: "user-2".into()
            }]
        );
        // ...it is never claimed again...
        let mut tx = db.pool.begin().await.unwrap();
        assert!(claim(&mut *tx).await.is_none());
        tx.rollback().await.unwrap();
        // ...and redrive leaves it alone.
        age_all(&db.pool, 3600.0).await;
        assert_eq!(redrive(&db.pool, 60.0).await, 0);

        // Finishing marks exactly the scored events processed, once.
        let ids = serde_json::json!([moving, calm, Uuid::new_v4()]).to_string();
        let finish = || {
            write(&events::FINISH_SCORED)
                .bind(ids.clone())
                .execute(&db.pool)
        };
        assert_eq!(finish().await.unwrap().rows_affected(), 1);
        assert_eq!(finish().await.unwrap().rows_affected(), 0);
        assert_eq!(get_event(&db.pool, moving).await.status, "processed");
        let due: Due = read(&events::ANY_DUE).one(&db.pool).await;
        assert_eq!(
            due,
            Due {
                due: false,
                unfinished: false,
                unpublished: true
            }
        );
        let scored: Vec<Scored> = read(&events::SCORED_EVENTS)
            .bind(10_i64)
            .rows(&db.pool)
            .await;
        assert!(scored.is_empty());
    });
}

/// Ages every event by `seconds`.
async fn age_all(pool: &sqlx::PgPool, seconds: f64) {
    sqlx::query(
        "UPDATE conversation_events
         SET accepted_at = accepted_at - make_interval(secs => $1)",
    )
    .bind(seconds)
    .execute(pool)
    .await
    .unwrap();
}

#[test]
fn a_users_backlog_never_holds_another_users_event_back_and_fills_at_most_ten_of_a_batch() {
    with_migrated_db(|db| async move {
        // 30 older events of one user, then one of another.
        let mut flood = Vec::new();
        for i in 0..30 {
            let id = insert_event(&db.pool, &format!("flood-{i:02}"), "flooder", PAYLOAD)
                .await
                .unwrap();
            flood.push(id);
        }
        let other = insert_event(&db.pool, "conv-1", "bystander", PAYLOAD)
            .await
            .unwrap();

        let mut tx = db.pool.begin().await.unwrap();
        let claimed: Vec<Uuid> = claim_up_to(&mut *tx, 100)
            .await
            .into_iter()
            .map(|c| c.processing_id)
            .collect();
        // The bystander's one event is in the first batch, after the
        // flooder's oldest (both are rank 1); the flooder's own events keep
        // their order, ten of them at most.
        let mut expected = vec![flood[0], other];
        expected.extend_from_slice(&flood[1..10]);
        assert_eq!(claimed, expected);
        tx.rollback().await.unwrap();

        // A second scorer, while the first holds its batch, takes none of
        // the events the first holds; once they are done, the next ten.
        let mut first = db.pool.begin().await.unwrap();
        let mut second = db.pool.begin().await.unwrap();
        let a: Vec<Uuid> = claim_up_to(&mut *first, 100)
            .await
            .into_iter()
            .map(|c| c.processing_id)
            .collect();
        let b: Vec<Uuid> = claim_up_to(&mut *second, 100)
            .await
            .into_iter()
            .map(|c| c.processing_id)
            .collect();
        assert_eq!(a, expected);
        assert_eq!(b, Vec::<Uuid>::new());
        for id in &a {
            mark_processed(&mut *first, *id).await;
        }
        first.commit().await.unwrap();
        second.rollback().await.unwrap();
        let mut third = db.pool.begin().await.unwrap();
        let c: Vec<Uuid> = claim_up_to(&mut *third, 100)
            .await
            .into_iter()
            .map(|c| c.processing_id)
            .collect();
        assert_eq!(c, flood[10..20]);
        third.rollback().await.unwrap();
    });
}
