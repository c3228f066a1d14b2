//! What `GET /metrics` reads from Postgres, and the scorer's per-batch counts.

use friendship_queries::metrics;
use serde::Deserialize;
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::db::{Db, DbError};
use crate::metrics::{LagBucket, Snapshot};

/// Adds a scorer batch's outcomes to the counters, inside the batch's
/// transaction, once every claimed event is marked (see
/// [`metrics::COUNT_BATCH`]). `claimed` holds every event the batch claimed.
pub fn count_batch(db: &Db, claimed: &[Uuid]) -> Result<(), DbError> {
    if claimed.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(claimed)
        .map_err(|e| DbError::decoding(format!("serialising processing ids: {e}")))?;
    db.write(&metrics::COUNT_BATCH, &[P::Str(ids)])?;
    Ok(())
}

/// Everything a scrape shows from Postgres, in one round trip.
pub fn metrics_snapshot(db: &Db) -> Result<Snapshot, DbError> {
    #[derive(Deserialize)]
    struct Row {
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
        /// JSON text: `[{"le": …, "count": …}, …]`.
        lag_buckets: String,
        catalogue_version: i64,
    }
    let row: Row = db.read_single(&metrics::SNAPSHOT, &[])?;
    let lag_buckets: Vec<LagBucket> = serde_json::from_str(&row.lag_buckets)
        .map_err(|e| DbError::decoding(format!("lag buckets do not decode: {e}")))?;
    Ok(Snapshot {
        events_pending: row.events_pending,
        events_failed: row.events_failed,
        oldest_pending_age_seconds: row.oldest_pending_age_seconds,
        events_processed: row.events_processed,
        scoring_attempts: row.scoring_attempts,
        scoring_failures: row.scoring_failures,
        rejected_messages: row.rejected_messages,
        users_per_level: [
            (friendship_domain::Level::Stranger, row.users_stranger),
            (
                friendship_domain::Level::Acquaintance,
                row.users_acquaintance,
            ),
            (friendship_domain::Level::Friend, row.users_friend),
        ],
        lag_seconds_sum: row.lag_seconds_sum,
        lag_buckets,
        catalogue_version: row.catalogue_version,
        cache: None,
        requests: None,
    })
}
