//! Retention: processed events past their window are deleted in bounded batches,
//! oldest first, each leaving its key; newer and unprocessed events stay; the history
//! stays; a pruned conversation resent is a repeat or a conflict; a resend that races
//! the pruning is inserted but never claimed, and is settled without effect; scorers
//! pruning at once take disjoint batches; old rejected messages go the same way; a key
//! is always looked up per event, never found by reading every key.

use std::time::Duration;

use friendship_queries::{events, retention};
use serde::Deserialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::support::{
    claim_up_to, connect, find_event, history, insert_event, mark_processed, new_event, read,
    try_insert_event_as, with_migrated_db, write, PAYLOAD,
};

const DAYS: i32 = 30;

/// [`retention::PRUNE_EVENTS`] of events processed more than [`DAYS`] ago: rows deleted.
async fn prune(executor: impl PgExecutor<'_>, limit: i64) -> u64 {
    write(&retention::PRUNE_EVENTS)
        .bind(DAYS)
        .bind(limit)
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

/// Back-dates the processing of `ids` by `days`.
async fn processed_days_ago(pool: &PgPool, ids: &[Uuid], days: i32) {
    sqlx::query(
        "UPDATE conversation_events
         SET processed_at = now() - make_interval(days => $2), accepted_at = now() - make_interval(days => $2 + 1)
         WHERE processing_id = ANY($1)",
    )
    .bind(ids)
    .bind(days)
    .execute(pool)
    .await
    .unwrap();
}

/// A new event of `user_id`, scored (processed, with its history line).
async fn processed_event(pool: &PgPool, user_id: &str) -> Uuid {
    let id = new_event(pool, user_id).await;
    assert_eq!(mark_processed(pool, id).await, 1);
    id
}

/// `(processing_id, user_id)` of every pruned key, ordered by processing id.
async fn keys(pool: &PgPool) -> Vec<(Uuid, String)> {
    sqlx::query_as("SELECT processing_id, user_id FROM pruned_conversations ORDER BY processing_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A row of [`events::FIND_EVENT_BY_CONVERSATION`].
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Found {
    processing_id: Uuid,
    user_id: String,
    same_payload: bool,
}

/// Of `user-1`, the user of every pruned event here.
async fn find(pool: &PgPool, conversation_id: &str, payload: &str) -> Option<Found> {
    read(&events::FIND_EVENT_BY_CONVERSATION)
        .bind(conversation_id)
        .bind(payload)
        .bind("user-1")
        .optional(pool)
        .await
}

async fn any_due(pool: &PgPool) -> bool {
    #[derive(Deserialize)]
    struct Due {
        due: bool,
        #[allow(dead_code)]
        unfinished: bool,
    }
    read(&events::ANY_DUE).one::<Due>(pool).await.due
}

async fn conversation_of(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT conversation_id FROM conversation_events WHERE processing_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[test]
fn pruning_deletes_at_most_its_batch_oldest_first_and_leaves_newer_unprocessed_events_and_history()
{
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        let mut old = Vec::new();
        for _ in 0..7 {
            old.push(processed_event(pool, "user-old").await);
        }
        // Oldest first: old[i] was processed 40 + i days ago.
        for (i, id) in old.iter().enumerate() {
            processed_days_ago(pool, &[*id], 40 + i as i32).await;
        }
        let recent = processed_event(pool, "user-old").await;
        processed_days_ago(pool, &[recent], DAYS - 1).await;
        let pending = new_event(pool, "user-old").await;
        let failed = new_event(pool, "user-old").await;
        sqlx::query("UPDATE conversation_events SET status = 'failed' WHERE processing_id = $1")
            .bind(failed)
            .execute(pool)
            .await
            .unwrap();
        // Pending and failed events accepted long ago are not pruned either.
        sqlx::query(
            "UPDATE conversation_events SET accepted_at = now() - interval '90 days'
             WHERE processing_id = ANY($1)",
        )
        .bind(vec![pending, failed])
        .execute(pool)
        .await
        .unwrap();
        let history_before = history(pool, "user-old").await;
        assert_eq!(history_before.len(), 8);

        assert_eq!(
            prune(pool, 3).await,
            3,
            "one batch deletes at most its size"
        );
        let mut oldest: Vec<Uuid> = old[4..].to_vec();
        oldest.sort();
        let pruned: Vec<Uuid> = keys(pool).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(pruned, oldest, "the three processed longest ago go first");
        for id in &old[4..] {
            assert!(find_event(pool, *id).await.is_none(), "{id} is pruned");
        }
        assert_eq!(prune(pool, 3).await, 3);
        assert_eq!(prune(pool, 3).await, 1);
        assert_eq!(prune(pool, 3).await, 0, "nothing past the window is left");

        let mut all_old = old.clone();
        all_old.sort();
        let pruned: Vec<(Uuid, String)> = keys(pool).await;
        assert_eq!(
            pruned,
            all_old
                .iter()
                .map(|id| (*id, "user-old".to_owned()))
                .collect::<Vec<_>>()
        );
        for (id, status) in [
            (recent, "processed"),
            (pending, "pending"),
            (failed, "failed"),
        ] {
            assert_eq!(find_event(pool, id).await.unwrap().status, status);
        }
        assert_eq!(
            history(pool, "user-old").await,
            history_before,
            "the history of pruned events stays"
        );
    });
}

#[test]
fn a_pruned_conversation_resent_is_a_repeat_with_its_payload_and_a_conflict_otherwise() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        let id = processed_event(pool, "user-1").await;
        let conversation = conversation_of(pool, id).await;
        processed_days_ago(pool, &[id], DAYS + 1).await;
        assert_eq!(prune(pool, 10).await, 1);
        assert!(find_event(pool, id).await.is_none());

        // The insert consults the user's key: nothing of theirs is recorded again.
        for payload in [
            PAYLOAD,
            r#"{"total_turns":5,"user_initiated_questions":1,"emotion":"happy","new_memories_count":0,"topics":[]}"#,
        ] {
            assert_eq!(
                insert_event(pool, &conversation, "user-1", payload).await,
                None
            );
        }
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM conversation_events")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(events, 0);
        // Another user's conversation of the same id is theirs, pruned key or not.
        assert!(insert_event(pool, &conversation, "user-2", PAYLOAD)
            .await
            .is_some());

        // The same payload, in any key order and spacing, is the same digest.
        let reordered = r#"{ "topics":[{"user_questions":1,"turns":3,"name":"music"}],
            "new_memories_count":0,"emotion":"happy","user_initiated_questions":1,"total_turns":4}"#;
        for payload in [PAYLOAD, reordered] {
            assert_eq!(
                find(pool, &conversation, payload).await,
                Some(Found {
                    processing_id: id,
                    user_id: "user-1".into(),
                    same_payload: true
                })
            );
        }
        let other = PAYLOAD.replace(r#""total_turns":4"#, r#""total_turns":5"#);
        assert_eq!(
            find(pool, &conversation, &other).await,
            Some(Found {
                processing_id: id,
                user_id: "user-1".into(),
                same_payload: false
            })
        );
        assert_eq!(find(pool, "never-sent", PAYLOAD).await, None);
    });
}

#[test]
fn a_resend_that_races_the_pruning_is_inserted_but_never_claimed_and_is_settled_without_effect() {
    with_migrated_db(|db| async move {
        let pool = connect(&db.url, 4).await;
        let id = processed_event(&pool, "user-1").await;
        let conversation = conversation_of(&pool, id).await;
        processed_days_ago(&pool, &[id], DAYS + 1).await;
        let history_before = history(&pool, "user-1").await;

        // The pruning deletes the event and has not committed yet...
        let mut pruning = pool.begin().await.unwrap();
        assert_eq!(prune(&mut *pruning, 10).await, 1);
        // ...when the conversation is resent: the insert's snapshot has no key yet,
        // and its ON CONFLICT waits on the row being deleted.
        let resend = Uuid::new_v4();
        let insert = {
            let (pool, conversation) = (pool.clone(), conversation.clone());
            tokio::spawn(async move {
                try_insert_event_as(&pool, resend, &conversation, "user-1", PAYLOAD)
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!insert.is_finished(), "the insert waits on the deleted row");
        pruning.commit().await.unwrap();
        // Once the deletion commits the row is gone, and the insert goes through.
        assert_eq!(insert.await.unwrap(), 1, "the race is real");
        assert_eq!(find_event(&pool, resend).await.unwrap().status, "pending");

        // The key answers for the conversation, before the new row.
        assert_eq!(
            find(&pool, &conversation, PAYLOAD)
                .await
                .unwrap()
                .processing_id,
            id
        );
        // The scorer never sees the resend: not due, never claimed.
        assert!(!any_due(&pool).await);
        let mut tx = pool.begin().await.unwrap();
        assert!(claim_up_to(&mut *tx, 100).await.is_empty());
        tx.rollback().await.unwrap();

        // The idle wake-up's settling ends it, without effect, once.
        for expected in [1, 0] {
            let settled = write(&retention::SETTLE_PRUNED_REPEATS)
                .bind(100_i64)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(settled, expected);
        }
        let event = find_event(&pool, resend).await.unwrap();
        assert_eq!((event.status.as_str(), event.attempts), ("processed", 0));
        assert_eq!(
            history(&pool, "user-1").await,
            history_before,
            "never counted"
        );

        // Pruned in its turn, it leaves the first key as it was.
        processed_days_ago(&pool, &[resend], DAYS + 1).await;
        assert_eq!(prune(&pool, 10).await, 1);
        assert_eq!(keys(&pool).await, [(id, "user-1".to_owned())]);
    });
}

#[test]
fn scorers_pruning_at_once_take_disjoint_batches_without_waiting() {
    with_migrated_db(|db| async move {
        let pool = connect(&db.url, 4).await;
        let mut old = Vec::new();
        for _ in 0..6 {
            old.push(processed_event(&pool, "user-1").await);
        }
        processed_days_ago(&pool, &old, DAYS + 5).await;

        let mut first = pool.begin().await.unwrap();
        assert_eq!(prune(&mut *first, 2).await, 2);
        // The second skips the first's locked batch instead of waiting for it.
        let second = tokio::time::timeout(Duration::from_secs(5), prune(&pool, 100))
            .await
            .expect("a concurrent pruning does not wait");
        assert_eq!(second, 4);
        first.commit().await.unwrap();

        assert_eq!(keys(&pool).await.len(), 6);
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM conversation_events")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
    });
}

#[test]
fn old_rejected_messages_are_deleted_in_bounded_batches_and_recent_ones_stay() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        sqlx::query(
            "INSERT INTO rejected_messages (source, dedupe_key, reason, payload_head, payload_bytes, received_at)
             SELECT 'channel', 'k-' || i, 'not JSON', 'x', 1,
                    now() - make_interval(days => i) + interval '1 hour'
             FROM generate_series(1, 40) AS i",
        )
        .execute(pool)
        .await
        .unwrap();
        let prune_rejected = || async {
            write(&retention::PRUNE_REJECTED)
                .bind(DAYS)
                .bind(4_i64)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected()
        };
        // Just under 31 to 40 days old: ten past the window, four per batch, oldest first.
        assert_eq!(prune_rejected().await, 4);
        let oldest_left: i32 =
            sqlx::query_scalar("SELECT max(substr(dedupe_key, 3)::int) FROM rejected_messages")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(oldest_left, 36);
        assert_eq!(prune_rejected().await, 4);
        assert_eq!(prune_rejected().await, 2);
        assert_eq!(prune_rejected().await, 0);
        let left: Vec<String> =
            sqlx::query_scalar("SELECT dedupe_key FROM rejected_messages ORDER BY received_at")
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(left.len(), 30);
        assert_eq!(left.first().map(String::as_str), Some("k-30"));
    });
}

#[test]
fn finding_a_batch_uses_the_partial_index_not_a_scan_of_the_table() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        let mut conn = pool.acquire().await.unwrap();
        // Few rows: the planner would scan anyway; forbid scans to see the index applies.
        sqlx::raw_sql("SET enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: serde_json::Value = sqlx::query_scalar(&format!(
            "EXPLAIN (FORMAT JSON) {}",
            retention::PRUNE_EVENTS
                .sql
                .replace("$1::int4", "30")
                .replace("$2::int8", "1000")
        ))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        let text = plan.to_string();
        assert!(
            text.contains("conversation_events_processed_idx"),
            "the batch is found through the partial index: {text}"
        );
        assert!(!text.contains("Seq Scan"), "{text}");
    });
}

/// The statement a PL/pgSQL function of the schema runs (its `RETURN QUERY
/// ...;`), read from its source as migrated.
async fn function_query(pool: &sqlx::PgPool, function: &str) -> String {
    let source: String = sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE proname = $1")
        .bind(function)
        .fetch_one(pool)
        .await
        .unwrap();
    let start = source.find("RETURN QUERY").expect("a RETURN QUERY") + "RETURN QUERY".len();
    let end = source.rfind(';').expect("a statement");
    source[start..end].to_owned()
}

#[test]
fn whether_a_conversation_has_a_key_is_looked_up_per_event_never_by_reading_every_key() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        // Many keys and a backlog: what makes a planner prefer reading every key.
        sqlx::query(
            "INSERT INTO pruned_conversations
             SELECT 'k-' || i, gen_random_uuid(), 'user-1', sha256(i::text::bytea)
             FROM generate_series(1, 20000) AS i",
        )
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO conversation_events (conversation_id, user_id, payload)
             SELECT 'n-' || i, 'user-1', '{}' FROM generate_series(1, 5000) AS i",
        )
        .execute(pool)
        .await
        .unwrap();
        sqlx::raw_sql("ANALYZE").execute(pool).await.unwrap();
        for (name, sql) in [
            (
                "INSERT_EVENTS",
                function_query(pool, "record_events")
                    .await
                    .replace("p_events::jsonb", "'[]'::jsonb"),
            ),
            ("ANY_DUE", events::ANY_DUE.sql.to_owned()),
            (
                "CLAIM_DUE_EVENTS",
                events::CLAIM_DUE_EVENTS.sql.replace("$1::int8", "100"),
            ),
            (
                "SETTLE_PRUNED_REPEATS",
                retention::SETTLE_PRUNED_REPEATS
                    .sql
                    .replace("$1::int8", "100"),
            ),
        ] {
            let plan: serde_json::Value =
                sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
                    .fetch_one(pool)
                    .await
                    .unwrap();
            let mut scans = Vec::new();
            key_scans(&plan, &mut scans);
            assert!(!scans.is_empty(), "{name} reads the keys: {plan}");
            assert!(
                scans
                    .iter()
                    .all(|scan| scan == "Index Only Scan" || scan == "Index Scan"),
                "{name} looks each key up: {scans:?} in {plan}"
            );
        }
    });
}

/// The node type of every scan of `pruned_conversations` in a JSON plan.
fn key_scans(plan: &serde_json::Value, found: &mut Vec<String>) {
    match plan {
        serde_json::Value::Object(fields) => {
            if fields.get("Relation Name").and_then(|r| r.as_str()) == Some("pruned_conversations")
            {
                found.push(fields["Node Type"].as_str().unwrap_or_default().to_owned());
            }
            fields.values().for_each(|v| key_scans(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| key_scans(v, found)),
        _ => {}
    }
}
