//! What differs between the Spin versions the service runs on. The whole
//! suite runs under each test-host mode (`SPIN_COMPAT`, see the README); this
//! module walks the paths that differ: under `4.0` a `query` that matches no
//! rows would hang the real Spin 4.0.0–4.0.2, so every not-found answer,
//! every empty list and an idle scorer wake-up are exercised here, and the
//! host's record of such queries must stay empty.

use std::time::Duration;

use serde_json::json;

use crate::support::{conversation, run, shared, user};

#[test]
fn every_not_found_and_empty_path_answers_and_no_query_matches_nothing() {
    run(async {
        let env = shared().await;
        let admin = env.token("e2e-admin", "admin");
        let service = env.token("e2e-service", "service");
        let nobody = user("nobody");

        env.status(&env.token(&nobody, "user"), &nobody)
            .await
            .expect_error(404, "not_found");
        env.event(&service, &uuid::Uuid::new_v4().to_string())
            .await
            .expect_error(404, "not_found");
        for (method, body) in [
            ("GET", None),
            (
                "PUT",
                Some(json!({
                    "friendship_level": "friend", "agent_type": "game", "agent_id": "none",
                    "agent_name": "None", "agent_description": "None", "weight": 1.0
                })),
            ),
            ("DELETE", None),
        ] {
            env.call(
                method,
                "/api/v1/agent-mappings/999999999",
                Some(&admin),
                body.as_ref(),
            )
            .await
            .expect_error(404, "not_found");
        }
        for query in [
            "?offset=100000",
            "?friendship_level=friend&agent_type=game&is_active=false&offset=100000",
        ] {
            let list = env
                .call(
                    "GET",
                    &format!("/api/v1/agent-mappings{query}"),
                    Some(&admin),
                    None,
                )
                .await;
            list.expect(200);
            assert_eq!(list.json["items"], json!([]), "{query}");
        }
        let rejected = env
            .call(
                "GET",
                "/api/v1/admin/rejected-messages?offset=100000000",
                Some(&admin),
                None,
            )
            .await;
        rejected.expect(200);
        assert_eq!(rejected.json["items"], json!([]));
        // An unknown user is suggested to as a stranger, without being created.
        let suggest = env
            .suggest(&env.token(&nobody, "user"), &nobody, None)
            .await;
        suggest.expect(200);
        assert_eq!(suggest.json["friendship_level"], "stranger");
        // Redrive with nothing to requeue.
        env.redrive().await.expect(200);

        // Idle scorer wake-ups (nothing due), then an event: still scored.
        for _ in 0..3 {
            let mut conn = redis::Client::open(env.redis_url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let _: i64 = redis::cmd("PUBLISH")
                .arg("conversation-events")
                .arg(r#"{"kind":"tick"}"#)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let u = user("after-idle");
        let body = conversation(&u, 2, 0, "neutral", 0, json!([]));
        let id = env
            .end_conversation(&env.token(&u, "user"), &body)
            .await
            .json["processing_id"]
            .as_str()
            .unwrap()
            .to_string();
        env.wait_for_event(&id, "processed", Duration::from_secs(30))
            .await;

        let violations = env.spin_compat_violations().await;
        assert!(
            violations.is_empty(),
            "queries that would hang Spin 4.0.0–4.0.2: {violations:#?}"
        );
    });
}
