//! The suggest use case: candidates from the cache when a usable record is
//! there (no Postgres round trip; two key-value reads, the catalogue version
//! then the record), from Postgres otherwise; then the domain's selection
//! with the request's context and a fresh random source.

use chrono::{DateTime, Duration, Utc};
use friendship_domain::{CandidateRecord, Level, SuggestContext, Suggestion, UserId};

use crate::cache::Cache;
use crate::config;
use crate::db::Db;
use crate::error::ApiError;
use crate::log;
use crate::redis::counters;
use crate::store;

/// A suggestion and where its candidates came from.
pub struct Suggested {
    pub record: CandidateRecord,
    pub suggestion: Suggestion,
    /// The candidates came from the cache.
    pub cached: bool,
}

/// Suggests agents for a user.
pub fn suggest(
    user_id: &UserId,
    context: &SuggestContext,
    now: DateTime<Utc>,
) -> Result<Suggested, ApiError> {
    let returning_after_days: u32 = config::number("returning_after_days")?;
    let cache = Cache::open();

    // The version first: a miss then knows it without a second read, and an
    // unknown version (no record can be checked against it) skips the record.
    let version = cache.catalogue_version();
    let cached = version.and_then(|version| {
        cache
            .candidates(user_id.as_str())
            .filter(|record| record.is_usable(now, version))
    });
    let (record, hit) = match cached {
        Some(record) => (record, true),
        None => (load_candidates(&cache, version, user_id, now)?, false),
    };
    count(hit);

    let suggestion = friendship_domain::suggest(
        &record,
        context,
        now,
        returning_after_days,
        &mut rand::rng(),
    );
    Ok(Suggested {
        record,
        suggestion,
        cached: hit,
    })
}

/// The miss path: reads the user and the active agents of their level,
/// caches the record, then re-reads the level so that a level change that
/// committed meanwhile never leaves a stale record behind.
fn load_candidates(
    cache: &Cache,
    cached_version: Option<i64>,
    user_id: &UserId,
    now: DateTime<Utc>,
) -> Result<CandidateRecord, ApiError> {
    let ttl = Duration::seconds(config::number("cache_ttl_seconds")?);
    let db = Db::open()?;
    let inputs = store::suggestion_inputs(&db, user_id.as_str())?;
    let level = inputs
        .status
        .as_ref()
        .map_or(Level::Stranger, |s| s.friendship_level);
    let version = inputs.catalogue_version;
    let record = match inputs.status {
        Some(status) => CandidateRecord::build(
            user_id.as_str().to_owned(),
            level,
            version,
            inputs.agents,
            status.topic_metrics,
            status.last_interaction,
            status.last_emotion,
            now,
            ttl,
        ),
        None => CandidateRecord::build(
            user_id.as_str().to_owned(),
            level,
            version,
            inputs.agents,
            Default::default(),
            None,
            None,
            now,
            ttl,
        ),
    };

    if cache.store_candidates(&record) {
        publish_catalogue_version(cache, cached_version, &db, version)?;
        if store::level(&db, user_id.as_str())? != level {
            cache.invalidate(user_id.as_str(), "level_changed_while_caching");
        }
    }
    Ok(record)
}

/// Makes the key-value store's catalogue version (`cached`, as this request
/// read it first) the one Postgres holds, `read` a moment ago: a missing or
/// wrong version (a lost publish, a restored or shared Redis) would
/// otherwise turn every request into a miss until the next catalogue change.
/// Postgres is the truth, so the write is checked against it once more: a
/// change that committed since `read` is seen here and published, and one
/// that commits later publishes its own version after this write. Free when
/// the versions agree.
fn publish_catalogue_version(
    cache: &Cache,
    cached: Option<i64>,
    db: &Db,
    read: i64,
) -> Result<(), ApiError> {
    if cached == Some(read) {
        return Ok(());
    }
    cache.set_catalogue_version(read);
    let now = store::catalogue_version(db)?;
    if now != read {
        cache.set_catalogue_version(now);
    }
    Ok(())
}

/// Counts a hit or a miss. One request in `cache_count_every` (chosen at
/// random) writes the counter, adding that many: an unbiased estimate that
/// spares the other requests an outbound Redis connection, which Spin opens
/// afresh for every request. 1 counts every request exactly. A counter that
/// cannot be written is logged only.
fn count(hit: bool) {
    let every: u32 = config::number("cache_count_every").unwrap_or(1).max(1);
    if every > 1 && !rand::Rng::random_ratio(&mut rand::rng(), 1, every) {
        return;
    }
    let key = if hit {
        counters::HITS_KEY
    } else {
        counters::MISSES_KEY
    };
    if let Err(e) = counters::count(key, every) {
        log::event(
            "counter_error",
            serde_json::json!({ "key": key, "error": e.to_string() }),
        );
    }
}
