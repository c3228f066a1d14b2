//! Level changes published for other services on the Redis Stream
//! `level_changes_stream`, at least once, never lost: every level transition
//! has an outbox row written in the statement that records it
//! (`friendship::APPLY_CHANGES`), and scorer wake-ups relay them ([`relay`]).
//!
//! A relay claims up to [`MAX_RELAYED_PER_WAKE`] unpublished rows, oldest
//! first, `FOR UPDATE SKIP LOCKED` (scorers relaying at once take disjoint
//! rows), `XADD`s an entry for each ([`entry`], the one statement of the
//! message format) over the wake-up's Redis connection, and marks those
//! added published, in one transaction. A Redis failure stops the relay at
//! that row: the rows not added stay unpublished for the next wake-up. An
//! entry added whose mark then fails to commit is added again later: hence
//! at least once, and the `id` consumers deduplicate on.
//!
//! The service never trims the stream: it cannot know which consumer groups
//! read it, and a bound it chose would drop what a slow consumer has not
//! read, the loss the outbox exists to prevent. Consumers trim it (README,
//! "Level changes").

use spin_sdk::redis::{Connection, RedisParameter};

use crate::db::{Db, DbError};
use crate::store::{self, LevelChange};

/// Level changes relayed per wake-up at most: a relay is one transaction
/// holding its rows while their entries are added.
pub const MAX_RELAYED_PER_WAKE: usize = 100;

/// What one relay did.
#[derive(Debug, Default)]
pub struct Relayed {
    /// Entries added to the stream (and their rows marked published).
    pub published: usize,
    /// Unpublished rows claimed.
    pub claimed: usize,
    /// The Redis failure that stopped the relay, if one did.
    pub redis_error: Option<String>,
}

impl Relayed {
    /// True when more rows may be waiting: a full batch went out whole.
    pub fn more_left(&self) -> bool {
        self.claimed >= MAX_RELAYED_PER_WAKE && self.redis_error.is_none()
    }
}

/// The fields of a level change's stream entry, in order: `id` (the
/// transition's, what consumers deduplicate on), `user_id`, `from`, `to`
/// (levels), `score` (after the change), `cause` (`conversation`,
/// `service_update` or `decay`), `at` (when it committed, RFC 3339 UTC with
/// milliseconds), and `processing_id` when a conversation caused it.
pub fn entry(change: &LevelChange) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", change.id.to_string()),
        ("user_id", change.user_id.clone()),
        ("from", change.from_level.as_str().to_owned()),
        ("to", change.to_level.as_str().to_owned()),
        ("score", change.score.to_string()),
        ("cause", change.cause.as_str().to_owned()),
        ("at", crate::http::rfc3339(change.at)),
    ];
    if let Some(id) = change.processing_id {
        fields.push(("processing_id", id.to_string()));
    }
    fields
}

/// Relays one bounded batch of unpublished level changes to `stream` (see
/// the module docs). A database failure rolls the batch back (entries
/// already added are added again by a later relay).
pub fn relay(db: &Db, redis: &Connection, stream: &str) -> Result<Relayed, DbError> {
    db.transaction(|db| {
        let claimed = store::claim_unpublished(db, MAX_RELAYED_PER_WAKE)?;
        let mut added = Vec::with_capacity(claimed.len());
        let mut redis_error = None;
        for change in &claimed {
            let mut args = vec![
                RedisParameter::Binary(stream.as_bytes().to_vec()),
                RedisParameter::Binary(b"*".to_vec()),
            ];
            for (name, value) in entry(change) {
                args.push(RedisParameter::Binary(name.as_bytes().to_vec()));
                args.push(RedisParameter::Binary(value.into_bytes()));
            }
            match redis.execute("XADD", &args) {
                Ok(_) => added.push(change.id),
                Err(e) => {
                    redis_error = Some(match e {
                        spin_sdk::redis::Error::Other(text) => text,
                        other => format!("{other:?}"),
                    });
                    break;
                }
            }
        }
        store::mark_published(db, &added)?;
        Ok(Relayed {
            published: added.len(),
            claimed: claimed.len(),
            redis_error,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use friendship_domain::{Cause, Level};

    #[test]
    fn an_entry_names_every_documented_field_in_order() {
        let mut change = LevelChange {
            id: 42,
            user_id: "u-1".into(),
            from_level: Level::Acquaintance,
            to_level: Level::Stranger,
            score: 95.5,
            cause: Cause::Decay,
            processing_id: None,
            at: chrono::Utc.with_ymd_and_hms(2026, 12, 7, 16, 0, 0).unwrap(),
        };
        assert_eq!(
            entry(&change),
            [
                ("id", "42".to_owned()),
                ("user_id", "u-1".to_owned()),
                ("from", "acquaintance".to_owned()),
                ("to", "stranger".to_owned()),
                ("score", "95.5".to_owned()),
                ("cause", "decay".to_owned()),
                ("at", "2026-12-07T16:00:00.000Z".to_owned()),
            ]
        );
        change.cause = Cause::Conversation;
        change.processing_id = Some(uuid::Uuid::nil());
        let fields = entry(&change);
        assert_eq!(
            fields.last().unwrap(),
            &(
                "processing_id",
                "00000000-0000-0000-0000-000000000000".to_owned()
            )
        );
        assert_eq!(fields[5], ("cause", "conversation".to_owned()));
    }

    #[test]
    fn only_a_full_batch_that_went_out_whole_asks_for_more() {
        let full = Relayed {
            published: MAX_RELAYED_PER_WAKE,
            claimed: MAX_RELAYED_PER_WAKE,
            redis_error: None,
        };
        assert!(full.more_left());
        let failed = Relayed {
            redis_error: Some("refused".into()),
            ..full
        };
        assert!(!failed.more_left());
        assert!(!Relayed::default().more_left());
    }
}
