//! Redis messages the scorer could not accept.

use chrono::{DateTime, Utc};
use friendship_queries::rejected;
use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue as P;

use crate::db::{self, Db, DbError};
use crate::http::Page;
use crate::store::{paged, Paged};

/// Bytes of a rejected payload kept for operators.
pub const PAYLOAD_HEAD_BYTES: usize = 4 * 1024;

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Channel,
    Stream,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Channel => "channel",
            Source::Stream => "stream",
        }
    }
}

/// A message to record as rejected.
pub struct Rejection<'a> {
    pub source: Source,
    /// One record per message: see `rejected_messages.dedupe_key`.
    pub dedupe_key: String,
    pub stream_entry_id: Option<&'a str>,
    pub reason: &'a str,
    pub payload: &'a [u8],
}

/// Records a rejection once; true when this call recorded it (false when the
/// same message had been recorded already).
pub fn record_rejected(db: &Db, rejection: &Rejection<'_>) -> Result<bool, DbError> {
    let head = &rejection.payload[..rejection.payload.len().min(PAYLOAD_HEAD_BYTES)];
    // Postgres text holds neither invalid UTF-8 nor U+0000.
    let head = String::from_utf8_lossy(head).replace('\0', "\u{FFFD}");
    let inserted = db.write(
        &rejected::INSERT,
        &[
            P::Str(rejection.source.as_str().to_owned()),
            P::Str(rejection.dedupe_key.clone()),
            db::text_or_null(rejection.stream_entry_id),
            P::Str(rejection.reason.replace('\0', "\u{FFFD}")),
            P::Str(head),
            P::Int32(i32::try_from(rejection.payload.len()).unwrap_or(i32::MAX)),
        ],
    )?;
    Ok(inserted == 1)
}

/// A rejected message as the admin list shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RejectedMessage {
    pub id: i64,
    pub source: String,
    pub stream_entry_id: Option<String>,
    pub reason: String,
    pub payload_head: String,
    pub payload_bytes: i32,
    #[serde(deserialize_with = "db::utc::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub received_at: DateTime<Utc>,
}

/// A page of rejected messages, newest first.
pub fn list_rejected(db: &Db, page: Page) -> Result<Paged<RejectedMessage>, DbError> {
    paged(db, &rejected::COUNT, &rejected::LIST, Vec::new(), page)
}
