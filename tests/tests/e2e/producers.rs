//! Events produced on Redis by back-end services: published on the events
//! channel and added to the events stream, recorded with the HTTP path's
//! idempotent insert and scored once; bad messages recorded as rejected.
//! Every environment runs two scorers, so each channel message is heard twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{conversation, isolated_after, run, shared, user, Env};

pub(crate) const CHANNEL: &str = "conversation-events";
const STREAM: &str = "conversation-events:stream";

async fn redis(env_redis_url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(env_redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn publish(env: &Env, payload: &[u8]) -> i64 {
    redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(payload)
        .query_async(&mut redis(&env.redis_url).await)
        .await
        .unwrap()
}

async fn xadd(redis_url: &str, stream: &str, fields: &[(&str, &[u8])]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(&mut redis(redis_url).await).await.unwrap()
}

async fn add_event(redis_url: &str, stream: &str, body: &Value) -> String {
    xadd(redis_url, stream, &[("event", body.to_string().as_bytes())]).await
}

/// Waits until `user_id` has `count` events, all processed.
async fn wait_processed(env: &Env, user_id: &str, count: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (total, processed): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'processed')
             FROM conversation_events WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(&env.db)
        .await
        .unwrap();
        if total == count && processed == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user_id}: {processed} of {total} events processed, {count} expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn history_lines(env: &Env, user_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM friendship_score_history WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

async fn score(env: &Env, user_id: &str) -> f64 {
    let status = env.status(&env.token(user_id, "user"), user_id).await;
    status.expect(200);
    status.json["friendship_score"].as_f64().unwrap()
}

#[test]
fn an_event_published_on_the_channel_is_scored_with_the_exact_figures() {
    run(async {
        let env = shared().await;
        let u = user("channel");
        let body = conversation(
            &u,
            12,
            2,
            "happy",
            1,
            json!([{"name": "music", "turns": 8, "user_questions": 1}]),
        );
        assert_eq!(
            publish(env, body.to_string().as_bytes()).await,
            2,
            "both scorers listen"
        );
        wait_processed(env, &u, 1, Duration::from_secs(30)).await;
        // 12 * 0.5 + 2 * 3 + 10 (happy) + 1 * 5
        assert_eq!(score(env, &u).await, 27.0);
        let status = env.status(&env.token(&u, "user"), &u).await;
        assert_eq!(
            status.json["topic_metrics"]["music"]["score"].as_f64(),
            Some(7.0)
        );
        assert_eq!(status.json["streak_day"], 1);
    });
}

#[test]
fn one_event_published_thrice_added_twice_and_posted_is_recorded_and_counted_once() {
    run(async {
        let env = shared().await;
        let u = user("five-ways");
        let body = conversation(&u, 10, 1, "neutral", 0, json!([]));
        for _ in 0..3 {
            publish(env, body.to_string().as_bytes()).await;
        }
        for _ in 0..2 {
            add_event(&env.redis_url, STREAM, &body).await;
        }
        env.end_conversation(&env.token(&u, "user"), &body)
            .await
            .expect(202);
        publish(env, br#"{"kind":"tick"}"#).await;
        wait_processed(env, &u, 1, Duration::from_secs(30)).await;
        // Give every copy time to arrive: the ticker wakes the scorers every second.
        tokio::time::sleep(Duration::from_secs(3)).await;
        wait_processed(env, &u, 1, Duration::from_secs(5)).await;
        assert_eq!(history_lines(env, &u).await, 1);
        assert_eq!(score(env, &u).await, 8.0);
        let rejected: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rejected_messages WHERE payload_head LIKE '%' || $1 || '%'",
        )
        .bind(&u)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(rejected, 0, "repeats of the same event are not rejections");
    });
}

/// Rejected records whose payload mentions `marker`.
async fn rejections(env: &Env, marker: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT source, reason FROM rejected_messages WHERE payload_head LIKE '%' || $1 || '%'",
    )
    .bind(marker)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

async fn wait_rejected(env: &Env, marker: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = rejections(env, marker).await;
        if !found.is_empty() {
            // Both scorers have had the message for a while: still one record.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let found = rejections(env, marker).await;
            assert_eq!(found.len(), 1, "{marker}: {found:?}");
            return found.into_iter().next().unwrap();
        }
        assert!(Instant::now() < deadline, "{marker} was never rejected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn user_exists(env: &Env, user_id: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM friendship_status WHERE user_id = $1)")
        .bind(user_id)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

#[test]
fn each_kind_of_bad_message_leaves_one_rejected_record_and_changes_nothing() {
    run(async {
        let env = shared().await;
        let taken = user("taken");
        let taken_body = conversation(&taken, 2, 0, "neutral", 0, json!([]));
        env.end_conversation(&env.token(&taken, "user"), &taken_body)
            .await
            .expect(202);

        let mut cases: Vec<(&str, String, Vec<u8>, &str)> = Vec::new();
        let u = user("not-json");
        cases.push((
            "channel",
            u.clone(),
            format!("{{not json {u}").into_bytes(),
            "not JSON",
        ));
        let u = user("invalid");
        let mut body = conversation(&u, 1, 0, "happy", 0, json!([]));
        body["metadata"]["total_turns"] = json!(-1);
        cases.push((
            "channel",
            u,
            body.to_string().into_bytes(),
            "metadata.total_turns",
        ));
        let u = user("unknown");
        let mut body = conversation(&u, 1, 0, "happy", 0, json!([]));
        body["surprise"] = json!(true);
        cases.push(("stream", u, body.to_string().into_bytes(), "invalid event"));
        let u = user("too-large");
        let mut body = conversation(&u, 1, 0, "happy", 0, json!([]));
        body["metadata"]["padding"] = json!("x".repeat(70 * 1024));
        // Keys serialise in order: the id, not the user, is in the first 4 KiB.
        body["conversation_id"] = json!(format!("c-{u}"));
        cases.push((
            "channel",
            u.clone(),
            body.to_string().into_bytes(),
            "larger than",
        ));
        let u = user("too-large-stream");
        let mut body = conversation(&u, 1, 0, "happy", 0, json!([]));
        body["metadata"]["padding"] = json!("x".repeat(70 * 1024));
        body["conversation_id"] = json!(format!("c-{u}"));
        cases.push(("stream", u, body.to_string().into_bytes(), "larger than"));
        // The taken conversation, from its own user, with another payload
        // (another user's conversation of the same id would be theirs); the
        // marker rides in as a topic name.
        let u = user("conflict");
        let mut body = taken_body.clone();
        body["metadata"]["topics"] = json!([{"name": u, "turns": 1, "user_questions": 0}]);
        cases.push((
            "channel",
            u.clone(),
            body.to_string().into_bytes(),
            "already recorded",
        ));
        let u = user("conflict-stream");
        let mut body = taken_body.clone();
        body["metadata"]["topics"] = json!([{"name": u, "turns": 2, "user_questions": 0}]);
        cases.push((
            "stream",
            u,
            body.to_string().into_bytes(),
            "already recorded",
        ));
        // Nested past serde_json's 128 levels: the parse recurses as deep as
        // it ever does, on the scorer's 256 KiB stack (`.cargo/config.toml`).
        for source in ["channel", "stream"] {
            let u = user(&format!("deep-{source}"));
            let payload = format!(
                r#"{{"user_id":"{u}","conversation_id":"c-{u}","metadata":{}{}}}"#,
                "[".repeat(4_000),
                "]".repeat(4_000)
            );
            cases.push((source, u, payload.into_bytes(), "recursion limit"));
        }
        let u = user("bad-doorbell");
        cases.push((
            "channel",
            u.clone(),
            format!(r#"{{"kind":"recorded","processing_id":"{u}"}}"#).into_bytes(),
            "not a doorbell",
        ));

        for (source, _, payload, _) in &cases {
            if *source == "channel" {
                publish(env, payload).await;
            } else {
                xadd(&env.redis_url, STREAM, &[("event", payload)]).await;
            }
        }
        // A stream entry without the one field `event`.
        let wrong_field = user("wrong-field");
        xadd(
            &env.redis_url,
            STREAM,
            &[("payload", wrong_field.as_bytes())],
        )
        .await;
        publish(env, br#"{"kind":"tick"}"#).await;

        for (source, marker, payload, reason) in &cases {
            let (got_source, got_reason) = wait_rejected(env, marker).await;
            assert_eq!(&got_source, source, "{marker}");
            assert!(got_reason.contains(reason), "{marker}: {got_reason}");
            assert!(!user_exists(env, marker).await, "{marker} created a user");
            let bytes: i32 = sqlx::query_scalar(
                "SELECT payload_bytes FROM rejected_messages WHERE payload_head LIKE '%' || $1 || '%'",
            )
            .bind(marker)
            .fetch_one(&env.db)
            .await
            .unwrap();
            assert_eq!(bytes as usize, payload.len());
        }
        let (source, reason) = wait_rejected(env, &wrong_field).await;
        assert_eq!(source, "stream");
        assert!(reason.contains("`event`"), "{reason}");
        assert_eq!(
            score(env, &taken).await,
            1.0,
            "the conflicting messages changed nothing"
        );

        // The admin list shows them, newest first.
        let admin = env.token("e2e-admin", "admin");
        let list = env
            .call(
                "GET",
                "/api/v1/admin/rejected-messages?limit=500",
                Some(&admin),
                None,
            )
            .await;
        list.expect(200);
        let items = list.json["items"].as_array().unwrap();
        assert!(list.json["total"].as_i64().unwrap() > cases.len() as i64);
        let times: Vec<&str> = items
            .iter()
            .map(|i| i["received_at"].as_str().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "newest first: {times:?}"
        );
        env.call(
            "GET",
            "/api/v1/admin/rejected-messages?limit=0",
            Some(&admin),
            None,
        )
        .await
        .expect_error(400, "validation_error");
        env.call(
            "GET",
            "/api/v1/admin/rejected-messages?status=x",
            Some(&admin),
            None,
        )
        .await
        .expect_error(400, "validation_error");
        env.call(
            "GET",
            "/api/v1/admin/rejected-messages",
            Some(&env.token("x-1", "service")),
            None,
        )
        .await
        .expect_error(403, "forbidden");

        // The next valid event, on either way in, is still scored.
        let next = user("after-bad");
        publish(
            env,
            conversation(&next, 4, 0, "neutral", 0, json!([]))
                .to_string()
                .as_bytes(),
        )
        .await;
        add_event(
            &env.redis_url,
            STREAM,
            &conversation(&next, 6, 0, "neutral", 0, json!([])),
        )
        .await;
        publish(env, br#"{"kind":"tick"}"#).await;
        wait_processed(env, &next, 2, Duration::from_secs(30)).await;
        assert_eq!(score(env, &next).await, 5.0);
    });
}

async fn stream_len(redis_url: &str, stream: &str) -> i64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut redis(redis_url).await)
        .await
        .unwrap()
}

#[test]
fn entries_added_while_no_scorer_runs_are_all_scored_once_when_one_starts() {
    run(async {
        let stream = format!("e2e:{}", user("stream"));
        let users: Vec<String> = (0..200).map(|i| user(&format!("offline{i}"))).collect();
        let bodies: Vec<Value> = users
            .iter()
            .map(|u| conversation(u, 4, 1, "neutral", 0, json!([])))
            .collect();
        let extra = HashMap::from([("events_stream".to_string(), stream.clone())]);
        let env = isolated_after(extra, |redis_url| {
            let stream = stream.clone();
            let bodies = bodies.clone();
            async move {
                for body in &bodies {
                    add_event(&redis_url, &stream, body).await;
                }
                assert_eq!(stream_len(&redis_url, &stream).await, 200);
            }
        })
        .await;
        for u in &users {
            wait_processed(&env, u, 1, Duration::from_secs(60)).await;
            assert_eq!(history_lines(&env, u).await, 1);
        }
        assert_eq!(score(&env, &users[0]).await, 5.0);
        assert_eq!(
            stream_len(&env.redis_url, &stream).await,
            0,
            "acknowledged entries are deleted"
        );
        env.shutdown().await;
    });
}

#[test]
fn entries_a_crashed_scorer_read_but_never_acknowledged_are_claimed_and_counted_once() {
    run(async {
        let stream = format!("e2e:{}", user("crash"));
        let u = user("crashed");
        let bodies: Vec<Value> = (0..20)
            .map(|i| conversation(&u, 2 * (i + 1), 0, "neutral", 0, json!([])))
            .collect();
        let extra = HashMap::from([
            ("events_stream".to_string(), stream.clone()),
            ("stream_claim_idle_ms".to_string(), "1000".to_string()),
        ]);
        let env = isolated_after(extra, |redis_url| {
            let stream = stream.clone();
            let bodies = bodies.clone();
            async move {
                let mut conn = redis(&redis_url).await;
                let _: () = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&stream)
                    .arg("scorers")
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                for body in &bodies {
                    add_event(&redis_url, &stream, body).await;
                }
                // A scorer that read every entry, then died before acknowledging any.
                let _: redis::Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("scorers")
                    .arg("crashed-scorer")
                    .arg("COUNT")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        })
        .await;
        // It had recorded half of them before it died.
        for body in &bodies[..10] {
            env.end_conversation(&env.token(&u, "user"), body)
                .await
                .expect(202);
        }
        wait_processed(&env, &u, 20, Duration::from_secs(60)).await;
        assert_eq!(history_lines(&env, &u).await, 20);
        let expected: f64 = (1..=20).map(|i| f64::from(2 * i) * 0.5).sum();
        assert_eq!(score(&env, &u).await, expected);
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("scorers")
            .query_async(&mut redis(&env.redis_url).await)
            .await
            .unwrap();
        assert!(
            matches!(&pending, redis::Value::Array(items) if items.first() == Some(&redis::Value::Int(0))),
            "nothing left pending: {pending:?}"
        );
        env.shutdown().await;
    });
}

#[test]
fn ten_thousand_entries_leave_a_bounded_stream() {
    run(async {
        // Its own scorers: scoring 10,000 events would slow every other test.
        let env = crate::support::isolated().await;
        let u = user("bulk");
        let mut conn = redis(&env.redis_url).await;
        let stream = STREAM;
        let mut pipe = redis::pipe();
        for _ in 0..10_000 {
            let body = conversation(&u, 1, 0, "neutral", 0, json!([]));
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("event")
                .arg(body.to_string())
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let recorded: i64 =
                sqlx::query_scalar("SELECT count(*) FROM conversation_events WHERE user_id = $1")
                    .bind(&u)
                    .fetch_one(&env.db)
                    .await
                    .unwrap();
            if recorded == 10_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{recorded} of 10000 entries recorded"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Every entry recorded is acknowledged and deleted.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let len = stream_len(&env.redis_url, stream).await;
            if len == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stream still holds {len} entries"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        env.shutdown().await;
    });
}

/// Transactions committed in the environment's database so far, as
/// Postgres's statistics tell them (flushed about once a second).
async fn commits(env: &Env) -> i64 {
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// The scorers' turn (`crates/edge/src/turn.rs`): a burst on the channel,
/// heard by both scorers, is handed to the stream once per message and
/// reaches Postgres from one scorer at a time, in batches, not as a
/// wake-up per message per scorer (which cost at least four transactions
/// per event: the doorbell mark's clear and the record, on each scorer).
#[test]
fn a_burst_on_the_channel_is_recorded_once_per_event_by_one_scorer_at_a_time() {
    run(async {
        // Its own scorers and database, so the commits counted are the burst's.
        let env = crate::support::isolated().await;
        const EVENTS: usize = 1_000;
        let users: Vec<String> = (0..20).map(|i| user(&format!("burst{i}"))).collect();
        let mut pipe = redis::pipe();
        for i in 0..EVENTS {
            let body = conversation(&users[i % users.len()], 4, 1, "neutral", 0, json!([]));
            pipe.cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(body.to_string())
                .ignore();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = commits(&env).await;
        let mut conn = redis(&env.redis_url).await;
        let _: () = pipe.query_async(&mut conn).await.unwrap();
        for u in &users {
            wait_processed(
                &env,
                u,
                (EVENTS / users.len()) as i64,
                Duration::from_secs(60),
            )
            .await;
            assert_eq!(history_lines(&env, u).await, (EVENTS / users.len()) as i64);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let spent = commits(&env).await - before;
        assert!(
            spent < 4 * EVENTS as i64,
            "{EVENTS} channel events cost {spent} transactions: a wake-up per message"
        );
        eprintln!("{EVENTS} channel events, two scorers: {spent} transactions");
        assert_eq!(
            stream_len(&env.redis_url, STREAM).await,
            0,
            "every hand-over acknowledged"
        );
        let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejected_messages")
            .fetch_one(&env.db)
            .await
            .unwrap();
        assert_eq!(rejected, 0);
        env.shutdown().await;
    });
}

/// A scorer killed while it held the turn (its token left in Redis) holds
/// the others back only until the turn lapses: nothing is scored while it
/// stands, and everything soon after.
#[test]
fn a_turn_left_by_a_killed_holder_delays_scoring_only_until_it_lapses() {
    run(async {
        // Longer than the scorers' own (10 s), so it still stands once the
        // environment has started, however slowly.
        const TURN_MS: u64 = 20_000;
        let u = user("orphan-turn");
        let set_at = std::sync::Arc::new(std::sync::Mutex::new(None));
        let env = isolated_after(HashMap::new(), |redis_url| {
            let set_at = set_at.clone();
            async move {
                let _: () = redis::cmd("SET")
                    .arg(format!("{CHANNEL}:turn"))
                    .arg("a-killed-scorer")
                    .arg("PX")
                    .arg(TURN_MS)
                    .query_async(&mut redis(&redis_url).await)
                    .await
                    .unwrap();
                *set_at.lock().unwrap() = Some(Instant::now());
            }
        })
        .await;
        let set_at = set_at.lock().unwrap().unwrap();
        let body = conversation(&u, 12, 2, "happy", 1, json!([]));
        env.end_conversation(&env.token(&u, "user"), &body)
            .await
            .expect(202);
        publish(&env, br#"{"kind":"tick"}"#).await;
        let lapses = set_at + Duration::from_millis(TURN_MS);
        if Instant::now() + Duration::from_secs(1) < lapses {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let processed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM conversation_events WHERE user_id = $1 AND status = 'processed'",
            )
            .bind(&u)
            .fetch_one(&env.db)
            .await
            .unwrap();
            assert!(
                Instant::now() >= lapses || processed == 0,
                "scored while another held the turn"
            );
        }
        let wait = lapses.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
        wait_processed(&env, &u, 1, wait).await;
        assert_eq!(history_lines(&env, &u).await, 1);
        env.shutdown().await;
    });
}
