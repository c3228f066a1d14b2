//! Inactivity decay, with two scorers and the harness's fast ticker: a user
//! away past the grace loses its points one day at a time, each day once
//! (one `decay` history line), and a decay that crosses a level boundary is
//! recorded, shown in the user's history, published on the level-changes
//! stream and drops the cached candidates; a returning user stops decaying and starts its count again;
//! a bad setting is logged by name.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::outbox::{wait_published, Consumer};
use crate::support::{conversation, isolated_after, run, user, Env};

/// `decay_after_days` and `decay_points_per_day` of these tests.
const GRACE_DAYS: i32 = 1;
const POINTS: f64 = 30.0;

async fn decaying_env() -> Env {
    let extra: HashMap<String, String> = [
        ("decay_after_days", GRACE_DAYS.to_string()),
        ("decay_points_per_day", POINTS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    isolated_after(extra, |_| async {}).await
}

/// Moves the user's last interaction `hours` back from now, as an absence.
async fn away_for_hours(env: &Env, user_id: &str, hours: i32) {
    sqlx::query(
        "UPDATE friendship_status SET last_interaction_date = now() - make_interval(hours => $2)
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(hours)
    .execute(&env.db)
    .await
    .unwrap();
}

/// The user's decay history lines: `(score_change, score_after)`.
async fn decay_lines(env: &Env, user_id: &str) -> Vec<(f64, f64)> {
    sqlx::query_as(
        "SELECT score_change::float8, score_after::float8 FROM friendship_score_history
         WHERE user_id = $1 AND cause = 'decay' ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

/// Waits until the user has `count` decay lines, then watches `settle` more
/// (dozens of ticks of both scorers) and answers them: still `count`.
async fn decayed(env: &Env, user_id: &str, count: usize, settle: Duration) -> Vec<(f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while decay_lines(env, user_id).await.len() < count {
        env.assert_no_spin_compat_violations().await;
        assert!(
            Instant::now() < deadline,
            "{user_id}: no {count} days of decay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(settle).await;
    let lines = decay_lines(env, user_id).await;
    assert_eq!(lines.len(), count, "each day applied once: {lines:?}");
    lines
}

async fn post_and_wait(env: &Env, token: &str, body: &serde_json::Value) {
    let id = env.end_conversation(token, body).await.json["processing_id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.wait_for_event(&id, "processed", Duration::from_secs(15))
        .await;
}

#[test]
fn decay_across_a_level_boundary_applies_each_day_once_publishes_it_and_drops_the_cache() {
    run(async {
        let env = decaying_env().await;
        let consumer = Consumer::new(&env.redis_url, "decay-watch").await;
        let u = user("decay");
        let token = env.token(&u, "user");
        // 110 points (220 turns), an acquaintance who talked just now.
        post_and_wait(
            &env,
            &token,
            &conversation(&u, 220, 0, "neutral", 0, json!([])),
        )
        .await;
        env.suggest(&token, &u, None).await.expect(200);
        let cached = env.suggest(&token, &u, None).await;
        assert_eq!(
            (
                cached.json["cached"].as_bool(),
                cached.json["friendship_level"].as_str()
            ),
            (Some(true), Some("acquaintance"))
        );
        let up = wait_published(&env, &u, 1, Duration::from_secs(15)).await;

        // Away 3 days and an hour, 1 day of grace: two days of decay are due.
        away_for_hours(&env, &u, 3 * 24 + 1).await;
        let lines = decayed(&env, &u, 2, Duration::from_secs(3)).await;
        assert_eq!(lines, [(-POINTS, 80.0), (-POINTS, 50.0)]);
        // The user's own history shows them, newest first, with their levels.
        let page = env
            .call(
                "POST",
                "/api/v1/friendship/history",
                Some(&token),
                Some(&json!({ "user_id": u })),
            )
            .await;
        page.expect(200);
        let shown: Vec<(String, String, String, f64)> = page.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| {
                (
                    line["cause"].as_str().unwrap().to_owned(),
                    line["level_before"].as_str().unwrap().to_owned(),
                    line["level_after"].as_str().unwrap().to_owned(),
                    line["score_after"].as_f64().unwrap(),
                )
            })
            .collect();
        let line = |cause: &str, before: &str, after: &str, score: f64| {
            (cause.to_owned(), before.to_owned(), after.to_owned(), score)
        };
        assert_eq!(
            shown,
            [
                line("decay", "stranger", "stranger", 50.0),
                line("decay", "acquaintance", "stranger", 80.0),
                line("conversation", "stranger", "acquaintance", 110.0),
            ]
        );

        // The first day crossed into stranger: recorded, published with its
        // cause, and (before its publication, in the same wake-up) the cached
        // candidates of the old level dropped.
        let ids = wait_published(&env, &u, 2, Duration::from_secs(15)).await;
        assert_eq!(ids[0], up[0]);
        let entries = consumer.wait_for(&u, 2, Duration::from_secs(15)).await;
        let down = &entries[1].1;
        assert_eq!(down["id"], ids[1].to_string());
        assert_eq!(
            (
                down["from"].as_str(),
                down["to"].as_str(),
                down["score"].as_str(),
                down["cause"].as_str()
            ),
            ("acquaintance", "stranger", "80", "decay")
        );
        let after = env.suggest(&token, &u, None).await;
        after.expect(200);
        assert_eq!(after.json["friendship_level"], "stranger");
        assert_eq!(
            after.json["cached"], false,
            "the decay's level change dropped the cached candidates"
        );
        let status = env.status(&token, &u).await;
        assert_eq!(status.json["friendship_score"], 50.0);
        assert_eq!(status.json["streak_day"], 1, "decay is no interaction");
        env.assert_no_spin_compat_violations().await;
        env.shutdown().await;
    });
}

#[test]
fn a_returning_user_stops_decaying_and_counts_its_days_again_from_its_return() {
    run(async {
        let env = decaying_env().await;
        let u = user("returning");
        let token = env.token(&u, "user");
        post_and_wait(
            &env,
            &token,
            &conversation(&u, 400, 0, "neutral", 0, json!([])),
        )
        .await;
        away_for_hours(&env, &u, 4 * 24 + 1).await;
        decayed(&env, &u, 3, Duration::from_secs(1)).await;

        // Back: the next event resets the count, and nothing decays while the
        // user talks.
        post_and_wait(
            &env,
            &token,
            &conversation(&u, 20, 0, "neutral", 0, json!([])),
        )
        .await;
        let applied: i32 = sqlx::query_scalar(
            "SELECT decay_days_applied FROM friendship_status WHERE user_id = $1",
        )
        .bind(&u)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(applied, 0);
        let lines = decayed(&env, &u, 3, Duration::from_secs(3)).await;
        assert_eq!(lines.last().unwrap().1, 200.0 - 3.0 * POINTS);

        // Away again for 2 days and an hour: one day is due, counted from the
        // return, not from the first absence.
        away_for_hours(&env, &u, 2 * 24 + 1).await;
        let lines = decayed(&env, &u, 4, Duration::from_secs(3)).await;
        assert_eq!(lines[3], (-POINTS, 200.0 - 3.0 * POINTS + 10.0 - POINTS));
        env.shutdown().await;
    });
}

#[test]
fn a_bad_decay_setting_is_logged_by_name_and_nothing_decays() {
    run(async {
        let extra: HashMap<String, String> = [
            ("decay_after_days", "1".to_owned()),
            ("decay_points_per_day", "-5".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let env = isolated_after(extra, |_| async {}).await;
        let u = user("misconfigured");
        let token = env.token(&u, "user");
        post_and_wait(
            &env,
            &token,
            &conversation(&u, 220, 0, "neutral", 0, json!([])),
        )
        .await;
        away_for_hours(&env, &u, 3 * 24 + 1).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = env.component_log("scorer");
            if log.contains("decay_error") {
                assert!(
                    log.contains("configuration variable `decay_points_per_day` is out of range"),
                    "{log}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "no decay_error logged");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(decay_lines(&env, &u).await.is_empty());
        env.shutdown().await;
    });
}
