//! The user's own data: the score history (newest first, cursor-paged), the
//! export of everything held about one user (four lists walked one after
//! the other, a bounded page at a time), and its erasure in batches.

use chrono::{DateTime, Utc};
use friendship_domain::{Cause, Cursor, ExportCursor, ExportKey, Level, Section};
use friendship_queries::user_data;
use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::db::{self, Db, DbError};
use crate::store::{parsed, RejectedMessage};

/// One line of a user's score history, as [`user_data::HISTORY`] reads it.
#[derive(Debug, Deserialize)]
struct HistoryRow {
    id: i64,
    #[serde(deserialize_with = "db::utc::deserialize")]
    created_at: DateTime<Utc>,
    #[serde(deserialize_with = "parsed::deserialize")]
    cause: Cause,
    processing_id: Option<Uuid>,
    score_change: f64,
    score_applied: f64,
    score_before: f64,
    score_after: f64,
}

/// One line of a user's score history, as the API shows it.
#[derive(Debug, Serialize)]
pub struct HistoryLine {
    #[serde(skip)]
    pub id: i64,
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub created_at: DateTime<Utc>,
    pub cause: Cause,
    pub processing_id: Option<Uuid>,
    pub score_change: f64,
    pub score_applied: f64,
    pub score_before: f64,
    pub score_after: f64,
    pub level_before: Level,
    pub level_after: Level,
}

impl From<HistoryRow> for HistoryLine {
    /// The levels of its scores, by the domain's rule (the one the
    /// generated `friendship_level` column states).
    fn from(row: HistoryRow) -> HistoryLine {
        HistoryLine {
            id: row.id,
            created_at: row.created_at,
            cause: row.cause,
            processing_id: row.processing_id,
            score_change: row.score_change,
            score_applied: row.score_applied,
            score_before: row.score_before,
            score_after: row.score_after,
            level_before: Level::from_score(row.score_before),
            level_after: Level::from_score(row.score_after),
        }
    }
}

/// A page of a cursor-paged list: its items, and the cursor of the next
/// page (none after the last).
#[derive(Debug, Serialize)]
pub struct CursorPage<T, C> {
    pub items: Vec<T>,
    pub next_cursor: Option<C>,
}

/// The first `id` no line can reach: the first page's cursor.
const TOP: i64 = i64::MAX;

/// At most `limit` of a user's history lines before `cursor`, newest first.
pub fn history(
    db: &Db,
    user_id: &str,
    cursor: Option<Cursor>,
    limit: u16,
) -> Result<CursorPage<HistoryLine, Cursor>, DbError> {
    let mut items: Vec<HistoryRow> = db.read(
        &user_data::HISTORY,
        &[
            P::Str(user_id.to_owned()),
            P::Int64(cursor.map_or(TOP, Cursor::id)),
            // One more than asked tells whether a next page exists.
            P::Int64(i64::from(limit) + 1),
        ],
    )?;
    let more = items.len() > usize::from(limit);
    items.truncate(usize::from(limit));
    let next_cursor = more
        .then(|| items.last().map(|line| Cursor::after(line.id)))
        .flatten();
    Ok(CursorPage {
        items: items.into_iter().map(HistoryLine::from).collect(),
        next_cursor,
    })
}

/// One of a user's events, with its payload.
#[derive(Debug, Deserialize, Serialize)]
pub struct ExportedEvent {
    pub processing_id: Uuid,
    pub conversation_id: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[serde(deserialize_with = "db::utc::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub accepted_at: DateTime<Utc>,
    #[serde(deserialize_with = "db::utc::option::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339_option")]
    pub processed_at: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
    /// The stored metadata, as the JSON it is.
    #[serde(deserialize_with = "crate::store::json_text")]
    pub payload: serde_json::Value,
}

/// One of a user's level transitions.
#[derive(Debug, Deserialize, Serialize)]
pub struct ExportedTransition {
    pub id: i64,
    pub from_level: String,
    pub to_level: String,
    pub score: f64,
    pub cause: String,
    pub processing_id: Option<Uuid>,
    #[serde(deserialize_with = "db::utc::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// A page of a user's export: at most `limit` lines in all, the lists
/// walked in [`Section`] order from the cursor on.
#[derive(Debug, Default, Serialize)]
pub struct ExportPage {
    pub history: Vec<HistoryLine>,
    pub events: Vec<ExportedEvent>,
    pub level_transitions: Vec<ExportedTransition>,
    pub rejected_messages: Vec<RejectedMessage>,
    pub next_cursor: Option<ExportCursor>,
}

/// The export page that starts at `cursor`.
pub fn export(
    db: &Db,
    user_id: &str,
    cursor: ExportCursor,
    limit: u16,
) -> Result<ExportPage, DbError> {
    let mut page = ExportPage::default();
    let mut left = usize::from(limit);
    let mut position = Some(cursor);
    while let Some(at) = position {
        if left == 0 {
            page.next_cursor = Some(at);
            break;
        }
        let user = P::Str(user_id.to_owned());
        // One more than fits tells whether the list goes on.
        let ask = P::Int64(left as i64 + 1);
        let before = || {
            P::Int64(match at.after {
                Some(ExportKey::Id(cursor)) => cursor.id(),
                _ => TOP,
            })
        };
        let (read, last) = match at.section {
            Section::History => {
                let rows: Vec<HistoryRow> = db.read(&user_data::HISTORY, &[user, before(), ask])?;
                let read = rows.len();
                let taken = rows.into_iter().take(left).map(HistoryLine::from);
                page.history.extend(taken);
                (
                    read,
                    page.history
                        .last()
                        .map(|l| ExportKey::Id(Cursor::after(l.id))),
                )
            }
            Section::Events => {
                let after = match at.after {
                    Some(ExportKey::ProcessingId(id)) => id,
                    _ => Uuid::nil(),
                };
                let rows: Vec<ExportedEvent> = db.read(
                    &user_data::EXPORT_EVENTS,
                    &[user, db::uuid_param(after), ask],
                )?;
                let read = rows.len();
                page.events.extend(rows.into_iter().take(left));
                (
                    read,
                    page.events
                        .last()
                        .map(|e| ExportKey::ProcessingId(e.processing_id)),
                )
            }
            Section::LevelTransitions => {
                let rows: Vec<ExportedTransition> =
                    db.read(&user_data::EXPORT_TRANSITIONS, &[user, before(), ask])?;
                let read = rows.len();
                page.level_transitions.extend(rows.into_iter().take(left));
                let last = page.level_transitions.last();
                (read, last.map(|t| ExportKey::Id(Cursor::after(t.id))))
            }
            Section::RejectedMessages => {
                let rows: Vec<RejectedMessage> =
                    db.read(&user_data::EXPORT_REJECTED, &[user, before(), ask])?;
                let read = rows.len();
                page.rejected_messages.extend(rows.into_iter().take(left));
                let last = page.rejected_messages.last();
                (read, last.map(|r| ExportKey::Id(Cursor::after(r.id))))
            }
        };
        if read > left {
            // The list goes on past this page.
            page.next_cursor = Some(ExportCursor {
                section: at.section,
                after: last,
            });
            break;
        }
        left -= read;
        position = at.section.next().map(|section| ExportCursor {
            section,
            after: None,
        });
    }
    Ok(page)
}

/// Runs one batch of a user's erasure (at most `batch` rows, in its own
/// transaction); true when nothing of the user is left.
pub fn erase_batch(db: &Db, user_id: &str, batch: i32) -> Result<bool, DbError> {
    let done = db.write(
        &user_data::ERASE_BATCH,
        &[P::Str(user_id.to_owned()), P::Int32(batch)],
    )?;
    Ok(done == 1)
}
