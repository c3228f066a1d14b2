//! The user's own data: the history pages newest first and its cursor never
//! repeats or skips a line while new ones are written; the export's lists;
//! the erasure removes every row naming the user in bounded batches, keeps
//! each conversation's key as a digest (a resend is a repeat, never recorded
//! again), is idempotent, and excludes a concurrent record of the user's
//! events.

use friendship_queries::{events, user_data};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{
    apply, connect, ensure_user, insert_event, mark_processed, new_event, read, sqlstate,
    try_insert_event_as, with_migrated_db, write, Change, ChangeExt, LOCK_NOT_AVAILABLE, PAYLOAD,
};

/// A row of [`user_data::HISTORY`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Line {
    id: i64,
    created_at: chrono::NaiveDateTime,
    cause: String,
    processing_id: Option<Uuid>,
    score_change: f64,
    score_applied: f64,
    score_before: f64,
    score_after: f64,
}

async fn history_page(pool: &PgPool, user_id: &str, before: i64, limit: i64) -> Vec<Line> {
    read(&user_data::HISTORY)
        .bind(user_id)
        .bind(before)
        .bind(limit)
        .rows(pool)
        .await
}

#[test]
fn history_pages_newest_first_and_a_cursor_never_repeats_or_skips_a_line_while_lines_arrive() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        ensure_user(pool, "hist-1").await;
        ensure_user(pool, "hist-2").await;
        for n in 0..7 {
            apply(pool, &Change::service("hist-1", f64::from(n + 1))).await;
            apply(pool, &Change::service("hist-2", 1.0)).await;
        }
        let mut seen = Vec::new();
        let mut before = i64::MAX;
        loop {
            let page = history_page(pool, "hist-1", before, 3).await;
            // Lines written between pages come above the cursor: never on a later page.
            apply(pool, &Change::service("hist-1", 100.0)).await;
            let Some(last) = page.last() else { break };
            before = last.id;
            seen.extend(page.iter().map(|l| l.score_change));
        }
        assert_eq!(seen, [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);

        // A floor at 0 cuts what is applied, and the line says so.
        apply(pool, &Change::service("hist-2", -50.0)).await;
        let newest = &history_page(pool, "hist-2", i64::MAX, 1).await[0];
        assert_eq!(
            (
                newest.score_change,
                newest.score_applied,
                newest.score_before,
                newest.score_after
            ),
            (-50.0, -7.0, 7.0, 0.0)
        );
        assert_eq!(newest.cause, "service_update");
        assert!(history_page(pool, "nobody", i64::MAX, 10).await.is_empty());
    });
}

/// A row of [`events::FIND_EVENT_BY_CONVERSATION`].
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Found {
    processing_id: Uuid,
    user_id: String,
    same_payload: bool,
}

/// Every row of every table whose text (any column, as text) holds `needle`:
/// `table: row`.
async fn rows_naming(pool: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT t::text FROM {table} AS t WHERE strpos(t::text, $1) > 0"
        ))
        .bind(needle)
        .fetch_all(pool)
        .await
        .unwrap();
        found.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    found
}

/// Runs [`user_data::ERASE_BATCH`] until it says the user is gone; the
/// number of batches.
async fn erase(pool: &PgPool, user_id: &str, batch: i32) -> usize {
    for n in 1..=10_000 {
        let done = write(&user_data::ERASE_BATCH)
            .bind(user_id)
            .bind(batch)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected();
        if done == 1 {
            return n;
        }
        assert_eq!(done, 0);
    }
    panic!("the erasure of {user_id} never ended");
}

#[test]
fn erasure_leaves_no_row_naming_the_user_keeps_its_keys_as_digests_and_is_idempotent() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        let user = "erase-me-7f3a";
        let other = "keep-me-2b9c";
        // Events: scored (history lines, a level transition), pending, pruned.
        let mut conversations = Vec::new();
        for n in 0..5 {
            let conversation = format!("talk-{n}");
            let id = insert_event(pool, &conversation, user, PAYLOAD)
                .await
                .unwrap();
            conversations.push((conversation, id));
        }
        for (_, id) in &conversations[..3] {
            assert_eq!(mark_processed(pool, *id).await, 1);
        }
        apply(pool, &Change::service(user, 150.0)).await;
        sqlx::query(
            "INSERT INTO pruned_conversations (user_id, conversation_id, processing_id, payload_digest)
             VALUES ($1, 'talk-old', gen_random_uuid(), sha256(convert_to($2::jsonb::text, 'UTF8')))",
        )
        .bind(user)
        .bind(PAYLOAD)
        .execute(pool)
        .await
        .unwrap();
        for (n, who) in [(1, user), (2, other)] {
            sqlx::query(
                "INSERT INTO rejected_messages (source, dedupe_key, reason, payload_head, payload_bytes)
                 VALUES ('channel', $1, 'invalid', $2, 40)",
            )
            .bind(format!("key-{n}"))
            .bind(format!(r#"{{"user_id":"{who}","conversation_id":9}}"#))
            .execute(pool)
            .await
            .unwrap();
        }
        let other_event = new_event(pool, other).await;
        assert_eq!(mark_processed(pool, other_event).await, 1);
        assert!(!rows_naming(pool, user).await.is_empty());

        // Batches of 2 rows: many, each short.
        let batches = erase(pool, user, 2).await;
        assert!(batches >= 6, "{batches} batches");
        assert_eq!(rows_naming(pool, user).await, Vec::<String>::new());
        let other_rows = rows_naming(pool, other).await;
        assert!(other_rows
            .iter()
            .any(|r| r.starts_with("friendship_status:")));
        assert!(other_rows
            .iter()
            .any(|r| r.starts_with("rejected_messages:")));
        let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM erased_conversations")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(keys, 6, "five events and one pruned key");

        // A resend is a repeat: never recorded, its processing id found by digest.
        let (conversation, id) = &conversations[4];
        assert_eq!(
            try_insert_event_as(pool, Uuid::new_v4(), conversation, user, PAYLOAD)
                .await
                .unwrap(),
            0
        );
        let found: Found = read(&events::FIND_EVENT_BY_CONVERSATION)
            .bind(conversation.as_str())
            .bind(PAYLOAD)
            .bind(user)
            .one(pool)
            .await;
        assert_eq!(
            found,
            Found {
                processing_id: *id,
                user_id: user.to_owned(),
                same_payload: true
            }
        );
        let other_payload = r#"{"total_turns":9}"#;
        let found: Found = read(&events::FIND_EVENT_BY_CONVERSATION)
            .bind("talk-old")
            .bind(other_payload)
            .bind(user)
            .one(pool)
            .await;
        assert!(!found.same_payload, "another payload is a conflict");
        // Another user's conversation of the same id is another conversation.
        assert!(insert_event(pool, conversation, other, PAYLOAD)
            .await
            .is_some());
        assert_eq!(rows_naming(pool, user).await, Vec::<String>::new());

        // Again: done at once, nothing changes.
        assert_eq!(erase(pool, user, 2).await, 1);
        assert_eq!(erase(pool, "never-seen", 2).await, 1);
    });
}

#[test]
fn a_record_of_the_users_events_and_a_batch_of_its_erasure_exclude_each_other() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        let user = "racing-user";
        new_event(pool, user).await;
        // A record in flight holds the user's shared lock until it commits.
        let mut recording = pool.begin().await.unwrap();
        insert_event(&mut *recording, "in-flight", user, PAYLOAD)
            .await
            .unwrap();
        let eraser = connect(&db.url, 1).await;
        sqlx::query("SET lock_timeout = '200ms'")
            .execute(&eraser)
            .await
            .unwrap();
        let blocked = write(&user_data::ERASE_BATCH)
            .bind(user)
            .bind(100)
            .execute(&eraser)
            .await;
        assert_eq!(sqlstate(blocked), LOCK_NOT_AVAILABLE);
        // Another user's record does not wait for it.
        new_event(pool, "another-user").await;
        recording.commit().await.unwrap();
        sqlx::query("SET lock_timeout = '5s'")
            .execute(&eraser)
            .await
            .unwrap();
        // Once committed, the erasure takes the event recorded in flight too.
        erase(pool, user, 100).await;
        assert_eq!(rows_naming(pool, user).await, Vec::<String>::new());
    });
}
