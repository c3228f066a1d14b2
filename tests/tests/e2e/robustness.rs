//! No input produces a 5xx, a panic or a partial write: at least 1,000
//! generated malformed requests across every route (seeded, so a failure
//! reproduces), each answered with a 4xx in the error schema, or a success.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::support::{assert_error_schema, isolated, run, token, user, SECRET};

const REQUESTS: usize = 1_200;
const SEED: u64 = 0x5eed_2026;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/conversations/end"),
    ("GET", "/api/v1/conversations/{id}"),
    ("POST", "/api/v1/friendship/status"),
    ("POST", "/api/v1/friendship/update"),
    ("POST", "/api/v1/activities/suggest"),
    ("GET", "/api/v1/agent-mappings"),
    ("POST", "/api/v1/agent-mappings"),
    ("GET", "/api/v1/agent-mappings/{id}"),
    ("PUT", "/api/v1/agent-mappings/{id}"),
    ("DELETE", "/api/v1/agent-mappings/{id}"),
    ("POST", "/api/v1/admin/events/redrive"),
    ("GET", "/api/v1/admin/cache/stats"),
    ("GET", "/health"),
];

/// A value of a random JSON type, often of the wrong one.
fn junk(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random_range(-2_000_000i64..2_000_000)),
        3 => json!(rng.random::<f64>() * 1e12 - 5e11),
        4 => json!(""),
        5 => json!("x".repeat(rng.random_range(1..300))),
        6 => json!([
            "héllo",
            "🙂",
            "\u{0000}",
            "a\nb",
            "' OR 1=1 --",
            "../../etc"
        ]
        .choose(rng)
        .unwrap()),
        7 if depth < 3 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| junk(rng, depth + 1))
                .collect(),
        ),
        8 if depth < 3 => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.random_range(0..4) {
                map.insert(
                    ["user_id", "metadata", "x", "emotion", "weight"]
                        .choose(rng)
                        .unwrap()
                        .to_string(),
                    junk(rng, depth + 1),
                );
            }
            Value::Object(map)
        }
        9 => json!(u64::MAX),
        10 => json!([
            "happy",
            "sad",
            "stranger",
            "friend",
            "talk",
            "game",
            "birthday",
            "emotion:sad"
        ]
        .choose(rng)
        .unwrap()),
        _ => json!(-1),
    }
}

/// A plausible body for the route, with one or more fields spoiled.
fn body_for(rng: &mut StdRng, path: &str, user_id: &str) -> Value {
    let mut body = match path {
        "/api/v1/conversations/end" => json!({
            "user_id": user_id, "conversation_id": format!("c-{user_id}"),
            "metadata": {"total_turns": 3, "user_initiated_questions": 1, "emotion": "happy",
                         "new_memories_count": 0, "topics": [{"name": "music", "turns": 2, "user_questions": 0}]}
        }),
        "/api/v1/friendship/update" => json!({"user_id": user_id, "friendship_score_change": 5,
            "topic_metrics_update": {"music": {"score_change": 1, "turns_increment": 1, "last_date": "2026-11-22T10:00:00Z"}}}),
        "/api/v1/activities/suggest" => {
            json!({"user_id": user_id, "context": {"is_birthday": true, "emotion": "sad", "memory_recall": false}})
        }
        "/api/v1/agent-mappings" | "/api/v1/agent-mappings/{id}" => json!({
            "friendship_level": "stranger", "agent_type": "talk", "agent_id": format!("a-{user_id}"),
            "agent_name": "n", "weight": 1.0, "topic": "music"
        }),
        _ => json!({"user_id": user_id}),
    };
    for _ in 0..rng.random_range(1..4) {
        spoil(rng, &mut body);
    }
    body
}

/// Replaces, removes or adds one field somewhere in the body.
fn spoil(rng: &mut StdRng, value: &mut Value) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    match rng.random_range(0..5) {
        0 if !keys.is_empty() => {
            map.remove(keys.choose(rng).unwrap());
        }
        1 => {
            map.insert(
                ["unexpected", "userId", "extra_field"]
                    .choose(rng)
                    .unwrap()
                    .to_string(),
                junk(rng, 1),
            );
        }
        2 if !keys.is_empty() => {
            let key = keys.choose(rng).unwrap();
            if map[key].is_object() && rng.random::<bool>() {
                spoil(rng, map.get_mut(key).unwrap());
            } else {
                map.insert(key.clone(), junk(rng, 1));
            }
        }
        _ if !keys.is_empty() => {
            let key = keys.choose(rng).unwrap().clone();
            map.insert(key, junk(rng, 0));
        }
        _ => {}
    }
}

/// Raw bytes that are not JSON, or barely.
fn raw_junk(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..6) {
        0 => (0..rng.random_range(1..200))
            .map(|_| rng.random::<u8>())
            .collect(),
        1 => "[".repeat(rng.random_range(100..5_000)).into_bytes(),
        2 => br#"{"user_id": "abc", "metadata": {"total_turns": 1e400}}"#.to_vec(),
        3 => br#"{"user_id": NaN}"#.to_vec(),
        4 => b"{\"user_id\": \"\xff\xfe\"}".to_vec(),
        _ => br#"{"user_id": "abc""#.to_vec(),
    }
}

#[test]
fn a_thousand_malformed_requests_get_4xx_in_the_error_schema_and_write_nothing() {
    run(async {
        // Its own environment: admin requests may change the catalogue.
        let env = &isolated().await;
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut refused_users = Vec::new();
        let mut batch = Vec::new();
        for i in 0..REQUESTS {
            let (method, template) = *ROUTES.choose(&mut rng).unwrap();
            let id_segment = [
                "1",
                "0",
                "-1",
                "abc",
                "%00",
                "%ZZ",
                "99999999999999999999",
                "😀",
                &uuid::Uuid::new_v4().to_string(),
            ]
            .choose(&mut rng)
            .unwrap()
            .to_string();
            let mut path = template.replace("{id}", &id_segment);
            if rng.random_range(0..10) == 0 {
                path.push_str(
                    [
                        "?limit=abc",
                        "?limit=0",
                        "?offset=-1",
                        "?is_active=maybe",
                        "?friendship_level=x",
                        "?%zz=1",
                        "?unknown=1",
                    ]
                    .choose(&mut rng)
                    .unwrap(),
                );
            }
            let method = if rng.random_range(0..12) == 0 {
                *["PATCH", "PUT", "DELETE", "OPTIONS"]
                    .choose(&mut rng)
                    .unwrap()
            } else {
                method
            };
            let u = user("fuzz");
            let role = *["user", "service", "admin", "root"]
                .choose(&mut rng)
                .unwrap();
            let auth = match rng.random_range(0..8) {
                0 => None,
                1 => Some("Bearer garbage".to_string()),
                2 => Some(format!("Bearer {}", token(&u, role, "wrong-secret", 60))),
                3 => Some(format!("Bearer {}", token(&u, role, SECRET, -3600))),
                _ => Some(format!("Bearer {}", token(&u, role, SECRET, 600))),
            };
            let body = if rng.random_range(0..4) == 0 {
                raw_junk(&mut rng)
            } else {
                body_for(&mut rng, template, &u).to_string().into_bytes()
            };
            let mut headers = vec![];
            if let Some(auth) = auth {
                headers.push(("authorization", auth));
            }
            headers.push((
                "content-type",
                (*[
                    "application/json",
                    "application/json; charset=utf-8",
                    "text/plain",
                    "application/xml",
                ]
                .choose(&mut rng)
                .unwrap())
                .to_string(),
            ));
            if rng.random_range(0..5) == 0 {
                headers.push((
                    "x-request-id",
                    ["", " ", "a b", &"r".repeat(300), "ok-id"]
                        .choose(&mut rng)
                        .unwrap()
                        .to_string(),
                ));
            }
            batch.push((i, method, path, headers, body, u));
            if batch.len() == 16 || i + 1 == REQUESTS {
                let sent = futures::future::join_all(batch.drain(..).map(
                    |(i, method, path, headers, body, u)| async move {
                        let resp = env.raw(method, &path, &headers, body).await;
                        (i, method, path, u, resp)
                    },
                ))
                .await;
                for (i, method, path, u, resp) in sent {
                    assert!(
                        resp.status < 500,
                        "request #{i} {method} {path} got {}: {}",
                        resp.status,
                        resp.text
                    );
                    assert!(
                        resp.header("x-request-id").is_some_and(|id| !id.is_empty()),
                        "request #{i}: no x-request-id"
                    );
                    if resp.status >= 400 {
                        assert_error_schema(&resp);
                        refused_users.push(u);
                    }
                }
            }
        }
        assert!(
            refused_users.len() > REQUESTS / 2,
            "the generator mostly makes bad requests ({} refused)",
            refused_users.len()
        );
        for (table, column) in [
            ("conversation_events", "user_id"),
            ("friendship_status", "user_id"),
            ("friendship_agent_mapping", "agent_id"),
        ] {
            let ids: Vec<String> = if table == "friendship_agent_mapping" {
                refused_users.iter().map(|u| format!("a-{u}")).collect()
            } else {
                refused_users.clone()
            };
            let written: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} WHERE {column} = ANY($1)"
            ))
            .bind(&ids)
            .fetch_one(&env.db)
            .await
            .unwrap();
            assert_eq!(written, 0, "a refused request left rows in {table}");
        }
    });
}

/// Components are linked with a 256 KiB stack (`.cargo/config.toml`), so the
/// deepest a request can make them recurse must fit in it with room to spare:
/// JSON nested as deep as serde_json goes (its limit is 128 levels) and far
/// beyond, in every field of every route that reads a JSON body, answered by
/// a 4xx in the error schema, never by a trap (a 500).
#[test]
fn bodies_nested_past_the_json_depth_limit_get_4xx_not_a_stack_overflow() {
    run(async {
        let env = &isolated().await;
        let u = user("deep");
        let admin = format!("Bearer {}", token(&u, "admin", SECRET, 600));
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let routes = [
            ("POST", "/api/v1/conversations/end"),
            ("POST", "/api/v1/friendship/status"),
            ("POST", "/api/v1/friendship/update"),
            ("POST", "/api/v1/activities/suggest"),
            ("POST", "/api/v1/agent-mappings"),
            ("PUT", "/api/v1/agent-mappings/1"),
            ("POST", "/api/v1/admin/events/redrive"),
        ];
        for (method, path) in routes {
            for depth in [127, 128, 129, 4_000] {
                for body in [
                    nested(depth),
                    format!(r#"{{"user_id":"{u}","metadata":{}}}"#, nested(depth)),
                    format!(r#"{{"user_id":"{u}","context":{}}}"#, nested(depth)),
                ] {
                    let headers = [
                        ("authorization", admin.clone()),
                        ("content-type", "application/json".to_string()),
                    ];
                    let resp = env.raw(method, path, &headers, body.into_bytes()).await;
                    assert!(
                        (400..500).contains(&resp.status),
                        "{method} {path} nested {depth} deep got {}: {}",
                        resp.status,
                        resp.text
                    );
                    assert_error_schema(&resp);
                }
            }
        }
    });
}
