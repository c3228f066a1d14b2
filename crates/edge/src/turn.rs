//! The scorers' turn: one wake-up at a time, across every scorer, does the
//! Postgres work of a wake-up, and the others only knock.
//!
//! Every running scorer hears every channel message, and Spin handles a
//! scorer's messages one at a time, so a wake-up per message per scorer
//! that each paid for the whole wake (the doorbell mark, the stream, the
//! claim, a transaction) bounded the channel at about 100 events/s under the
//! real Spin. Now a wake-up first knocks, in one Redis round trip
//! ([`KNOCK_SCRIPT`]):
//!
//! - A channel event is handed to the events stream (`XADD <stream> *
//!   channel <payload>`), once across scorers: the first scorer to knock
//!   with a payload sets `<channel>:seen:<sha256>` for [`SEEN_MS`] and adds
//!   the entry; the others find the key. The stream keeps it until a turn
//!   records it in Postgres with the stream's other entries, a batch at a
//!   time ([`crate::inbound`]).
//! - A message every scorer hears that names what it is about (an event, a
//!   doorbell of a recorded event) is knocked for once: a scorer that hears
//!   it after another (the seen key is there) has nothing to add and
//!   returns. A tick, whose bytes repeat, is knocked for by every scorer.
//! - The wake-up takes the turn (`<channel>:turn`, a random token, for
//!   [`TURN_MS`], renewed by its holder between batches), or, finding it
//!   taken, marks it knocked (`<channel>:turn:knocked`) and returns: no
//!   Postgres connection at all (but for a message to reject, which its
//!   first hearer records).
//! - The holder ends its turn with [`Turn::end`], which answers whether a
//!   knock came meanwhile; if one did, it takes the turn again and works
//!   again. The knock and the end are atomic scripts, so a knock either
//!   finds the turn held (and the holder sees it) or free (and takes it):
//!   no work is left waiting for a message that already came.
//!
//! The turn is an economy, not a guarantee: claims stay `FOR UPDATE SKIP
//! LOCKED` and every record idempotent, so two wake-ups working at once (a
//! lapsed turn, a scorer whose Redis failed and that worked without one)
//! cost time, never correctness. A holder killed mid-turn holds up the
//! others for at most [`TURN_MS`].

use sha2::{Digest, Sha256};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// How long a turn stands without renewal: the longest a killed holder
/// keeps the other scorers waiting.
pub const TURN_MS: i64 = 10_000;
/// How long a handed-over channel message is remembered, so that the other
/// scorers, hearing it too, do not add it again. A scorer that hears it
/// later than this adds it a second time, which records nothing twice (the
/// insert is idempotent).
pub const SEEN_MS: i64 = 30_000;

/// `KEYS`: the turn, its knocked mark, the seen key (the turn again for a
/// message not deduplicated), the events stream. `ARGV`: a token, the
/// turn's lifetime (ms), the seen key's lifetime (ms), `any`, `once` or
/// `hand`, and for `hand` the payload. `once` and `hand` go on only for the
/// first scorer to hear the message (`hand` also adds it to the stream).
/// Answers `[turn taken: 0|1, first to hear it: 0|1]`.
pub const KNOCK_SCRIPT: &str = r#"
if ARGV[4] ~= 'any' then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then
    return {0, 0}
  end
  if ARGV[4] == 'hand' then
    redis.call('XADD', KEYS[4], '*', 'channel', ARGV[5])
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, 1}
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return {0, 1}
"#;

/// `KEYS`: the turn, its knocked mark. `ARGV`: the holder's token, the
/// turn's lifetime (ms), then `renew`, `end` or `release`. `renew` answers 1
/// while the token still holds the turn; `end` releases it (when the token
/// still holds it) and answers 1 when a knock came since the last `end`;
/// `release` only releases it, leaving a knock for the next holder.
pub const TURN_SCRIPT: &str = r#"
local mine = redis.call('GET', KEYS[1]) == ARGV[1]
if ARGV[3] == 'renew' then
  if mine then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
  return 0
end
if mine then redis.call('DEL', KEYS[1]) end
if ARGV[3] == 'release' then return 0 end
return redis.call('DEL', KEYS[2])
"#;

/// The Redis keys of the turn, derived from the events channel.
pub struct Keys {
    turn: String,
    knocked: String,
    channel: String,
    stream: String,
}

impl Keys {
    pub fn new(events_channel: &str, events_stream: &str) -> Self {
        Self {
            turn: format!("{events_channel}:turn"),
            knocked: format!("{events_channel}:turn:knocked"),
            channel: events_channel.to_string(),
            stream: events_stream.to_string(),
        }
    }

    /// The key that marks a channel payload as handed over.
    fn seen(&self, payload: &[u8]) -> String {
        format!("{}:seen:{:x}", self.channel, Sha256::digest(payload))
    }
}

/// The message a wake-up knocks with.
pub enum Heard<'p> {
    /// Heard by every scorer, and each must knock: a tick (its bytes repeat).
    Any,
    /// A doorbell that names what it rings for, or a message to reject:
    /// only the first scorer to hear it knocks, and records the rejection
    /// (the others have nothing to add).
    Once(&'p [u8]),
    /// A channel event: the first scorer to hear it hands it to the events
    /// stream and knocks.
    Event(&'p [u8]),
}

/// What a knock found.
pub struct Knocked<'c> {
    /// The turn, when this wake-up took it; `None` when another holds it
    /// (this knock is marked for the holder) or when another scorer heard
    /// the message first.
    pub turn: Option<Turn<'c>>,
    /// False when another scorer heard the message first (and knocked for
    /// it): nothing is left for this wake-up to do.
    pub first: bool,
}

/// A held turn. Dropped without [`Turn::end`] (an error cut the wake-up
/// short), it is released all the same, so the others need not wait for
/// it to lapse, and a knock it did not see stays for the next holder.
pub struct Turn<'c> {
    redis: &'c Connection,
    keys: &'c Keys,
    token: String,
    ended: bool,
}

fn arg(text: &str) -> RedisParameter {
    RedisParameter::Binary(text.as_bytes().to_vec())
}

fn flat_ints(answer: &[RedisResult]) -> Vec<i64> {
    answer
        .iter()
        .filter_map(|value| match value {
            RedisResult::Int64(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// Knocks: hands a channel event to the events stream, once across
/// scorers, and takes the turn or marks it knocked, in one round trip. An
/// error leaves the caller to work without a turn (and to record the event
/// itself).
pub fn knock<'c>(
    redis: &'c Connection,
    keys: &'c Keys,
    heard: Heard<'_>,
) -> Result<Knocked<'c>, String> {
    let token = uuid::Uuid::new_v4().to_string();
    let (mode, payload) = match &heard {
        Heard::Any => ("any", None),
        Heard::Once(payload) => ("once", Some(*payload)),
        Heard::Event(payload) => ("hand", Some(*payload)),
    };
    let seen = payload.map(|payload| keys.seen(payload));
    let mut args = vec![
        arg(KNOCK_SCRIPT),
        RedisParameter::Int64(4),
        arg(&keys.turn),
        arg(&keys.knocked),
        arg(seen.as_deref().unwrap_or(&keys.turn)),
        arg(&keys.stream),
        arg(&token),
        RedisParameter::Int64(TURN_MS),
        RedisParameter::Int64(SEEN_MS),
        arg(mode),
    ];
    if let Heard::Event(payload) = heard {
        args.push(RedisParameter::Binary(payload.to_vec()));
    }
    let answer = redis.execute("EVAL", &args).map_err(|e| format!("{e:?}"))?;
    match flat_ints(&answer)[..] {
        [taken, first] => Ok(Knocked {
            turn: (taken == 1).then(|| Turn {
                redis,
                keys,
                token,
                ended: false,
            }),
            first: first == 1,
        }),
        _ => Err(format!("knock answer of another shape: {answer:?}")),
    }
}

impl<'c> Turn<'c> {
    fn run(&self, mode: &str) -> Result<i64, String> {
        let answer = self
            .redis
            .execute(
                "EVAL",
                &[
                    arg(TURN_SCRIPT),
                    RedisParameter::Int64(2),
                    arg(&self.keys.turn),
                    arg(&self.keys.knocked),
                    arg(&self.token),
                    RedisParameter::Int64(TURN_MS),
                    arg(mode),
                ],
            )
            .map_err(|e| format!("{e:?}"))?;
        match flat_ints(&answer)[..] {
            [n] => Ok(n),
            _ => Err(format!("turn answer of another shape: {answer:?}")),
        }
    }

    /// Renews the turn for another [`TURN_MS`]; called between batches. A
    /// failure or a lapsed turn changes nothing for this wake-up (the turn
    /// is an economy).
    pub fn renew(&self) {
        let _ = self.run("renew");
    }

    /// Ends the turn: true when another wake-up knocked while it was held,
    /// so work may have come that this turn did not see. An error counts as
    /// a knock (working once more is always safe).
    pub fn end(mut self) -> bool {
        self.ended = true;
        self.run("end").map(|knocked| knocked == 1).unwrap_or(true)
    }

    /// Takes the turn again after [`Turn::end`] answered a knock: `None`
    /// when another wake-up took it meanwhile (it sees the work).
    pub fn again(redis: &'c Connection, keys: &'c Keys) -> Option<Turn<'c>> {
        knock(redis, keys, Heard::Any)
            .ok()
            .and_then(|knocked| knocked.turn)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.run("release");
        }
    }
}
