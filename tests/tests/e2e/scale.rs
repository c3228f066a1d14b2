//! Scale-out, proven on one machine: the app run the way a cluster runs it,
//! as separate OS processes of the run's server (`spin up` of a real Spin,
//! or `spin-host`, its stand-in) —
//! two HTTP processes (every HTTP component, each on a port of its own) and
//! three scorer processes (`--component-id scorer`), against one Postgres
//! database and one Redis, with a doorbell ticker as `scripts/scorer.sh`
//! runs it. Thousands of events arrive through all three ways in (posts
//! spread over both HTTP processes, `PUBLISH` on the events channel, `XADD`
//! on the events stream), a few users receiving hundreds each, so that a
//! user's events are scored in many batches, by whichever scorer holds the
//! turn (`crates/edge/src/turn.rs`); one scorer is killed with SIGKILL
//! mid-stream (perhaps holding the turn) and not restarted.
//!
//! Then, once, exactly: every event is `processed` (none `failed`), each has
//! exactly one history line with the change `friendship_domain` computes for
//! it, each user's history chains without a gap from 0 to its score, and
//! each user's score, turns, topic metrics and level transitions are what
//! the domain computes for its events. The stream is drained (entries the
//! killed scorer had read but not acknowledged, when it held some, were
//! claimed again). The figures are printed to stderr.
//!
//! Private servers: a Postgres cluster and a Redis of the test's own
//! (stopped with it), so no other test's connections can starve the five
//! processes, and the channel, stream and group names are the test's own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use friendship_domain::{conversation_score_change, topic_updates, ConversationEnd, Level};
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::processes::{HostProcess, HostSpec, Ready};
use crate::support::servers::{PrivatePostgres, PrivateRedis};
use crate::support::{
    ensure_components, fresh_database, host_port, request, root, run, token, SECRET,
};

/// Events posted over HTTP, alternately to each HTTP process.
const HTTP_EVENTS: usize = 2_400;
/// Events published on the events channel.
const CHANNEL_EVENTS: usize = 300;
/// Events added to the events stream, in one burst.
const STREAM_EVENTS: usize = 300;
const TOTAL: usize = HTTP_EVENTS + CHANNEL_EVENTS + STREAM_EVENTS;
/// HTTP events posted before the scorer is killed (the rest come after).
const HTTP_BEFORE_KILL: usize = 800;
/// Events that must be processed before the burst and the kill.
const PROCESSED_BEFORE_KILL: i64 = 200;
/// Users; every one receives events through every way in.
const USERS: usize = 8;
const HTTP_PROCESSES: usize = 2;
const SCORER_PROCESSES: usize = 3;
/// Posts in flight at once (over both HTTP processes).
const HTTP_CONCURRENCY: usize = 16;
/// How often the ticker rings the doorbell (scripts/scorer.sh: TICK_SECONDS).
const TICK: Duration = Duration::from_secs(1);
/// A stream entry read by the killed scorer is claimed again after this.
const CLAIM_IDLE_MS: u64 = 2_000;
/// Compiling the components, five processes at once on a loaded machine.
const START_WITHIN: Duration = Duration::from_secs(240);
/// From the last post until every event is processed.
const PROCESSED_WITHIN: Duration = Duration::from_secs(90);

const CHANNEL: &str = "conversation-events";
const STREAM: &str = "conversation-events:stream";
const GROUP: &str = "scorers";
const EMOTIONS: [&str; 5] = ["interesting", "happy", "neutral", "sad", "boring"];
const TOPICS: [&str; 5] = ["music", "travel", "food", "games", "books"];

/// Event `i` of the run: its user and a metadata mix that exercises every
/// term of the formula (including emotions whose bonus is floored away).
fn event(run_id: &str, users: &[String], i: usize) -> Value {
    let topics: Vec<Value> = (0..i % 4)
        .map(|k| {
            json!({
                "name": TOPICS[(i + k) % TOPICS.len()],
                "turns": (i + k) % 9,
                "user_questions": (i + 2 * k) % 3,
            })
        })
        .collect();
    json!({
        "user_id": users[(i * 5 + i / USERS) % USERS],
        "conversation_id": format!("scale-{run_id}-{i}"),
        "metadata": {
            "total_turns": (i * 7) % 41,
            "user_initiated_questions": i % 6,
            "emotion": EMOTIONS[(i / 2) % EMOTIONS.len()],
            "new_memories_count": (i / 3) % 4,
            "topics": topics,
        }
    })
}

/// What the domain says a user's events add up to.
#[derive(Debug, Default)]
struct Expected {
    score: f64,
    turns: i64,
    /// topic -> (score, turns)
    topics: BTreeMap<String, (f64, u64)>,
}

/// Kills every task it holds when dropped (the ticker, on any exit).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Awaits a task, re-raising its panic with its own message.
async fn join<T>(task: tokio::task::JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("task: {e}"),
    }
}

async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Events by status.
async fn counts_by_status(db: &PgPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM conversation_events GROUP BY status",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Entries in the stream, and entries read but not acknowledged.
async fn stream_state(conn: &mut redis::aio::MultiplexedConnection) -> (i64, i64) {
    let len: i64 = redis::cmd("XLEN")
        .arg(STREAM)
        .query_async(conn)
        .await
        .unwrap();
    // XPENDING's summary starts with the count; no group yet is none pending.
    let pending: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .query_async(conn)
        .await;
    let pending = match pending.ok().as_deref() {
        Some([redis::Value::Int(n), ..]) => *n,
        _ => 0,
    };
    (len, pending)
}

/// Stream entries read but unacknowledged for over a second: left by a
/// scorer that died (a live one acknowledges within milliseconds), until
/// another claims them again after `stream_claim_idle_ms`.
async fn orphaned_entries(conn: &mut redis::aio::MultiplexedConnection) -> usize {
    let entries: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .arg("IDLE")
        .arg(1_000)
        .arg("-")
        .arg("+")
        .arg(STREAM_EVENTS)
        .query_async(conn)
        .await;
    entries.map_or(0, |e| e.len())
}

/// Keeps in `max` the most [`orphaned_entries`] seen, sampling every 100 ms.
async fn watch_orphans(redis_url: String, max: Arc<AtomicUsize>) {
    let mut conn = redis_connection(&redis_url).await;
    loop {
        max.fetch_max(orphaned_entries(&mut conn).await, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts `bodies` (with their index) over the HTTP processes, alternating by
/// index, `HTTP_CONCURRENCY` at a time; each must be accepted (a 503 is
/// retried, as a producer must). Counts posts per process and 503s.
async fn post_all(
    client: reqwest::Client,
    bases: Vec<String>,
    service: String,
    bodies: Vec<(usize, Value)>,
    per_process: Arc<Vec<AtomicUsize>>,
    retries: Arc<AtomicUsize>,
) {
    futures::stream::iter(bodies)
        .map(|(i, body)| {
            let (client, bases, service) = (&client, &bases, &service);
            let (per_process, retries) = (&per_process, &retries);
            async move {
                let process = i % bases.len();
                for attempt in 0.. {
                    let resp = request(
                        client,
                        &bases[process],
                        "POST",
                        "/api/v1/conversations/end",
                        Some(service),
                        Some(&body),
                    )
                    .await;
                    if resp.status == 503 && attempt < 10 {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    resp.expect(202);
                    assert_eq!(resp.json["status"], "accepted", "{}", resp.text);
                    per_process[process].fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        })
        .buffer_unordered(HTTP_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

/// Publishes each event on the channel; some scorer must hear each one.
async fn publish_all(redis_url: String, bodies: Vec<Value>) {
    let mut conn = redis_connection(&redis_url).await;
    for body in bodies {
        let heard: i64 = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(body.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            heard >= 1,
            "no scorer heard {}: a published event is then lost",
            body["conversation_id"]
        );
    }
}

/// Rings the scorers' doorbell every [`TICK`], as scripts/scorer.sh does
/// (a connection per ring, bounded, so one failure never stops it).
async fn ticker(redis_url: String) {
    loop {
        tokio::time::sleep(TICK).await;
        let ring = async {
            let client = redis::Client::open(redis_url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(r#"{"kind":"tick"}"#)
                .query_async::<i64>(&mut conn)
                .await
                .ok()
        };
        let _ = tokio::time::timeout(TICK, ring).await;
    }
}

/// The failure message when the deadline passes: counts, stream, hosts.
fn stuck(
    what: &str,
    counts: &BTreeMap<String, i64>,
    stream: (i64, i64),
    hosts: &mut [HostProcess],
) -> String {
    let mut message = format!(
        "{what}: events by status {counts:?} (of {TOTAL} sent); stream: {} entries, {} read but unacknowledged\n",
        stream.0, stream.1
    );
    for host in hosts.iter_mut() {
        let running = host.is_running();
        message += &format!("{} running: {running}\n{}\n", host.name(), host.output());
    }
    message
}

#[test]
fn two_http_and_three_scorer_processes_one_killed_mid_stream_score_every_event_exactly_once() {
    run(async {
        tokio::task::spawn_blocking(ensure_components)
            .await
            .unwrap();
        let started = Instant::now();
        // Private servers: five processes may open 64 Postgres connections
        // each, and on the shared server other tests' connections would
        // make some of them fail (`too many clients`), which a published
        // event does not survive (the channel is at most once). Dropped last
        // (locals drop in reverse order): the processes first, then the
        // database, then the servers.
        let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
            .await
            .unwrap();
        let redis = PrivateRedis::start();
        let database = fresh_database(&postgres.url()).await;
        let dir = tempfile::tempdir().unwrap();
        let redis_url = redis.url();
        let runtime_config = dir.path().join("runtime-config.toml");
        std::fs::write(
            &runtime_config,
            format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{redis_url}/1\"\n"),
        )
        .unwrap();
        let variables: Vec<(String, String)> = [
            ("db_url", database.url.clone()),
            ("db_host", host_port(&database.url)),
            ("redis_url", redis_url.clone()),
            ("redis_host", host_port(&redis_url)),
            ("kv_host", host_port(&redis_url)),
            ("jwt_secret", SECRET.to_string()),
            ("events_channel", CHANNEL.to_string()),
            ("events_stream", STREAM.to_string()),
            ("stream_group", GROUP.to_string()),
            ("retry_base_ms", "50".to_string()),
            ("stream_claim_idle_ms", CLAIM_IDLE_MS.to_string()),
            // Its own ticker rings, as scripts/scorer.sh's does.
            ("self_tick_ms", "0".to_string()),
            // 375 events a user in one day: the test checks the formula's
            // exact sums, so the daily score cap is off.
            ("daily_score_cap", "0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

        // The components of spin.toml's triggers: every HTTP one in each
        // HTTP process, the Redis trigger's alone in each scorer process.
        let manifest_path = root().join("spin.toml");
        let manifest = e2e::host::manifest::Manifest::from_file(&manifest_path).unwrap();
        let http_components = crate::support::http_components();
        let scorer_components: Vec<String> = manifest
            .trigger
            .redis
            .iter()
            .map(|t| t.component.clone())
            .collect();
        assert_eq!(scorer_components, ["scorer"]);
        let spin_compat = e2e::host::SpinCompat::from_env();
        let server = crate::support::server();
        let spec = |name: String, components: &[String], ready: Ready| HostSpec {
            name,
            manifest: manifest_path.clone(),
            runtime_config: Some(runtime_config.clone()),
            components: components.to_vec(),
            variables: variables.clone(),
            variables_in_env: false,
            spin_compat,
            ready,
        };
        let mut hosts: Vec<HostProcess> = Vec::new();
        for n in 1..=HTTP_PROCESSES {
            hosts.push(HostProcess::spawn(
                &spec(format!("http-{n}"), &http_components, Ready::Serving),
                dir.path(),
            ));
        }
        for n in 1..=SCORER_PROCESSES {
            hosts.push(HostProcess::spawn(
                &spec(format!("scorer-{n}"), &scorer_components, Ready::Subscribed),
                dir.path(),
            ));
        }
        for host in &mut hosts {
            host.wait_ready(START_WITHIN);
        }
        let bases: Vec<String> = hosts[..HTTP_PROCESSES]
            .iter()
            .map(HostProcess::base_url)
            .collect();
        assert_ne!(
            bases[0], bases[1],
            "each HTTP process has a port of its own"
        );
        let mut conn = redis_connection(&redis_url).await;
        let subscribed: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(CHANNEL)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            subscribed.1, SCORER_PROCESSES as i64,
            "every scorer process listens on {CHANNEL}"
        );
        let start_up = started.elapsed();
        let _ticker = AbortOnDrop(vec![tokio::spawn(ticker(redis_url.clone()))]);
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&database.url)
            .await
            .unwrap();

        // The events, and what the domain says each adds.
        let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let users: Vec<String> = (0..USERS).map(|n| format!("scale-{run_id}-u{n}")).collect();
        let bodies: Vec<Value> = (0..TOTAL).map(|i| event(run_id, &users, i)).collect();
        let now = chrono::Utc::now();
        let mut change_of: HashMap<String, f64> = HashMap::new();
        let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
        for body in &bodies {
            let end: ConversationEnd = serde_json::from_value(body.clone()).unwrap();
            let change = conversation_score_change(&end.metadata);
            change_of.insert(end.conversation_id.as_str().to_string(), change);
            let user = expected
                .entry(end.user_id.as_str().to_string())
                .or_default();
            user.score += change;
            user.turns += i64::from(end.metadata.total_turns.get());
            for (topic, update) in topic_updates(&end.metadata, now) {
                let metric = user.topics.entry(topic).or_default();
                metric.0 += update.score_change;
                metric.1 += update.turns_increment;
            }
        }
        assert_eq!(expected.len(), USERS);
        let http: Vec<(usize, Value)> = bodies[..HTTP_EVENTS].iter().cloned().enumerate().collect();
        let channel = bodies[HTTP_EVENTS..HTTP_EVENTS + CHANNEL_EVENTS].to_vec();
        let stream = &bodies[HTTP_EVENTS + CHANNEL_EVENTS..];

        // A post that hangs fails the test instead of holding it.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(HTTP_CONCURRENCY)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let service = token("scale-producer", "service", SECRET, 3600);
        let per_process: Arc<Vec<AtomicUsize>> =
            Arc::new((0..HTTP_PROCESSES).map(|_| AtomicUsize::new(0)).collect());
        let retries = Arc::new(AtomicUsize::new(0));
        let post = |bodies: Vec<(usize, Value)>| {
            tokio::spawn(post_all(
                client.clone(),
                bases.clone(),
                service.clone(),
                bodies,
                per_process.clone(),
                retries.clone(),
            ))
        };

        // First part: posts only, until the scorers have processed some.
        let first_post = Instant::now();
        join(post(http[..HTTP_BEFORE_KILL].to_vec())).await;
        let deadline = Instant::now() + PROCESSED_WITHIN;
        loop {
            let counts = counts_by_status(&db).await;
            if counts.get("processed").copied().unwrap_or(0) >= PROCESSED_BEFORE_KILL {
                break;
            }
            if Instant::now() >= deadline {
                let state = stream_state(&mut conn).await;
                panic!(
                    "{}",
                    stuck("nothing was scored", &counts, state, &mut hosts)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Then the stream's events in one burst; the first scorer is killed
        // as soon as the scorers start reading it (or 2 s after it, at the
        // latest), and the rest of the posts and the channel's events follow.
        let mut burst = redis::pipe();
        for body in stream {
            burst
                .cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("event")
                .arg(body.to_string())
                .ignore();
        }
        // As a producer may: a doorbell after the entries, to have them read at once.
        burst
            .cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(r#"{"kind":"tick"}"#)
            .ignore();
        burst.query_async::<()>(&mut conn).await.unwrap();
        let burst_at = Instant::now();
        loop {
            let (len, unacknowledged) = stream_state(&mut conn).await;
            let reading = unacknowledged > 0 || len < STREAM_EVENTS as i64;
            if reading || burst_at.elapsed() >= Duration::from_secs(2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (stream_left, unacknowledged_at_kill) = stream_state(&mut conn).await;
        let victim = HTTP_PROCESSES;
        hosts[victim].kill();
        let orphaned = Arc::new(AtomicUsize::new(0));
        let _watch = AbortOnDrop(vec![tokio::spawn(watch_orphans(
            redis_url.clone(),
            orphaned.clone(),
        ))]);
        let killed_after = first_post.elapsed();
        let at_kill = counts_by_status(&db).await;
        let processed_at_kill = at_kill.get("processed").copied().unwrap_or(0);
        let recorded_at_kill: i64 = at_kill.values().sum();
        assert!(
            processed_at_kill >= PROCESSED_BEFORE_KILL && (processed_at_kill as usize) < TOTAL / 2,
            "the kill is mid-stream: {processed_at_kill} of {TOTAL} processed"
        );
        let rest = post(http[HTTP_BEFORE_KILL..].to_vec());
        let published = tokio::spawn(publish_all(redis_url.clone(), channel));
        join(rest).await;
        join(published).await;
        let last_post = first_post.elapsed();

        // Until every event is processed and the stream is drained.
        let deadline = Instant::now() + PROCESSED_WITHIN;
        let (counts, waited) = loop {
            let counts = counts_by_status(&db).await;
            let state = stream_state(&mut conn).await;
            let failed = counts.get("failed").copied().unwrap_or(0);
            if failed > 0 {
                let errors: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT conversation_id, last_error FROM conversation_events
                     WHERE status = 'failed' LIMIT 5",
                )
                .fetch_all(&db)
                .await
                .unwrap();
                panic!(
                    "{}\nfirst failed: {errors:?}",
                    stuck("events failed", &counts, state, &mut hosts)
                );
            }
            if counts.get("processed").copied() == Some(TOTAL as i64) && state == (0, 0) {
                break (counts, first_post.elapsed());
            }
            if Instant::now() >= deadline {
                let waiting: Vec<(String, String, i32, Option<String>, f64)> = sqlx::query_as(
                    "SELECT conversation_id, status, attempts, last_error,
                            extract(epoch FROM next_attempt_at - now())::float8
                     FROM conversation_events WHERE status <> 'processed' LIMIT 5",
                )
                .fetch_all(&db)
                .await
                .unwrap();
                panic!(
                    "{}\nsome not processed (id, status, attempts, last error, due in s): {waiting:?}",
                    stuck(
                        &format!("not every event was processed {PROCESSED_WITHIN:?} after the last post"),
                        &counts,
                        state,
                        &mut hosts,
                    )
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        // The checks, once.
        assert_eq!(
            counts.len(),
            1,
            "every event processed, none failed: {counts:?}"
        );
        let events: Vec<(String, String)> =
            sqlx::query_as("SELECT conversation_id, user_id FROM conversation_events")
                .fetch_all(&db)
                .await
                .unwrap();
        let mut recorded: Vec<String> = events.iter().map(|(c, _)| c.clone()).collect();
        recorded.sort();
        let mut sent: Vec<String> = change_of.keys().cloned().collect();
        sent.sort();
        assert_eq!(recorded, sent, "one record per event sent, and no other");

        // Exactly one history line per event, with the domain's change, and
        // each user's lines chain from 0 to its score (no update lost to a
        // concurrent one).
        let lines: Vec<(String, String, f64, f64, f64)> = sqlx::query_as(
            "SELECT h.user_id, e.conversation_id, h.score_change::float8,
                    h.score_before::float8, h.score_after::float8
             FROM friendship_score_history h
             JOIN conversation_events e USING (processing_id)
             WHERE h.cause = 'conversation'
             ORDER BY h.id",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        let all_lines: i64 = sqlx::query_scalar("SELECT count(*) FROM friendship_score_history")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(all_lines, TOTAL as i64, "history lines");
        assert_eq!(lines.len(), TOTAL, "history lines of events");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut chain: HashMap<&str, f64> = HashMap::new();
        for (user, conversation, change, before, after) in &lines {
            *seen.entry(conversation).or_default() += 1;
            assert_eq!(*change, change_of[conversation], "change of {conversation}");
            let previous = chain.entry(user).or_insert(0.0);
            assert_eq!(
                *before, *previous,
                "{user}: {conversation} starts where the last ended"
            );
            assert_eq!(*after, before + change, "{user}: {conversation}");
            *previous = *after;
        }
        assert!(seen.values().all(|n| *n == 1), "one history line per event");
        assert_eq!(seen.len(), TOTAL);

        // Each user: score, turns, topics and level transitions as the
        // domain computes them from its events.
        for (user, want) in &expected {
            let (score, turns, topics): (f64, i64, Value) = sqlx::query_as(
                "SELECT friendship_score::float8, total_turns, topic_metrics
                 FROM friendship_status WHERE user_id = $1",
            )
            .bind(user)
            .fetch_one(&db)
            .await
            .unwrap();
            assert_eq!(score, want.score, "{user}: score");
            assert_eq!(
                chain[user.as_str()],
                want.score,
                "{user}: history ends at the score"
            );
            assert_eq!(turns, want.turns, "{user}: total turns");
            let topics = topics.as_object().unwrap();
            assert_eq!(
                topics.keys().collect::<Vec<_>>(),
                want.topics.keys().collect::<Vec<_>>(),
                "{user}: topics"
            );
            for (topic, (topic_score, topic_turns)) in &want.topics {
                assert_eq!(
                    topics[topic]["score"].as_f64(),
                    Some(*topic_score),
                    "{user}: {topic}"
                );
                assert_eq!(
                    topics[topic]["total_turns"].as_u64(),
                    Some(*topic_turns),
                    "{user}: {topic}"
                );
            }
            let transitions: Vec<(String, String)> = sqlx::query_as(
                "SELECT from_level, to_level FROM friendship_level_transitions
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(user)
            .fetch_all(&db)
            .await
            .unwrap();
            let levels = [Level::Stranger, Level::Acquaintance, Level::Friend];
            let reached = levels
                .iter()
                .position(|l| *l == Level::from_score(want.score))
                .unwrap();
            let want_transitions: Vec<(String, String)> = levels[..=reached]
                .windows(2)
                .map(|w| (w[0].as_str().to_string(), w[1].as_str().to_string()))
                .collect();
            assert_eq!(transitions, want_transitions, "{user}: level transitions");
        }

        // The processes: the killed one stays down, every other still runs,
        // and none ran a statement the imitated Spin line would hang on.
        for (n, host) in hosts.iter_mut().enumerate() {
            assert_eq!(
                host.is_running(),
                n != victim,
                "{}\n{}",
                host.name(),
                host.output()
            );
            assert_eq!(
                host.spin_compat_violations(),
                Vec::<String>::new(),
                "{}",
                host.name()
            );
        }

        // The figures.
        let span: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM max(processed_at) - min(accepted_at))::float8
             FROM conversation_events",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        let per_process: Vec<usize> = per_process
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        assert_eq!(per_process.iter().sum::<usize>(), HTTP_EVENTS);
        let max_per_user = bodies
            .iter()
            .fold(HashMap::<&str, usize>::new(), |mut m, b| {
                *m.entry(b["user_id"].as_str().unwrap()).or_default() += 1;
                m
            })
            .into_values()
            .max()
            .unwrap();
        let orphaned = orphaned.load(Ordering::Relaxed);
        eprintln!(
            "scale ({server}): {TOTAL} events for {USERS} users (up to {max_per_user} each) \
             via HTTP {per_process:?} (2 processes; {} answers 503 retried), channel {CHANNEL_EVENTS}, \
             stream {STREAM_EVENTS}; {SCORER_PROCESSES} scorer processes, one SIGKILLed {:.1} s after the \
             first post with {processed_at_kill} processed, {} recorded not yet processed, {stream_left} \
             in the stream ({unacknowledged_at_kill} read, unacknowledged; {orphaned} left unacknowledged by the \
             killed scorer and claimed again) and {} not yet sent; \
             posts done at {:.1} s; all processed at {:.1} s (polled), first accepted to last processed \
             {span:.1} s = {:.0} events/s; start-up {:.1} s",
            retries.load(Ordering::Relaxed),
            killed_after.as_secs_f64(),
            recorded_at_kill - processed_at_kill,
            TOTAL - HTTP_BEFORE_KILL - STREAM_EVENTS,
            last_post.as_secs_f64(),
            waited.as_secs_f64(),
            TOTAL as f64 / span,
            start_up.as_secs_f64(),
        );
        db.close().await;
        drop(hosts);
        drop(database);
    });
}
