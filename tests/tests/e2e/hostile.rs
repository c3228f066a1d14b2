//! What one hostile client, producer or user could once do to everyone else
//! (issue 20, rows 3 to 8), each reproduced and shown bounded: another
//! user's conversation ids, bodies that never end, stream entries shaped to
//! fool the reader, an oversize channel message, repeated `Authorization`
//! and `Content-Type` headers, tokens that live for ever, and malformed
//! `Host` headers.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    conversation, isolated, isolated_after, run, server, shared, token, user, Env, SECRET,
};

const CHANNEL: &str = "conversation-events";
const STREAM: &str = "conversation-events:stream";

async fn redis(env: &Env) -> redis::aio::MultiplexedConnection {
    redis::Client::open(env.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn count(env: &Env, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(&env.db)
        .await
        .unwrap()
}

/// Row 3: user B posts the conversation id user A is about to use. It is
/// B's conversation; A's is A's: both are recorded and scored, and within
/// one user a resend is still a repeat and another payload a conflict.
#[test]
fn a_conversation_id_another_user_took_first_is_still_the_users_own() {
    run(async {
        let env = shared().await;
        let (a, b) = (user("squat-a"), user("squat-b"));
        let (ta, tb) = (env.token(&a, "user"), env.token(&b, "user"));
        let theirs = conversation(&b, 2, 0, "happy", 0, json!([]));
        let mut mine = conversation(&a, 4, 0, "happy", 0, json!([]));
        mine["conversation_id"] = theirs["conversation_id"].clone();

        let squatted = env.end_conversation(&tb, &theirs).await;
        squatted.expect(202);
        let own = env.end_conversation(&ta, &mine).await;
        own.expect(202);
        assert_ne!(own.json["processing_id"], squatted.json["processing_id"]);
        // Within one user, today's meaning.
        let again = env.end_conversation(&ta, &mine).await;
        again.expect(202);
        assert_eq!(again.json["processing_id"], own.json["processing_id"]);
        let mut changed = mine.clone();
        changed["metadata"]["total_turns"] = json!(5);
        env.end_conversation(&ta, &changed)
            .await
            .expect_error(409, "conflict");

        for (processing_id, user_id) in [(&own, &a), (&squatted, &b)] {
            let id = processing_id.json["processing_id"].as_str().unwrap();
            let event = env
                .wait_for_event(id, "processed", Duration::from_secs(30))
                .await;
            assert_eq!(event["user_id"], user_id.as_str());
        }
        let recorded = count(
            env,
            "SELECT count(*) FROM conversation_events WHERE conversation_id = $1",
            mine["conversation_id"].as_str().unwrap(),
        )
        .await;
        assert_eq!(
            recorded, 2,
            "the same conversation_id from two users: two events"
        );
        let status = env.status(&ta, &a).await;
        status.expect(200);
        assert_eq!(status.json["friendship_score"], 12.0);
    });
}

/// A chunked body of `total` bytes (1 MiB chunks) sent to `path` at the
/// app's address while its answer is read: the status, and how many bytes
/// had been written when the answer came (the writer stops then).
fn send_endless_body(
    base_url: &str,
    path: &str,
    headers: &str,
    total: usize,
) -> (u16, String, usize) {
    let address = base_url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n{headers}\r\n"
    );
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer_thread = {
        let (answered, written) = (answered.clone(), written.clone());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::SeqCst;
            writer.write_all(head.as_bytes()).unwrap();
            let chunk = vec![b' '; 1 << 20];
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            while written.load(SeqCst) < total && !answered.load(SeqCst) {
                if writer.write_all(&framed).is_err() {
                    return; // the server closed the connection: it read no further
                }
                written.fetch_add(chunk.len(), SeqCst);
            }
        })
    };
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    let at_answer = written.load(std::sync::atomic::Ordering::SeqCst);
    answered.store(true, std::sync::atomic::Ordering::SeqCst);
    // The rest of the answer (the error body), best effort.
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    drop(stream);
    writer_thread.join().unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    (status, text, at_answer)
}

/// The peak resident memory of this process (where the host runs), MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// Row 4: a 250 MB chunked body, unauthenticated or from a user, to routes
/// that read a body: refused (401, 413) while it arrives, after at most a
/// few MiB (what the sockets' buffers hold), never once it has all arrived;
/// a declared `Content-Length` over the limit is refused before any body.
#[test]
fn a_250_mb_chunked_body_is_refused_while_it_arrives() {
    run(async {
        let env = shared().await;
        let u = user("big");
        let bearer = format!("authorization: Bearer {}\r\n", env.token(&u, "user"));
        let admin = format!("authorization: Bearer {}\r\n", env.token("ops", "admin"));
        let before = peak_rss_mib();
        let cases = [
            ("/api/v1/conversations/end", String::new(), 401),
            ("/api/v1/conversations/end", bearer.clone(), 413),
            ("/api/v1/friendship/status", bearer.clone(), 413),
            ("/api/v1/activities/suggest", String::new(), 401),
            ("/api/v1/admin/events/redrive", admin.clone(), 413),
            ("/api/v1/agent-mappings", admin.clone(), 413),
        ];
        for (path, headers, expected) in cases {
            let base = env.base_url.clone();
            let (status, text, written) = tokio::task::spawn_blocking(move || {
                send_endless_body(&base, path, &headers, 250 << 20)
            })
            .await
            .unwrap();
            assert_eq!(status, expected, "{path}: {text}");
            assert!(
                text.contains("x-request-id") && text.contains("\"error\""),
                "{path}: the error schema: {text}"
            );
            assert!(
                written < 32 << 20,
                "{path}: answered only after {written} bytes had been written"
            );
        }
        eprintln!(
            "peak RSS of the test process: {before} MiB before, {} MiB after ({})",
            peak_rss_mib(),
            if server().is_real_spin() {
                "the app runs in spin up"
            } else {
                "the host runs here"
            }
        );
        // A declared length over the limit: refused before any body is sent.
        let address = env
            .base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            write!(
                stream,
                "POST /api/v1/conversations/end HTTP/1.1\r\nHost: {address}\r\n{bearer}\
                 content-type: application/json\r\ncontent-length: 262144000\r\n\r\n"
            )
            .unwrap();
            let mut answer = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                answer.extend_from_slice(&buffer[..n]);
            }
            String::from_utf8_lossy(&answer).into_owned()
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    });
}

/// Row 5: in one `MULTI`, an entry whose field name looks like an entry id,
/// then a valid event. Each is read under its own id: the first rejected
/// (under its real id), the second recorded at once and scored; no
/// rejection names the fake id.
#[test]
fn hostile_stream_entries_are_each_rejected_under_their_own_id_and_the_valid_event_is_scored() {
    run(async {
        let env = shared().await;
        let u = user("stream-hostile");
        let body = conversation(&u, 10, 0, "happy", 0, json!([]));
        let marker = user("marker");
        let mut conn = redis(env).await;
        let (fake_id, real_id): (String, String) = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("123-456")
            .arg(&marker)
            .cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("event")
            .arg(body.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        // More hostile shapes: ids, numbers, empty and binary names and values.
        let mut hostile_ids = vec![fake_id.clone()];
        let hostile: [(&[u8], &[u8]); 5] = [
            (b"0-0", marker.as_bytes()),
            (b"5", marker.as_bytes()),
            (b"", marker.as_bytes()),
            (b"\xff\x00event", marker.as_bytes()),
            (marker.as_bytes(), b"1-1"),
        ];
        for (name, value) in hostile {
            let id: String = redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg(name)
                .arg(value)
                .query_async(&mut conn)
                .await
                .unwrap();
            hostile_ids.push(id);
        }
        let _: i64 = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(r#"{"kind":"tick"}"#)
            .query_async(&mut conn)
            .await
            .unwrap();
        // Recorded on this wake-up (or the ticker's next), not after
        // `stream_claim_idle_ms` (30 s) as when it was taken for a rejection.
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let processed = count(
                env,
                "SELECT count(*) FROM conversation_events WHERE user_id = $1 AND status = 'processed'",
                &u,
            )
            .await;
            if processed == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the valid entry {real_id} was not scored at once"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rejected: Vec<(Option<String>, String)> = sqlx::query_as(
            "SELECT stream_entry_id, reason FROM rejected_messages
             WHERE source = 'stream' AND payload_head LIKE '%' || $1 || '%' ORDER BY stream_entry_id",
        )
        .bind(&marker)
        .fetch_all(&env.db)
        .await
        .unwrap();
        let mut ids: Vec<String> = rejected.iter().filter_map(|(id, _)| id.clone()).collect();
        ids.sort();
        hostile_ids.sort();
        assert_eq!(
            ids, hostile_ids,
            "each malformed entry rejected under its own id: {rejected:?}"
        );
        let fake = count(
            env,
            "SELECT count(*) FROM rejected_messages WHERE stream_entry_id = $1",
            "123-456",
        )
        .await;
        assert_eq!(fake, 0, "no record names the fake id");
        let status = env.status(&env.token(&u, "user"), &u).await;
        status.expect(200);
        assert_eq!(status.json["friendship_score"], 15.0);
    });
}

/// Row 6: a 40 MB message on the channel overflows the subscribers' output
/// buffers (Redis' default `client-output-buffer-limit pubsub 32mb 8mb 60`)
/// and Redis drops every scorer's subscription. The scorers are subscribed
/// again within seconds, and nothing recorded is lost: events posted before,
/// during and after, and an entry on the stream, are all scored.
#[test]
fn an_oversize_channel_message_drops_the_scorers_who_come_back_within_seconds_losing_nothing() {
    run(async {
        let env = isolated().await;
        let mut conn = redis(&env).await;
        let listeners = |conn: &mut redis::aio::MultiplexedConnection| {
            let mut conn = conn.clone();
            async move {
                let (_, n): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(CHANNEL)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                n
            }
        };
        let wait_listeners = |conn: redis::aio::MultiplexedConnection, within: Duration| async move {
            let deadline = Instant::now() + within;
            let mut conn = conn;
            loop {
                if listeners(&mut conn).await >= 2 {
                    return Instant::now();
                }
                assert!(
                    Instant::now() < deadline,
                    "the scorers did not subscribe again"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        wait_listeners(conn.clone(), Duration::from_secs(60)).await;
        let u = user("oversize");
        let t = env.token(&u, "user");
        let mut expected = 0.0;
        for turns in [2, 4] {
            env.end_conversation(&t, &conversation(&u, turns, 0, "neutral", 0, json!([])))
                .await
                .expect(202);
            expected += f64::from(turns) * 0.5;
        }
        // The subscribers' connections, by client id.
        let subscribers = |conn: &mut redis::aio::MultiplexedConnection| {
            let mut conn = conn.clone();
            async move {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                list.lines()
                    .filter_map(|l| {
                        l.split(' ')
                            .find_map(|f| f.strip_prefix("id="))
                            .map(str::to_owned)
                    })
                    .collect::<Vec<String>>()
            }
        };
        let dropped = subscribers(&mut conn).await;
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        let oversize = vec![b'x'; 40 << 20];
        let dropped_at = Instant::now();
        let heard: i64 = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(oversize)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(heard, 2, "both scorers were subscribed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while subscribers(&mut conn)
            .await
            .iter()
            .any(|id| dropped.contains(id))
        {
            assert!(
                Instant::now() < deadline,
                "Redis did not drop the two subscribers"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Recorded while the subscriptions are down: posts and a stream entry.
        for turns in [6, 8] {
            env.end_conversation(&t, &conversation(&u, turns, 0, "neutral", 0, json!([])))
                .await
                .expect(202);
            expected += f64::from(turns) * 0.5;
        }
        let streamed = conversation(&u, 10, 0, "neutral", 0, json!([]));
        let _: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("event")
            .arg(streamed.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        expected += 5.0;
        let back = wait_listeners(conn.clone(), Duration::from_secs(20)).await;
        eprintln!(
            "subscribed again {:.1} s after the oversize message",
            back.duration_since(dropped_at).as_secs_f64()
        );
        env.end_conversation(&t, &conversation(&u, 12, 0, "neutral", 0, json!([])))
            .await
            .expect(202);
        expected += 6.0;
        env.wait_until_settled(&u, Duration::from_secs(60)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let processed = count(
                &env,
                "SELECT count(*) FROM conversation_events WHERE user_id = $1 AND status = 'processed'",
                &u,
            )
            .await;
            if processed == 6 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{processed} of 6 events processed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = env.status(&t, &u).await;
        status.expect(200);
        assert_eq!(status.json["friendship_score"], expected);
        env.shutdown().await;
    });
}

/// Row 7: two `Authorization` headers, in either order, are a 401 in the
/// error schema (a proxy reading the first and the app the last must never
/// disagree); two `Content-Type` headers are a 400 naming `content-type`.
#[test]
fn two_authorization_headers_are_refused_in_both_orders_and_two_content_types_too() {
    run(async {
        let env = shared().await;
        let u = user("two-auth");
        let (as_user, as_admin) = (
            format!("Bearer {}", env.token(&u, "user")),
            format!("Bearer {}", env.token("ops", "admin")),
        );
        for order in [[&as_user, &as_admin], [&as_admin, &as_user]] {
            for (method, path) in [
                ("GET", "/api/v1/admin/events"),
                ("GET", "/api/v1/agent-mappings"),
                ("GET", "/metrics"),
            ] {
                let resp = env
                    .raw(
                        method,
                        path,
                        &[
                            ("authorization", order[0].clone()),
                            ("authorization", order[1].clone()),
                        ],
                        Vec::new(),
                    )
                    .await;
                resp.expect_error(401, "unauthorized");
                assert!(
                    resp.json["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("authorization must be sent once"),
                    "{}",
                    resp.text
                );
            }
        }
        let body = json!({"user_id": u}).to_string().into_bytes();
        let resp = env
            .raw(
                "POST",
                "/api/v1/friendship/status",
                &[
                    ("authorization", as_user.clone()),
                    ("content-type", "text/plain".into()),
                    ("content-type", "application/json".into()),
                ],
                body,
            )
            .await;
        resp.expect_error(400, "validation_error");
        assert_eq!(resp.json["details"]["field"], "content-type");
        assert!(resp.json["message"]
            .as_str()
            .unwrap()
            .starts_with("content-type"));
    });
}

/// Row 8: a token living longer than `max_token_lifetime_seconds` (1 day by
/// default) is refused; a token missing a claim is told which; a map key's
/// message starts with its field path.
#[test]
fn tokens_are_bounded_in_lifetime_and_name_a_missing_claim_and_messages_start_with_their_field() {
    run(async {
        let env = shared().await;
        let forever = token("ops", "admin", SECRET, 400 * 86_400);
        let resp = env
            .call("GET", "/api/v1/admin/events", Some(&forever), None)
            .await;
        resp.expect_error(401, "unauthorized");
        assert!(
            resp.text.contains("max_token_lifetime_seconds"),
            "{}",
            resp.text
        );
        let day = token("ops", "admin", SECRET, 86_000);
        env.call("GET", "/api/v1/admin/events", Some(&day), None)
            .await
            .expect(200);

        let exp = chrono::Utc::now().timestamp() + 600;
        for (claims, missing) in [
            (json!({"role": "admin", "exp": exp}), "sub"),
            (json!({"sub": "ops", "exp": exp}), "role"),
            (json!({"sub": "ops", "role": "admin"}), "exp"),
        ] {
            let t = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap();
            let resp = env
                .call("GET", "/api/v1/admin/events", Some(&t), None)
                .await;
            resp.expect_error(401, "unauthorized");
            assert_eq!(
                resp.json["message"],
                format!("the token lacks the required claim {missing}")
            );
        }

        let service = env.token("svc", "service");
        for (update, field) in [
            (
                json!({"   ": {"score_change": 1, "turns_increment": 1, "last_date": "2026-11-22T10:00:00Z"}}),
                None,
            ),
            (
                json!({"music": {"score_change": "x", "turns_increment": 1, "last_date": "2026-11-22T10:00:00Z"}}),
                Some("topic_metrics_update.music"),
            ),
        ] {
            let body = json!({"user_id": user("key"), "friendship_score_change": 1,
                              "topic_metrics_update": update});
            let resp = env.update(&service, &body).await;
            resp.expect_error(400, "validation_error");
            let reported = resp.json["details"]["field"].as_str().unwrap().to_owned();
            if let Some(field) = field {
                assert!(reported.starts_with(field), "{}", resp.text);
            }
            assert!(
                resp.json["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&reported),
                "the message starts with {reported}: {}",
                resp.text
            );
        }
    });
}

/// Row 8: while `metrics_token` is empty `/metrics` is a 404 for every
/// method (a 405 would tell the route exists).
#[test]
fn without_a_metrics_token_metrics_is_not_found_for_every_method() {
    run(async {
        let env = isolated_after(
            std::collections::HashMap::from([("metrics_token".to_owned(), String::new())]),
            |_| async {},
        )
        .await;
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let resp = env.raw(method, "/metrics", &[], Vec::new()).await;
            resp.expect_error(404, "not_found");
            assert_eq!(resp.json["message"], "no route for /metrics", "{method}");
        }
        env.shutdown().await;
    });
}

/// Row 8: a malformed or missing `Host` on a routed path never reaches a
/// component: Spin (3.6.3 and 4.0.2) fails the request before routing it to
/// one and closes the connection without an answer, and the host does the
/// same (it once answered an empty 500). An unrouted path is still Spin's
/// own 404.
#[test]
fn a_malformed_host_reaches_no_component_and_gets_no_answer() {
    run(async {
        let env = shared().await;
        let address = env
            .base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let answers = tokio::task::spawn_blocking(move || {
            let mut answers = Vec::new();
            for host in [
                Some("a b"),
                Some("exa[mple"),
                Some(":::"),
                Some("x/y"),
                None,
            ] {
                let mut stream = TcpStream::connect(&address).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let host_line = host.map_or(String::new(), |h| format!("Host: {h}\r\n"));
                write!(
                    stream,
                    "GET /health/live HTTP/1.1\r\n{host_line}Connection: close\r\n\r\n"
                )
                .unwrap();
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                answers.push((host, answer));
            }
            answers
        })
        .await
        .unwrap();
        for (host, answer) in answers {
            assert_eq!(
                answer, "",
                "Host {host:?}: no answer, the connection closed"
            );
        }
        // The same request with a valid Host is answered.
        env.call("GET", "/health/live", None, None)
            .await
            .expect(200);
    });
}
