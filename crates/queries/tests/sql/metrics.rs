//! What `GET /metrics` reads: the scorer's per-batch counts ([`metrics::COUNT_BATCH`]),
//! the users-per-level and rejected-message counts the migration's triggers keep, the
//! one-row [`metrics::SNAPSHOT`], and its plans on tables of realistic shape (no
//! sequential scan of `conversation_events` or `friendship_status`).

use std::collections::BTreeSet;

use friendship_queries::{metrics, rejected};
use serde::Deserialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::support::{
    apply, apply_change, ensure_user, new_event, read, record_failure, with_migrated_db, write,
    Change, ChangeExt,
};

/// A row of [`metrics::SNAPSHOT`], as `store::metrics` decodes it.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    events_pending: i64,
    events_failed: i64,
    oldest_pending_age_seconds: f64,
    events_processed: i64,
    scoring_attempts: i64,
    scoring_failures: i64,
    rejected_messages: i64,
    users_stranger: i64,
    users_acquaintance: i64,
    users_friend: i64,
    lag_seconds_sum: f64,
    lag_buckets: String,
    catalogue_version: i64,
}

impl Snapshot {
    /// The cumulative bucket counts, by bound.
    fn buckets(&self) -> Vec<(f64, i64)> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Bucket {
            le: f64,
            count: i64,
        }
        let buckets: Vec<Bucket> = serde_json::from_str(&self.lag_buckets).unwrap();
        buckets.into_iter().map(|b| (b.le, b.count)).collect()
    }
}

const BOUNDS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

async fn snapshot(executor: impl PgExecutor<'_>) -> Snapshot {
    read(&metrics::SNAPSHOT).one(executor).await
}

/// [`metrics::COUNT_BATCH`] bound as `store::count_batch` binds it: rows affected.
async fn count_batch(executor: impl PgExecutor<'_>, ids: &[Uuid]) -> u64 {
    write(&metrics::COUNT_BATCH)
        .bind(serde_json::to_string(ids).unwrap())
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

/// Makes an event accepted `seconds` before the transaction's `now()`, so that a
/// change applied in the same transaction has exactly that lag.
async fn accepted_ago(conn: &mut PgConnection, id: Uuid, seconds: f64) {
    sqlx::query(
        "UPDATE conversation_events SET accepted_at = now() - make_interval(secs => $2)
         WHERE processing_id = $1",
    )
    .bind(id)
    .bind(seconds)
    .execute(conn)
    .await
    .unwrap();
}

async fn record_rejected(executor: impl PgExecutor<'_>, dedupe_key: &str) -> u64 {
    write(&rejected::INSERT)
        .bind("channel")
        .bind(dedupe_key)
        .bind(None::<String>)
        .bind("not JSON")
        .bind("{oops")
        .bind(5_i32)
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

#[test]
fn an_empty_database_shows_zeros_and_the_catalogue_version() {
    with_migrated_db(|db| async move {
        let s = snapshot(&db.pool).await;
        assert_eq!(
            s,
            Snapshot {
                events_pending: 0,
                events_failed: 0,
                oldest_pending_age_seconds: 0.0,
                events_processed: 0,
                scoring_attempts: 0,
                scoring_failures: 0,
                rejected_messages: 0,
                users_stranger: 0,
                users_acquaintance: 0,
                users_friend: 0,
                lag_seconds_sum: 0.0,
                lag_buckets: s.lag_buckets.clone(),
                catalogue_version: 1,
            }
        );
        assert_eq!(s.buckets(), BOUNDS.map(|le| (le, 0)));
    });
}

#[test]
fn a_batch_adds_its_outcomes_once_and_a_rolled_back_batch_adds_nothing() {
    with_migrated_db(|db| async move {
        let processed = new_event(&db.pool, "u-plain").await;
        let scored = new_event(&db.pool, "u-climber").await;
        let retried = new_event(&db.pool, "u-plain").await;
        let dead = new_event(&db.pool, "u-plain").await;
        let waiting = new_event(&db.pool, "u-waiting").await;
        sqlx::query(
            "UPDATE conversation_events SET accepted_at = now() - interval '1 hour'
             WHERE processing_id = $1",
        )
        .bind(waiting)
        .execute(&db.pool)
        .await
        .unwrap();

        // One batch: one event processed (lag 3 s), one whose level moved (scored,
        // 0.2 s), one failed attempt to retry, one dead letter.
        let mut tx = db.pool.begin().await.unwrap();
        accepted_ago(&mut tx, processed, 3.0).await;
        accepted_ago(&mut tx, scored, 0.2).await;
        ensure_user(&mut *tx, "u-plain").await;
        ensure_user(&mut *tx, "u-climber").await;
        apply_change(
            &mut *tx,
            &Change::conversation("u-plain", processed, 10.0, 4),
        )
        .await
        .unwrap();
        apply_change(
            &mut *tx,
            &Change::conversation("u-climber", scored, 150.0, 4),
        )
        .await
        .unwrap();
        assert_eq!(
            record_failure(&mut *tx, retried, "boom", 3, 1.0).await,
            Some(("pending".into(), 1))
        );
        assert_eq!(
            record_failure(&mut *tx, dead, "boom", 1, 1.0).await,
            Some(("failed".into(), 1))
        );
        assert_eq!(
            count_batch(&mut *tx, &[processed, scored, retried, dead]).await,
            1
        );
        tx.commit().await.unwrap();

        let s = snapshot(&db.pool).await;
        assert_eq!(
            (
                s.events_pending,
                s.events_failed,
                s.events_processed,
                s.scoring_attempts,
                s.scoring_failures
            ),
            // pending: the retried, the waiting, and the scored one (until finished).
            (3, 1, 2, 4, 2)
        );
        assert!(
            (s.lag_seconds_sum - 3.2).abs() < 1e-9,
            "{}",
            s.lag_seconds_sum
        );
        let expected: Vec<(f64, i64)> = BOUNDS
            .iter()
            .map(|&le| (le, i64::from(le >= 0.2) + i64::from(le >= 3.0)))
            .collect();
        assert_eq!(s.buckets(), expected);
        assert!(
            (3600.0..3660.0).contains(&s.oldest_pending_age_seconds),
            "{}",
            s.oldest_pending_age_seconds
        );
        assert_eq!(
            (s.users_stranger, s.users_acquaintance, s.users_friend),
            (1, 1, 0)
        );

        // A batch rolled back (an outage) counts nothing.
        let mut tx = db.pool.begin().await.unwrap();
        ensure_user(&mut *tx, "u-waiting").await;
        apply_change(
            &mut *tx,
            &Change::conversation("u-waiting", waiting, 600.0, 1),
        )
        .await
        .unwrap();
        assert_eq!(count_batch(&mut *tx, &[waiting]).await, 1);
        tx.rollback().await.unwrap();
        // (The oldest pending event has aged meanwhile.)
        let after = snapshot(&db.pool).await;
        assert_eq!(
            Snapshot {
                oldest_pending_age_seconds: s.oldest_pending_age_seconds,
                ..after
            },
            s
        );
    });
}

#[test]
fn users_per_level_follow_every_write_of_a_user_row_at_commit() {
    with_migrated_db(|db| async move {
        let levels = |s: Snapshot| (s.users_stranger, s.users_acquaintance, s.users_friend);
        // Created and moved twice in one transaction; a savepoint's move rolled back.
        let mut tx = db.pool.begin().await.unwrap();
        ensure_user(&mut *tx, "u-fast").await;
        ensure_user(&mut *tx, "u-slow").await;
        apply(&mut *tx, &Change::service("u-fast", 150.0)).await;
        apply(&mut *tx, &Change::service("u-fast", 400.0)).await;
        sqlx::query("SAVEPOINT s").execute(&mut *tx).await.unwrap();
        apply(&mut *tx, &Change::service("u-slow", 700.0)).await;
        sqlx::query("ROLLBACK TO SAVEPOINT s")
            .execute(&mut *tx)
            .await
            .unwrap();
        // Counted at commit only.
        let outside = snapshot(&db.pool).await;
        assert_eq!(levels(outside), (0, 0, 0));
        tx.commit().await.unwrap();
        assert_eq!(levels(snapshot(&db.pool).await), (1, 0, 1));

        // A change within a level counts nothing; a drop moves the user back.
        apply(&db.pool, &Change::service("u-fast", 1.0)).await;
        apply(&db.pool, &Change::service("u-slow", 120.0)).await;
        assert_eq!(levels(snapshot(&db.pool).await), (0, 1, 1));
        apply(&db.pool, &Change::service("u-fast", -1000.0)).await;
        assert_eq!(levels(snapshot(&db.pool).await), (1, 1, 0));
        // A repeat of ENSURE_USERS creates nothing; a deletion removes one.
        ensure_user(&db.pool, "u-fast").await;
        sqlx::query("DELETE FROM friendship_status WHERE user_id = 'u-slow'")
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(levels(snapshot(&db.pool).await), (1, 0, 0));

        // The counts are those of the table.
        let counted: Vec<(String, i64)> = sqlx::query_as(
            "SELECT friendship_level, count(*) FROM friendship_status GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(counted, [("stranger".to_owned(), 1)]);
    });
}

#[test]
fn rejected_messages_are_counted_once_each_and_stay_counted_when_deleted() {
    with_migrated_db(|db| async move {
        assert_eq!(record_rejected(&db.pool, "k-1").await, 1);
        assert_eq!(record_rejected(&db.pool, "k-1").await, 0);
        assert_eq!(record_rejected(&db.pool, "k-2").await, 1);
        assert_eq!(snapshot(&db.pool).await.rejected_messages, 2);
        sqlx::query("DELETE FROM rejected_messages")
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(snapshot(&db.pool).await.rejected_messages, 2);
    });
}

/// `(node type, relation)` of every node of a JSON plan.
fn scans(plan: &Value, found: &mut BTreeSet<(String, String)>) {
    if let Some(node) = plan.get("Node Type").and_then(Value::as_str) {
        let relation = plan
            .get("Relation Name")
            .and_then(Value::as_str)
            .unwrap_or("");
        found.insert((node.to_owned(), relation.to_owned()));
    }
    for key in ["Plan", "Plans"] {
        match plan.get(key) {
            Some(Value::Array(plans)) => plans.iter().for_each(|p| scans(p, found)),
            Some(p) => scans(p, found),
            None => {}
        }
    }
}

/// The plan of `sql` (bound with `params` as JSON text), as text and as its scans.
async fn explain(
    conn: &mut PgConnection,
    sql: &str,
    param: Option<String>,
) -> (String, BTreeSet<(String, String)>) {
    let explain_text = format!("EXPLAIN {sql}");
    let explain_json = format!("EXPLAIN (FORMAT JSON) {sql}");
    let text: Vec<String> = match &param {
        Some(p) => sqlx::query_scalar(&explain_text).bind(p),
        None => sqlx::query_scalar(&explain_text),
    }
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let json: Value = match &param {
        Some(p) => sqlx::query_scalar(&explain_json).bind(p),
        None => sqlx::query_scalar(&explain_json),
    }
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let mut found = BTreeSet::new();
    for plan in json.as_array().unwrap() {
        scans(plan, &mut found);
    }
    (text.join("\n"), found)
}

#[test]
fn a_scrape_and_a_batch_count_scan_no_big_table() {
    with_migrated_db(|db| async move {
        // Big tables of the shape production has: almost every event processed,
        // a small backlog and a few dead letters; many users, most strangers.
        sqlx::query(
            "INSERT INTO conversation_events
                 (conversation_id, user_id, payload, status, attempts, accepted_at, processed_at)
             SELECT 'c-' || i, 'user-' || (i % 20000), '{}',
                    CASE WHEN i % 1000 = 0 THEN 'pending' WHEN i % 997 = 0 THEN 'failed'
                         ELSE 'processed' END,
                    1, now() - make_interval(secs => i), now()
             FROM generate_series(1, 100000) AS i",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO friendship_status (user_id, friendship_score)
             SELECT 'user-' || i, (i % 700)::numeric FROM generate_series(1, 20000) AS i",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::query("VACUUM ANALYZE conversation_events")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("VACUUM ANALYZE friendship_status")
            .execute(&mut *conn)
            .await
            .unwrap();

        let big = ["conversation_events", "friendship_status"];
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT processing_id FROM conversation_events WHERE status = 'pending' LIMIT 3",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        for (name, sql, param) in [
            ("metrics::SNAPSHOT", metrics::SNAPSHOT.sql, None),
            (
                "metrics::COUNT_BATCH",
                metrics::COUNT_BATCH.sql,
                Some(serde_json::to_string(&ids).unwrap()),
            ),
        ] {
            let (text, found) = explain(&mut conn, sql, param).await;
            println!("{name}:\n{text}\n");
            for (node, relation) in &found {
                assert!(
                    !(node == "Seq Scan" && big.contains(&relation.as_str())),
                    "{name} scans {relation} sequentially:\n{text}"
                );
            }
            assert!(
                found.iter().any(|(_, r)| r == "conversation_events"),
                "{name} reads conversation_events:\n{text}"
            );
        }

        // The numbers match the tables.
        let s = snapshot(&mut *conn).await;
        assert_eq!((s.events_pending, s.events_failed), (100, 100));
        let levels: (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE friendship_level = 'stranger'),
                    count(*) FILTER (WHERE friendship_level = 'acquaintance'),
                    count(*) FILTER (WHERE friendship_level = 'friend')
             FROM friendship_status",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(
            (s.users_stranger, s.users_acquaintance, s.users_friend),
            levels
        );
    });
}
