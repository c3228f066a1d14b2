//! `GET /metrics`: after a known sequence (events processed, one dead-lettered,
//! events pending, rejected Redis messages, cache hits and misses, users at each
//! level), a scrape parsed with a real Prometheus text parser shows exact figures;
//! without the metrics token it is a 401, and while the token is unset the route
//! is the 404 of unknown paths.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value as Metric};
use serde_json::json;

use crate::support::{conversation, isolated, isolated_after, run, user, Env, Resp, METRICS_TOKEN};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapes `/metrics` with the suite's token and parses the answer.
async fn scrape(env: &Env) -> (Resp, Scrape) {
    let resp = env.call("GET", "/metrics", Some(METRICS_TOKEN), None).await;
    resp.expect(200);
    let lines = resp.text.lines().map(|l| Ok(l.to_owned()));
    let parsed = Scrape::parse(lines).expect("the exposition parses");
    (resp, parsed)
}

/// The value of the sample of `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
            ref other => panic!("{metric} is not a single value: {other:?}"),
        })
        .collect();
    assert_eq!(matching.len(), 1, "{metric}{labels:?}: {matching:?}");
    matching[0]
}

/// A sample's value with its type checked.
fn typed(scrape: &Scrape, metric: &str, labels: &[(&str, &str)], counter: bool) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("{metric} is missing"));
    match (counter, &sample.value) {
        (true, Metric::Counter(_)) | (false, Metric::Gauge(_)) => {}
        (_, other) => panic!("{metric}: unexpected type {other:?}"),
    }
    value(scrape, metric, labels)
}

/// Makes scoring of `user_id` fail (its history line cannot be written).
async fn fail_scoring_of(env: &Env, user_id: &str) {
    sqlx::query(&format!(
        "CREATE FUNCTION metrics_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.user_id = '{user_id}' THEN RAISE EXCEPTION 'injected scoring failure'; END IF;
           RETURN NEW;
         END $$"
    ))
    .execute(&env.db)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER metrics_poison BEFORE INSERT ON friendship_score_history
         FOR EACH ROW EXECUTE FUNCTION metrics_poison()",
    )
    .execute(&env.db)
    .await
    .unwrap();
}

async fn accepted(env: &Env, token: &str, body: &serde_json::Value) -> String {
    let resp = env.end_conversation(token, body).await;
    resp.expect(202);
    resp.json["processing_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_scrape_after_a_known_sequence_shows_exact_figures() {
    run(async {
        let env = isolated().await;
        let service = env.token("e2e-metrics", "service");

        // One event that can never be scored: three failed attempts, then a dead letter.
        let poison = user("m-poison");
        fail_scoring_of(&env, &poison).await;
        let id = accepted(
            &env,
            &service,
            &conversation(&poison, 4, 0, "neutral", 0, json!([])),
        )
        .await;
        env.wait_for_event(&id, "failed", Duration::from_secs(30))
            .await;

        // Three processed events: one user ends at each level.
        let stranger = user("m-stranger");
        let acquaintance = user("m-acquaintance");
        let friend = user("m-friend");
        for (u, turns) in [(&stranger, 10), (&acquaintance, 200), (&friend, 1000)] {
            let id = accepted(
                &env,
                &service,
                &conversation(u, turns, 0, "neutral", 0, json!([])),
            )
            .await;
            env.wait_for_event(&id, "processed", Duration::from_secs(30))
                .await;
        }

        // Two pending events waiting for a retry an hour away, the older
        // accepted two minutes ago.
        sqlx::query(
            "INSERT INTO conversation_events
                 (conversation_id, user_id, payload, attempts, accepted_at, next_attempt_at)
             SELECT 'm-waiting-' || i || '-' || $1, $1, '{}', 1,
                    now() - make_interval(secs => 60 * i), now() + interval '1 hour'
             FROM generate_series(1, 2) AS i",
        )
        .bind(user("m-waiting"))
        .execute(&env.db)
        .await
        .unwrap();

        // Two messages on the channel that are no event: two rejected records
        // (each scorer hears each message; one record per message).
        let mut redis = redis::Client::open(env.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut invalid = conversation(&user("m-invalid"), 1, 0, "happy", 0, json!([]));
        invalid["metadata"]["total_turns"] = json!(-1);
        for payload in [
            format!("{{not json {}", user("m-not-json")),
            invalid.to_string(),
        ] {
            redis::cmd("PUBLISH")
                .arg("conversation-events")
                .arg(payload)
                .query_async::<i64>(&mut redis)
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejected_messages")
                .fetch_one(&env.db)
                .await
                .unwrap();
            if rejected == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{rejected} rejected messages");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Cache: a miss then a hit for one user, a miss for another (every
        // suggest is counted in the suite).
        for (u, cached) in [(&stranger, false), (&stranger, true), (&friend, false)] {
            let resp = env.suggest(&service, u, None).await;
            resp.expect(200);
            assert_eq!(resp.json["cached"], cached, "{}", resp.text);
        }

        let (resp, s) = scrape(&env).await;
        assert_eq!(resp.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(
            typed(&s, "friendship_events", &[("status", "pending")], false),
            2.0
        );
        assert_eq!(
            typed(&s, "friendship_events", &[("status", "failed")], false),
            1.0
        );
        assert_eq!(
            typed(&s, "friendship_events_processed_total", &[], true),
            3.0
        );
        assert_eq!(
            typed(&s, "friendship_scoring_attempts_total", &[], true),
            6.0
        );
        assert_eq!(
            typed(&s, "friendship_scoring_failures_total", &[], true),
            3.0
        );
        assert_eq!(
            typed(&s, "friendship_rejected_messages_total", &[], true),
            2.0
        );
        assert_eq!(typed(&s, "friendship_cache_stats_up", &[], false), 1.0);
        assert_eq!(typed(&s, "friendship_cache_hits_total", &[], true), 1.0);
        assert_eq!(typed(&s, "friendship_cache_misses_total", &[], true), 2.0);
        let age = typed(
            &s,
            "friendship_oldest_pending_event_age_seconds",
            &[],
            false,
        );
        assert!((120.0..180.0).contains(&age), "oldest pending age {age}");

        // Users per level: one at each, as the table says (the poison user's
        // row, if its failed attempts left one, is a stranger's).
        let per_level: Vec<(String, i64)> =
            sqlx::query_as("SELECT friendship_level, count(*) FROM friendship_status GROUP BY 1")
                .fetch_all(&env.db)
                .await
                .unwrap();
        let table: HashMap<String, i64> = per_level.into_iter().collect();
        assert_eq!(
            (table["acquaintance"], table["friend"]),
            (1, 1),
            "{table:?}"
        );
        for level in ["stranger", "acquaintance", "friend"] {
            assert_eq!(
                typed(&s, "friendship_users", &[("level", level)], false),
                table[level] as f64,
                "{level}"
            );
        }
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalogue_version")
            .fetch_one(&env.db)
            .await
            .unwrap();
        assert_eq!(
            typed(&s, "friendship_catalogue_version", &[], false),
            version as f64
        );

        // The lag histogram: three events, each scored within a minute.
        let histogram = s
            .samples
            .iter()
            .find(|x| x.metric == "friendship_scoring_lag_seconds")
            .expect("the lag histogram");
        let Metric::Histogram(buckets) = &histogram.value else {
            panic!("not a histogram: {:?}", histogram.value);
        };
        let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
        assert_eq!(
            bounds,
            [
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                30.0,
                60.0,
                300.0,
                900.0,
                3600.0,
                f64::INFINITY
            ]
        );
        let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "cumulative: {counts:?}"
        );
        assert_eq!(&counts[9..], [3.0; 5], "{counts:?}");
        assert_eq!(value(&s, "friendship_scoring_lag_seconds_count", &[]), 3.0);
        let sum = value(&s, "friendship_scoring_lag_seconds_sum", &[]);
        assert!(sum > 0.0 && sum < 180.0, "lag sum {sum}");

        // Every family says what it is.
        for family in [
            "friendship_events",
            "friendship_events_processed_total",
            "friendship_oldest_pending_event_age_seconds",
            "friendship_scoring_lag_seconds",
            "friendship_scoring_attempts_total",
            "friendship_scoring_failures_total",
            "friendship_rejected_messages_total",
            "friendship_cache_stats_up",
            "friendship_cache_hits_total",
            "friendship_cache_misses_total",
            "friendship_users",
            "friendship_catalogue_version",
        ] {
            assert!(s.docs.contains_key(family), "# HELP {family}");
            assert!(
                resp.text.contains(&format!("\n# TYPE {family} ")),
                "# TYPE {family}"
            );
        }
        env.shutdown().await;
    });
}

#[test]
fn a_scrape_without_the_metrics_token_is_unauthorized() {
    run(async {
        let env = crate::support::shared().await;
        let admin = env.token("ops", "admin");
        for token in [None, Some("wrong-token"), Some(admin.as_str())] {
            env.call("GET", "/metrics", token, None)
                .await
                .expect_error(401, "unauthorized");
        }
        env.raw(
            "GET",
            "/metrics",
            &[("authorization", format!("Basic {METRICS_TOKEN}"))],
            Vec::new(),
        )
        .await
        .expect_error(401, "unauthorized");
        env.call("POST", "/metrics", Some(METRICS_TOKEN), None)
            .await
            .expect_error(405, "method_not_allowed");
    });
}

#[test]
fn without_a_metrics_token_the_route_is_not_found() {
    run(async {
        let env = isolated_after(
            HashMap::from([("metrics_token".to_owned(), String::new())]),
            |_| async {},
        )
        .await;
        for token in [None, Some(METRICS_TOKEN)] {
            let resp = env.call("GET", "/metrics", token, None).await;
            resp.expect_error(404, "not_found");
            assert_eq!(resp.json["message"], "no route for /metrics");
        }
        env.shutdown().await;
    });
}

/// The value of the exposition line `name{labels} value`, written as the
/// service writes it (labels in its order), if there is one.
fn line_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn requests_show_up_per_route_template_never_per_raw_path() {
    run(async {
        let env = isolated().await;
        let admin = env.token("e2e-requests", "admin");
        let u = user("req");
        let token = env.token(&u, "user");
        // Three reads of mappings that do not exist: three raw paths, one
        // route template. Then a user with no status yet (404), a wrong
        // method on a known path, and a path no route serves.
        for id in ["999001", "999002", "999003"] {
            env.call(
                "GET",
                &format!("/api/v1/agent-mappings/{id}"),
                Some(&admin),
                None,
            )
            .await
            .expect_error(404, "not_found");
        }
        env.call(
            "POST",
            "/api/v1/friendship/status",
            Some(&token),
            Some(&json!({ "user_id": u })),
        )
        .await
        .expect_error(404, "not_found");
        env.call("PATCH", "/api/v1/agent-mappings/999004", Some(&admin), None)
            .await
            .expect_error(405, "method_not_allowed");
        env.call("GET", "/no-such-path-999005", None, None)
            .await
            .expect_error(404, "not_found");

        // Counted after each answer was sent: wait for the last one.
        let route = "/api/v1/agent-mappings/:id";
        let deadline = Instant::now() + Duration::from_secs(10);
        let (text, scraped) = loop {
            let (resp, scraped) = scrape(&env).await;
            let seen = scraped.samples.iter().any(|s| {
                s.metric == "friendship_http_requests_total"
                    && s.labels.get("route") == Some("unmatched")
            });
            if seen || Instant::now() > deadline {
                break (resp.text, scraped);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let requests = |route: &str, method: &str, class: &str| {
            typed(
                &scraped,
                "friendship_http_requests_total",
                &[
                    ("route", route),
                    ("method", method),
                    ("status_class", class),
                ],
                true,
            )
        };
        assert_eq!(requests(route, "GET", "4xx"), 3.0);
        assert_eq!(requests("/api/v1/friendship/status", "POST", "4xx"), 1.0);
        // A wrong method on a known path: the path's template, the method
        // as sent.
        assert_eq!(requests(route, "PATCH", "4xx"), 1.0);
        assert_eq!(requests("unmatched", "GET", "4xx"), 1.0);
        // The latency histogram of the route: three requests, cumulative.
        let labels = format!(r#"route="{route}",method="GET""#);
        for series in [
            format!("friendship_http_request_duration_seconds_count{{{labels}}}"),
            format!(r#"friendship_http_request_duration_seconds_bucket{{{labels},le="+Inf"}}"#),
        ] {
            assert_eq!(line_value(&text, &series), Some(3.0), "{series}\n{text}");
        }
        let sum = format!("friendship_http_request_duration_seconds_sum{{{labels}}}");
        assert!(line_value(&text, &sum).is_some_and(|s| s > 0.0), "{text}");
        assert!(text.contains("# TYPE friendship_http_request_duration_seconds histogram\n"));
        // Bounded labels: no raw path, no id, ever.
        for id in ["999001", "999002", "999003", "999004", "999005", u.as_str()] {
            assert!(!text.contains(id), "{id} leaked into a label:\n{text}");
        }
        env.shutdown().await;
    });
}
