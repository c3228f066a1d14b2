//! Traces you can follow: a request's W3C `traceparent` gives its log line
//! its `trace_id` (an invalid one is ignored, and the request starts a new
//! trace), and an event posted with one carries it to the scorer's log line
//! of that event.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{conversation, isolated, run, user, Env};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The JSON lines a component wrote so far that satisfy `wanted`, waiting
/// up to 10 s for the first.
async fn lines_of(env: &Env, component: &str, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> = env
            .component_log(component)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| wanted(v))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_traceparent_follows_a_request_and_its_event_to_the_scorer() {
    run(async {
        let env = isolated().await;
        let service = env.token("e2e-traces", "service");
        let u = user("trace");
        let parent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
        let resp = env
            .raw(
                "POST",
                "/api/v1/conversations/end",
                &[
                    ("authorization", format!("Bearer {service}")),
                    ("content-type", "application/json".into()),
                    ("traceparent", parent),
                ],
                conversation(&u, 10, 1, "happy", 0, json!([]))
                    .to_string()
                    .into_bytes(),
            )
            .await;
        resp.expect(202);
        let id = resp.json["processing_id"].as_str().unwrap().to_owned();
        let request_id = resp.header("x-request-id").unwrap().to_owned();
        env.wait_for_event(&id, "processed", Duration::from_secs(30))
            .await;

        let requests = lines_of(&env, "conversations", |v| {
            v["event"] == "request" && v["request_id"] == request_id.as_str()
        })
        .await;
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0]["trace_id"], TRACE_ID);

        let scored = lines_of(&env, "scorer", |v| {
            v["event"] == "event_processed" && v["processing_id"] == id.as_str()
        })
        .await;
        assert!(!scored.is_empty(), "no event_processed line for {id}");
        for line in &scored {
            assert_eq!(line["trace_id"], TRACE_ID, "{line}");
        }

        // An invalid traceparent (upper-case hex) is ignored: the request
        // is served, with a new trace id of its own.
        let invalid = format!("00-{}-00f067aa0ba902b7-01", TRACE_ID.to_uppercase());
        let resp = env
            .raw(
                "POST",
                "/api/v1/friendship/status",
                &[
                    ("authorization", format!("Bearer {}", env.token(&u, "user"))),
                    ("content-type", "application/json".into()),
                    ("traceparent", invalid),
                ],
                json!({ "user_id": u }).to_string().into_bytes(),
            )
            .await;
        resp.expect(200);
        let request_id = resp.header("x-request-id").unwrap().to_owned();
        let lines = lines_of(&env, "friendship", |v| {
            v["event"] == "request" && v["request_id"] == request_id.as_str()
        })
        .await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let trace_id = lines[0]["trace_id"].as_str().unwrap();
        assert_ne!(trace_id, TRACE_ID.to_uppercase());
        assert!(
            trace_id.len() == 32
                && trace_id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        env.shutdown().await;
    });
}
