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

/// Every route of the components' route tables (`components/*/src/lib.rs`, each
/// `Route::new(Method::…, "pattern", …)`), as `path → methods` in the tables' order,
/// with `:name` parameters written `{name}` as OpenAPI writes them.
fn routes_in_code() -> std::collections::BTreeMap<String, Vec<String>> {
    let components = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../components");
    let mut routes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut dirs: Vec<_> = std::fs::read_dir(&components)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Ok(source) = std::fs::read_to_string(dir.join("src/lib.rs")) else {
            continue;
        };
        let compact: String = source.split_whitespace().collect();
        for table_line in compact.split("Route::new(Method::").skip(1) {
            let (method, rest) = table_line.split_once(',').unwrap();
            let pattern = rest.split('"').nth(1).unwrap();
            let path = pattern
                .split('/')
                .map(|segment| match segment.strip_prefix(':') {
                    Some(name) => format!("{{{name}}}"),
                    None => segment.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            routes.entry(path).or_default().push(method.to_uppercase());
        }
    }
    assert!(routes.len() > 10, "the route tables were read: {routes:?}");
    routes
}

#[test]
fn the_openapi_document_is_served_and_names_every_route() {
    run(async {
        let env = shared().await;
        let resp = env.call("GET", "/openapi.json", None, None).await;
        resp.expect(200);
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../../../openapi.json")).unwrap();
        assert_eq!(resp.json, file, "the served document is openapi.json");
        // Every route of the code is in the document, and every operation of the
        // document is a route of the code; each 405 names the path's methods.
        let mut code = routes_in_code();
        let mut documented: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (path, operations) in file["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                documented
                    .entry(path.clone())
                    .or_default()
                    .push(method.to_uppercase());
                let not_allowed = &operation["responses"]["405"];
                assert_eq!(
                    not_allowed["$ref"], "#/components/responses/MethodNotAllowed",
                    "{method} {path}"
                );
                let allowed = code.get(path).cloned().unwrap_or_default();
                assert_eq!(
                    not_allowed["description"],
                    format!(
                        "Method not allowed: this path serves only {}.",
                        allowed.join(", ")
                    ),
                    "{method} {path}"
                );
            }
        }
        for methods in code.values_mut().chain(documented.values_mut()) {
            methods.sort();
        }
        assert_eq!(code, documented, "the route tables and openapi.json");
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
        // An id that cannot be used is replaced, never refused.
        for unusable in [
            "a b",
            "\u{e9}t\u{e9}",
            "\u{d7}\u{f8}\u{9b}",
            &"r".repeat(129),
        ] {
            let resp = env
                .raw(
                    "GET",
                    "/health/live",
                    &[("x-request-id", unusable.to_string())],
                    Vec::new(),
                )
                .await;
            resp.expect(200);
            let id = resp.header("x-request-id").unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{unusable:?}: {id}");
        }
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
        // The same UUID in its simple, braced and URN forms names the same event.
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        for form in [
            uuid.simple().to_string(),
            format!("%7B{id}%7D"),
            format!("urn:uuid:{id}"),
            id.to_uppercase(),
        ] {
            let resp = env.event(&token, &form).await;
            resp.expect(200);
            assert_eq!(resp.json["processing_id"], id.as_str(), "{form}");
        }
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
        // A soft delete: the mapping is still served, inactive. A `+` in the
        // path is a plus (`+7` is 7), not a space.
        for path_id in [
            id.to_string(),
            format!("+{id}"),
            format!("%2B{id}"),
            format!("00{id}"),
        ] {
            let fetched = env
                .call(
                    "GET",
                    &format!("/api/v1/agent-mappings/{path_id}"),
                    Some(&admin),
                    None,
                )
                .await;
            fetched.expect(200);
            assert_eq!(fetched.json["id"], id, "{path_id}");
            assert_eq!(fetched.json["is_active"], false, "{path_id}");
        }
        env.call(
            "GET",
            &format!("/api/v1/agent-mappings/%20{id}"),
            Some(&admin),
            None,
        )
        .await
        .expect_error(404, "not_found");
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

/// What openapi.json allows is accepted, even in its less usual forms: a
/// whole number written with a fraction, a topic named twice (its entries add
/// up), any RFC 3339 offset.
#[test]
fn the_less_usual_forms_the_document_allows_are_accepted() {
    run(async {
        let env = shared().await;
        let service = env.token("svc", "service");
        let u = user("forms");
        let mut body = conversation(
            &u,
            12,
            1,
            "happy",
            0,
            json!([{"name": "music", "turns": 2, "user_questions": 0},
                   {"name": " music ", "turns": 3, "user_questions": 1}]),
        );
        let first = env.end_conversation(&service, &body).await;
        first.expect(202);
        let id = first.json["processing_id"].as_str().unwrap().to_string();
        // 12.0 is the number 12: the same payload, the same event.
        body["metadata"]["total_turns"] = json!(12.0);
        let again = env.end_conversation(&service, &body).await;
        again.expect(202);
        assert_eq!(again.json["processing_id"], id.as_str());
        env.wait_for_event(&id, "processed", Duration::from_secs(15))
            .await;
        let status = env.status(&service, &u).await;
        status.expect(200);
        let music = &status.json["topic_metrics"]["music"];
        assert_eq!(music["total_turns"], 5, "{}", status.text);
        assert_eq!(
            music["score"],
            2.0 * 0.5 + 3.0 * 0.5 + 3.0,
            "{}",
            status.text
        );

        let updated = env
            .update(
                &service,
                &json!({"user_id": u, "friendship_score_change": 1,
                        "topic_metrics_update": {"space": {"score_change": 1.5,
                            "turns_increment": 26842.0, "last_date": "2026-11-22T10:00:00-00:19"}}}),
            )
            .await;
        updated.expect(200);
        let space = &updated.json["topic_metrics"]["space"];
        assert_eq!(space["total_turns"], 26842, "{}", updated.text);
        assert_eq!(
            space["last_date"], "2026-11-22T10:19:00Z",
            "{}",
            updated.text
        );

        // Of two keys equal once trimmed, the one whose untrimmed key sorts
        // last applies, whatever their order in the body.
        let headers = [
            ("authorization", format!("Bearer {service}")),
            ("content-type", "application/json".to_string()),
        ];
        for (order, expected) in [(["music", " music"], 5 + 2), ([" music", "music"], 5 + 4)] {
            let entries: Vec<String> = order
                .iter()
                .map(|key| {
                    let turns = if *key == "music" { 2 } else { 7 };
                    format!(
                        r#""{key}": {{"score_change": 0, "turns_increment": {turns},
                                      "last_date": "2026-11-22T10:00:00Z"}}"#
                    )
                })
                .collect();
            let body = format!(
                r#"{{"user_id": "{u}", "friendship_score_change": 0,
                    "topic_metrics_update": {{{}}}}}"#,
                entries.join(", ")
            );
            let resp = env
                .raw(
                    "POST",
                    "/api/v1/friendship/update",
                    &headers,
                    body.into_bytes(),
                )
                .await;
            resp.expect(200);
            assert_eq!(
                resp.json["topic_metrics"]["music"]["total_turns"], expected,
                "{order:?}: {}",
                resp.text
            );
        }
    });
}
