//! The Redis ways in for back-end producers: conversation-end events
//! published on the events channel (at most once, like any pub/sub) and
//! added to the events stream (kept until a scorer has recorded them).
//!
//! Every event is recorded with the idempotent insert of the HTTP path, so a
//! message heard by several scorers, read again after a crash, or also posted
//! over HTTP is recorded once. A message that cannot be accepted is recorded
//! as rejected (once per message) and never changes a score. A stream entry
//! is acknowledged (and deleted, so the stream stays bounded) only after its
//! record, event or rejection, has committed.
//!
//! Outbound Redis `execute` flattens nested replies into one list (Spin's
//! `factor-outbound-redis`), so [`parse_entries`] reads `XREADGROUP` and
//! `XAUTOCLAIM` answers from that flat form.

use friendship_domain::{ConversationEnd, Doorbell};
use serde_json::Value;
use sha2::{Digest, Sha256};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

use crate::db::{Db, DbError, DbErrorKind};
use crate::http::{decode_json, MAX_BODY_BYTES};
use crate::log;
use crate::store::{self, RecordError, Rejection, Source};

/// A message of the events channel.
#[derive(Debug)]
pub enum ChannelMessage {
    Doorbell(Doorbell),
    Event(ConversationEnd),
}

/// Decodes a channel message: a doorbell (a JSON object with `kind`) or a
/// conversation-end event (the body of `POST /api/v1/conversations/end`).
pub fn decode_channel(payload: &[u8]) -> Result<ChannelMessage, String> {
    check_size(payload)?;
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("kind").is_some() {
        return Doorbell::from_json(payload)
            .map(ChannelMessage::Doorbell)
            .map_err(|e| format!("not a doorbell: {e}"));
    }
    decode_event(payload).map(ChannelMessage::Event)
}

/// Decodes a conversation-end event with the HTTP body's rules and messages.
pub fn decode_event(payload: &[u8]) -> Result<ConversationEnd, String> {
    check_size(payload)?;
    decode_json::<ConversationEnd>(payload).map_err(|e| match e.details().get("field") {
        Some(Value::String(field)) => format!("invalid event: {field}: {e}"),
        _ => format!("invalid event: {e}"),
    })
}

fn check_size(payload: &[u8]) -> Result<(), String> {
    if payload.len() > MAX_BODY_BYTES {
        return Err(format!(
            "larger than {MAX_BODY_BYTES} bytes ({} bytes)",
            payload.len()
        ));
    }
    Ok(())
}

/// Records a channel message: an event, or its rejection. Doorbells need
/// nothing recorded; the caller scores whatever is due afterwards.
pub fn on_channel_message(db: &Db, payload: &[u8]) -> Result<(), DbError> {
    let dedupe_key = || format!("channel:{:x}", Sha256::digest(payload));
    match decode_channel(payload) {
        Ok(ChannelMessage::Doorbell(_)) => Ok(()),
        Ok(ChannelMessage::Event(event)) => match store::record_event(db, &event) {
            Ok(recorded) => {
                log_recorded(Source::Channel, None, &recorded);
                Ok(())
            }
            Err(RecordError::Conflict) => reject(
                db,
                Source::Channel,
                dedupe_key(),
                None,
                &RecordError::Conflict.to_string(),
                payload,
            ),
            Err(RecordError::Db(e)) => Err(e),
        },
        Err(reason) => reject(db, Source::Channel, dedupe_key(), None, &reason, payload),
    }
}

fn reject(
    db: &Db,
    source: Source,
    dedupe_key: String,
    stream_entry_id: Option<&str>,
    reason: &str,
    payload: &[u8],
) -> Result<(), DbError> {
    let first = store::record_rejected(
        db,
        &Rejection {
            source,
            dedupe_key,
            stream_entry_id,
            reason,
            payload,
        },
    )?;
    // Every scorer hears a channel message; only the one that recorded it logs it.
    if first {
        log::event(
            "message_rejected",
            serde_json::json!({ "source": source.as_str(), "stream_entry_id": stream_entry_id,
                                "reason": reason, "bytes": payload.len() }),
        );
    }
    Ok(())
}

fn log_recorded(source: Source, entry_id: Option<&str>, recorded: &store::Recorded) {
    if !recorded.repeat {
        log::event(
            "event_recorded",
            serde_json::json!({ "source": source.as_str(), "stream_entry_id": entry_id,
                                "processing_id": recorded.processing_id }),
        );
    }
}

/// One entry of the events stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// Field-value pairs; empty for an entry deleted while pending.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// The event JSON: the value of the entry's one field, `event`.
    fn event_payload(&self) -> Result<&[u8], String> {
        match self.fields.as_slice() {
            [(name, value)] if name == b"event" => Ok(value),
            _ => Err("a stream entry must have exactly one field, `event`".into()),
        }
    }
}

/// A stream entry id, `<ms>-<seq>`.
fn is_entry_id(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Some((ms, seq)) = text.split_once('-') else {
        return false;
    };
    !ms.is_empty()
        && !seq.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// Reads the entries out of a flattened `XREADGROUP` (one stream) or
/// `XAUTOCLAIM` answer: its first value (the stream's name, or the next
/// cursor) is skipped; then each id is followed by its field-value pairs.
/// An id where a field name is expected starts the next entry, so an entry
/// without fields (deleted while pending, or listed as deleted by
/// `XAUTOCLAIM`) has none. A field *name* shaped like an id would be read as
/// an id: producers write the one field `event`.
pub fn parse_entries(flat: &[RedisResult]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut field: Option<Vec<u8>> = None;
    for value in flat.iter().skip(1) {
        let bytes = match value {
            RedisResult::Binary(b) => b.clone(),
            RedisResult::Status(s) => s.clone().into_bytes(),
            RedisResult::Int64(n) => n.to_string().into_bytes(),
            RedisResult::Nil => continue,
        };
        match field.take() {
            Some(name) => {
                if let Some(entry) = entries.last_mut() {
                    entry.fields.push((name, bytes));
                }
            }
            None if is_entry_id(&bytes) || entries.is_empty() => entries.push(Entry {
                id: String::from_utf8_lossy(&bytes).into_owned(),
                fields: Vec::new(),
            }),
            None => field = Some(bytes),
        }
    }
    entries
}

/// The events stream and how the scorers read it.
pub struct Stream {
    pub key: String,
    pub group: String,
    /// Entries read but not acknowledged for this long are claimed again.
    pub claim_idle_ms: u64,
}

/// Entries handled per `XREADGROUP`/`XAUTOCLAIM` call.
pub const STREAM_BATCH: i64 = 100;
/// The consumer name every scorer reads under; `XAUTOCLAIM`'s idle time, not
/// ownership, decides when a crashed scorer's entries are read again.
const CONSUMER: &str = "scorer";

/// Why the stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("redis: {0}")]
    Redis(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn arg(text: &str) -> RedisParameter {
    RedisParameter::Binary(text.as_bytes().to_vec())
}

fn redis_error(e: spin_sdk::redis::Error) -> StreamError {
    StreamError::Redis(match e {
        spin_sdk::redis::Error::Other(text) => text,
        other => format!("{other:?}"),
    })
}

/// The Redis error code: the first word of an error reply (`NOGROUP …`).
fn is_no_group(error: &StreamError) -> bool {
    matches!(error, StreamError::Redis(text) if text.split([':', ' ']).next() == Some("NOGROUP"))
}

impl Stream {
    /// Records every entry a crashed scorer left unacknowledged and every
    /// new entry, up to `budget` entries; how many it handled.
    pub fn drain(&self, db: &Db, redis: &Connection, budget: usize) -> Result<usize, StreamError> {
        let mut handled = self.reclaim(db, redis, budget)?;
        while handled < budget {
            let entries = match self.read_new(redis) {
                Err(e) if is_no_group(&e) => {
                    self.create_group(redis)?;
                    self.read_new(redis)?
                }
                other => other?,
            };
            if entries.is_empty() {
                break;
            }
            handled += entries.len();
            self.record(db, redis, &entries)?;
        }
        Ok(handled)
    }

    /// Waits up to `block_ms` for new entries and records the ones that
    /// arrive (the scorer's own ticker, [`crate::scorer`]); how many it
    /// handled. Returns at once when entries are waiting.
    pub fn wait_for_new(
        &self,
        db: &Db,
        redis: &Connection,
        block_ms: u64,
    ) -> Result<usize, StreamError> {
        let entries = match self.read(redis, Some(block_ms)) {
            Err(e) if is_no_group(&e) => {
                self.create_group(redis)?;
                self.read(redis, Some(block_ms))?
            }
            other => other?,
        };
        if !entries.is_empty() {
            self.record(db, redis, &entries)?;
        }
        Ok(entries.len())
    }

    fn read_new(&self, redis: &Connection) -> Result<Vec<Entry>, StreamError> {
        self.read(redis, None)
    }

    /// `XREADGROUP` of new entries, waiting up to `block_ms` for one when
    /// given (Redis answers nil when none came).
    fn read(&self, redis: &Connection, block_ms: Option<u64>) -> Result<Vec<Entry>, StreamError> {
        let mut args = vec![
            arg("GROUP"),
            arg(&self.group),
            arg(CONSUMER),
            arg("COUNT"),
            RedisParameter::Int64(STREAM_BATCH),
        ];
        if let Some(ms) = block_ms {
            args.push(arg("BLOCK"));
            args.push(RedisParameter::Int64(i64::try_from(ms).unwrap_or(i64::MAX)));
        }
        args.extend([arg("STREAMS"), arg(&self.key), arg(">")]);
        let answer = redis.execute("XREADGROUP", &args).map_err(redis_error)?;
        Ok(parse_entries(&answer))
    }

    /// `XAUTOCLAIM` pages through the entries idle for longer than
    /// `claim_idle_ms`, from cursor `0-0` until it comes back to `0-0`.
    fn reclaim(&self, db: &Db, redis: &Connection, budget: usize) -> Result<usize, StreamError> {
        let mut cursor = "0-0".to_string();
        let mut handled = 0;
        while handled < budget {
            let answer = redis.execute(
                "XAUTOCLAIM",
                &[
                    arg(&self.key),
                    arg(&self.group),
                    arg(CONSUMER),
                    RedisParameter::Int64(i64::try_from(self.claim_idle_ms).unwrap_or(i64::MAX)),
                    arg(&cursor),
                    arg("COUNT"),
                    RedisParameter::Int64(STREAM_BATCH),
                ],
            );
            let answer = match answer.map_err(redis_error) {
                // No group yet: nothing can be pending.
                Err(e) if is_no_group(&e) => return Ok(handled),
                other => other?,
            };
            let entries = parse_entries(&answer);
            handled += entries.len();
            if !entries.is_empty() {
                self.record(db, redis, &entries)?;
            }
            cursor = match answer.first() {
                Some(RedisResult::Binary(next)) => String::from_utf8_lossy(next).into_owned(),
                _ => "0-0".into(),
            };
            if cursor == "0-0" {
                break;
            }
        }
        Ok(handled)
    }

    /// Created at the start of the stream (`0`), so entries added before any
    /// scorer ran are read too; `MKSTREAM` so a fresh Redis needs no set-up.
    fn create_group(&self, redis: &Connection) -> Result<(), StreamError> {
        match redis
            .execute(
                "XGROUP",
                &[
                    arg("CREATE"),
                    arg(&self.key),
                    arg(&self.group),
                    arg("0"),
                    arg("MKSTREAM"),
                ],
            )
            .map_err(redis_error)
        {
            // Another scorer created it first.
            Err(StreamError::Redis(text)) if text.starts_with("BUSYGROUP") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Records the entries (events or rejections), then acknowledges and
    /// deletes the ones whose record committed. The valid events are
    /// recorded in one statement; should it fail for a reason other than an
    /// outage, each is recorded on its own and one that still fails is
    /// rejected with the database's reason, so no entry can block the
    /// stream. A database outage stops at once: what was not acknowledged
    /// is claimed again later.
    fn record(&self, db: &Db, redis: &Connection, entries: &[Entry]) -> Result<(), StreamError> {
        let mut done: Vec<&str> = Vec::with_capacity(entries.len());
        let mut valid: Vec<(&Entry, &[u8], ConversationEnd)> = Vec::new();
        let mut outcome = Ok(());
        for entry in entries {
            // An entry deleted while pending has nothing left to record.
            if entry.fields.is_empty() {
                done.push(&entry.id);
                continue;
            }
            let decoded = entry
                .event_payload()
                .and_then(|payload| decode_event(payload).map(|event| (payload, event)));
            match decoded {
                Ok((payload, event)) => valid.push((entry, payload, event)),
                Err(reason) => {
                    let raw = match entry.event_payload() {
                        Ok(payload) => payload.to_vec(),
                        Err(_) => flatten_fields(&entry.fields),
                    };
                    outcome = self.reject(db, entry, &reason, &raw);
                    if outcome.is_err() {
                        break;
                    }
                    done.push(&entry.id);
                }
            }
        }
        if outcome.is_ok() && !valid.is_empty() {
            outcome = self.record_valid(db, &valid, &mut done);
        }
        if !done.is_empty() {
            let mut ack = vec![arg(&self.key), arg(&self.group)];
            ack.extend(done.iter().map(|id| arg(id)));
            redis.execute("XACK", &ack).map_err(redis_error)?;
            let mut del = vec![arg(&self.key)];
            del.extend(done.iter().map(|id| arg(id)));
            redis.execute("XDEL", &del).map_err(redis_error)?;
        }
        outcome.map_err(StreamError::from)
    }

    /// Records decoded events, adding the ids of the entries whose record
    /// (or rejection) committed to `done`.
    fn record_valid<'e>(
        &self,
        db: &Db,
        valid: &[(&'e Entry, &[u8], ConversationEnd)],
        done: &mut Vec<&'e str>,
    ) -> Result<(), DbError> {
        let events: Vec<&ConversationEnd> = valid.iter().map(|(_, _, event)| event).collect();
        let answers = match store::record_events(db, &events) {
            Ok(answers) => answers,
            Err(e) if e.kind == DbErrorKind::Unavailable => return Err(e),
            // One event the database refuses: find it by recording each alone.
            Err(_) => {
                for (entry, payload, event) in valid {
                    match store::record_event(db, event) {
                        Err(RecordError::Db(e)) if e.kind != DbErrorKind::Unavailable => {
                            self.reject(db, entry, &format!("not recorded: {e}"), payload)?
                        }
                        answer => self.answered(db, entry, payload, answer)?,
                    }
                    done.push(&entry.id);
                }
                return Ok(());
            }
        };
        for ((entry, payload, _), answer) in valid.iter().zip(answers) {
            self.answered(db, entry, payload, answer)?;
            done.push(&entry.id);
        }
        Ok(())
    }

    /// Logs a recorded entry, or rejects a conflicting one.
    fn answered(
        &self,
        db: &Db,
        entry: &Entry,
        payload: &[u8],
        answer: Result<store::Recorded, RecordError>,
    ) -> Result<(), DbError> {
        match answer {
            Ok(recorded) => {
                log_recorded(Source::Stream, Some(&entry.id), &recorded);
                Ok(())
            }
            Err(RecordError::Conflict) => {
                self.reject(db, entry, &RecordError::Conflict.to_string(), payload)
            }
            Err(RecordError::Db(e)) => Err(e),
        }
    }

    fn reject(&self, db: &Db, entry: &Entry, reason: &str, payload: &[u8]) -> Result<(), DbError> {
        reject(
            db,
            Source::Stream,
            format!("stream:{}:{}", self.key, entry.id),
            Some(&entry.id),
            reason,
            payload,
        )
    }
}

/// An entry's fields as `name=value` lines, to keep for an operator.
fn flatten_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(s: &str) -> RedisResult {
        RedisResult::Binary(s.as_bytes().to_vec())
    }

    #[test]
    fn a_flattened_xreadgroup_answer_reads_as_entries() {
        let flat = [
            bin("conversation-events:stream"),
            bin("1700000000000-0"),
            bin("event"),
            bin("{\"a\":1}"),
            bin("1700000000000-1"),
            bin("event"),
            bin("{\"b\":\"1-2\"}"),
        ];
        let entries = parse_entries(&flat);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, "1700000000000-0");
        assert_eq!(entries[0].event_payload().unwrap(), b"{\"a\":1}");
        assert_eq!(entries[1].id, "1700000000000-1");
    }

    #[test]
    fn a_value_shaped_like_an_id_stays_a_value() {
        let flat = [
            bin("s"),
            bin("1-0"),
            bin("event"),
            bin("2-0"),
            bin("3-0"),
            bin("event"),
            bin("x"),
        ];
        let entries = parse_entries(&flat);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].fields,
            vec![(b"event".to_vec(), b"2-0".to_vec())]
        );
        assert_eq!(entries[1].id, "3-0");
    }

    #[test]
    fn xautoclaim_deleted_ids_read_as_entries_without_fields() {
        // next cursor, one live entry, then the ids of entries deleted while pending
        let flat = [
            bin("0-0"),
            bin("5-0"),
            bin("event"),
            bin("{}"),
            bin("6-0"),
            bin("7-0"),
        ];
        let entries = parse_entries(&flat);
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["5-0", "6-0", "7-0"]);
        assert!(entries[1].fields.is_empty() && entries[2].fields.is_empty());
    }

    #[test]
    fn an_empty_answer_has_no_entries() {
        assert!(parse_entries(&[RedisResult::Nil]).is_empty());
        assert!(parse_entries(&[]).is_empty());
    }

    #[test]
    fn an_entry_with_other_fields_is_refused() {
        let entry = Entry {
            id: "1-0".into(),
            fields: vec![
                (b"event".to_vec(), b"{}".to_vec()),
                (b"extra".to_vec(), b"1".to_vec()),
            ],
        };
        assert!(entry.event_payload().is_err());
    }

    #[test]
    fn channel_messages_are_doorbells_or_events() {
        assert!(matches!(
            decode_channel(br#"{"kind":"tick"}"#),
            Ok(ChannelMessage::Doorbell(Doorbell::Tick))
        ));
        let event = br#"{"user_id":"u-123","conversation_id":"c-9","metadata":{"total_turns":12,"user_initiated_questions":2,"emotion":"happy"}}"#;
        assert!(matches!(
            decode_channel(event),
            Ok(ChannelMessage::Event(_))
        ));
        assert!(decode_channel(b"not json")
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(decode_channel(br#"{"kind":"gong"}"#)
            .unwrap_err()
            .starts_with("not a doorbell"));
        let unknown = br#"{"user_id":"u-123","conversation_id":"c-9","metadata":{"total_turns":1,"user_initiated_questions":0,"emotion":"happy"},"x":1}"#;
        assert!(decode_channel(unknown)
            .unwrap_err()
            .starts_with("invalid event"));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(decode_channel(&big).unwrap_err().starts_with("larger than"));
    }
}
