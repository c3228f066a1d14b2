//! The role matrix of docs/http-contract.md, cell by cell: for every route, what an
//! anonymous caller, a user on their own data, a user on someone else's, the
//! service and an admin get.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{conversation, run, shared, user, Env};

#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    UserOwn,
    UserOther,
    Service,
    Admin,
}

const CALLERS: [Caller; 5] = [
    Caller::Anonymous,
    Caller::UserOwn,
    Caller::UserOther,
    Caller::Service,
    Caller::Admin,
];

fn token(env: &Env, caller: Caller, owner: &str) -> Option<String> {
    match caller {
        Caller::Anonymous => None,
        Caller::UserOwn => Some(env.token(owner, "user")),
        Caller::UserOther => Some(env.token(&user("stranger"), "user")),
        Caller::Service => Some(env.token("ai-scorer", "service")),
        Caller::Admin => Some(env.token("ops", "admin")),
    }
}

/// One row of the matrix: the request and the status each caller gets, in
/// the order of [`CALLERS`].
struct Row {
    method: &'static str,
    path: String,
    body: Option<Value>,
    expected: [u16; 5],
}

#[test]
fn every_route_answers_each_role_as_the_matrix_says() {
    run(async {
        let env = shared().await;
        let owner = user("owner");
        let service = env.token("ai-scorer", "service");
        // The owner exists and has one processed event.
        env.update(
            &service,
            &json!({"user_id": owner, "friendship_score_change": 1}),
        )
        .await
        .expect(200);
        let first = conversation(&owner, 1, 0, "happy", 0, json!([]));
        let id = env.end_conversation(&service, &first).await.json["processing_id"]
            .as_str()
            .unwrap()
            .to_string();
        env.wait_for_event(&id, "processed", Duration::from_secs(15))
            .await;

        let rows = vec![
            Row {
                method: "GET",
                path: "/health".into(),
                body: None,
                expected: [200, 200, 200, 200, 200],
            },
            Row {
                method: "POST",
                path: "/api/v1/conversations/end".into(),
                body: Some(first.clone()),
                expected: [401, 202, 403, 202, 202],
            },
            Row {
                method: "GET",
                path: format!("/api/v1/conversations/{id}"),
                body: None,
                expected: [401, 200, 403, 200, 200],
            },
            Row {
                method: "POST",
                path: "/api/v1/friendship/status".into(),
                body: Some(json!({"user_id": owner})),
                expected: [401, 200, 403, 200, 200],
            },
            Row {
                method: "POST",
                path: "/api/v1/activities/suggest".into(),
                body: Some(json!({"user_id": owner})),
                expected: [401, 200, 403, 200, 200],
            },
            Row {
                method: "POST",
                path: "/api/v1/friendship/update".into(),
                body: Some(json!({"user_id": owner, "friendship_score_change": 0})),
                expected: [401, 403, 403, 200, 200],
            },
            Row {
                method: "GET",
                path: "/api/v1/agent-mappings".into(),
                body: None,
                expected: [401, 403, 403, 403, 200],
            },
            Row {
                method: "GET",
                path: "/api/v1/agent-mappings/1".into(),
                body: None,
                expected: [401, 403, 403, 403, 200],
            },
            Row {
                method: "GET",
                path: "/api/v1/admin/cache/stats".into(),
                body: None,
                expected: [401, 403, 403, 403, 200],
            },
            Row {
                method: "POST",
                path: "/api/v1/admin/events/redrive".into(),
                body: None,
                expected: [401, 403, 403, 403, 200],
            },
            Row {
                method: "POST",
                path: "/api/v1/friendship/history".into(),
                body: Some(json!({"user_id": owner})),
                expected: [401, 200, 403, 200, 200],
            },
            Row {
                method: "POST",
                path: "/api/v1/friendship/export".into(),
                body: Some(json!({"user_id": owner})),
                expected: [401, 200, 403, 403, 200],
            },
            // Last: it erases the owner (the admin's second erasure is a repeat).
            Row {
                method: "POST",
                path: "/api/v1/friendship/erase".into(),
                body: Some(json!({"user_id": owner})),
                expected: [401, 200, 403, 403, 200],
            },
        ];
        for row in rows {
            for (caller, expected) in CALLERS.iter().zip(row.expected) {
                let t = token(env, *caller, &owner);
                let resp = env
                    .call(row.method, &row.path, t.as_deref(), row.body.as_ref())
                    .await;
                assert_eq!(
                    resp.status, expected,
                    "{caller:?} {} {}: {}",
                    row.method, row.path, resp.text
                );
                resp.expect(expected);
            }
        }
    });
}
