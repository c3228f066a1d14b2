//! The user's own data over HTTP: the score history paged by its cursor
//! while the user's events are being scored (never a line twice, never one
//! skipped); the export walked page by page holds everything the service
//! keeps about the user; the erasure leaves no row naming the user in any
//! table and no cached candidates, a resend of an old conversation changes
//! nothing, a repeat changes nothing, and a user with 100,000 events is
//! erased in short batches while other users are served.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{conversation, isolated, run, shared, user, Env};

async fn history(env: &Env, token: &str, body: Value) -> crate::support::Resp {
    env.call(
        "POST",
        "/api/v1/friendship/history",
        Some(token),
        Some(&body),
    )
    .await
}

/// Every history line of `user_id`, walked from the newest in pages of
/// `limit`, calling `between` with each page's number after it.
async fn walk_history<F, Fut>(
    env: &Env,
    token: &str,
    user_id: &str,
    limit: u32,
    mut between: F,
) -> Vec<Value>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lines = Vec::new();
    let mut cursor: Option<String> = None;
    for page_number in 0..1000 {
        let mut body = json!({ "user_id": user_id, "limit": limit });
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let page = history(env, token, body).await;
        page.expect(200);
        let items = page.json["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize);
        lines.extend(items.iter().cloned());
        between(page_number).await;
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return lines,
        }
    }
    panic!("the history of {user_id} never ended");
}

#[test]
fn paging_the_history_while_twenty_events_are_scored_never_repeats_or_skips_a_line() {
    run(async {
        let env = shared().await;
        let u = user("history");
        let service = env.token("ai-scorer", "service");
        let token = env.token(&u, "user");
        // 25 lines before the walk, each told apart by its change.
        for n in 1..=25 {
            env.update(
                &service,
                &json!({ "user_id": u, "friendship_score_change": n }),
            )
            .await
            .expect(200);
        }
        // The walk, two lines a page, posts two events after each of its
        // first ten pages: 20 events scored while it goes on.
        let ids = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let walked = walk_history(env, &token, &u, 2, |page| {
            let (ids, token, u) = (ids.clone(), token.clone(), u.clone());
            async move {
                if page >= 10 {
                    return;
                }
                for _ in 0..2 {
                    let body = conversation(&u, 6, 1, "happy", 0, json!([]));
                    let answer = env.end_conversation(&token, &body).await;
                    answer.expect(202);
                    let id = answer.json["processing_id"].as_str().unwrap().to_owned();
                    ids.borrow_mut().push(id);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
        .await;
        let ids = ids.borrow().clone();
        assert_eq!(ids.len(), 20);

        // Exactly the lines there were when the walk began, once each, newest
        // first: what was scored meanwhile came above the cursor.
        let updates: Vec<f64> = walked
            .iter()
            .map(|l| {
                assert_eq!(l["cause"], "service_update", "{l}");
                l["score_change"].as_f64().unwrap()
            })
            .collect();
        assert_eq!(updates, (1..=25).rev().map(f64::from).collect::<Vec<_>>());

        // Once all are scored, a walk shows all 45, each line's figures whole.
        env.wait_until_settled(&u, Duration::from_secs(30)).await;
        let all = walk_history(env, &token, &u, 7, |_| async {}).await;
        assert_eq!(all.len(), 45);
        let conversations: BTreeSet<&str> = all
            .iter()
            .filter_map(|l| l["processing_id"].as_str())
            .collect();
        assert_eq!(conversations, ids.iter().map(String::as_str).collect());
        let oldest = all.last().unwrap();
        assert_eq!(
            (
                oldest["score_before"].as_f64(),
                oldest["score_after"].as_f64()
            ),
            (Some(0.0), Some(1.0))
        );
        assert_eq!(oldest["level_before"], "stranger");
        let crossing = all
            .iter()
            .rev()
            .find(|l| l["level_before"] != l["level_after"])
            .expect("the walk crossed a level");
        assert_eq!(crossing["level_before"], "stranger");
        assert_eq!(crossing["level_after"], "acquaintance");
        assert!(crossing["score_after"].as_f64().unwrap() >= 100.0);
        for line in &all {
            let applied = line["score_applied"].as_f64().unwrap();
            let moved =
                line["score_after"].as_f64().unwrap() - line["score_before"].as_f64().unwrap();
            assert!((applied - moved).abs() < 1e-9, "{line}");
        }
    });
}

#[test]
fn the_history_refuses_what_its_contract_refuses_and_knows_no_unknown_user() {
    run(async {
        let env = shared().await;
        let u = user("history-bad");
        let service = env.token("ai-scorer", "service");
        env.update(
            &service,
            &json!({ "user_id": u, "friendship_score_change": 5 }),
        )
        .await
        .expect(200);
        for (body, field) in [
            (json!({ "user_id": u, "limit": 0 }), "limit"),
            (json!({ "user_id": u, "limit": 101 }), "limit"),
            (json!({ "user_id": u, "cursor": "0" }), "cursor"),
            (json!({ "user_id": u, "cursor": "12a" }), "cursor"),
            (json!({ "user_id": u, "cursor": 12 }), "cursor"),
            (json!({ "user_id": u, "cursor": null }), "cursor"),
            (json!({ "user_id": u, "limit": null }), "limit"),
            (json!({ "user_id": u, "offset": 3 }), "offset"),
        ] {
            let resp = history(env, &service, body.clone()).await;
            resp.expect_error(400, "validation_error");
            assert_eq!(
                resp.json["details"]["field"], field,
                "{body}: {}",
                resp.text
            );
        }
        history(env, &service, json!({ "user_id": user("nobody") }))
            .await
            .expect_error(404, "not_found");
        // A cursor past the end is an empty last page.
        let end = history(env, &service, json!({ "user_id": u, "cursor": "1" })).await;
        end.expect(200);
        assert_eq!(end.json["items"], json!([]));
        assert_eq!(end.json["next_cursor"], Value::Null);
    });
}

/// The export of `user_id` walked in pages of `limit`: the status (on every
/// page; the last page's), each list whole, and the number of pages.
async fn walk_export(
    env: &Env,
    token: &str,
    user_id: &str,
    limit: u32,
) -> (Value, BTreeMap<String, Vec<Value>>, usize) {
    let mut lists: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for pages in 1..1000 {
        let mut body = json!({ "user_id": user_id, "limit": limit });
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let page = env
            .call(
                "POST",
                "/api/v1/friendship/export",
                Some(token),
                Some(&body),
            )
            .await;
        page.expect(200);
        let status = page.json["status"].clone();
        let mut lines = 0;
        for list in [
            "history",
            "events",
            "level_transitions",
            "rejected_messages",
        ] {
            let items = page.json[list].as_array().unwrap();
            lines += items.len();
            lists
                .entry(list.to_owned())
                .or_default()
                .extend(items.iter().cloned());
        }
        assert!(lines <= limit as usize);
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (status, lists, pages),
        }
    }
    panic!("the export of {user_id} never ended");
}

/// A user with history lines, scored events, a level transition and a
/// rejected message naming it; its processing ids and conversation bodies.
async fn a_user_with_a_past(env: &Env, u: &str) -> Vec<(String, Value)> {
    let service = env.token("ai-scorer", "service");
    let token = env.token(u, "user");
    env.update(
        &service,
        &json!({ "user_id": u, "friendship_score_change": 95 }),
    )
    .await
    .expect(200);
    let mut events = Vec::new();
    for n in 0..4 {
        let body = conversation(
            u,
            4 + n,
            1,
            "happy",
            1,
            json!([{"name": "music", "turns": 2, "user_questions": 1}]),
        );
        let answer = env.end_conversation(&token, &body).await;
        answer.expect(202);
        events.push((
            answer.json["processing_id"].as_str().unwrap().to_owned(),
            body,
        ));
    }
    env.wait_until_settled(u, Duration::from_secs(30)).await;
    // A message the scorer rejects, naming the user.
    let redis = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut redis = redis.get_multiplexed_async_connection().await.unwrap();
    let bad = json!({ "user_id": u, "conversation_id": "x", "metadata": "not an object" });
    let _: i64 = redis::cmd("PUBLISH")
        .arg(crate::producers::CHANNEL)
        .arg(bad.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while rows_naming(env, u)
        .await
        .iter()
        .all(|r| !r.starts_with("rejected_messages:"))
    {
        assert!(
            Instant::now() < deadline,
            "the rejected message was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events
}

#[test]
fn the_export_walked_page_by_page_holds_everything_kept_about_the_user() {
    run(async {
        let env = shared().await;
        let u = user("export");
        let events = a_user_with_a_past(env, &u).await;
        let token = env.token(&u, "user");
        let (status, lists, pages) = walk_export(env, &token, &u, 2).await;
        assert_eq!(status["user_id"], u.as_str());
        assert_eq!(status["last_emotion"], "happy");
        assert_eq!(lists["history"].len(), 5);
        assert_eq!(lists["events"].len(), 4);
        assert_eq!(lists["level_transitions"].len(), 1);
        assert_eq!(lists["level_transitions"][0]["to_level"], "acquaintance");
        assert_eq!(lists["rejected_messages"].len(), 1);
        assert!(pages >= 6, "pages of at most 2 lines: {pages}");
        for (id, body) in &events {
            let event = lists["events"]
                .iter()
                .find(|e| e["processing_id"] == id.as_str())
                .unwrap_or_else(|| panic!("event {id} exported"));
            assert_eq!(event["conversation_id"], body["conversation_id"]);
            assert_eq!(
                event["payload"]["total_turns"],
                body["metadata"]["total_turns"]
            );
        }
        // Once in one page, the same.
        let (_, whole, pages) = walk_export(env, &token, &u, 100).await;
        assert_eq!(pages, 1);
        assert_eq!(whole, lists);

        let other = env.token(&user("other"), "user");
        let service = env.token("ai-scorer", "service");
        for forbidden in [other, service] {
            env.call(
                "POST",
                "/api/v1/friendship/export",
                Some(&forbidden),
                Some(&json!({ "user_id": u })),
            )
            .await
            .expect(403);
        }
        let bad = env
            .call(
                "POST",
                "/api/v1/friendship/export",
                Some(&token),
                Some(&json!({ "user_id": u, "cursor": "events:12" })),
            )
            .await;
        bad.expect_error(400, "validation_error");
    });
}

/// Every row of every table of the env's database whose text holds `needle`.
async fn rows_naming(env: &Env, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT t::text FROM {table} AS t WHERE strpos(t::text, $1) > 0"
        ))
        .bind(needle)
        .fetch_all(&env.db)
        .await
        .unwrap();
        found.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    found
}

/// Every key-value record (database 1 of the env's Redis) holding `needle`.
async fn records_naming(env: &Env, needle: &str) -> Vec<String> {
    let kv = redis::Client::open(format!("{}/1", env.redis_url)).unwrap();
    let mut kv = kv.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut kv)
        .await
        .unwrap();
    let mut found = Vec::new();
    for key in keys {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut kv)
            .await
            .unwrap_or(None);
        if value.is_some_and(|v| String::from_utf8_lossy(&v).contains(needle)) {
            found.push(key);
        }
    }
    found
}

async fn erase(env: &Env, token: &str, user_id: &str) -> crate::support::Resp {
    env.call(
        "POST",
        "/api/v1/friendship/erase",
        Some(token),
        Some(&json!({ "user_id": user_id })),
    )
    .await
}

#[test]
fn erasure_leaves_no_row_naming_the_user_and_a_resend_changes_nothing() {
    run(async {
        // Its own Redis: the key-value store is searched whole.
        let env_owned = isolated().await;
        let env = &env_owned;
        let u = user("erase");
        let events = a_user_with_a_past(env, &u).await;
        let token = env.token(&u, "user");
        env.suggest(&token, &u, None).await.expect(200);
        assert_eq!(env.suggest(&token, &u, None).await.json["cached"], true);
        assert!(!records_naming(env, &u).await.is_empty());
        let bystander = user("bystander");
        env.update(
            &env.token("ai-scorer", "service"),
            &json!({ "user_id": bystander, "friendship_score_change": 3 }),
        )
        .await
        .expect(200);

        let erased = erase(env, &token, &u).await;
        erased.expect(200);
        assert_eq!(erased.json, json!({ "user_id": u, "complete": true }));
        assert_eq!(rows_naming(env, &u).await, Vec::<String>::new());
        assert_eq!(records_naming(env, &u).await, Vec::<String>::new());
        assert!(
            !rows_naming(env, &bystander).await.is_empty(),
            "only the user is erased"
        );

        // A resend of an old conversation is a repeat: nothing recorded, nothing scored.
        let (id, body) = &events[0];
        let resent = env.end_conversation(&token, body).await;
        resent.expect(202);
        assert_eq!(resent.json["processing_id"], id.as_str());
        let mut changed = body.clone();
        changed["metadata"]["total_turns"] = json!(99);
        env.end_conversation(&token, &changed).await.expect(409);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(rows_naming(env, &u).await, Vec::<String>::new());
        env.status(&token, &u).await.expect(404);
        history(env, &token, json!({ "user_id": u }))
            .await
            .expect(404);

        // Again, by an admin: done, nothing changes.
        let again = erase(env, &env.token("ops", "admin"), &u).await;
        again.expect(200);
        assert_eq!(again.json["complete"], true);
        env_owned.shutdown().await;
    });
}

#[test]
fn a_user_with_100000_events_is_erased_in_short_batches_while_others_are_served() {
    run(async {
        let env = shared().await;
        let u = user("erase-big");
        let token = env.token(&u, "user");
        let service = env.token("ai-scorer", "service");
        env.update(
            &service,
            &json!({ "user_id": u, "friendship_score_change": 600 }),
        )
        .await
        .expect(200);
        // 100,000 processed events with their history lines, written directly.
        sqlx::query(
            "WITH e AS (
                 INSERT INTO conversation_events (conversation_id, user_id, payload, status, attempts, processed_at)
                 SELECT 'big-' || n, $1, '{\"total_turns\": 1}', 'processed', 1, now()
                 FROM generate_series(1, 100000) AS n
                 RETURNING processing_id)
             INSERT INTO friendship_score_history (user_id, cause, processing_id, score_change, score_applied, score_before, score_after)
             SELECT $1, 'conversation', processing_id, 0, 0, 600, 600 FROM e",
        )
        .bind(&u)
        .execute(&env.db)
        .await
        .unwrap();

        let other = user("served");
        let other_token = env.token(&other, "user");
        let started = Instant::now();
        let erasing = async {
            let mut calls = 0;
            loop {
                calls += 1;
                let answer = erase(env, &token, &u).await;
                if answer.status == 200 {
                    return calls;
                }
                answer.expect(202);
                assert_eq!(answer.json["complete"], false);
                assert!(calls < 100, "the erasure never completed");
            }
        };
        let serving = async {
            let mut slowest = Duration::ZERO;
            let mut served = 0;
            while started.elapsed() < Duration::from_secs(4) {
                let sent = Instant::now();
                let body = conversation(&other, 3, 0, "neutral", 0, json!([]));
                env.end_conversation(&other_token, &body).await.expect(202);
                env.status(&service, &u).await;
                slowest = slowest.max(sent.elapsed());
                served += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (served, slowest)
        };
        let (calls, (served, slowest)) = tokio::join!(erasing, serving);
        eprintln!(
            "erased 100,000 events in {:?} ({calls} calls); {served} requests of another user meanwhile, the slowest {slowest:?}",
            started.elapsed()
        );
        assert!(
            slowest < Duration::from_secs(2),
            "another user waited {slowest:?}"
        );
        assert_eq!(rows_naming(env, &u).await, Vec::<String>::new());
        let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM erased_conversations")
            .fetch_one(&env.db)
            .await
            .unwrap();
        assert!(keys >= 100_000);
    });
}
