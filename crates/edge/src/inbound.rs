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
//! `factor-outbound-redis`): a flattened `XREADGROUP` answer of several
//! entries cannot tell an entry id from a field name or value that looks
//! like one, and a producer chooses those. So entries are read by structure,
//! never by what values look like: a small Lua script ([`READ_SCRIPT`], run
//! with `EVAL`) reads them server-side and answers each entry as its id, its
//! field count (an integer reply) and its fields ([`parse_counted`]); the
//! one blocking read (the scorer's own idle tick, where a script may not
//! block) asks for one entry, whose flat form is unambiguous
//! ([`parse_single`]). Every malformed entry is thus rejected under its own
//! id, and only ids Redis returned as entry ids are ever acknowledged; an
//! answer that does not follow the structure is an error, and nothing of it
//! is acknowledged.

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
/// `message` is `payload` as [`decode_channel`] read it.
pub fn on_channel_message(
    db: &Db,
    payload: &[u8],
    message: Result<ChannelMessage, String>,
) -> Result<(), DbError> {
    let dedupe_key = || channel_key(payload);
    match message {
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

/// The key of a channel message's rejection: the message itself, so every
/// scorer that hears it (or records its hand-over) rejects it once.
fn channel_key(payload: &[u8]) -> String {
    format!("channel:{:x}", Sha256::digest(payload))
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
    /// The event JSON: the value of the entry's one field, `event` (a
    /// producer's entry), or `channel` (a channel message a scorer handed
    /// over, [`crate::turn`]).
    fn event_payload(&self) -> Result<&[u8], String> {
        match self.fields.as_slice() {
            [(name, value)] if name == b"event" || name == CHANNEL_FIELD => Ok(value),
            _ => Err("a stream entry must have exactly one field, `event`".into()),
        }
    }

    /// Where the entry's event came from: the channel for a handed-over
    /// message, which keeps the channel's rules (its rejection is keyed by
    /// the message, as if recorded when heard), else the stream.
    fn source(&self) -> Source {
        match self.fields.as_slice() {
            [(name, _)] if name == CHANNEL_FIELD => Source::Channel,
            _ => Source::Stream,
        }
    }
}

/// The field of a channel message handed over to the events stream.
const CHANNEL_FIELD: &[u8] = b"channel";

/// Reads stream entries server-side and answers them flat, by structure:
/// first the next `XAUTOCLAIM` cursor (empty for a read), then for each
/// entry its id, its number of field-value pairs as an integer reply, and
/// the pairs; an entry deleted while pending (which `XAUTOCLAIM` lists, with
/// no fields) has 0. An error of the command is answered as it is (so
/// `NOGROUP` stays recognisable).
///
/// `KEYS[1]` the stream; `ARGV`: `read` or `claim`, the group, the
/// consumer, the count, and for `claim` the minimum idle time (ms) and the
/// cursor.
pub const READ_SCRIPT: &str = r#"
local r
if ARGV[1] == 'read' then
  r = redis.pcall('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
else
  r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6], 'COUNT', ARGV[4])
end
if type(r) == 'table' and r.err then return r end
local out = {}
local entries = {}
if ARGV[1] == 'read' then
  out[1] = ''
  if r and r[1] then entries = r[1][2] end
else
  out[1] = r[1]
  entries = r[2]
end
for _, e in ipairs(entries) do
  out[#out + 1] = e[1]
  if type(e[2]) == 'table' then
    out[#out + 1] = #e[2] / 2
    for _, v in ipairs(e[2]) do out[#out + 1] = v end
  else
    out[#out + 1] = 0
  end
end
if ARGV[1] == 'claim' and type(r[3]) == 'table' then
  for _, id in ipairs(r[3]) do
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
return out
"#;

/// Acknowledges and deletes the entries whose events are recorded (or
/// rejected), in one step: a scorer that dies between a separate `XACK` and
/// `XDEL` would leave acknowledged entries in the stream that no read or
/// claim ever returns again (found by the scale test's kill under the real
/// Spin).
///
/// `KEYS[1]` the stream; `ARGV`: the group, then the entry ids.
pub const DONE_SCRIPT: &str = r#"
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
"#;

/// A reply value as bytes, where one is expected (text or binary).
fn bytes_of(value: &RedisResult) -> Option<Vec<u8>> {
    match value {
        RedisResult::Binary(b) => Some(b.clone()),
        RedisResult::Status(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// Reads [`READ_SCRIPT`]'s answer: the cursor (empty after a read), and
/// the entries, each an id, a count and that many field-value pairs. An
/// answer of any other shape is an error: nothing of it may be trusted,
/// or acknowledged.
pub fn parse_counted(flat: &[RedisResult]) -> Result<(String, Vec<Entry>), String> {
    let mut values = flat.iter();
    let cursor = match values.next() {
        None => return Ok((String::new(), Vec::new())),
        Some(value) => bytes_of(value).ok_or("the answer's cursor is not a string")?,
    };
    let mut entries = Vec::new();
    while let Some(id) = values.next() {
        let id = bytes_of(id).ok_or("an entry id is not a string")?;
        let id = String::from_utf8(id).map_err(|_| "an entry id is not UTF-8")?;
        let count = match values.next() {
            Some(RedisResult::Int64(n)) if *n >= 0 => *n as usize,
            _ => return Err(format!("entry {id}: its field count is not an integer")),
        };
        let mut fields = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name = values.next().and_then(bytes_of);
            let value = values.next().and_then(bytes_of);
            match (name, value) {
                (Some(name), Some(value)) => fields.push((name, value)),
                _ => return Err(format!("entry {id}: fewer fields than counted")),
            }
        }
        entries.push(Entry { id, fields });
    }
    Ok((String::from_utf8_lossy(&cursor).into_owned(), entries))
}

/// Reads a flattened `XREADGROUP … COUNT 1` answer: nil when nothing came,
/// else the stream's name, the one entry's id and its field-value pairs
/// (with one entry, nothing else can follow the id).
pub fn parse_single(flat: &[RedisResult]) -> Result<Option<Entry>, String> {
    match flat {
        [] | [RedisResult::Nil] => Ok(None),
        [_stream, id, pairs @ ..] => {
            let id = bytes_of(id).ok_or("the entry id is not a string")?;
            let id = String::from_utf8(id).map_err(|_| "the entry id is not UTF-8")?;
            if pairs.len() % 2 != 0 {
                return Err(format!("entry {id}: an odd number of field values"));
            }
            let fields = pairs
                .chunks(2)
                .map(|pair| match (bytes_of(&pair[0]), bytes_of(&pair[1])) {
                    (Some(name), Some(value)) => Ok((name, value)),
                    _ => Err(format!("entry {id}: a field is not a string")),
                })
                .collect::<Result<_, _>>()?;
            Ok(Some(Entry { id, fields }))
        }
        _ => Err("an answer of one value that is not nil".into()),
    }
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

    /// Waits up to `block_ms` for a new entry and records it with the ones
    /// that wait behind it, up to a batch (the scorer's own ticker,
    /// [`crate::scorer`]); how many it handled. Returns at once when entries
    /// are waiting.
    pub fn wait_for_new(
        &self,
        db: &Db,
        redis: &Connection,
        block_ms: u64,
    ) -> Result<usize, StreamError> {
        let first = match self.wait_for_one(redis, block_ms) {
            Err(e) if is_no_group(&e) => {
                self.create_group(redis)?;
                self.wait_for_one(redis, block_ms)?
            }
            other => other?,
        };
        let Some(first) = first else {
            return Ok(0);
        };
        self.record(db, redis, std::slice::from_ref(&first))?;
        let more = self.read_new(redis)?;
        if !more.is_empty() {
            self.record(db, redis, &more)?;
        }
        Ok(1 + more.len())
    }

    /// `XREADGROUP` of one new entry, waiting up to `block_ms` for it (Redis
    /// answers nil when none came). A script cannot block, and one entry's
    /// flat answer is unambiguous ([`parse_single`]).
    fn wait_for_one(
        &self,
        redis: &Connection,
        block_ms: u64,
    ) -> Result<Option<Entry>, StreamError> {
        let args = [
            arg("GROUP"),
            arg(&self.group),
            arg(CONSUMER),
            arg("COUNT"),
            RedisParameter::Int64(1),
            arg("BLOCK"),
            RedisParameter::Int64(i64::try_from(block_ms).unwrap_or(i64::MAX)),
            arg("STREAMS"),
            arg(&self.key),
            arg(">"),
        ];
        let answer = redis.execute("XREADGROUP", &args).map_err(redis_error)?;
        parse_single(&answer).map_err(|e| StreamError::Redis(format!("XREADGROUP answer: {e}")))
    }

    /// New entries, a batch at most, read by [`READ_SCRIPT`].
    fn read_new(&self, redis: &Connection) -> Result<Vec<Entry>, StreamError> {
        Ok(self.run_script(redis, &[arg("read")])?.1)
    }

    /// Runs [`READ_SCRIPT`] with the mode and its own arguments after the
    /// group, consumer and count.
    fn run_script(
        &self,
        redis: &Connection,
        mode_and_args: &[RedisParameter],
    ) -> Result<(String, Vec<Entry>), StreamError> {
        let mut args = vec![arg(READ_SCRIPT), RedisParameter::Int64(1), arg(&self.key)];
        args.push(mode_and_args[0].clone());
        args.extend([
            arg(&self.group),
            arg(CONSUMER),
            RedisParameter::Int64(STREAM_BATCH),
        ]);
        args.extend(mode_and_args[1..].iter().cloned());
        let answer = redis.execute("EVAL", &args).map_err(redis_error)?;
        parse_counted(&answer).map_err(|e| StreamError::Redis(format!("stream read answer: {e}")))
    }

    /// `XAUTOCLAIM` (in [`READ_SCRIPT`]) pages through the entries idle for longer than
    /// `claim_idle_ms`, from cursor `0-0` until it comes back to `0-0`.
    fn reclaim(&self, db: &Db, redis: &Connection, budget: usize) -> Result<usize, StreamError> {
        let mut cursor = "0-0".to_string();
        let mut handled = 0;
        while handled < budget {
            let answer = self.run_script(
                redis,
                &[
                    arg("claim"),
                    RedisParameter::Int64(i64::try_from(self.claim_idle_ms).unwrap_or(i64::MAX)),
                    arg(&cursor),
                ],
            );
            let (next, entries) = match answer {
                // No group yet: nothing can be pending.
                Err(e) if is_no_group(&e) => return Ok(handled),
                other => other?,
            };
            handled += entries.len();
            if !entries.is_empty() {
                self.record(db, redis, &entries)?;
            }
            cursor = if next.is_empty() { "0-0".into() } else { next };
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
            let mut args = vec![
                arg(DONE_SCRIPT),
                RedisParameter::Int64(1),
                arg(&self.key),
                arg(&self.group),
            ];
            args.extend(done.iter().map(|id| arg(id)));
            redis.execute("EVAL", &args).map_err(redis_error)?;
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
                log_recorded(entry.source(), Some(&entry.id), &recorded);
                Ok(())
            }
            Err(RecordError::Conflict) => {
                self.reject(db, entry, &RecordError::Conflict.to_string(), payload)
            }
            Err(RecordError::Db(e)) => Err(e),
        }
    }

    fn reject(&self, db: &Db, entry: &Entry, reason: &str, payload: &[u8]) -> Result<(), DbError> {
        match entry.source() {
            Source::Channel => reject(
                db,
                Source::Channel,
                channel_key(payload),
                None,
                reason,
                payload,
            ),
            source => reject(
                db,
                source,
                format!("stream:{}:{}", self.key, entry.id),
                Some(&entry.id),
                reason,
                payload,
            ),
        }
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

    fn int(n: i64) -> RedisResult {
        RedisResult::Int64(n)
    }

    fn raw(b: &[u8]) -> RedisResult {
        RedisResult::Binary(b.to_vec())
    }

    #[test]
    fn a_scripted_answer_reads_as_entries_by_their_counts() {
        let flat = [
            bin(""),
            bin("1700000000000-0"),
            int(1),
            bin("event"),
            bin("{\"a\":1}"),
            bin("1700000000000-1"),
            int(1),
            bin("event"),
            bin("{\"b\":\"1-2\"}"),
        ];
        let (cursor, entries) = parse_counted(&flat).unwrap();
        assert_eq!(cursor, "");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, "1700000000000-0");
        assert_eq!(entries[0].event_payload().unwrap(), b"{\"a\":1}");
        assert_eq!(entries[1].id, "1700000000000-1");
    }

    /// The attack of issue 20: in one `MULTI`, `XADD s * 123-456 x` then
    /// `XADD s * event <valid event>`. Read by structure, the first entry is
    /// malformed under its own id and the second is the event under its own:
    /// the field name shaped like an id never becomes one.
    #[test]
    fn hostile_field_names_and_values_never_read_as_entry_ids() {
        let hostile: [&[u8]; 9] = [
            b"123-456",
            b"0-0",
            b"1700000000000-1",
            b"5",
            b"-1",
            b"",
            b"event",
            b"\xff\x00\xfe",
            b"\r\n*3\r\n$5\r\nevent",
        ];
        for name in hostile {
            for value in hostile {
                let flat = [
                    bin("0-0"),
                    bin("1-0"),
                    int(2),
                    raw(name),
                    raw(value),
                    raw(value),
                    raw(name),
                    bin("2-0"),
                    int(1),
                    bin("event"),
                    raw(value),
                    bin("3-0"),
                    int(0),
                ];
                let (cursor, entries) = parse_counted(&flat).unwrap();
                assert_eq!(cursor, "0-0");
                let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
                assert_eq!(ids, ["1-0", "2-0", "3-0"], "{name:?} {value:?}");
                assert_eq!(
                    entries[0].fields,
                    vec![
                        (name.to_vec(), value.to_vec()),
                        (value.to_vec(), name.to_vec())
                    ]
                );
                assert!(
                    entries[0].event_payload().is_err(),
                    "two fields are malformed"
                );
                assert_eq!(entries[1].event_payload().unwrap(), value);
                assert!(entries[2].fields.is_empty(), "deleted while pending");
            }
        }
    }

    #[test]
    fn a_scripted_answer_of_another_shape_is_refused_whole() {
        for flat in [
            vec![bin(""), bin("1-0"), bin("1"), bin("event"), bin("{}")],
            vec![bin(""), bin("1-0"), int(2), bin("event"), bin("{}")],
            vec![bin(""), bin("1-0"), int(-1)],
            vec![bin(""), bin("1-0")],
            vec![bin(""), int(1), int(0)],
            vec![bin(""), bin("1-0"), int(1), RedisResult::Nil, bin("x")],
            vec![int(0)],
        ] {
            assert!(parse_counted(&flat).is_err(), "{flat:?}");
        }
        assert_eq!(parse_counted(&[]).unwrap(), (String::new(), Vec::new()));
        assert_eq!(
            parse_counted(&[bin("")]).unwrap(),
            (String::new(), Vec::new())
        );
    }

    #[test]
    fn one_blocking_read_reads_one_entry_whatever_its_fields() {
        assert_eq!(parse_single(&[RedisResult::Nil]).unwrap(), None);
        assert_eq!(parse_single(&[]).unwrap(), None);
        let flat = [
            bin("s"),
            bin("9-1"),
            bin("123-456"),
            bin("x"),
            bin("event"),
            bin("2-0"),
        ];
        let entry = parse_single(&flat).unwrap().unwrap();
        assert_eq!(entry.id, "9-1");
        assert_eq!(
            entry.fields,
            vec![
                (b"123-456".to_vec(), b"x".to_vec()),
                (b"event".to_vec(), b"2-0".to_vec())
            ]
        );
        assert!(parse_single(&[bin("s"), bin("9-1"), bin("event")]).is_err());
        assert!(parse_single(&[bin("s")]).is_err());
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
