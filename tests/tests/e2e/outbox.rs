//! Level changes as events: every level transition reaches the Redis Stream
//! `level_changes_stream` (`friendship-level-changes`), relayed by the
//! scorers from its outbox row; a consumer with a group of its own reads the
//! documented fields; a transition made while Redis is stopped reaches the
//! stream once, after Redis returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{conversation, isolated_with_own_kv, run, shared, user, Env};

/// The stream's default key (`spin.toml`).
pub const STREAM: &str = "friendship-level-changes";

/// One entry of the stream: its Redis id and its fields.
pub type Entry = (String, HashMap<String, String>);

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        redis::Value::SimpleString(text) => text.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn items(value: &redis::Value) -> &[redis::Value] {
    match value {
        redis::Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

/// A consumer as the README shows it: creates its own group (from the
/// stream's start, the stream created when missing), then reads what is new
/// for the group with `XREADGROUP` and acknowledges it.
pub struct Consumer {
    url: String,
    group: String,
}

impl Consumer {
    pub async fn new(url: &str, group: &str) -> Consumer {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(STREAM)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut redis(url).await)
            .await;
        if let Err(e) = created {
            assert!(e.to_string().contains("BUSYGROUP"), "{e}");
        }
        Consumer {
            url: url.to_owned(),
            group: group.to_owned(),
        }
    }

    /// The entries new to the group (at most 1,000), acknowledged.
    pub async fn read(&self) -> Vec<Entry> {
        let mut conn = redis(&self.url).await;
        let answer: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg("consumer-1")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut entries = Vec::new();
        if let redis::Value::Nil = answer {
            return entries;
        }
        for stream in items(&answer) {
            for entry in items(&items(stream)[1]) {
                let entry = items(entry);
                let fields = items(&entry[1]);
                let fields: HashMap<String, String> = fields
                    .chunks(2)
                    .map(|pair| (text(&pair[0]), text(&pair[1])))
                    .collect();
                entries.push((text(&entry[0]), fields));
            }
        }
        for (id, _) in &entries {
            let _: i64 = redis::cmd("XACK")
                .arg(STREAM)
                .arg(&self.group)
                .arg(id)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        entries
    }

    /// Reads until `user_id` has `count` entries (or panics after `within`);
    /// that user's entries.
    pub async fn wait_for(&self, user_id: &str, count: usize, within: Duration) -> Vec<Entry> {
        let deadline = Instant::now() + within;
        let mut mine = Vec::new();
        loop {
            mine.extend(
                self.read()
                    .await
                    .into_iter()
                    .filter(|(_, fields)| fields["user_id"] == user_id),
            );
            if mine.len() >= count {
                return mine;
            }
            assert!(
                Instant::now() < deadline,
                "{user_id}: {} of {count} level changes on the stream: {mine:?}",
                mine.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `(id, published)` of the user's outbox rows, by transition.
pub async fn outbox(env: &Env, user_id: &str) -> Vec<(i64, bool)> {
    sqlx::query_as(
        "SELECT o.transition_id, o.published_at IS NOT NULL
         FROM level_change_outbox o JOIN friendship_level_transitions t ON t.id = o.transition_id
         WHERE t.user_id = $1 ORDER BY o.transition_id",
    )
    .bind(user_id)
    .fetch_all(&env.db)
    .await
    .unwrap()
}

/// Waits until every outbox row of the user is published; their ids.
pub async fn wait_published(env: &Env, user_id: &str, count: usize, within: Duration) -> Vec<i64> {
    let deadline = Instant::now() + within;
    loop {
        let rows = outbox(env, user_id).await;
        if rows.len() == count && rows.iter().all(|(_, published)| *published) {
            return rows.into_iter().map(|(id, _)| id).collect();
        }
        env.assert_no_spin_compat_violations().await;
        assert!(
            Instant::now() < deadline,
            "{user_id}: outbox {rows:?}, {count} published expected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_consumer_group_reads_each_level_change_with_the_documented_fields() {
    run(async {
        let env = shared().await;
        let consumer = Consumer::new(&env.redis_url, &format!("g-{}", user("fields"))).await;
        let u = user("published");
        let token = env.token(&u, "user");
        let service = env.token("ai-scorer", "service");

        // Up by a conversation (120 points: 240 turns), down by a service update.
        let body = conversation(&u, 240, 0, "neutral", 0, json!([]));
        let id = env.end_conversation(&token, &body).await.json["processing_id"]
            .as_str()
            .unwrap()
            .to_owned();
        env.wait_for_event(&id, "processed", Duration::from_secs(15))
            .await;
        env.update(
            &service,
            &json!({ "user_id": u, "friendship_score_change": -30 }),
        )
        .await
        .expect(200);

        let ids = wait_published(env, &u, 2, Duration::from_secs(15)).await;
        let entries = consumer.wait_for(&u, 2, Duration::from_secs(15)).await;
        let (up, down) = (&entries[0].1, &entries[1].1);
        assert_eq!(up["id"], ids[0].to_string());
        assert_eq!(
            (
                up["from"].as_str(),
                up["to"].as_str(),
                up["score"].as_str(),
                up["cause"].as_str(),
                up["processing_id"].as_str()
            ),
            (
                "stranger",
                "acquaintance",
                "120",
                "conversation",
                id.as_str()
            )
        );
        assert_eq!(down["id"], ids[1].to_string());
        assert_eq!(
            (
                down["from"].as_str(),
                down["to"].as_str(),
                down["score"].as_str(),
                down["cause"].as_str()
            ),
            ("acquaintance", "stranger", "90", "service_update")
        );
        assert!(!down.contains_key("processing_id"));
        let mut names: Vec<&str> = down.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            ["at", "cause", "from", "id", "score", "to", "user_id"]
        );
        for (_, fields) in &entries {
            let at = chrono::DateTime::parse_from_rfc3339(&fields["at"]).unwrap();
            assert!(fields["at"].ends_with('Z'), "UTC: {}", fields["at"]);
            let age = chrono::Utc::now().signed_duration_since(at);
            assert!(age < chrono::Duration::seconds(60), "{age}");
        }
        // Each once: a few more wake-ups add nothing.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again: Vec<Entry> = consumer
            .read()
            .await
            .into_iter()
            .filter(|(_, fields)| fields["user_id"] == u)
            .collect();
        assert!(again.is_empty(), "{again:?}");
    });
}

#[test]
fn a_level_change_made_while_redis_is_stopped_reaches_the_stream_once_after_it_returns() {
    run(async {
        // The key-value store on a Redis of its own: the update's cache
        // invalidation must not wait on the stopped one.
        let env = isolated_with_own_kv().await;
        let u = user("outage");
        let service = env.token("ai-scorer", "service");
        env.update(
            &service,
            &json!({ "user_id": u, "friendship_score_change": 150 }),
        )
        .await
        .expect(200);
        wait_published(&env, &u, 1, Duration::from_secs(15)).await;

        // Redis stops: the scorers go down with it (their supervisor restarts
        // them), the HTTP routes stay up, and the level change is committed
        // with its outbox row, unpublished.
        env.servers.lock().await.redis.as_mut().unwrap().stop();
        env.update(
            &service,
            &json!({ "user_id": u, "friendship_score_change": -100 }),
        )
        .await
        .expect(200);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let waiting = outbox(&env, &u).await;
        assert_eq!(waiting.len(), 2);
        assert_eq!((waiting[0].1, waiting[1].1), (true, false), "{waiting:?}");

        // Redis returns (empty: it keeps nothing): the next wake-up relays it.
        env.servers.lock().await.redis.as_mut().unwrap().restart();
        let consumer = Consumer::new(&env.redis_url, "notifications").await;
        let ids = wait_published(&env, &u, 2, Duration::from_secs(30)).await;
        let entries = consumer.wait_for(&u, 1, Duration::from_secs(15)).await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        let fields = &entries[0].1;
        assert_eq!(fields["id"], ids[1].to_string());
        assert_eq!(
            (
                fields["from"].as_str(),
                fields["to"].as_str(),
                fields["score"].as_str(),
                fields["cause"].as_str()
            ),
            ("acquaintance", "stranger", "50", "service_update")
        );
        // Once: more wake-ups add nothing, and the stream holds that one entry.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(consumer.read().await.is_empty());
        let length: i64 = redis::cmd("XLEN")
            .arg(STREAM)
            .query_async(&mut redis(&env.redis_url).await)
            .await
            .unwrap();
        assert_eq!(length, 1);
        env.assert_no_spin_compat_violations().await;
        env.shutdown().await;
    });
}
