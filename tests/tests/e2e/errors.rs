//! Every error class of docs/http-contract.md, each with the error schema and the request
//! id, and the order of the checks: routing, authentication, body, subject.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::host::AppConfig;
use serde_json::{json, Value};

use crate::support::{
    conversation, host_port, isolated, run, servers, shared, token, user, with_db_param, HttpApp,
    Resp, SECRET,
};

/// Posts raw bytes as JSON to the status route.
async fn post_status_bytes(env: &crate::support::Env, token: &str, body: Vec<u8>) -> Resp {
    let headers = [
        ("authorization", format!("Bearer {token}")),
        ("content-type", "application/json".to_string()),
    ];
    env.raw("POST", "/api/v1/friendship/status", &headers, body)
        .await
}

#[test]
fn malformed_json_is_invalid_json() {
    run(async {
        let env = shared().await;
        let t = env.token("svc", "service");
        for body in [&b"{"[..], b"", b"not json", b"{\"user_id\": }", b"[1,2"] {
            let resp = post_status_bytes(env, &t, body.to_vec()).await;
            resp.expect_error(400, "invalid_json");
        }
    });
}

#[test]
fn wrong_missing_unknown_and_out_of_range_fields_name_the_field() {
    run(async {
        let env = shared().await;
        let t = env.token("svc", "service");
        let u = user("val");
        let valid = conversation(&u, 1, 0, "happy", 0, json!([]));
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"user_id": "ab", "conversation_id": "c", "metadata": valid["metadata"]}),
                "user_id",
            ),
            (
                json!({"user_id": "x".repeat(129), "conversation_id": "c", "metadata": valid["metadata"]}),
                "user_id",
            ),
            (
                json!({"user_id": u, "conversation_id": "", "metadata": valid["metadata"]}),
                "conversation_id",
            ),
            (json!({"user_id": u, "conversation_id": "c"}), "metadata"),
            (
                json!({"user_id": u, "conversation_id": "c", "metadata": {"total_turns": 1, "user_initiated_questions": 0}}),
                "metadata.emotion",
            ),
            (
                json!({"user_id": u, "conversation_id": "c", "metadata": {"total_turns": -1, "user_initiated_questions": 0, "emotion": "happy"}}),
                "metadata.total_turns",
            ),
            (
                json!({"user_id": u, "conversation_id": "c", "metadata": {"total_turns": 1.5, "user_initiated_questions": 0, "emotion": "happy"}}),
                "metadata.total_turns",
            ),
            (
                json!({"user_id": u, "conversation_id": "c", "metadata": {"total_turns": 1000001, "user_initiated_questions": 0, "emotion": "happy"}}),
                "metadata.total_turns",
            ),
            (
                json!({"user_id": u, "conversation_id": "c", "metadata": {"total_turns": 1, "user_initiated_questions": 0, "emotion": "ecstatic"}}),
                "metadata.emotion",
            ),
            (
                json!({"user_id": u, "conversation_id": "c", "metadata": valid["metadata"], "extra": 1}),
                "extra",
            ),
            (
                json!({"user_id": 123, "conversation_id": "c", "metadata": valid["metadata"]}),
                "user_id",
            ),
        ];
        for (body, field) in cases {
            let resp = env.end_conversation(&t, &body).await;
            resp.expect_error(400, "validation_error");
            let reported = resp.json["details"]["field"].as_str().unwrap_or_default();
            assert!(
                reported.starts_with(field),
                "expected field {field}, got {reported}: {}",
                resp.text
            );
        }
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM conversation_events WHERE user_id = $1")
                .bind(&u)
                .fetch_one(&env.db)
                .await
                .unwrap();
        assert_eq!(count, 0, "a refused request writes nothing");
    });
}

/// A `last_date` that is not an RFC 3339 `date-time`, or whose UTC form would
/// leave four-digit years (once a 500), is a 400 that changes nothing.
#[test]
fn a_timestamp_rfc_3339_or_its_utc_form_cannot_hold_is_refused() {
    run(async {
        let env = shared().await;
        let t = env.token("svc", "service");
        let u = user("when");
        for last_date in [
            "0000-01-01T00:00:00+00:19",
            "9999-12-31T23:59:59-00:19",
            "2026-11-22 10:00:00Z",
            "2026-11-22T10:59:60Z",
            "2026-11-22T10:00:00+24:00",
        ] {
            let body = json!({"user_id": u, "friendship_score_change": 1,
                "topic_metrics_update": {"music": {"score_change": 1, "turns_increment": 1,
                                                   "last_date": last_date}}});
            let resp = env.update(&t, &body).await;
            resp.expect_error(400, "validation_error");
            assert_eq!(
                resp.json["details"]["field"], "topic_metrics_update.music",
                "{last_date}: {}",
                resp.text
            );
            assert!(
                resp.json["message"]
                    .as_str()
                    .unwrap()
                    .contains("last_date must be an RFC 3339 timestamp"),
                "{last_date}: {}",
                resp.text
            );
        }
        env.status(&t, &u).await.expect_error(404, "not_found");
    });
}

#[test]
fn missing_malformed_expired_and_badly_signed_tokens_are_unauthorized() {
    run(async {
        let env = shared().await;
        let body = json!({"user_id": "someone"});
        let now = chrono::Utc::now().timestamp();
        let no_exp = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "someone", "role": "user"}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let no_role = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "someone", "exp": now + 60}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let headers: Vec<Option<String>> = vec![
            None,
            Some("Bearer".into()),
            Some("Bearer not.a.jwt".into()),
            Some(format!("Basic {}", "dXNlcjpwYXNz")),
            Some(format!("Bearer {}", token("someone", "user", SECRET, -120))),
            Some(format!(
                "Bearer {}",
                token("someone", "user", "another-secret", 60)
            )),
            Some(format!("Bearer {no_exp}")),
            Some(format!("Bearer {no_role}")),
        ];
        for header in headers {
            let mut h = vec![("content-type", "application/json".to_string())];
            if let Some(v) = &header {
                h.push(("authorization", v.clone()));
            }
            let resp = env
                .raw(
                    "POST",
                    "/api/v1/friendship/status",
                    &h,
                    body.to_string().into_bytes(),
                )
                .await;
            resp.expect_error(401, "unauthorized");
        }
        // Within the 60 s leeway, an expired token is still accepted.
        let lenient = env
            .raw(
                "POST",
                "/api/v1/friendship/status",
                &[
                    ("content-type", "application/json".into()),
                    (
                        "authorization",
                        format!("Bearer {}", token("someone", "user", SECRET, -20)),
                    ),
                ],
                body.to_string().into_bytes(),
            )
            .await;
        lenient.expect_error(404, "not_found");
    });
}

#[test]
fn forbidden_subjects_and_roles_are_refused() {
    run(async {
        let env = shared().await;
        let alice = user("alice");
        let bob = user("bob");
        let t = env.token(&alice, "user");
        env.status(&t, &bob).await.expect_error(403, "forbidden");
        env.suggest(&t, &bob, None)
            .await
            .expect_error(403, "forbidden");
        env.end_conversation(&t, &conversation(&bob, 1, 0, "happy", 0, json!([])))
            .await
            .expect_error(403, "forbidden");
        env.update(&t, &json!({"user_id": alice, "friendship_score_change": 5}))
            .await
            .expect_error(403, "forbidden");
        let root = env.token(&alice, "root");
        env.status(&root, &alice)
            .await
            .expect_error(403, "forbidden");
    });
}

#[test]
fn unknown_paths_users_mappings_and_events_are_not_found() {
    run(async {
        let env = shared().await;
        let admin = env.token("ops", "admin");
        env.call("GET", "/api/v1/nowhere", None, None)
            .await
            .expect_error(404, "not_found");
        env.call("GET", "/", None, None)
            .await
            .expect_error(404, "not_found");
        env.call(
            "GET",
            "/api/v1/agent-mappings/999999999",
            Some(&admin),
            None,
        )
        .await
        .expect_error(404, "not_found");
        env.call("GET", "/api/v1/agent-mappings/abc", Some(&admin), None)
            .await
            .expect_error(404, "not_found");
        env.event(&admin, &uuid::Uuid::new_v4().to_string())
            .await
            .expect_error(404, "not_found");
        env.event(&admin, "not-a-uuid")
            .await
            .expect_error(404, "not_found");
        env.status(&admin, &user("nobody"))
            .await
            .expect_error(404, "not_found");
    });
}

#[test]
fn a_wrong_method_on_a_known_path_is_405_with_allow() {
    run(async {
        let env = shared().await;
        let cases = [
            ("PUT", "/api/v1/friendship/status", "POST"),
            ("GET", "/api/v1/conversations/end", "POST"),
            ("DELETE", "/health", "GET"),
            ("POST", "/health/live", "GET"),
            ("PATCH", "/api/v1/agent-mappings/1", "GET, PUT, DELETE"),
            ("DELETE", "/api/v1/agent-mappings", "GET, POST"),
            ("GET", "/api/v1/activities/suggest", "POST"),
            ("GET", "/api/v1/admin/events/redrive", "POST"),
        ];
        for (method, path, allow) in cases {
            let resp = env.call(method, path, None, None).await;
            resp.expect_error(405, "method_not_allowed");
            assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
        }
    });
}

#[test]
fn a_reused_conversation_id_with_another_payload_is_a_conflict_and_another_users_is_theirs() {
    run(async {
        let env = shared().await;
        let t = env.token("svc", "service");
        let u = user("conflict");
        let body = conversation(&u, 4, 0, "happy", 0, json!([]));
        env.end_conversation(&t, &body).await.expect(202);
        let mut other_payload = body.clone();
        other_payload["metadata"]["total_turns"] = json!(5);
        env.end_conversation(&t, &other_payload)
            .await
            .expect_error(409, "conflict");
        // Another user's conversation of the same id is another conversation.
        let mut other_user = body.clone();
        other_user["user_id"] = json!(user("other"));
        env.end_conversation(&t, &other_user).await.expect(202);
        // An omitted default equals the default written out: not a conflict.
        let mut spelled_out = body.clone();
        spelled_out["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("new_memories_count");
        env.end_conversation(&t, &spelled_out).await.expect(202);
    });
}

#[test]
fn a_duplicate_mapping_is_a_conflict_even_when_inactive() {
    run(async {
        let env = isolated().await;
        let admin = env.token("ops", "admin");
        let body = json!({"friendship_level": "stranger", "agent_type": "game", "agent_id": "dup-game",
                          "agent_name": "Dup", "weight": 1.0});
        let created = env.create_mapping(&body).await;
        created.expect(201);
        env.create_mapping(&body)
            .await
            .expect_error(409, "conflict");
        let id = created.json["id"].as_i64().unwrap();
        env.call(
            "DELETE",
            &format!("/api/v1/agent-mappings/{id}"),
            Some(&admin),
            None,
        )
        .await
        .expect(200);
        env.create_mapping(&body)
            .await
            .expect_error(409, "conflict");
        env.shutdown().await;
    });
}

#[test]
fn a_body_over_64_kib_is_too_large_and_a_non_json_body_is_unsupported() {
    run(async {
        let env = shared().await;
        let t = env.token("svc", "service");
        let big = format!("{{\"user_id\": \"{}\"}}", "x".repeat(70 * 1024));
        let resp = post_status_bytes(env, &t, big.into_bytes()).await;
        resp.expect_error(413, "payload_too_large");
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut headers = vec![("authorization", format!("Bearer {t}"))];
            if let Some(ct) = content_type {
                headers.push(("content-type", ct.to_string()));
            }
            let resp = env
                .raw(
                    "POST",
                    "/api/v1/friendship/status",
                    &headers,
                    br#"{"user_id":"abc"}"#.to_vec(),
                )
                .await;
            resp.expect_error(415, "unsupported_media_type");
        }
    });
}

#[test]
fn checks_run_in_order_routing_then_authentication_then_body_then_subject() {
    run(async {
        let env = shared().await;
        let someone = env.token(&user("order"), "user");
        // Unknown path without a token: routing first.
        env.call("POST", "/api/v1/friendship/unknown", None, Some(&json!({})))
            .await
            .expect_error(404, "not_found");
        // Wrong method without a token: routing first.
        env.call("DELETE", "/api/v1/friendship/status", None, None)
            .await
            .expect_error(405, "method_not_allowed");
        // A bad body without a token: authentication first.
        env.call(
            "POST",
            "/api/v1/friendship/status",
            None,
            Some(&json!({"user_id": 1})),
        )
        .await
        .expect_error(401, "unauthorized");
        // Another user's id in a bad body: the body first.
        env.call(
            "POST",
            "/api/v1/friendship/status",
            Some(&someone),
            Some(&json!({"user_id": "ab"})),
        )
        .await
        .expect_error(400, "validation_error");
        // Another user's id in a good body: the subject.
        env.status(&someone, &user("victim"))
            .await
            .expect_error(403, "forbidden");
    });
}

async fn app_with(db_url: &str, redis_url: &str) -> HttpApp {
    let variables: HashMap<String, String> = [
        ("db_url", db_url.to_string()),
        ("db_host", host_port(db_url)),
        ("redis_url", redis_url.to_string()),
        ("redis_host", host_port(redis_url)),
        ("jwt_secret", SECRET.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    tokio::task::spawn_blocking(crate::support::ensure_components)
        .await
        .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let config = AppConfig {
        manifest: root.join("spin.toml"),
        runtime_config: None,
        variables,
        http: true,
        redis_trigger: false,
        env_variables: false,
        ..AppConfig::default()
    };
    HttpApp::start_alone(&config, "http-alone").await
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    crate::support::request(&crate::support::client(), base, method, path, token, body).await
}

#[test]
fn a_database_that_is_down_is_503_with_retry_after_and_health_says_so_in_time() {
    run(async {
        let closed = servers::free_port();
        let redis = servers::PrivateRedis::start();
        let app = app_with(
            &format!("postgres://postgres@127.0.0.1:{closed}/postgres?sslmode=disable"),
            &redis.url(),
        )
        .await;
        let base = app.base_url();
        let t = token("svc", "service", SECRET, 60);
        let u = user("down");
        let resp = call(
            &base,
            "POST",
            "/api/v1/conversations/end",
            Some(&t),
            Some(&conversation(&u, 1, 0, "happy", 0, json!([]))),
        )
        .await;
        resp.expect_error(503, "service_unavailable");
        assert!(resp.header("retry-after").is_some());
        assert!(
            !resp.text.contains(&closed.to_string()),
            "a 5xx says nothing internal"
        );

        let started = Instant::now();
        let health = call(&base, "GET", "/health", None, None).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        health.expect(503);
        assert_eq!(health.json["status"], "unhealthy");
        assert_eq!(health.json["components"]["database"]["status"], "down");
        assert_eq!(health.json["components"]["queue"]["status"], "up");
        assert!(health.header("retry-after").is_some());
        app.shutdown().await;
    });
}

#[test]
fn a_database_that_does_not_answer_in_time_is_504() {
    run(async {
        let env = shared().await;
        let u = user("slow");
        let service = env.token("ai-scorer", "service");
        env.update(
            &service,
            &json!({"user_id": u, "friendship_score_change": 1}),
        )
        .await
        .expect(200);

        // The user's row is locked elsewhere; this app's statements give up after 300 ms.
        let mut holder = env.db.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM friendship_status WHERE user_id = $1 FOR UPDATE")
            .bind(&u)
            .execute(&mut *holder)
            .await
            .unwrap();
        let redis = servers::PrivateRedis::start();
        let impatient = with_db_param(&env.db_url, "options", "-c statement_timeout=300");
        let app = app_with(&impatient, &redis.url()).await;
        let resp = call(
            &app.base_url(),
            "POST",
            "/api/v1/friendship/update",
            Some(&token("svc", "service", SECRET, 60)),
            Some(&json!({"user_id": u, "friendship_score_change": 5})),
        )
        .await;
        holder.rollback().await.unwrap();
        resp.expect_error(504, "timeout");
        let score: f64 = sqlx::query_scalar(
            "SELECT friendship_score::float8 FROM friendship_status WHERE user_id = $1",
        )
        .bind(&u)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(score, 1.0, "the timed-out update changed nothing");
        app.shutdown().await;
    });
}
