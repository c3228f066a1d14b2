//! The bounds one user cannot stretch: the topics a user keeps
//! (`max_topics_per_user`) and the points conversations may add in one UTC
//! day (`daily_score_cap`), each applied in the statement that applies a
//! change, on the locked row, so concurrency cannot pass them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{conversation, isolated, isolated_after, run, user};

/// `spin.toml`'s default of `max_topics_per_user`.
const MAX_TOPICS: usize = 100;
/// Posts of the flood, each with 50 new topics: 15,000 topics in all.
const FLOOD_POSTS: usize = 300;
/// Posts sent at once.
const CONCURRENCY: usize = 16;

#[test]
fn a_flood_of_new_topics_leaves_exactly_max_topics_and_another_users_event_is_scored_within_a_second(
) {
    run(async {
        // Its own scorers: the flood must not slow every other test.
        let env = isolated().await;
        let u = user("flood");
        let token = env.token(&u, "user");
        let bodies: Vec<Value> = (0..FLOOD_POSTS)
            .map(|post| {
                let topics: Vec<Value> = (0..50)
                    .map(|k| json!({"name": format!("f{post:03}-{k:02}"), "turns": 1, "user_questions": 0}))
                    .collect();
                conversation(&u, 50, 0, "neutral", 0, Value::Array(topics))
            })
            .collect();
        let started = Instant::now();
        for chunk in bodies.chunks(CONCURRENCY) {
            let posts = chunk.iter().map(|body| env.end_conversation(&token, body));
            for resp in futures::future::join_all(posts).await {
                resp.expect(202);
            }
        }
        let posted = started.elapsed();

        // Another user's event, posted right after the flood: due events are
        // claimed each user's first before anyone's second, so it waits for
        // the batch in progress at most, never for the flood's backlog, and
        // never behind a growing row.
        let posted_after = |prefix: &'static str| {
            let env = &env;
            async move {
                let v = user(prefix);
                let body = conversation(
                    &v,
                    4,
                    1,
                    "happy",
                    0,
                    json!([{"name": "music", "turns": 2, "user_questions": 1}]),
                );
                let token = env.token(&v, "user");
                let sent = Instant::now();
                let id = env.end_conversation(&token, &body).await.json["processing_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                env.wait_for_event(&id, "processed", Duration::from_secs(30))
                    .await;
                let took = sent.elapsed();
                let theirs = env.status(&token, &v).await;
                assert_eq!(theirs.json["topic_metrics"]["music"]["total_turns"], 2);
                took
            }
        };
        let behind_backlog = posted_after("during-flood").await;
        env.wait_until_settled(&u, Duration::from_secs(120)).await;
        let settled = started.elapsed();
        // Once the flood is scored, the flooded user's row is no larger than
        // any other's: another user's event is processed within a second.
        let after_flood = posted_after("after-flood").await;
        eprintln!(
            "flood: {FLOOD_POSTS} posts in {posted:?}, settled after {settled:?}; another user's \
             event posted right after the posts processed in {behind_backlog:?}, one posted \
             after the flood was scored in {after_flood:?}"
        );
        assert!(
            behind_backlog < Duration::from_secs(1),
            "another user's event waited {behind_backlog:?} behind the flood"
        );
        assert!(
            after_flood < Duration::from_secs(1),
            "another user's event took {after_flood:?} after the flood"
        );

        let status = env.status(&token, &u).await;
        status.expect(200);
        let topics = status.json["topic_metrics"].as_object().unwrap();
        assert_eq!(topics.len(), MAX_TOPICS, "the flood user keeps the bound");
        assert_eq!(status.json["total_turns"], FLOOD_POSTS as u64 * 50);
        let stored: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM friendship_status, jsonb_object_keys(topic_metrics)
             WHERE user_id = $1",
        )
        .bind(&u)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(stored, MAX_TOPICS as i64);
        // The kept topics are the most recently engaged: none of the first
        // post's (scored first, in an earlier transaction than the last ones).
        assert!(
            topics.keys().all(|name| !name.starts_with("f000-")),
            "a topic of the first post outlived later ones"
        );
    });
}

/// The cap the test sets: `spin.toml`'s default.
const CAP: f64 = 450.0;

#[test]
fn forty_concurrent_events_for_one_user_apply_exactly_the_daily_cap() {
    run(async {
        let env = isolated_after(
            HashMap::from([("daily_score_cap".to_string(), CAP.to_string())]),
            |_| async {},
        )
        .await;
        let u = user("capped");
        let token = env.token(&u, "user");
        // Each asks 15 points (30 turns × 0.5), more than CAP / 40 = 11.25:
        // 600 in all.
        let bodies: Vec<Value> = (0..40)
            .map(|_| conversation(&u, 30, 0, "neutral", 0, json!([])))
            .collect();
        let posts = bodies.iter().map(|body| env.end_conversation(&token, body));
        for resp in futures::future::join_all(posts).await {
            resp.expect(202);
        }
        env.wait_until_settled(&u, Duration::from_secs(60)).await;

        let (lines, asked, applied): (i64, f64, f64) = sqlx::query_as(
            "SELECT count(*), sum(score_change)::float8, sum(score_applied)::float8
             FROM friendship_score_history WHERE user_id = $1",
        )
        .bind(&u)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!((lines, asked, applied), (40, 600.0, CAP));
        let status = env.status(&token, &u).await;
        assert_eq!(status.json["friendship_score"], CAP);
        assert_eq!(status.json["friendship_level"], "acquaintance");
        assert_eq!(status.json["total_turns"], 1_200, "turns are never capped");

        // A self-promoting client: one conversation of a million turns
        // (500,000 points asked) does not make it a friend today.
        let p = user("promoter");
        let ptoken = env.token(&p, "user");
        let id = env
            .end_conversation(
                &ptoken,
                &conversation(&p, 1_000_000, 0, "neutral", 0, json!([])),
            )
            .await
            .json["processing_id"]
            .as_str()
            .unwrap()
            .to_string();
        env.wait_for_event(&id, "processed", Duration::from_secs(30))
            .await;
        let promoted = env.status(&ptoken, &p).await;
        assert_eq!(promoted.json["friendship_score"], CAP);
        assert_eq!(promoted.json["friendship_level"], "acquaintance");

        // The operator's tool is never capped.
        let service = env.token("e2e-operator", "service");
        let updated = env
            .update(
                &service,
                &json!({"user_id": u, "friendship_score_change": 100}),
            )
            .await;
        updated.expect(200);
        assert_eq!(updated.json["friendship_score"], CAP + 100.0);
        assert_eq!(updated.json["friendship_level"], "friend");
    });
}
