//! `GET /metrics`: what a scrape shows ([`Snapshot`]), rendered in the
//! Prometheus text exposition format 0.0.4 ([`render`]), and the check of
//! the scraper's bearer token ([`authorize_scrape`]). Pure: the numbers come
//! from `store::metrics_snapshot` and the cache counters in Redis.

use std::fmt::Write as _;

use friendship_domain::{EventStatus, Level};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The `Content-Type` of the exposition format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One cumulative bucket of the scoring-lag histogram: how many processed
/// events had a lag of at most `le` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct LagBucket {
    pub le: f64,
    pub count: i64,
}

/// The cache counters kept in Redis (`redis::counters`): estimates when
/// `cache_count_every` samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: i64,
    pub misses: i64,
}

/// Upper bounds (seconds) of the request-latency histogram
/// (`friendship_http_request_duration_seconds`); `+Inf` is implied.
pub const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests of one route, method and status class (sampled: see
/// `request_count_every`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteRequests {
    /// The route table's path template (`/api/v1/agent-mappings/:id`), or
    /// `unmatched`: never a raw path.
    pub route: String,
    pub method: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status_class: String,
    pub count: i64,
}

/// The latency histogram of one route and method.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteLatency {
    pub route: String,
    pub method: String,
    /// Requests per bucket, NOT cumulative: `buckets[i]` took more than
    /// `LATENCY_BOUNDS[i - 1]` and at most `LATENCY_BOUNDS[i]`; the last
    /// one (index `LATENCY_BOUNDS.len()`) took longer than every bound.
    pub buckets: [i64; LATENCY_BOUNDS.len() + 1],
    pub sum_seconds: f64,
}

/// The request counters kept in Redis (`redis::requests`), sorted by labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestCounts {
    pub requests: Vec<RouteRequests>,
    pub latencies: Vec<RouteLatency>,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Events not processed yet: `pending`, and `scored` (their effect
    /// committed, their user's cache not yet dropped), as clients see them.
    pub events_pending: i64,
    /// Dead letters now.
    pub events_failed: i64,
    /// Age of the oldest of [`Snapshot::events_pending`]; 0 when none.
    pub oldest_pending_age_seconds: f64,
    /// Events whose effect committed, ever.
    pub events_processed: i64,
    pub scoring_attempts: i64,
    pub scoring_failures: i64,
    pub rejected_messages: i64,
    pub users_per_level: [(Level, i64); 3],
    /// Sum of the lags of [`Snapshot::events_processed`], seconds.
    pub lag_seconds_sum: f64,
    /// Cumulative, by increasing bound; `+Inf` is implied (the count).
    pub lag_buckets: Vec<LagBucket>,
    pub catalogue_version: i64,
    /// `None` when Redis did not answer: the cache metrics are left out and
    /// `friendship_cache_stats_up` is 0.
    pub cache: Option<CacheCounts>,
    /// The request counters; `None` when Redis did not answer (left out,
    /// and `friendship_cache_stats_up` is 0: the same read).
    pub requests: Option<RequestCounts>,
}

/// Renders a snapshot in the text exposition format 0.0.4.
pub fn render(s: &Snapshot) -> String {
    let mut out = Exposition::default();
    out.family(
        "friendship_events",
        "gauge",
        "Conversation-end events by status now: pending (not yet processed; includes events \
         scored whose user's cached candidates are being dropped) and failed (dead letters).",
    );
    out.sample(
        "friendship_events",
        &[("status", EventStatus::Pending.as_str())],
        s.events_pending,
    );
    out.sample(
        "friendship_events",
        &[("status", EventStatus::Failed.as_str())],
        s.events_failed,
    );
    out.family(
        "friendship_events_processed_total",
        "counter",
        "Conversation-end events whose effect committed (each counted once).",
    );
    out.sample("friendship_events_processed_total", &[], s.events_processed);
    out.family(
        "friendship_oldest_pending_event_age_seconds",
        "gauge",
        "Age of the oldest event not yet processed; 0 when none is pending.",
    );
    out.sample(
        "friendship_oldest_pending_event_age_seconds",
        &[],
        Float(s.oldest_pending_age_seconds),
    );
    out.family(
        "friendship_scoring_lag_seconds",
        "histogram",
        "Time from an event's acceptance to the commit of its effect, retries included.",
    );
    for bucket in &s.lag_buckets {
        out.sample(
            "friendship_scoring_lag_seconds_bucket",
            &[("le", &float(bucket.le))],
            bucket.count,
        );
    }
    out.sample(
        "friendship_scoring_lag_seconds_bucket",
        &[("le", "+Inf")],
        s.events_processed,
    );
    out.sample(
        "friendship_scoring_lag_seconds_sum",
        &[],
        Float(s.lag_seconds_sum),
    );
    out.sample(
        "friendship_scoring_lag_seconds_count",
        &[],
        s.events_processed,
    );
    out.family(
        "friendship_scoring_attempts_total",
        "counter",
        "Attempts to score an event (a batch rolled back by a database outage counts none).",
    );
    out.sample("friendship_scoring_attempts_total", &[], s.scoring_attempts);
    out.family(
        "friendship_scoring_failures_total",
        "counter",
        "Scoring attempts that failed: retried later, dead-lettered, or unprocessable.",
    );
    out.sample("friendship_scoring_failures_total", &[], s.scoring_failures);
    out.family(
        "friendship_rejected_messages_total",
        "counter",
        "Redis messages (channel or stream) recorded as rejected.",
    );
    out.sample(
        "friendship_rejected_messages_total",
        &[],
        s.rejected_messages,
    );
    out.family(
        "friendship_cache_stats_up",
        "gauge",
        "1 when the cache counters could be read from Redis for this scrape, else 0.",
    );
    out.sample(
        "friendship_cache_stats_up",
        &[],
        i64::from(s.cache.is_some()),
    );
    if let Some(cache) = s.cache {
        out.family(
            "friendship_cache_hits_total",
            "counter",
            "Suggestions served from cached candidates (sampled: see cache_count_every).",
        );
        out.sample("friendship_cache_hits_total", &[], cache.hits);
        out.family(
            "friendship_cache_misses_total",
            "counter",
            "Suggestions computed from Postgres (sampled: see cache_count_every).",
        );
        out.sample("friendship_cache_misses_total", &[], cache.misses);
    }
    if let Some(requests) = &s.requests {
        render_requests(&mut out, requests);
    }
    out.family("friendship_users", "gauge", "Users by friendship level.");
    for (level, users) in s.users_per_level {
        out.sample("friendship_users", &[("level", level.as_str())], users);
    }
    out.family(
        "friendship_catalogue_version",
        "gauge",
        "Version of the agent catalogue (moves on every change).",
    );
    out.sample("friendship_catalogue_version", &[], s.catalogue_version);
    out.0
}

/// The request families: the counter per route, method and status class,
/// and the latency histogram per route and method (cumulative buckets).
fn render_requests(out: &mut Exposition, r: &RequestCounts) {
    out.family(
        "friendship_http_requests_total",
        "counter",
        "HTTP requests by route template, method and status class (sampled: see \
         request_count_every).",
    );
    for q in &r.requests {
        out.sample(
            "friendship_http_requests_total",
            &[
                ("route", &q.route),
                ("method", &q.method),
                ("status_class", &q.status_class),
            ],
            q.count,
        );
    }
    out.family(
        "friendship_http_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its answer being handed to Spin, by route template \
         and method (sampled: see request_count_every).",
    );
    for l in &r.latencies {
        let (route, method) = (l.route.as_str(), l.method.as_str());
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BOUNDS.iter().zip(l.buckets) {
            cumulative += n;
            let le = float(*bound);
            out.sample(
                "friendship_http_request_duration_seconds_bucket",
                &[("route", route), ("method", method), ("le", &le)],
                cumulative,
            );
        }
        let count = cumulative + l.buckets[LATENCY_BOUNDS.len()];
        out.sample(
            "friendship_http_request_duration_seconds_bucket",
            &[("route", route), ("method", method), ("le", "+Inf")],
            count,
        );
        out.sample(
            "friendship_http_request_duration_seconds_sum",
            &[("route", route), ("method", method)],
            Float(l.sum_seconds),
        );
        out.sample(
            "friendship_http_request_duration_seconds_count",
            &[("route", route), ("method", method)],
            count,
        );
    }
}

/// Checks a scrape's `Authorization` header against the metrics token:
/// `Bearer <token>` (or `bearer`), compared in constant time (of the
/// tokens' SHA-256 digests, so neither length nor content leaks). 401
/// otherwise.
pub fn authorize_scrape(header: Option<&str>, token: &str) -> Result<(), ApiError> {
    let sent = crate::auth::bearer_token(header)?;
    let (sent, expected) = (Sha256::digest(sent), Sha256::digest(token));
    let difference = sent
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if difference != 0 {
        return Err(ApiError::Unauthorized(
            "the metrics token is not valid".into(),
        ));
    }
    Ok(())
}

/// A sample's value: whole numbers as such, floats through [`float`].
trait Value {
    fn text(&self) -> String;
}

impl Value for i64 {
    fn text(&self) -> String {
        self.to_string()
    }
}

struct Float(f64);

impl Value for Float {
    fn text(&self) -> String {
        float(self.0)
    }
}

/// A float as the format spells it (`+Inf`, `-Inf`, `NaN`, else Rust's
/// shortest round-trip decimal).
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// The text being written.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    /// The `# HELP` and `# TYPE` lines of a metric family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(label, value)| {
                    let value = value
                        .replace('\\', r"\\")
                        .replace('"', "\\\"")
                        .replace('\n', r"\n");
                    format!("{label}=\"{value}\"")
                })
                .collect();
            let _ = write!(self.0, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.0, " {}", value.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            events_pending: 3,
            events_failed: 1,
            oldest_pending_age_seconds: 12.5,
            events_processed: 7,
            scoring_attempts: 10,
            scoring_failures: 3,
            rejected_messages: 2,
            users_per_level: [
                (Level::Stranger, 4),
                (Level::Acquaintance, 2),
                (Level::Friend, 1),
            ],
            lag_seconds_sum: 3.25,
            lag_buckets: vec![
                LagBucket { le: 0.05, count: 0 },
                LagBucket { le: 1.0, count: 5 },
                LagBucket { le: 30.0, count: 6 },
            ],
            catalogue_version: 9,
            cache: Some(CacheCounts {
                hits: 40,
                misses: 8,
            }),
            requests: None,
        }
    }

    #[test]
    fn a_snapshot_renders_every_family_with_help_type_and_exact_samples() {
        let text = render(&snapshot());
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"friendship_events{status="pending"} 3"#,
                r#"friendship_events{status="failed"} 1"#,
                "friendship_events_processed_total 7",
                "friendship_oldest_pending_event_age_seconds 12.5",
                r#"friendship_scoring_lag_seconds_bucket{le="0.05"} 0"#,
                r#"friendship_scoring_lag_seconds_bucket{le="1"} 5"#,
                r#"friendship_scoring_lag_seconds_bucket{le="30"} 6"#,
                r#"friendship_scoring_lag_seconds_bucket{le="+Inf"} 7"#,
                "friendship_scoring_lag_seconds_sum 3.25",
                "friendship_scoring_lag_seconds_count 7",
                "friendship_scoring_attempts_total 10",
                "friendship_scoring_failures_total 3",
                "friendship_rejected_messages_total 2",
                "friendship_cache_stats_up 1",
                "friendship_cache_hits_total 40",
                "friendship_cache_misses_total 8",
                r#"friendship_users{level="stranger"} 4"#,
                r#"friendship_users{level="acquaintance"} 2"#,
                r#"friendship_users{level="friend"} 1"#,
                "friendship_catalogue_version 9",
            ]
        );
        // Each family: HELP then TYPE, once, right before its samples.
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            types,
            [
                "friendship_events gauge",
                "friendship_events_processed_total counter",
                "friendship_oldest_pending_event_age_seconds gauge",
                "friendship_scoring_lag_seconds histogram",
                "friendship_scoring_attempts_total counter",
                "friendship_scoring_failures_total counter",
                "friendship_rejected_messages_total counter",
                "friendship_cache_stats_up gauge",
                "friendship_cache_hits_total counter",
                "friendship_cache_misses_total counter",
                "friendship_users gauge",
                "friendship_catalogue_version gauge",
            ]
        );
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(lines[i - 1].starts_with(&format!("# HELP {name} ")));
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn request_counters_render_as_a_counter_and_a_cumulative_histogram() {
        let mut buckets = [0; LATENCY_BOUNDS.len() + 1];
        buckets[1] = 2; // (0.005, 0.01]
        buckets[5] = 1; // (0.1, 0.25]
        buckets[LATENCY_BOUNDS.len()] = 1; // over 10 s
        let text = render(&Snapshot {
            requests: Some(RequestCounts {
                requests: vec![RouteRequests {
                    route: "/api/v1/agent-mappings/:id".into(),
                    method: "GET".into(),
                    status_class: "2xx".into(),
                    count: 4,
                }],
                latencies: vec![RouteLatency {
                    route: "/api/v1/agent-mappings/:id".into(),
                    method: "GET".into(),
                    buckets,
                    sum_seconds: 12.5,
                }],
            }),
            ..snapshot()
        });
        let r = r#"route="/api/v1/agent-mappings/:id",method="GET""#;
        let histogram: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("friendship_http_request"))
            .collect();
        assert_eq!(
            histogram,
            [
                format!(r#"friendship_http_requests_total{{{r},status_class="2xx"}} 4"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="0.005"}} 0"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="0.01"}} 2"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="0.025"}} 2"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="0.05"}} 2"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="0.1"}} 2"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="0.25"}} 3"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="0.5"}} 3"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="1"}} 3"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="2.5"}} 3"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="5"}} 3"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="10"}} 3"#),
                format!(r#"friendship_http_request_duration_seconds_bucket{{{r},le="+Inf"}} 4"#),
                format!(r#"friendship_http_request_duration_seconds_sum{{{r}}} 12.5"#),
                format!(r#"friendship_http_request_duration_seconds_count{{{r}}} 4"#),
            ]
        );
        assert!(text.contains("# TYPE friendship_http_requests_total counter\n"));
        assert!(text.contains("# TYPE friendship_http_request_duration_seconds histogram\n"));
    }

    #[test]
    fn without_redis_the_cache_families_are_left_out_and_flagged() {
        let text = render(&Snapshot {
            cache: None,
            ..snapshot()
        });
        assert!(text.contains("\nfriendship_cache_stats_up 0\n"));
        assert!(!text.contains("friendship_cache_hits_total"));
        assert!(!text.contains("friendship_cache_misses_total"));
    }

    #[test]
    fn floats_and_label_values_are_spelled_as_the_format_wants() {
        assert_eq!(
            [
                float(0.0),
                float(2.5),
                float(f64::INFINITY),
                float(f64::NAN)
            ],
            ["0", "2.5", "+Inf", "NaN"]
        );
        let mut out = Exposition::default();
        out.family("m", "gauge", "a \\ and\na newline");
        out.sample("m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(
            out.0,
            "# HELP m a \\\\ and\\na newline\n# TYPE m gauge\nm{l=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn only_the_exact_bearer_token_authorizes_a_scrape() {
        let token = "s3cret-token";
        assert!(authorize_scrape(Some("Bearer s3cret-token"), token).is_ok());
        assert!(authorize_scrape(Some("bearer s3cret-token"), token).is_ok());
        for header in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Basic s3cret-token"),
            Some("s3cret-token"),
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-token2"),
            Some("Bearer S3CRET-TOKEN"),
        ] {
            assert!(
                matches!(
                    authorize_scrape(header, token),
                    Err(ApiError::Unauthorized(_))
                ),
                "{header:?}"
            );
        }
    }
}
