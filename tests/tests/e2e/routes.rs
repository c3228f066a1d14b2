//! Each route's happy path.

use std::time::Duration;

use serde_json::json;

use crate::support::{conversation, isolated, run, shared, user};

#[test]
fn health_reports_every_dependency_up() {
    run(async {
        let env = shared().await;
        let resp = env.call("GET", "/health", None, None).await;
        resp.expect(200);
        assert_eq!(resp.json["status"], "healthy");
        for component in ["database", "cache", "queue"] {
            let c = &resp.json["components"][component];
            assert_eq!(c["status"], "up", "{component}: {}", resp.text);
            assert!(c["latency_ms"].as_f64().unwrap() >= 0.0);
            assert!(c["error"].is_null());
        }
    });
}

#[test]
fn the_openapi_document_is_served_and_names_every_route() {
    run(async {
        let env = shared().await;
        let resp = env.call("GET", "/openapi.json", None, None).await;
        resp.expect(200);
        let paths = resp.json["paths"]
            .as_object()
            .expect("an OpenAPI document with paths");
        for path in [
            "/health",
            "/health/live",
            "/api/v1/conversations/end",
            "/api/v1/conversations/{processing_id}",
            "/api/v1/friendship/status",
            "/api/v1/friendship/update",
            "/api/v1/activities/suggest",
            "/api/v1/agent-mappings",
            "/api/v1/agent-mappings/{id}",
            "/api/v1/admin/events/redrive",
            "/api/v1/admin/cache/stats",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} is missing from openapi.json"
            );
        }
    });
}

#[test]
fn a_client_request_id_is_echoed_and_one_is_made_otherwise() {
    run(async {
        let env = shared().await;
        let echoed = env
            .raw(
                "GET",
                "/health",
                &[("x-request-id", "trace-42".into())],
                Vec::new(),
            )
            .await;
        assert_eq!(echoed.header("x-request-id"), Some("trace-42"));
        let made = env.raw("GET", "/health", &[], Vec::new()).await;
        assert!(uuid::Uuid::parse_str(made.header("x-request-id").unwrap()).is_ok());
    });
}

#[test]
fn an_event_shows_its_state_to_its_user() {
    run(async {
        let env = shared().await;
        let u = user("state");
        let token = env.token(&u, "user");
        let body = conversation(&u, 3, 0, "sad", 0, json!([]));
        let id = env.end_conversation(&token, &body).await.json["processing_id"]
            .as_str()
            .unwrap()
            .to_string();
        let shown = env
            .wait_for_event(&id, "processed", Duration::from_secs(15))
            .await;
        assert_eq!(shown["processing_id"], id.as_str());
        assert_eq!(shown["conversation_id"], body["conversation_id"]);
        assert!(shown["last_error"].is_null());
        for field in ["accepted_at", "processed_at"] {
            let at = shown[field].as_str().unwrap();
            assert!(
                at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(at).is_ok(),
                "{field}: {at}"
            );
        }
    });
}

#[test]
fn operators_create_read_list_replace_and_soft_delete_mappings() {
    run(async {
        let env = isolated().await;
        let admin = env.token("ops", "admin");
        let body = json!({
            "friendship_level": "friend", "agent_type": "talk", "agent_id": "talk-chess-friend",
            "agent_name": "Chess Buddy", "agent_description": "Talks chess openings.", "weight": 1.5, "topic": "chess"
        });
        let created = env.create_mapping(&body).await;
        created.expect(201);
        let id = created.json["id"].as_i64().unwrap();
        assert_eq!(created.json["is_active"], true);
        assert_eq!(created.json["topic"], "chess");
        assert!(created.json["trigger"].is_null());

        let fetched = env
            .call(
                "GET",
                &format!("/api/v1/agent-mappings/{id}"),
                Some(&admin),
                None,
            )
            .await;
        fetched.expect(200);
        assert_eq!(fetched.json["agent_id"], "talk-chess-friend");

        let listed = env
            .call("GET", "/api/v1/agent-mappings?friendship_level=friend&agent_type=talk&is_active=true&limit=500", Some(&admin), None)
            .await;
        listed.expect(200);
        let items = listed.json["items"].as_array().unwrap();
        assert_eq!(listed.json["total"].as_i64().unwrap() as usize, items.len());
        assert!(items
            .iter()
            .all(|m| m["friendship_level"] == "friend" && m["agent_type"] == "talk"));
        assert!(items.iter().any(|m| m["id"] == id));

        let page = env
            .call(
                "GET",
                "/api/v1/agent-mappings?limit=2&offset=1",
                Some(&admin),
                None,
            )
            .await;
        page.expect(200);
        assert_eq!(page.json["items"].as_array().unwrap().len(), 2);
        assert!(page.json["total"].as_i64().unwrap() > 2);

        let mut replaced_body = body.clone();
        replaced_body["weight"] = json!(2.0);
        replaced_body["agent_name"] = json!("Chess Master");
        let replaced = env
            .call(
                "PUT",
                &format!("/api/v1/agent-mappings/{id}"),
                Some(&admin),
                Some(&replaced_body),
            )
            .await;
        replaced.expect(200);
        assert_eq!(replaced.json["weight"], 2.0);
        assert_eq!(replaced.json["agent_name"], "Chess Master");

        let deleted = env
            .call(
                "DELETE",
                &format!("/api/v1/agent-mappings/{id}"),
                Some(&admin),
                None,
            )
            .await;
        deleted.expect(200);
        assert_eq!(deleted.json["is_active"], false);
        let inactive = env
            .call(
                "GET",
                "/api/v1/agent-mappings?is_active=false",
                Some(&admin),
                None,
            )
            .await;
        assert!(inactive.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == id));

        replaced_body["is_active"] = json!(true);
        let reactivated = env
            .call(
                "PUT",
                &format!("/api/v1/agent-mappings/{id}"),
                Some(&admin),
                Some(&replaced_body),
            )
            .await;
        reactivated.expect(200);
        assert_eq!(reactivated.json["is_active"], true);
        env.shutdown().await;
    });
}

#[test]
fn a_redrive_with_nothing_to_do_requeues_nothing() {
    run(async {
        let env = isolated().await;
        let resp = env.redrive().await;
        resp.expect(200);
        assert_eq!(resp.json["requeued"], 0);
        env.shutdown().await;
    });
}
