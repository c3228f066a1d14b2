//! Nothing is lost: Redis paused and restarted, the scorer failing, and
//! Postgres restarted, each on private servers started for the purpose.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{conversation, isolated, isolated_with_own_kv, run, user, Env, Resp};

/// Posts an event until it is accepted, as a client honouring 503 +
/// Retry-After would; returns its processing id.
async fn post_until_accepted(env: &Env, token: &str, body: &Value, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let resp: Resp = env.end_conversation(token, body).await;
        if resp.status == 202 {
            return resp.json["processing_id"].as_str().unwrap().to_string();
        }
        assert_eq!(
            resp.status, 503,
            "only an unavailable database may refuse an event: {}",
            resp.text
        );
        assert!(resp.header("retry-after").is_some());
        assert!(
            Instant::now() < deadline,
            "event not accepted within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Injects a fault through the database: the trigger `name` runs `raise`
/// whenever a score change of `user_id` is recorded, so scoring that user fails.
async fn fail_scoring_of(env: &Env, name: &str, user_id: &str, raise: &str) {
    sqlx::query(&format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.user_id = '{user_id}' THEN {raise}; END IF;
           RETURN NEW;
         END $$"
    ))
    .execute(&env.db)
    .await
    .unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER {name} BEFORE INSERT ON friendship_score_history
         FOR EACH ROW EXECUTE FUNCTION {name}()"
    ))
    .execute(&env.db)
    .await
    .unwrap();
}

/// The score a conversation body adds (the formula of
/// crates/domain/src/scoring.rs; bodies here use the neutral emotion and no
/// memories).
fn expected_score(bodies: &[Value]) -> f64 {
    bodies
        .iter()
        .map(|b| {
            let m = &b["metadata"];
            m["total_turns"].as_f64().unwrap() * 0.5
                + m["user_initiated_questions"].as_f64().unwrap() * 3.0
        })
        .sum()
}

async fn assert_all_processed_once(env: &Env, u: &str, bodies: &[Value]) {
    env.wait_until_settled(u, Duration::from_secs(60)).await;
    let statuses: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM conversation_events WHERE user_id = $1 GROUP BY status",
    )
    .bind(u)
    .fetch_all(&env.db)
    .await
    .unwrap();
    assert_eq!(
        statuses,
        vec![("processed".to_string(), bodies.len() as i64)]
    );
    let history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM friendship_score_history WHERE user_id = $1")
            .bind(u)
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(history, bodies.len() as i64, "each event scored once");
    let status = env.status(&env.token(u, "user"), u).await;
    status.expect(200);
    assert_eq!(
        status.json["friendship_score"].as_f64().unwrap(),
        expected_score(bodies)
    );
}

#[test]
fn events_posted_while_redis_restarts_or_pauses_all_end_processed() {
    run(async {
        let env = Env::private(HashMap::new()).await;
        let u = user("redis-fault");
        let token = env.token(&u, "user");
        let bodies: Vec<Value> = (0..45u32)
            .map(|i| conversation(&u, i % 7 + 1, i % 3, "neutral", 0, json!([])))
            .collect();

        for body in &bodies[..15] {
            post_until_accepted(&env, &token, body, Duration::from_secs(30)).await;
        }
        env.servers.lock().await.redis.as_mut().unwrap().restart();
        for body in &bodies[15..30] {
            post_until_accepted(&env, &token, body, Duration::from_secs(30)).await;
        }

        // Paused: publishes hang until Redis answers again; the events are
        // already durable, so they are scored once it does.
        env.servers.lock().await.redis.as_ref().unwrap().pause();
        let posting = futures::future::join_all(
            bodies[30..]
                .iter()
                .map(|body| post_until_accepted(&env, &token, body, Duration::from_secs(60))),
        );
        let resume = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            env.servers.lock().await.redis.as_ref().unwrap().resume();
        };
        let (ids, ()) = tokio::join!(posting, resume);

        assert_all_processed_once(&env, &u, &bodies).await;
        // Each event accepted while Redis was paused got an id of its own:
        // the one recorded for its conversation, processed, scored once.
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        for (body, id) in bodies[30..].iter().zip(&ids) {
            let (conversation_id, status, scored): (String, String, i64) = sqlx::query_as(
                "SELECT conversation_id, status, (SELECT count(*) FROM friendship_score_history h \
                   WHERE h.processing_id = e.processing_id) \
                 FROM conversation_events e WHERE processing_id = $1::uuid",
            )
            .bind(id)
            .fetch_one(&env.db)
            .await
            .unwrap_or_else(|e| panic!("event {id} is recorded: {e}"));
            assert_eq!(
                (conversation_id.as_str(), status.as_str(), scored),
                (body["conversation_id"].as_str().unwrap(), "processed", 1),
                "event {id}"
            );
        }
        // The trigger ended with its Redis connection (as `spin up` exits)
        // and the supervisor started the scorer again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while env
            .scorer_restarts
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "the scorer was never restarted after Redis restarted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        env.shutdown().await;
    });
}

/// A crashed instance can leave its pooled connection inside a transaction
/// that has only begun or only read (no transaction id yet). A post that
/// gets that connection must still commit its event before answering 202.
#[test]
fn a_post_on_a_connection_left_inside_a_transaction_that_only_read_is_durable_on_the_host() {
    run(async {
        let env = isolated().await;
        let u = user("stale");
        let token = env.token(&u, "user");
        env.leave_on_a_pooled_connection("BEGIN; SELECT 1").await;
        // Sequential posts go round every idle connection of the pool
        // (64 at most), the stale one included.
        let mut bodies = Vec::new();
        for i in 0..70 {
            let body = conversation(&u, 2, 0, "neutral", 0, json!([]));
            env.end_conversation(&token, &body).await.expect(202);
            bodies.push(body);
            if i % 10 == 9 {
                tokio::task::yield_now().await;
            }
        }
        let recorded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM conversation_events WHERE user_id = $1")
                .bind(&u)
                .fetch_one(&env.db)
                .await
                .unwrap();
        assert_eq!(recorded, 70, "every accepted event is committed");
        assert_all_processed_once(&env, &u, &bodies).await;
        env.shutdown().await;
    });
}

#[test]
fn a_failing_scorer_retries_then_dead_letters_and_a_redrive_scores_once() {
    run(async {
        let env = isolated().await;
        let u = user("poison");
        let token = env.token(&u, "user");
        // The fault is injected through the database: scoring this user fails.
        fail_scoring_of(
            &env,
            "poison",
            &u,
            "RAISE EXCEPTION 'injected scoring failure'",
        )
        .await;

        let body = conversation(&u, 10, 1, "neutral", 0, json!([]));
        let id = post_until_accepted(&env, &token, &body, Duration::from_secs(10)).await;
        let failed = env
            .wait_for_event(&id, "failed", Duration::from_secs(30))
            .await;
        assert_eq!(failed["attempts"], 3);
        assert!(
            failed["last_error"]
                .as_str()
                .unwrap()
                .contains("injected scoring failure"),
            "{failed}"
        );
        // Nothing of the failed attempts was applied.
        let status = env.status(&token, &u).await;
        assert!(
            status.status == 404 || status.json["friendship_score"] == 0.0,
            "{}",
            status.text
        );

        sqlx::query("DROP TRIGGER poison ON friendship_score_history")
            .execute(&env.db)
            .await
            .unwrap();
        let redriven = env.redrive().await;
        redriven.expect(200);
        assert_eq!(redriven.json["requeued"], 1, "the env's one failed event");
        let processed = env
            .wait_for_event(&id, "processed", Duration::from_secs(15))
            .await;
        assert_eq!(
            processed["attempts"], 1,
            "a redriven event gets a fresh set of attempts"
        );
        assert_all_processed_once(&env, &u, &[body]).await;
        env.shutdown().await;
    });
}

/// Operators see the dead letters (newest first, with attempts and the last
/// error) and redrive the ones whose cause they fixed; the others stay.
#[test]
fn dead_letters_are_listed_and_a_chosen_one_is_redriven_alone() {
    run(async {
        let env = isolated().await;
        let admin = env.token("ops", "admin");
        let (fixed, broken) = (user("fixed"), user("broken"));
        let mut ids = Vec::new();
        for (name, u) in [("poison_fixed", &fixed), ("poison_broken", &broken)] {
            fail_scoring_of(
                &env,
                name,
                u,
                "RAISE EXCEPTION 'no score for %', NEW.user_id",
            )
            .await;
            let body = conversation(u, 10, 1, "neutral", 0, json!([]));
            let token = env.token(u, "user");
            let id = post_until_accepted(&env, &token, &body, Duration::from_secs(10)).await;
            env.wait_for_event(&id, "failed", Duration::from_secs(30))
                .await;
            ids.push(id);
        }
        let (fixed_id, broken_id) = (ids[0].clone(), ids[1].clone());

        let listed = env
            .call(
                "GET",
                "/api/v1/admin/events?status=failed&limit=10",
                Some(&admin),
                None,
            )
            .await;
        listed.expect(200);
        assert_eq!(
            (listed.json["total"].clone(), listed.json["status"].clone()),
            (json!(2), json!("failed"))
        );
        let items = listed.json["items"].as_array().unwrap();
        let listed_ids: Vec<_> = items
            .iter()
            .map(|e| e["processing_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            listed_ids,
            [broken_id.as_str(), fixed_id.as_str()],
            "newest first"
        );
        assert_eq!(items[0]["attempts"], 3);
        assert!(
            items[0]["last_error"]
                .as_str()
                .unwrap()
                .contains(&format!("no score for {broken}")),
            "{}",
            items[0]
        );
        for field in [
            "accepted_at",
            "next_attempt_at",
            "conversation_id",
            "user_id",
        ] {
            assert!(items[0][field].is_string(), "{field}: {}", items[0]);
        }
        let page = env
            .call(
                "GET",
                "/api/v1/admin/events?limit=1&offset=1",
                Some(&admin),
                None,
            )
            .await;
        page.expect(200);
        assert_eq!(
            page.json["items"][0]["processing_id"],
            fixed_id.as_str(),
            "failed by default, paged"
        );

        for bad in [
            json!({"processing_ids": []}),
            json!({"processing_ids": ["not-a-uuid"]}),
            json!({"ids": [fixed_id]}),
        ] {
            env.call(
                "POST",
                "/api/v1/admin/events/redrive",
                Some(&admin),
                Some(&bad),
            )
            .await
            .expect_error(400, "validation_error");
        }
        env.call(
            "GET",
            "/api/v1/admin/events",
            Some(&env.token("svc", "service")),
            None,
        )
        .await
        .expect(403);
        env.call(
            "GET",
            "/api/v1/admin/events?status=processed",
            Some(&admin),
            None,
        )
        .await
        .expect_error(400, "validation_error");

        sqlx::query("DROP TRIGGER poison_fixed ON friendship_score_history")
            .execute(&env.db)
            .await
            .unwrap();
        let redriven = env
            .call(
                "POST",
                "/api/v1/admin/events/redrive",
                Some(&admin),
                Some(&json!({ "processing_ids": [fixed_id, uuid::Uuid::new_v4()] })),
            )
            .await;
        redriven.expect(200);
        assert_eq!(
            redriven.json["requeued"], 1,
            "the chosen one; an unknown id is no error"
        );
        let processed = env
            .wait_for_event(&fixed_id, "processed", Duration::from_secs(15))
            .await;
        assert_eq!(processed["attempts"], 1, "a fresh set of attempts");
        let untouched = env.event(&admin, &broken_id).await;
        assert_eq!(
            (
                untouched.json["status"].clone(),
                untouched.json["attempts"].clone()
            ),
            (json!("failed"), json!(3))
        );
        let listed = env
            .call("GET", "/api/v1/admin/events", Some(&admin), None)
            .await;
        assert_eq!(listed.json["total"], 1);
        assert_eq!(listed.json["items"][0]["processing_id"], broken_id.as_str());
        env.shutdown().await;
    });
}

#[test]
fn a_failure_that_only_looks_like_an_outage_uses_up_attempts_and_dead_letters() {
    run(async {
        let env = isolated().await;
        let u = user("lookalike");
        let token = env.token(&u, "user");
        // Deterministic, but with the SQLSTATE of a lost connection (08006):
        // retried as an outage forever, it would never end.
        fail_scoring_of(
            &env,
            "lookalike",
            &u,
            "RAISE EXCEPTION 'connection reset, or so it says' USING ERRCODE = '08006'",
        )
        .await;
        let other = user("bystander");
        let bodies = [
            conversation(&u, 10, 1, "neutral", 0, json!([])),
            conversation(&other, 10, 1, "neutral", 0, json!([])),
        ];
        let id = post_until_accepted(&env, &token, &bodies[0], Duration::from_secs(10)).await;
        let service = env.token("e2e-service", "service");
        let bystander =
            post_until_accepted(&env, &service, &bodies[1], Duration::from_secs(10)).await;

        let failed = env
            .wait_for_event(&id, "failed", Duration::from_secs(30))
            .await;
        assert_eq!(failed["attempts"], 3);
        assert!(
            failed["last_error"]
                .as_str()
                .unwrap()
                .contains("connection reset, or so it says"),
            "{failed}"
        );
        // The database answered all along: other events are scored.
        env.wait_for_event(&bystander, "processed", Duration::from_secs(15))
            .await;
        env.shutdown().await;
    });
}

#[test]
fn a_postgres_restart_mid_stream_loses_nothing_and_counts_nothing_twice() {
    run(async {
        let env = Env::private(HashMap::new()).await;
        let u = user("pg-fault");
        let token = env.token(&u, "user");
        let bodies: Vec<Value> = (0..40u32)
            .map(|i| conversation(&u, i % 9 + 1, i % 2, "neutral", 0, json!([])))
            .collect();

        let stream = async {
            for body in &bodies {
                post_until_accepted(&env, &token, body, Duration::from_secs(60)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let restart = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let mut servers = env.servers.lock().await;
            let pg = servers.postgres.as_mut().unwrap();
            tokio::task::block_in_place(|| pg.restart());
        };
        tokio::join!(stream, restart);
        assert_all_processed_once(&env, &u, &bodies).await;
        env.shutdown().await;
    });
}

/// `GET /health` and how long it took (it must answer within 10 s at all).
async fn timed_health(env: &Env) -> (Resp, Duration) {
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        env.call("GET", "/health", None, None),
    )
    .await
    .expect("/health answered");
    (resp, started.elapsed())
}

/// The key-value store's server is named by `kv_host` (the runtime config
/// holds its URL, which a component cannot read): frozen or gone, `/health`
/// reports `cache` down within its budget while the other dependencies stay
/// up. (Suggestions wait on such a server as Spin makes every key-value call
/// wait, without a timeout: README, Operations.)
#[test]
fn health_reports_the_key_value_server_down_in_time_when_it_hangs_or_is_gone() {
    run(async {
        let env = isolated_with_own_kv().await;
        let health = || timed_health(&env);
        let down_in_time = |(resp, took): (Resp, Duration)| {
            assert!(took < Duration::from_secs(5), "took {took:?}");
            resp.expect_error(503, "service_unavailable");
            assert_eq!(resp.json["details"]["down"], json!(["cache"]));
            assert_eq!(resp.json["components"]["database"]["status"], "up");
            assert_eq!(resp.json["components"]["queue"]["status"], "up");
        };
        let (ok, _) = health().await;
        ok.expect(200);

        env.servers.lock().await.kv.as_ref().unwrap().pause();
        let frozen = health().await;
        env.servers.lock().await.kv.as_ref().unwrap().resume();
        down_in_time(frozen);
        health().await.0.expect(200);

        env.servers.lock().await.kv.as_mut().unwrap().stop();
        down_in_time(health().await);
        env.shutdown().await;
    });
}

#[test]
fn health_answers_within_five_seconds_when_a_dependency_hangs() {
    run(async {
        let env = Env::private(HashMap::new()).await;
        let health = || timed_health(&env);
        let (ok, _) = health().await;
        ok.expect(200);

        env.servers.lock().await.redis.as_ref().unwrap().pause();
        let (frozen_redis, took) = health().await;
        env.servers.lock().await.redis.as_ref().unwrap().resume();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        frozen_redis.expect_error(503, "service_unavailable");
        assert_eq!(frozen_redis.json["components"]["queue"]["status"], "down");
        assert_eq!(frozen_redis.json["components"]["database"]["status"], "up");

        env.servers.lock().await.postgres.as_ref().unwrap().pause();
        let (frozen_postgres, took) = health().await;
        env.servers.lock().await.postgres.as_ref().unwrap().resume();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        frozen_postgres.expect_error(503, "service_unavailable");
        assert_eq!(
            frozen_postgres.json["components"]["database"]["status"],
            "down"
        );

        let (recovered, _) = health().await;
        recovered.expect(200);
        env.shutdown().await;
    });
}
