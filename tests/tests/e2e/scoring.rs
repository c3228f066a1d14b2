//! Scoring happens asynchronously, exactly once in effect, with the exact
//! figures of the formula in crates/domain/src/scoring.rs.

use std::time::Duration;

use serde_json::json;

use crate::support::{conversation, run, shared, user};

const SCORED_WITHIN: Duration = Duration::from_secs(15);

#[test]
fn a_conversation_end_is_accepted_at_once_then_scored_with_the_exact_figures() {
    run(async {
        let env = shared().await;
        let u = user("score");
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
        assert_eq!(accepted.json["status"], "accepted");
        let id = accepted.json["processing_id"].as_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok());

        let event = env.wait_for_event(&id, "processed", SCORED_WITHIN).await;
        assert_eq!(event["attempts"], 1);
        assert_eq!(event["user_id"], u.as_str());
        assert!(event["processed_at"].is_string());

        let status = env.status(&token, &u).await;
        status.expect(200);
        // 12 * 0.5 + 2 * 3 + 10 (happy) + 1 * 5
        assert_eq!(status.json["friendship_score"], 27.0);
        assert_eq!(status.json["friendship_level"], "stranger");
        assert_eq!(status.json["total_turns"], 12);
        assert_eq!(status.json["streak_day"], 1);
        assert!(status.json["last_interaction_date"].is_string());
        let music = &status.json["topic_metrics"]["music"];
        // 8 * 0.5 + 1 * 3
        assert_eq!(music["score"], 7.0);
        assert_eq!(music["total_turns"], 8);
        assert!(music["last_date"].is_string());
    });
}

#[test]
fn a_second_conversation_adds_up_and_keeps_the_streak_on_the_same_day() {
    run(async {
        let env = shared().await;
        let u = user("twice");
        let token = env.token(&u, "user");
        for (turns, topic_turns) in [(10, 4), (6, 2)] {
            let body = conversation(
                &u,
                turns,
                0,
                "neutral",
                0,
                json!([{"name": "books", "turns": topic_turns, "user_questions": 1}]),
            );
            let id = env.end_conversation(&token, &body).await.json["processing_id"]
                .as_str()
                .unwrap()
                .to_string();
            env.wait_for_event(&id, "processed", SCORED_WITHIN).await;
        }
        let status = env.status(&token, &u).await.json;
        assert_eq!(status["friendship_score"], 8.0);
        assert_eq!(status["total_turns"], 16);
        assert_eq!(status["streak_day"], 1);
        assert_eq!(
            status["topic_metrics"]["books"]["score"],
            3.0 + 3.0 + 2.0 + 1.0
        );
        assert_eq!(status["topic_metrics"]["books"]["total_turns"], 6);
    });
}

#[test]
fn the_streak_grows_on_the_next_day_and_resets_after_a_gap() {
    run(async {
        let env = shared().await;
        for (days_ago, streak_before, expected) in [(1, 3, 4), (2, 3, 1)] {
            let u = user("streak");
            let token = env.token(&u, "user");
            let first = conversation(&u, 1, 0, "neutral", 0, json!([]));
            let id = env.end_conversation(&token, &first).await.json["processing_id"]
                .as_str()
                .unwrap()
                .to_string();
            env.wait_for_event(&id, "processed", SCORED_WITHIN).await;
            sqlx::query(
                "UPDATE friendship_status SET streak_day = $2,
                 last_interaction_date = date_trunc('day', now()) - make_interval(days => $3) + interval '12 hours'
                 WHERE user_id = $1",
            )
            .bind(&u)
            .bind(streak_before)
            .bind(days_ago)
            .execute(&env.db)
            .await
            .unwrap();
            let next = conversation(&u, 1, 0, "neutral", 0, json!([]));
            let id = env.end_conversation(&token, &next).await.json["processing_id"]
                .as_str()
                .unwrap()
                .to_string();
            env.wait_for_event(&id, "processed", SCORED_WITHIN).await;
            let status = env.status(&token, &u).await.json;
            assert_eq!(
                status["streak_day"], expected,
                "{days_ago} day(s) after a streak of {streak_before}"
            );
        }
    });
}

#[test]
fn a_boring_empty_conversation_never_lowers_the_score() {
    run(async {
        let env = shared().await;
        let u = user("boring");
        let token = env.token(&u, "user");
        let id = env
            .end_conversation(&token, &conversation(&u, 0, 0, "boring", 0, json!([])))
            .await
            .json["processing_id"]
            .as_str()
            .unwrap()
            .to_string();
        env.wait_for_event(&id, "processed", SCORED_WITHIN).await;
        assert_eq!(env.status(&token, &u).await.json["friendship_score"], 0.0);
    });
}

#[test]
fn the_same_conversation_sent_five_times_also_concurrently_is_counted_once() {
    run(async {
        let env = shared().await;
        let u = user("idem");
        let token = env.token(&u, "user");
        let body = conversation(
            &u,
            20,
            1,
            "interesting",
            0,
            json!([{"name": "space", "turns": 5, "user_questions": 0}]),
        );
        let mut ids = Vec::new();
        for _ in 0..5 {
            let resp = env.end_conversation(&token, &body).await;
            resp.expect(202);
            ids.push(resp.json["processing_id"].as_str().unwrap().to_string());
        }
        let concurrent =
            futures::future::join_all((0..5).map(|_| env.end_conversation(&token, &body))).await;
        for resp in &concurrent {
            resp.expect(202);
            ids.push(resp.json["processing_id"].as_str().unwrap().to_string());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "one processing_id for one conversation");
        env.wait_for_event(&ids[0], "processed", SCORED_WITHIN)
            .await;
        env.wait_until_settled(&u, SCORED_WITHIN).await;
        let status = env.status(&token, &u).await.json;
        // 20 * 0.5 + 3 + 15 (interesting)
        assert_eq!(status["friendship_score"], 28.0);
        assert_eq!(status["total_turns"], 20);
        let history: i64 =
            sqlx::query_scalar("SELECT count(*) FROM friendship_score_history WHERE user_id = $1")
                .bind(&u)
                .fetch_one(&env.db)
                .await
                .unwrap();
        assert_eq!(history, 1);
    });
}

#[test]
fn forty_concurrent_events_for_one_user_add_up_exactly() {
    run(async {
        let env = shared().await;
        let u = user("forty");
        let token = env.token(&u, "user");
        let bodies: Vec<_> = (0..40u32)
            .map(|i| {
                let topic = ["music", "travel", "food"][(i % 3) as usize];
                conversation(
                    &u,
                    i + 1,
                    i % 4,
                    "neutral",
                    i % 2,
                    json!([{"name": topic, "turns": i % 5, "user_questions": i % 2}]),
                )
            })
            .collect();
        // Each event is also sent twice, concurrently.
        let sends = bodies
            .iter()
            .chain(bodies.iter())
            .map(|b| env.end_conversation(&token, b));
        for resp in futures::future::join_all(sends).await {
            resp.expect(202);
        }
        env.wait_until_settled(&u, Duration::from_secs(60)).await;

        // By hand, over i = 0..=39 (neutral adds nothing):
        // score = Σ(i+1)×0.5 + Σ(i%4)×3 + Σ(i%2)×5
        //       = 820×0.5 + (10 rounds of 0+1+2+3 = 60)×3 + (20 odd i)×5
        //       = 410 + 180 + 100 = 690; turns = Σ(i+1) = 820.
        // Topic of i: music when i%3 = 0 (i = 0, 3, …, 39: 14 events), travel
        // when 1 (1, 4, …, 37: 13), food when 2 (2, 5, …, 38: 13); each adds
        // (i%5)×0.5 + (i%2)×3 to it, and i%5 turns:
        //   music:  i%5 = 0,3,1,4,2, 0,3,1,4,2, 0,3,1,4 = 28 turns, 7 odd i:
        //           28×0.5 + 7×3 = 14 + 21 = 35
        //   travel: i%5 = 1,4,2,0,3, 1,4,2,0,3, 1,4,2 = 27 turns, 7 odd i:
        //           27×0.5 + 7×3 = 13.5 + 21 = 34.5
        //   food:   i%5 = 2,0,3,1,4, 2,0,3,1,4, 2,0,3 = 25 turns, 6 odd i:
        //           25×0.5 + 6×3 = 12.5 + 18 = 30.5
        let status = env.status(&token, &u).await.json;
        assert_eq!(status["friendship_score"], 690.0);
        assert_eq!(status["total_turns"], 820);
        let topics = status["topic_metrics"].as_object().unwrap();
        assert_eq!(topics.len(), 3, "{topics:?}");
        for (topic, score, turns) in [
            ("music", 35.0, 28),
            ("travel", 34.5, 27),
            ("food", 30.5, 25),
        ] {
            let metric = &status["topic_metrics"][topic];
            assert_eq!(metric["score"], score, "{topic}: {metric}");
            assert_eq!(metric["total_turns"], turns, "{topic}: {metric}");
        }
        let processed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM conversation_events WHERE user_id = $1 AND status = 'processed' AND attempts = 1",
        )
        .bind(&u)
        .fetch_one(&env.db)
        .await
        .unwrap();
        let retried: Vec<(i32, Option<String>)> = sqlx::query_as(
            "SELECT attempts, last_error FROM conversation_events WHERE user_id = $1 AND attempts <> 1",
        )
        .bind(&u)
        .fetch_all(&env.db)
        .await
        .unwrap();
        assert_eq!(
            processed, 40,
            "events scored in more than one attempt: {retried:?}"
        );
    });
}

#[test]
fn a_burst_woken_by_doorbells_alone_is_processed_in_full_with_fewer_doorbells_than_posts() {
    run(async {
        // No ticker: only the doorbells of the posts wake the scorers, so an
        // event recorded after its doorbell was skipped and before the
        // wake-up that should cover it would stay pending and fail this test.
        let env = crate::support::isolated_without_ticker().await;
        let client = redis::Client::open(env.redis_url.as_str()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("conversation-events").await.unwrap();
        let service = env.token("e2e-burst", "service");
        const POSTS: usize = 120;
        let bodies: Vec<_> = (0..POSTS)
            .map(|i| conversation(&format!("burst-{}", i % 8), 4, 1, "neutral", 0, json!([])))
            .collect();
        let mut ids = Vec::new();
        for chunk in bodies.chunks(16) {
            let posts = chunk
                .iter()
                .map(|body| env.end_conversation(&service, body));
            for resp in futures::future::join_all(posts).await {
                resp.expect(202);
                ids.push(resp.json["processing_id"].as_str().unwrap().to_string());
            }
        }
        for id in &ids {
            env.wait_for_event(id, "processed", Duration::from_secs(20))
                .await;
        }
        let mut doorbells = 0;
        let mut messages = pubsub.on_message();
        while let Ok(Some(_)) = tokio::time::timeout(
            Duration::from_millis(200),
            futures::StreamExt::next(&mut messages),
        )
        .await
        {
            doorbells += 1;
        }
        assert!(
            (1..POSTS).contains(&doorbells),
            "{doorbells} doorbells for {POSTS} posts"
        );
        drop(messages);
        env.shutdown().await;
    });
}
