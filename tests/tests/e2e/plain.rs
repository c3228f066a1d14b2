//! Plain `spin up`, the way a Spin developer runs any app (README, "Quick
//! start"): one process with every component — the HTTP routes and one
//! in-process scorer — Spin's built-in key-value store (no runtime config),
//! the variables in `SPIN_VARIABLE_*`, and no ticker: nothing rings the
//! scorer but the app itself. Every accepted event (posted, published on the
//! channel, added to the stream) must still be processed within seconds,
//! whatever the interleaving of posts and wake-ups, with no new traffic.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;

use crate::support::processes::{HostProcess, HostSpec, Ready};
use crate::support::{
    admin_database_url, client, conversation, fresh_database, host_port, request, root, run,
    servers::PrivateRedis, token, user, SECRET,
};

const STREAM: &str = "conversation-events:stream";
/// The bound on an accepted event's wait for its effect, at rest.
const WITHIN: Duration = Duration::from_secs(5);

/// Statuses of `user_id`'s events: (all, processed).
async fn counts(db: &sqlx::PgPool, user_id: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'processed')
         FROM conversation_events WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Waits until each of `expected` (user, events) has all its events
/// processed; panics with what is left after [`WITHIN`] from `since`.
async fn all_processed_within(db: &sqlx::PgPool, expected: &[(String, i64)], since: Instant) {
    loop {
        let mut left = Vec::new();
        for (u, n) in expected {
            let (all, processed) = counts(db, u).await;
            if all != *n || processed != *n {
                left.push(format!("{u}: {processed} of {all} processed ({n} sent)"));
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(
            since.elapsed() < WITHIN,
            "not processed {WITHIN:?} after they were accepted: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn under_plain_spin_up_every_accepted_event_is_processed_within_seconds_without_a_ticker() {
    run(async {
        tokio::task::spawn_blocking(crate::support::ensure_components)
            .await
            .unwrap();
        let redis = PrivateRedis::start();
        let database = fresh_database(&admin_database_url()).await;
        let dir = tempfile::tempdir().unwrap();
        // What a developer sets; the *_host variables only because this
        // test's Redis is not on the default port.
        let spec = HostSpec {
            name: "spin-up".into(),
            manifest: root().join("spin.toml"),
            runtime_config: None,
            components: Vec::new(),
            variables: vec![
                ("db_url".into(), database.url.clone()),
                ("db_host".into(), host_port(&database.url)),
                ("redis_url".into(), redis.url()),
                ("redis_host".into(), host_port(&redis.url())),
                ("jwt_secret".into(), SECRET.into()),
            ],
            variables_in_env: true,
            spin_compat: e2e::host::SpinCompat::from_env(),
            ready: Ready::Serving,
        };
        let path = dir.path().to_path_buf();
        let host = tokio::spawn(async move {
            let mut host = HostProcess::spawn(&spec, &path);
            tokio::task::block_in_place(|| host.wait_ready(crate::support::START_WITHIN));
            host
        })
        .await
        .unwrap();
        let base = host.base_url();
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&database.url)
            .await
            .unwrap();
        let mut conn = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        // The in-process scorer is subscribed once the channel has a listener.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("conversation-events")
                .query_async(&mut conn)
                .await
                .unwrap();
            if listeners == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the scorer never subscribed:\n{}",
                host.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let http = client();
        let service = token("plain-producer", "service", SECRET, 3600);
        let post = |body: serde_json::Value| {
            let (http, base, service) = (http.clone(), base.clone(), service.clone());
            async move {
                let resp = request(
                    &http,
                    &base,
                    "POST",
                    "/api/v1/conversations/end",
                    Some(&service),
                    Some(&body),
                )
                .await;
                resp.expect(202);
            }
        };

        // Other traffic first: posts, a suggestion (the built-in store), a
        // status read; then rounds of 40 concurrent ends for one user, each
        // with one event added to the stream, processed each time within
        // the bound at rest.
        let others: Vec<String> = (0..3).map(|_| user("plain-other")).collect();
        join_all(
            others
                .iter()
                .map(|u| post(conversation(u, 4, 1, "happy", 0, json!([])))),
        )
        .await;
        let suggested = request(
            &http,
            &base,
            "POST",
            "/api/v1/activities/suggest",
            Some(&service),
            Some(&json!({ "user_id": others[0] })),
        )
        .await;
        suggested.expect(200);
        let mut expected: Vec<(String, i64)> = others.iter().map(|u| (u.clone(), 1)).collect();
        all_processed_within(&db, &expected, Instant::now()).await;
        for round in 0..4 {
            let u = user("plain-burst");
            let streamed = user("plain-stream");
            join_all(
                (0..40).map(|i| post(conversation(&u, i % 7 + 1, i % 2, "neutral", 0, json!([])))),
            )
            .await;
            let _: String = redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("event")
                .arg(conversation(&streamed, 3, 0, "happy", 0, json!([])).to_string())
                .query_async(&mut conn)
                .await
                .unwrap();
            let accepted = Instant::now();
            expected = vec![(u.clone(), 40), (streamed.clone(), 1)];
            all_processed_within(&db, &expected, accepted).await;
            eprintln!(
                "plain spin up, round {round}: processed {:?} after the last was accepted",
                accepted.elapsed()
            );
            // Quiet between rounds: the next round starts from rest.
            tokio::time::sleep(Duration::from_millis(300 * round)).await;
        }
        db.close().await;
        drop(host);
        drop(database);
    });
}
