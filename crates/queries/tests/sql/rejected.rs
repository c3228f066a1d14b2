//! Redis messages the scorer could not accept: recorded once per dedupe key, counted, and
//! listed newest first.

use chrono::{NaiveDateTime, TimeDelta};
use friendship_queries::rejected;
use serde::Deserialize;
use sqlx::PgPool;

use crate::support::{db_now, read, utc, with_migrated_db, write};

/// A row of [`rejected::LIST`], as `store::RejectedMessage` decodes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rejected {
    id: i64,
    source: String,
    stream_entry_id: Option<String>,
    reason: String,
    payload_head: String,
    payload_bytes: i32,
    received_at: NaiveDateTime,
}

/// [`rejected::INSERT`], bound as `store::record_rejected` binds it: rows affected.
async fn record(
    pool: &PgPool,
    source: &str,
    dedupe_key: &str,
    stream_entry_id: Option<&str>,
    reason: &str,
    payload: &str,
) -> u64 {
    write(&rejected::INSERT)
        .bind(source)
        .bind(dedupe_key)
        .bind(stream_entry_id)
        .bind(reason)
        .bind(payload)
        .bind(i32::try_from(payload.len()).unwrap())
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

/// [`rejected::COUNT`].
async fn count(pool: &PgPool) -> i64 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Count {
        total: i64,
    }
    read(&rejected::COUNT).one::<Count>(pool).await.total
}

/// [`rejected::LIST`].
async fn list(pool: &PgPool, limit: i64, offset: i64) -> Vec<Rejected> {
    read(&rejected::LIST)
        .bind(limit)
        .bind(offset)
        .rows(pool)
        .await
}

#[test]
fn a_message_is_recorded_once_per_dedupe_key() {
    with_migrated_db(|db| async move {
        assert_eq!(count(&db.pool).await, 0);
        assert!(list(&db.pool, 10, 0).await.is_empty());
        assert_eq!(
            record(&db.pool, "stream", "1-0", Some("1-0"), "not JSON", "{oops").await,
            1
        );
        assert_eq!(
            record(
                &db.pool,
                "stream",
                "1-0",
                Some("1-0"),
                "read again",
                "{oops"
            )
            .await,
            0,
            "the same entry read again changes nothing"
        );
        assert_eq!(count(&db.pool).await, 1);
        let only = &list(&db.pool, 10, 0).await[0];
        assert_eq!(only.reason, "not JSON", "the first record stays");
    });
}

#[test]
fn the_list_shows_the_newest_first_with_utc_times_and_pages() {
    with_migrated_db(|db| async move {
        let keys = ["a", "b", "c"];
        for key in keys {
            record(&db.pool, "channel", key, None, "not a doorbell", key).await;
            // Distinct reception times, oldest first.
            sqlx::query(
                "UPDATE rejected_messages SET received_at = received_at - interval '1 minute'",
            )
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let now = db_now(&db.pool).await;
        let all = list(&db.pool, 10, 0).await;
        let order: Vec<&str> = all.iter().map(|r| r.payload_head.as_str()).collect();
        assert_eq!(order, ["c", "b", "a"], "newest first");
        let ids: Vec<i64> = all.iter().map(|r| r.id).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        let newest = &all[0];
        assert_eq!(
            (
                newest.source.as_str(),
                newest.stream_entry_id.as_deref(),
                newest.payload_bytes
            ),
            ("channel", None, 1)
        );
        let age = now - utc(newest.received_at);
        assert!(
            age >= TimeDelta::seconds(59) && age < TimeDelta::seconds(120),
            "received_at is a UTC time a minute ago: {age}"
        );
        assert_eq!(count(&db.pool).await, 3);
        let page: Vec<i64> = list(&db.pool, 2, 1).await.iter().map(|r| r.id).collect();
        assert_eq!(page, ids[1..]);
    });
}
