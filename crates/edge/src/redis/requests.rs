//! The request counters: requests per route template, method and status
//! class, and their latency histogram, kept in one Redis hash
//! ([`KEY`]) since they were last reset; read by `GET /metrics`.
//!
//! Counted without Postgres and, like the cache counters, by sampling: one
//! request in `request_count_every` (chosen at random) adds that many
//! ([`sampled_weight`]), an unbiased estimate that spares the others any
//! Redis traffic. A sampled request costs one round trip: a single `EVAL`
//! (with `AUTH` and `SELECT` pipelined before it when `redis_url` names a
//! password or a database), sent over a plain TCP socket with timeouts
//! ([`TIMEOUT`]) — Spin's Redis interface has none, and a frozen Redis must
//! never hold a request. It runs after the answer was handed to Spin
//! (`http::handle`), and a failure is logged, never answered.
//!
//! Labels are bounded: the route is the route table's path template (or
//! `unmatched`), the method one of the standard names (or `OTHER`), the
//! status one of four classes.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

use super::unavailable;
use crate::error::ApiError;
use crate::metrics::{RequestCounts, RouteLatency, RouteRequests, LATENCY_BOUNDS};
use crate::{config, log};

/// The Redis hash of the request counters.
pub const KEY: &str = "stats:http";

/// The most a sampled request's count may take to connect, and again to
/// hear Redis's answer.
pub const TIMEOUT: Duration = Duration::from_millis(100);

/// Separates the parts of a hash field (never in a route template or a
/// method name).
const SEP: char = '\u{1f}';

/// Adds each `ARGV` pair (field, increment) to the hash `KEYS[1]`, at once.
const COUNT_SCRIPT: &str =
    "for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end return 1";

/// One served request, as the counters see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
    pub latency: Duration,
}

/// `2xx` … `5xx` (anything else: `5xx`, never a new label value).
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The histogram bucket of a latency: the first bound it does not exceed,
/// or `LATENCY_BOUNDS.len()` (above them all).
fn bucket_of(latency: Duration) -> usize {
    let seconds = latency.as_secs_f64();
    LATENCY_BOUNDS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(LATENCY_BOUNDS.len())
}

/// The hash fields a request adds to, each with its increment, `weight`
/// being how many requests this one stands for.
pub fn increments(served: &Served, weight: u32) -> Vec<(String, i64)> {
    let (route, method) = (served.route, served.method);
    let weight = i64::from(weight);
    let micros = i64::try_from(served.latency.as_micros()).unwrap_or(i64::MAX / 1024);
    vec![
        (
            format!(
                "req{SEP}{route}{SEP}{method}{SEP}{}",
                status_class(served.status)
            ),
            weight,
        ),
        (
            format!(
                "bkt{SEP}{route}{SEP}{method}{SEP}{}",
                bucket_of(served.latency)
            ),
            weight,
        ),
        (
            format!("sum{SEP}{route}{SEP}{method}"),
            micros.saturating_mul(weight),
        ),
    ]
}

/// Reads the hash back (`HGETALL`'s flat field, value list) into the
/// counters. Fields of another shape are skipped.
pub fn parse(flat: &[(String, i64)]) -> RequestCounts {
    let mut counts = RequestCounts::default();
    let latency = |counts: &mut RequestCounts, route: &str, method: &str| -> usize {
        match counts
            .latencies
            .iter()
            .position(|l| l.route == route && l.method == method)
        {
            Some(i) => i,
            None => {
                counts.latencies.push(RouteLatency {
                    route: route.into(),
                    method: method.into(),
                    buckets: [0; LATENCY_BOUNDS.len() + 1],
                    sum_seconds: 0.0,
                });
                counts.latencies.len() - 1
            }
        }
    };
    for (field, value) in flat {
        let parts: Vec<&str> = field.split(SEP).collect();
        match parts.as_slice() {
            ["req", route, method, class] => counts.requests.push(RouteRequests {
                route: (*route).into(),
                method: (*method).into(),
                status_class: (*class).into(),
                count: *value,
            }),
            ["bkt", route, method, bucket] => {
                let Ok(bucket) = bucket.parse::<usize>() else {
                    continue;
                };
                if bucket > LATENCY_BOUNDS.len() {
                    continue;
                }
                let i = latency(&mut counts, route, method);
                counts.latencies[i].buckets[bucket] += *value;
            }
            ["sum", route, method] => {
                let i = latency(&mut counts, route, method);
                counts.latencies[i].sum_seconds += *value as f64 / 1e6;
            }
            _ => {}
        }
    }
    counts.requests.sort();
    counts
        .latencies
        .sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
    counts
}

/// Reads the counters through Spin's Redis (the scrape, after its bounded
/// probe).
pub fn read(connection: &Connection) -> Result<RequestCounts, ApiError> {
    let flat = connection
        .execute(
            "HGETALL",
            &[RedisParameter::Binary(KEY.as_bytes().to_vec())],
        )
        .map_err(unavailable)?;
    let text = |value: &RedisResult| match value {
        RedisResult::Binary(b) => String::from_utf8(b.clone()).ok(),
        RedisResult::Status(s) => Some(s.clone()),
        RedisResult::Int64(n) => Some(n.to_string()),
        _ => None,
    };
    let pairs: Vec<(String, i64)> = flat
        .chunks(2)
        .filter_map(|pair| match pair {
            [field, value] => Some((text(field)?, text(value)?.parse().ok()?)),
            _ => None,
        })
        .collect();
    Ok(parse(&pairs))
}

/// How many requests this one stands for when it is counted: `None` for the
/// `every - 1` in `every` (at random) that are not.
pub fn sampled_weight(every: u32) -> Option<u32> {
    let every = every.max(1);
    if every > 1 && !rand::Rng::random_ratio(&mut rand::rng(), 1, every) {
        return None;
    }
    Some(every)
}

/// Counts a served request, when this component counts requests (it has
/// the `request_count_every` variable) and the request is sampled. Never
/// fails: a count that cannot be written is logged (`request_count_error`).
pub fn record(served: &Served) {
    let Ok(every) = config::number::<u32>("request_count_every") else {
        return;
    };
    let Some(weight) = sampled_weight(every) else {
        return;
    };
    let counted = (|| {
        let host = config::text("redis_host").map_err(|e| e.to_string())?;
        let login = login_of(&config::redis_url().map_err(|e| e.to_string())?)?;
        let (bytes, replies) = commands(&login, &increments(served, weight));
        send(&host, &bytes, replies)
    })();
    if let Err(error) = counted {
        log::event(
            "request_count_error",
            serde_json::json!({ "route": served.route, "error": error }),
        );
    }
}

/// What `redis_url` says of the connection: its password (and user), and
/// its database.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<u32>,
}

/// Reads `redis://[[user]:password@]host[:port][/db]`; `Err` for another
/// scheme (`rediss://` needs TLS, which this plain socket does not speak).
pub fn login_of(url: &str) -> Result<Login, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or("redis_url is not a redis:// URL (TLS is not supported for request counting)")?;
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let mut login = Login::default();
    if let Some(at) = authority.rfind('@') {
        let userinfo = &authority[..at];
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        match userinfo.split_once(':') {
            Some((user, password)) => {
                login.user = Some(decode(user)).filter(|u| !u.is_empty());
                login.password = Some(decode(password));
            }
            None => login.password = Some(decode(userinfo)).filter(|p| !p.is_empty()),
        }
    }
    if !path.is_empty() {
        login.database = Some(
            path.parse()
                .map_err(|_| format!("redis_url names database {path:?}, not a number"))?,
        );
    }
    Ok(login)
}

/// A command in RESP.
fn resp(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The bytes of one count: `AUTH` and `SELECT` when the login needs them,
/// then the `EVAL`; and how many replies they get.
pub fn commands(login: &Login, increments: &[(String, i64)]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut replies = 0;
    if let Some(password) = &login.password {
        match &login.user {
            Some(user) => resp(
                &[b"AUTH".as_slice(), user.as_bytes(), password.as_bytes()],
                &mut out,
            ),
            None => resp(&[b"AUTH".as_slice(), password.as_bytes()], &mut out),
        }
        replies += 1;
    }
    if let Some(db) = login.database {
        resp(&[b"SELECT".as_slice(), db.to_string().as_bytes()], &mut out);
        replies += 1;
    }
    let values: Vec<String> = increments.iter().map(|(_, n)| n.to_string()).collect();
    let mut args: Vec<&[u8]> = vec![
        b"EVAL".as_slice(),
        COUNT_SCRIPT.as_bytes(),
        b"1".as_slice(),
        KEY.as_bytes(),
    ];
    for ((field, _), value) in increments.iter().zip(&values) {
        args.push(field.as_bytes());
        args.push(value.as_bytes());
    }
    resp(&args, &mut out);
    (out, replies + 1)
}

/// Sends the count and waits (within [`TIMEOUT`]) for its replies: each is
/// one line (`+OK`, `:1`); an error reply (`-…`) is the error.
pub fn send(host_port: &str, bytes: &[u8], replies: usize) -> Result<(), String> {
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port} resolves to no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("socket: {e}"))?;
    stream.write_all(bytes).map_err(|e| format!("send: {e}"))?;
    let deadline = Instant::now() + TIMEOUT;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    while answer.windows(2).filter(|w| *w == b"\r\n").count() < replies {
        if Instant::now() > deadline {
            return Err(format!("no answer within {} ms", TIMEOUT.as_millis()));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("Redis closed the connection before answering".into()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("no answer within {} ms: {e}", TIMEOUT.as_millis())),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    match answer.split("\r\n").find(|line| line.starts_with('-')) {
        Some(error) => Err(format!("Redis answered {}", &error[1..])),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(route: &'static str, status: u16, millis: u64) -> Served {
        Served {
            route,
            method: "GET",
            status,
            latency: Duration::from_millis(millis),
        }
    }

    #[test]
    fn a_request_adds_its_weight_to_its_route_class_and_bucket() {
        let fields = increments(&served("/api/v1/agent-mappings/:id", 404, 30), 16);
        let f = |s: &str| s.replace('|', "\u{1f}");
        assert_eq!(
            fields,
            [
                (f("req|/api/v1/agent-mappings/:id|GET|4xx"), 16),
                (f("bkt|/api/v1/agent-mappings/:id|GET|3"), 16),
                (f("sum|/api/v1/agent-mappings/:id|GET"), 16 * 30_000),
            ]
        );
    }

    #[test]
    fn latencies_fall_in_the_first_bound_they_do_not_exceed() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_millis(5)), 0);
        assert_eq!(bucket_of(Duration::from_micros(5_001)), 1);
        assert_eq!(bucket_of(Duration::from_millis(250)), 5);
        assert_eq!(bucket_of(Duration::from_secs(10)), 10);
        assert_eq!(bucket_of(Duration::from_secs(11)), LATENCY_BOUNDS.len());
        assert_eq!(
            [200, 204, 302, 401, 499, 500, 503, 600].map(status_class),
            ["2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "5xx"]
        );
    }

    #[test]
    fn the_hash_reads_back_into_counters() {
        let mut flat = Vec::new();
        for (s, millis) in [(200, 2), (200, 2), (500, 300)] {
            flat.extend(increments(&served("/health", s, millis), 1));
        }
        // As the hash holds them: one field each, summed.
        let mut summed: Vec<(String, i64)> = Vec::new();
        for (field, n) in flat {
            match summed.iter_mut().find(|(f, _)| *f == field) {
                Some((_, total)) => *total += n,
                None => summed.push((field, n)),
            }
        }
        summed.push(("junk".into(), 3));
        summed.push(("bkt\u{1f}/health\u{1f}GET\u{1f}99".into(), 3));
        let counts = parse(&summed);
        assert_eq!(
            counts
                .requests
                .iter()
                .map(|r| (r.route.as_str(), r.status_class.as_str(), r.count))
                .collect::<Vec<_>>(),
            [("/health", "2xx", 2), ("/health", "5xx", 1)]
        );
        assert_eq!(counts.latencies.len(), 1);
        let mut buckets = [0; LATENCY_BOUNDS.len() + 1];
        buckets[0] = 2;
        buckets[6] = 1;
        assert_eq!(counts.latencies[0].buckets, buckets);
        assert!((counts.latencies[0].sum_seconds - 0.304).abs() < 1e-9);
    }

    #[test]
    fn the_login_comes_from_redis_url() {
        assert_eq!(
            login_of("redis://127.0.0.1:6379").unwrap(),
            Login::default()
        );
        assert_eq!(
            login_of("redis://:p%40ss@redis:6379/2").unwrap(),
            Login {
                user: None,
                password: Some("p@ss".into()),
                database: Some(2)
            }
        );
        assert_eq!(
            login_of("redis://app:secret@redis/").unwrap(),
            Login {
                user: Some("app".into()),
                password: Some("secret".into()),
                database: None
            }
        );
        assert!(login_of("rediss://redis:6380").is_err());
        assert!(login_of("redis://redis/x").is_err());
    }

    #[test]
    fn one_write_carries_the_login_and_the_count() {
        let login = Login {
            user: None,
            password: Some("pw".into()),
            database: Some(3),
        };
        let (bytes, replies) = commands(&login, &[("f".into(), 2)]);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(
            "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*6\r\n$4\r\nEVAL\r\n"
        ));
        assert!(text.ends_with("$10\r\nstats:http\r\n$1\r\nf\r\n$1\r\n2\r\n"));
        assert_eq!(replies, 3);
        let (_, replies) = commands(&Login::default(), &[]);
        assert_eq!(replies, 1);
    }
}
