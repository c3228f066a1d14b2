//! Retention: idle scorer wake-ups delete processed events and rejected
//! messages past their window, at most 1,000 rows per wake-up, and leave
//! newer and unprocessed events alone; a conversation resent after its event
//! was pruned is still a repeat (the original `processing_id`) or a conflict,
//! and is never counted again; a pruned event's id answers 404.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;

use crate::support::{conversation, isolated_without_ticker, run, shared, user, Env, SCORERS};

/// Rows one scorer wake-up deletes at most (`store::MAX_PRUNED_PER_WAKE`).
const BATCH: i64 = 1_000;
/// `event_retention_days` and `rejected_retention_days` (their defaults).
const DAYS: i32 = 30;

/// A payload in the domain's normalised form.
const PAYLOAD: &str = r#"{"total_turns":4,"user_initiated_questions":1,"emotion":"happy","new_memories_count":0,"topics":[]}"#;

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// Rings the scorers once, as the ticker does: every scorer wakes.
async fn tick(env: &Env) {
    let client = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let listeners: i64 = redis::cmd("PUBLISH")
        .arg("conversation-events")
        .arg(r#"{"kind":"tick"}"#)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(listeners, SCORERS as i64, "every scorer hears the tick");
}

/// Waits until `sql` answers the same count for two seconds (the wake-ups a tick
/// caused are over), then answers it.
async fn settled(env: &Env, sql: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = count(&env.db, sql).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        env.assert_no_spin_compat_violations().await;
        let now = count(&env.db, sql).await;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(2) {
            return now;
        }
        assert!(Instant::now() < deadline, "{sql} kept changing");
    }
}

#[test]
fn idle_wake_ups_prune_old_processed_events_and_rejected_messages_in_bounded_batches() {
    run(async {
        // Without the ticker: only the ticks this test sends wake the scorers.
        let env = isolated_without_ticker().await;
        let db = &env.db;
        // 2,500 events processed 31 to 40 days ago, as the scorer leaves them.
        sqlx::query(
            "INSERT INTO conversation_events
                 (conversation_id, user_id, payload, status, attempts, accepted_at, processed_at)
             SELECT 'old-' || i, 'retention-old', $1::jsonb, 'processed', 1,
                    now() - make_interval(days => $2 + 1 + i % 10),
                    now() - make_interval(days => $2 + 1 + i % 10)
             FROM generate_series(1, 2500) AS i",
        )
        .bind(PAYLOAD)
        .bind(DAYS)
        .execute(db)
        .await
        .unwrap();
        // What must stay: an event processed inside the window, a pending one
        // (not due) and a failed one, both accepted long ago.
        sqlx::query(
            "INSERT INTO conversation_events
                 (conversation_id, user_id, payload, status, attempts, accepted_at, processed_at, next_attempt_at)
             VALUES ('recent', 'retention-old', $1::jsonb, 'processed', 1,
                     now() - make_interval(days => $2 - 1), now() - make_interval(days => $2 - 1), now()),
                    ('pending', 'retention-old', $1::jsonb, 'pending', 1,
                     now() - interval '90 days', NULL, now() + interval '1 day'),
                    ('failed', 'retention-old', $1::jsonb, 'failed', 3,
                     now() - interval '90 days', NULL, now())",
        )
        .bind(PAYLOAD)
        .bind(DAYS)
        .execute(db)
        .await
        .unwrap();
        // Ten rejected messages past their window, one inside it.
        sqlx::query(
            "INSERT INTO rejected_messages (source, dedupe_key, reason, payload_head, payload_bytes, received_at)
             SELECT 'channel', 'old-' || i, 'not JSON', 'x', 1, now() - make_interval(days => $1 + i)
             FROM generate_series(1, 10) AS i
             UNION ALL
             SELECT 'channel', 'recent', 'not JSON', 'x', 1, now() - make_interval(days => $1 - 1)",
        )
        .bind(DAYS)
        .execute(db)
        .await
        .unwrap();
        let events = "SELECT count(*) FROM conversation_events";
        let keys = "SELECT count(*) FROM pruned_conversations";
        let rejected = "SELECT count(*) FROM rejected_messages";
        assert_eq!(count(db, events).await, 2_503);

        // One tick wakes each scorer once: each deletes one batch, events
        // first, and none of the rejected messages while events fill it.
        tick(&env).await;
        let left = settled(&env, events).await;
        assert_eq!(left, 2_503 - SCORERS as i64 * BATCH);
        assert_eq!(count(db, keys).await, SCORERS as i64 * BATCH);
        assert_eq!(count(db, rejected).await, 11);

        // Repeated wake-ups remove the rest, rejected messages included.
        tick(&env).await;
        assert_eq!(settled(&env, events).await, 3);
        assert_eq!(settled(&env, rejected).await, 1);
        assert_eq!(count(db, keys).await, 2_500);
        tick(&env).await;
        assert_eq!(settled(&env, events).await, 3);

        let kept: Vec<(String, String)> = sqlx::query_as(
            "SELECT conversation_id, status FROM conversation_events ORDER BY conversation_id",
        )
        .fetch_all(db)
        .await
        .unwrap();
        let kept: Vec<(&str, &str)> = kept.iter().map(|(c, s)| (c.as_str(), s.as_str())).collect();
        assert_eq!(
            kept,
            [
                ("failed", "failed"),
                ("pending", "pending"),
                ("recent", "processed")
            ]
        );
        let kept_rejected: String = sqlx::query_scalar("SELECT dedupe_key FROM rejected_messages")
            .fetch_one(db)
            .await
            .unwrap();
        assert_eq!(kept_rejected, "recent");
        env.assert_no_spin_compat_violations().await;
        env.shutdown().await;
    });
}

#[test]
fn a_conversation_resent_after_its_event_was_pruned_is_a_repeat_or_a_conflict_and_never_counted() {
    run(async {
        let env = shared().await;
        let u = user("pruned");
        let token = env.token(&u, "user");
        let body = conversation(
            &u,
            12,
            2,
            "happy",
            1,
            json!([{"name": "music", "turns": 8, "user_questions": 1}]),
        );
        let accepted = env.end_conversation(&token, &body).await;
        accepted.expect(202);
        let id = accepted.json["processing_id"].as_str().unwrap().to_string();
        env.wait_for_event(&id, "processed", Duration::from_secs(15))
            .await;
        let status_before = env.status(&token, &u).await;
        status_before.expect(200);
        assert_eq!(status_before.json["friendship_score"], 27.0);
        let history = |db: PgPool, u: String| async move {
            sqlx::query_as::<_, (Option<uuid::Uuid>, f64)>(
                "SELECT processing_id, score_after::float8 FROM friendship_score_history
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(u)
            .fetch_all(&db)
            .await
            .unwrap()
        };
        let history_before = history(env.db.clone(), u.clone()).await;
        let original = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(history_before, [(Some(original), 27.0)]);

        // Processed past the window: the ticker's idle wake-ups prune it.
        sqlx::query(
            "UPDATE conversation_events SET processed_at = now() - make_interval(days => $2 + 1)
             WHERE processing_id = $1::uuid",
        )
        .bind(&id)
        .bind(DAYS)
        .execute(&env.db)
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(
            &env.db,
            &format!("SELECT count(*) FROM conversation_events WHERE processing_id = '{id}'"),
        )
        .await
            > 0
        {
            assert!(Instant::now() < deadline, "the event was not pruned");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let key: (String, String) = sqlx::query_as(
            "SELECT processing_id::text, user_id FROM pruned_conversations WHERE conversation_id = $1",
        )
        .bind(body["conversation_id"].as_str().unwrap())
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(key, (id.clone(), u.clone()));

        // A pruned event's id is not found, by its user or by an operator.
        env.event(&token, &id).await.expect_error(404, "not_found");
        let admin = env.token("ops", "admin");
        env.event(&admin, &id).await.expect_error(404, "not_found");
        let redriven = env
            .call(
                "POST",
                "/api/v1/admin/events/redrive",
                Some(&admin),
                Some(&json!({ "processing_ids": [id] })),
            )
            .await;
        redriven.expect(200);
        assert_eq!(redriven.json["requeued"], 0);

        // The same conversation resent: a repeat, answered with the original id.
        for _ in 0..2 {
            let again = env.end_conversation(&token, &body).await;
            again.expect(202);
            assert_eq!(again.json["processing_id"], id.as_str());
        }
        // The same payload written with its defaults omitted, keys reordered: the same.
        let mut reordered = body.clone();
        reordered["metadata"] = json!({
            "topics": [{"user_questions": 1, "turns": 8, "name": "music"}],
            "new_memories_count": 1, "emotion": "happy",
            "user_initiated_questions": 2, "total_turns": 12.0,
        });
        let again = env.end_conversation(&token, &reordered).await;
        again.expect(202);
        assert_eq!(again.json["processing_id"], id.as_str());
        // Another payload: a conflict. Another user: another conversation.
        let mut other = body.clone();
        other["metadata"]["total_turns"] = json!(13);
        env.end_conversation(&token, &other)
            .await
            .expect_error(409, "conflict");
        let stranger = user("pruned-other");
        let mut theirs = body.clone();
        theirs["user_id"] = json!(stranger);
        let stranger_event = env
            .end_conversation(&env.token(&stranger, "user"), &theirs)
            .await;
        stranger_event.expect(202);
        assert_ne!(stranger_event.json["processing_id"], id.as_str());

        // Never recorded again, never counted: after the scorers have had
        // their ticks, the score and the history are as before.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let recorded = count(
            &env.db,
            &format!(
                "SELECT count(*) FROM conversation_events
                 WHERE conversation_id = '{}' AND user_id = '{u}'",
                body["conversation_id"].as_str().unwrap()
            ),
        )
        .await;
        assert_eq!(recorded, 0);
        let status_after = env.status(&token, &u).await;
        status_after.expect(200);
        assert_eq!(status_after.json, status_before.json);
        assert_eq!(history(env.db.clone(), u.clone()).await, history_before);
        env.wait_for_event(
            stranger_event.json["processing_id"].as_str().unwrap(),
            "processed",
            Duration::from_secs(30),
        )
        .await;
    });
}
