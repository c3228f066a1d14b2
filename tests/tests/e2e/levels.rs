//! Level transitions are facts: crossings up and down are recorded in the
//! history, logged, and invalidate the user's cached candidates.

use std::time::Duration;

use serde_json::json;

use crate::support::{conversation, run, shared, user};

async fn transitions(env: &crate::support::Env, u: &str) -> Vec<(String, String, String)> {
    sqlx::query_as("SELECT from_level, to_level, cause FROM friendship_level_transitions WHERE user_id = $1 ORDER BY id")
        .bind(u)
        .fetch_all(&env.db)
        .await
        .unwrap()
}

#[test]
fn service_updates_cross_levels_up_and_down_and_floor_at_zero() {
    run(async {
        let env = shared().await;
        let u = user("levels");
        let service = env.token("ai-scorer", "service");

        let up = env
            .update(
                &service,
                &json!({ "user_id": u, "friendship_score_change": 150.5 }),
            )
            .await;
        up.expect(200);
        assert_eq!(
            up.json["previous_level"], "stranger",
            "a new user was a stranger"
        );
        assert_eq!(up.json["friendship_level"], "acquaintance");
        assert_eq!(up.json["level_changed"], true);
        assert_eq!(up.json["friendship_score"], 150.5);

        let friend = env
            .update(
                &service,
                &json!({ "user_id": u, "friendship_score_change": 400 }),
            )
            .await;
        assert_eq!(friend.json["friendship_level"], "friend");
        assert_eq!(friend.json["previous_level"], "acquaintance");

        let same = env
            .update(
                &service,
                &json!({ "user_id": u, "friendship_score_change": 1 }),
            )
            .await;
        assert_eq!(same.json["level_changed"], false);

        let down = env
            .update(
                &service,
                &json!({ "user_id": u, "friendship_score_change": -10000 }),
            )
            .await;
        down.expect(200);
        assert_eq!(down.json["friendship_score"], 0.0, "floored at zero");
        assert_eq!(down.json["friendship_level"], "stranger");
        assert_eq!(down.json["previous_level"], "friend");
        assert_eq!(down.json["level_changed"], true);

        let recorded = transitions(env, &u).await;
        let expected: Vec<(String, String, String)> = [
            ("stranger", "acquaintance"),
            ("acquaintance", "friend"),
            ("friend", "stranger"),
        ]
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string(), "service_update".to_string()))
        .collect();
        assert_eq!(recorded, expected);
        let history: Vec<(f64, f64)> = sqlx::query_as(
            "SELECT score_before::float8, score_after::float8 FROM friendship_score_history WHERE user_id = $1 ORDER BY id",
        )
        .bind(&u)
        .fetch_all(&env.db)
        .await
        .unwrap();
        assert_eq!(
            history,
            vec![(0.0, 150.5), (150.5, 550.5), (550.5, 551.5), (551.5, 0.0)]
        );
    });
}

#[test]
fn a_service_update_merges_topic_metrics_without_moving_the_streak() {
    run(async {
        let env = shared().await;
        let u = user("topics");
        let service = env.token("ai-scorer", "service");
        let body = json!({
            "user_id": u,
            "friendship_score_change": 2,
            "topic_metrics_update": {"music": {"score_change": 4.5, "turns_increment": 3, "last_date": "2026-11-20T10:00:00Z"}}
        });
        env.update(&service, &body).await.expect(200);
        let second = env.update(&service, &body).await;
        second.expect(200);
        let music = &second.json["topic_metrics"]["music"];
        assert_eq!(music["score"], 9.0);
        assert_eq!(music["total_turns"], 6);
        assert_eq!(second.json["streak_day"], 0);
        assert!(second.json["last_interaction_date"].is_null());
    });
}

/// Puts `u` at 95 points, a stranger just below acquaintance, with candidates
/// cached for that level; the user's token.
async fn cached_stranger_near_the_boundary(env: &crate::support::Env, u: &str) -> String {
    let token = env.token(u, "user");
    let service = env.token("ai-scorer", "service");
    env.update(
        &service,
        &json!({ "user_id": u, "friendship_score_change": 95 }),
    )
    .await
    .expect(200);
    env.suggest(&token, u, None).await.expect(200);
    let cached = env.suggest(&token, u, None).await;
    assert_eq!(cached.json["cached"], true);
    assert_eq!(cached.json["friendship_level"], "stranger");
    token
}

#[test]
fn a_conversation_that_crosses_a_level_records_it_and_invalidates_the_cache() {
    run(async {
        let env = shared().await;
        let u = user("cross");
        let token = cached_stranger_near_the_boundary(env, &u).await;

        let body = conversation(&u, 20, 0, "neutral", 0, json!([]));
        let id = env.end_conversation(&token, &body).await.json["processing_id"]
            .as_str()
            .unwrap()
            .to_string();
        env.wait_for_event(&id, "processed", Duration::from_secs(15))
            .await;

        // Deterministic: an event that moved the level reads `processed` only
        // once the scorer has dropped the cached candidates of the old level.
        let after = env.suggest(&token, &u, None).await;
        after.expect(200);
        assert_eq!(after.json["friendship_level"], "acquaintance");
        assert_eq!(
            after.json["cached"], false,
            "the level change dropped the cached candidates"
        );
        assert_eq!(
            transitions(env, &u).await,
            vec![(
                "stranger".to_string(),
                "acquaintance".to_string(),
                "conversation".to_string()
            )]
        );
    });
}

#[test]
fn an_event_left_scored_by_a_stopped_scorer_is_finished_with_the_cache_dropped() {
    run(async {
        let env = shared().await;
        let u = user("unfinished");
        let token = cached_stranger_near_the_boundary(env, &u).await;

        // What a scorer leaves when it stops between its commit and the cache
        // invalidation: the effect (an acquaintance now) and a `scored` event.
        let mut tx = env.db.begin().await.unwrap();
        sqlx::query("UPDATE friendship_status SET friendship_score = 150 WHERE user_id = $1")
            .bind(&u)
            .execute(&mut *tx)
            .await
            .unwrap();
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO conversation_events
                 (conversation_id, user_id, payload, status, attempts, processed_at)
             VALUES ($1, $2, '{}', 'scored', 1, now())
             RETURNING processing_id",
        )
        .bind(format!("{u}-c"))
        .bind(&u)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();

        // The next wake-up (a tick) drops the cached candidates, then finishes it.
        let event = env
            .wait_for_event(&id.to_string(), "processed", Duration::from_secs(15))
            .await;
        assert_eq!(event["attempts"], 1, "finishing is not another attempt");
        let after = env.suggest(&token, &u, None).await;
        after.expect(200);
        assert_eq!(after.json["friendship_level"], "acquaintance");
        assert_eq!(
            after.json["cached"], false,
            "no candidates of the old level"
        );
    });
}
