//! The scorer's work on each wake-up (any message of the events channel).
//! First a knock ([`crate::turn`]), one Redis round trip: an event the
//! message carries is handed to the events stream, and the wake-up takes
//! the scorers' turn or, finding it held, leaves a knock for its holder and
//! returns. Holding the turn, it records the new entries of the events
//! stream ([`crate::inbound`]), then claims due events from Postgres in
//! batches (not only the ones just recorded), scores each exactly once in
//! effect, retries failures with exponential backoff and full jitter, and
//! dead-letters an event after its last attempt; and works again while
//! knocks came meanwhile. So however many messages arrive, and on however
//! many scorers, Postgres sees batches, not a wake-up per message.
//!
//! Exactly once in effect: the claim (`FOR UPDATE SKIP LOCKED`), the score
//! change, the history and the event's mark commit in one transaction,
//! and the history holds at most one line per event (a unique index). A batch
//! in which an event fails is run again with a savepoint per event, so one
//! bad event rolls back only its own work; a database outage (the database
//! does not answer) rolls back the whole batch, whose events stay pending for
//! the next wake-up without using up an attempt.
//!
//! A batch costs the claim, one lock of all its users and one statement per
//! round (round `k` holds the `k`-th event of each user: usually one round
//! per batch); the scoring itself is one path ([`apply`]), which the careful
//! retry runs event by event. An event that moved its user's level commits as `scored` and turns
//! `processed` only after the user's cached candidates (of the old level)
//! are dropped, so a client that reads `processed` is never served them; a
//! wake-up that stopped in between is finished by the next one.
//!
//! A wake-up that found nothing to score (an idle tick) prunes one bounded
//! batch of rows past their retention window (`crate::store::retention`)
//! and, when it is on, applies one bounded batch of inactivity decay
//! (`store::apply_decay`: a day for each user due one, through the same
//! statement as any change). A wake-up that scored or decayed anything, or
//! found a level change waiting (`ANY_DUE`), ends by relaying a bounded
//! batch of level changes from their outbox to the level-changes stream
//! ([`crate::level_changes`]).
//!
//! All of it is wake-up work, so it needs no process of its own: the
//! ticker that picks up retries also paces retention, decay and the relay.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use friendship_domain::{plan, rounds, ConversationMetadata, Doorbell, EventStatus};

use crate::cache::{self, Cache};
use crate::config::{self, RetryPolicy};
use crate::db::{Db, DbError, DbErrorKind};
use crate::inbound;
use crate::level_changes;
use crate::log;
use crate::store::{self, Cause, Change, Changed, Claimed, Limits, Locked};
use crate::turn;
use spin_sdk::redis::{RedisParameter, RedisResult};

/// Events claimed per transaction.
pub const BATCH_SIZE: usize = 100;
/// Events scored per wake-up at most, so one wake never runs unbounded.
pub const MAX_EVENTS_PER_WAKE: usize = 5_000;
/// Time one wake-up may spend before handing over to the next doorbell.
pub const MAX_WAKE_DURATION: Duration = Duration::from_secs(20);

/// Why a wake-up ended early. Logged by Spin (the trigger drops the message);
/// every event it did not finish stays pending for the next wake-up.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// What became of one claimed event.
enum Outcome {
    /// Scored; the status after it when the level moved.
    Scored(Option<Changed>),
    Failed {
        error: String,
        attempt: u32,
        final_attempt: bool,
        retry_in: Duration,
    },
    Unprocessable {
        error: String,
    },
}

/// Entries of the events stream recorded per wake-up at most.
pub const MAX_STREAM_ENTRIES_PER_WAKE: usize = 2_000;

/// Handles one message of the events channel: the wake-up's work, then the
/// next tick, from the app's own ticker ([`self_tick`]) when `self_tick_ms`
/// turns it on, else only when work is left.
pub fn handle_message(payload: &[u8]) -> Result<(), WakeError> {
    let stream = inbound::Stream {
        key: config::text("events_stream")?,
        group: config::text("stream_group")?,
        claim_idle_ms: config::number("stream_claim_idle_ms")?,
    };
    let self_tick_ms: u64 = config::number("self_tick_ms")?;
    let keys = turn::Keys::new(&config::events_channel()?, &stream.key);
    let message = inbound::decode_channel(payload);
    let woken_by_tick = matches!(
        message,
        Ok(inbound::ChannelMessage::Doorbell(Doorbell::Tick))
    );
    // One connection for the whole wake-up: Spin opens a new one per `open`.
    let redis = crate::redis::open();
    let woken = wake(payload, message, &stream, redis.as_ref().ok(), &keys);
    let work_left = matches!(woken, Ok(Woke::Worked { left: true }));
    if matches!(woken, Ok(Woke::Knocked)) {
        // The turn's holder runs this same step after its work, so the
        // ticker goes on from there; a knock neither waits nor rings.
        return Ok(());
    }
    if self_tick_ms > 0 {
        // Also after a failed wake-up: the ticker must outlive an outage.
        self_tick(
            Duration::from_millis(self_tick_ms),
            woken_by_tick && !work_left,
            &stream,
            redis.as_ref().ok(),
        );
    } else if work_left {
        ring();
    }
    woken.map(|_| ())
}

/// What a wake-up did.
enum Woke {
    /// Found the turn held: its knock is left for the holder.
    Knocked,
    /// Worked; `left` when its budget ran out with work left.
    Worked { left: bool },
}

/// One wake-up: knocks ([`turn::knock`]: a channel event is handed to the
/// events stream, and the turn taken or marked knocked), then, holding the
/// turn, works ([`work`]) until no knock came during the last round. A
/// wake-up that finds the turn taken returns at once; one whose Redis
/// failed records its event itself and works without a turn.
fn wake(
    payload: &[u8],
    message: Result<inbound::ChannelMessage, String>,
    stream: &inbound::Stream,
    redis: Option<&spin_sdk::redis::Connection>,
    keys: &turn::Keys,
) -> Result<Woke, WakeError> {
    let started = Instant::now();
    let heard = match &message {
        Ok(inbound::ChannelMessage::Event(_)) => turn::Heard::Event(payload),
        Ok(inbound::ChannelMessage::Doorbell(Doorbell::Tick)) => turn::Heard::Any,
        // A doorbell that names its event, or a message to reject.
        _ => turn::Heard::Once(payload),
    };
    let is_event = matches!(heard, turn::Heard::Event(_));
    let knocked = redis.map(|redis| turn::knock(redis, keys, heard));
    let (mut held, handed_over) = match knocked {
        Some(Ok(knocked)) if knocked.turn.is_none() => {
            // A message to reject is the first hearer's to record, turn or not.
            if knocked.first && message.is_err() {
                inbound::on_channel_message(&Db::open()?, payload, message)?;
            }
            return Ok(Woke::Knocked);
        }
        Some(Ok(knocked)) => (knocked.turn, is_event),
        Some(Err(error)) => {
            log::event("turn_error", serde_json::json!({ "error": error }));
            (None, false)
        }
        None => (None, false),
    };
    let policy = RetryPolicy::load()?;
    let limits = config::limits()?;
    let db = Db::open()?;
    let mut message = (!handed_over).then_some(message);
    loop {
        let left = work(
            &db,
            redis,
            message.take().map(|message| (payload, message)),
            stream,
            &policy,
            &limits,
            held.as_ref(),
        )?;
        let Some(turn) = held.take() else {
            return Ok(Woke::Worked { left });
        };
        let knocked = turn.end();
        if left || (knocked && started.elapsed() >= MAX_WAKE_DURATION) {
            return Ok(Woke::Worked { left: true });
        }
        if !knocked {
            return Ok(Woke::Worked { left: false });
        }
        // A knock came during the round: its work may not have been seen.
        match redis.and_then(|redis| turn::Turn::again(redis, keys)) {
            Some(turn) => held = Some(turn),
            None => return Ok(Woke::Worked { left: false }),
        }
    }
}

/// One round of a wake-up's work: records the channel message (when it was
/// not handed over) and the stream's new entries, finishes and scores what
/// is due, or prunes and decays when nothing was. True when its budget ran
/// out with work left.
fn work(
    db: &Db,
    redis: Option<&spin_sdk::redis::Connection>,
    message: Option<(&[u8], Result<inbound::ChannelMessage, String>)>,
    stream: &inbound::Stream,
    policy: &RetryPolicy,
    limits: &Limits,
    turn: Option<&turn::Turn>,
) -> Result<bool, WakeError> {
    // Before anything is claimed: events committed from now on ring again.
    crate::doorbell::clear(db)?;
    if let Some((payload, message)) = message {
        inbound::on_channel_message(db, payload, message)?;
    }
    let stream_left = match redis {
        Some(redis) => drain_stream(db, redis, stream),
        None => false,
    };
    let due = store::any_due(db)?;
    if due.unfinished {
        finish_unfinished(db)?;
    }
    let due_left = due.due && !score_due(db, policy, limits, turn)?;
    // Nothing to score and the stream drained: an idle wake-up, the turn of
    // retention and decay, so neither ever competes with scoring.
    let mut decay_left = false;
    if !due.due && !due.unfinished && !stream_left {
        prune(db);
        decay_left = decay(db, limits);
    }
    // Relayed last, so the level changes of this wake-up's own batches and
    // decay go out with it; only when some may wait (ANY_DUE saw one, or
    // this wake-up changed scores): an idle wake-up pays no transaction.
    let may_have_changes = due.unpublished || due.due || due.unfinished || decay_left;
    let relay_left = match redis {
        Some(redis) if may_have_changes => relay(db, redis),
        _ => false,
    };
    Ok(stream_left || due_left || decay_left || relay_left)
}

/// Users decayed per wake-up at most (one day each).
pub const MAX_DECAYED_PER_WAKE: usize = 100;

/// Applies one bounded batch of inactivity decay when it is on
/// (`store::apply_decay`), then the consequences of the level changes it
/// made ([`cache::after_change`]). True when users decayed: more days may be
/// due (a user absent for days gets one per wake-up), so the next wake-up
/// comes at once. Housekeeping: a failure (a bad setting included) is
/// logged and the next idle wake-up tries again.
fn decay(db: &Db, limits: &Limits) -> bool {
    let started = Instant::now();
    let decayed = config::decay()
        .map_err(|e| e.to_string())
        .and_then(|decay| {
            if !decay.is_on() {
                return Ok((0, Vec::new()));
            }
            store::apply_decay(db, &decay, limits.max_topics_per_user, MAX_DECAYED_PER_WAKE)
                .map_err(|e| e.to_string())
        });
    match decayed {
        Ok((0, _)) => false,
        Ok((users, changed)) => {
            for changed in &changed {
                cache::after_change(changed, Cause::Decay);
            }
            log::event(
                "decay_applied",
                serde_json::json!({ "users": users, "level_changes": changed.len(),
                                    "ms": started.elapsed().as_millis() as u64 }),
            );
            true
        }
        Err(error) => {
            log::event("decay_error", serde_json::json!({ "error": error }));
            false
        }
    }
}

/// Relays one bounded batch of level changes to `level_changes_stream`
/// ([`level_changes::relay`]); true when more may be waiting. A failure is
/// logged and the rows stay unpublished for the next wake-up.
fn relay(db: &Db, redis: &spin_sdk::redis::Connection) -> bool {
    let started = Instant::now();
    let relayed = config::level_changes_stream()
        .map_err(|e| e.to_string())
        .and_then(|stream| {
            level_changes::relay(db, redis, &stream)
                .map(|relayed| (stream, relayed))
                .map_err(|e| e.to_string())
        });
    match relayed {
        Ok((_, relayed)) if relayed.claimed == 0 => false,
        Ok((stream, relayed)) => {
            let fields = serde_json::json!({ "stream": stream, "published": relayed.published,
                                             "claimed": relayed.claimed,
                                             "ms": started.elapsed().as_millis() as u64 });
            match &relayed.redis_error {
                None => log::event("level_changes_published", fields),
                Some(error) => {
                    let mut fields = fields;
                    fields["error"] = serde_json::json!(error);
                    log::event("level_changes_error", fields);
                }
            }
            relayed.more_left()
        }
        Err(error) => {
            log::event("level_changes_error", serde_json::json!({ "error": error }));
            false
        }
    }
}

/// Longer than a tick's wait may hold the ticker's lease, in case its
/// holder stopped mid-wait: then the next doorbell starts the ticker again.
const TICKER_LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The app's own ticker (`self_tick_ms`), for a deployment without an
/// external one (plain `spin up`): retries coming due, stream entries and
/// events whose doorbell was lost are picked up with no new traffic.
///
/// One wake-up at a time carries it, the one holding a lease in Redis
/// (`<events_channel>:ticker`): it rings the next tick, after waiting up to
/// `interval` on the events stream when it was woken by a tick and left
/// nothing to do (`wait`; an entry that arrives ends the wait at once and is
/// recorded). A wake-up that finds the lease taken returns: a tick is on its
/// way. So at rest one tick runs per interval, at most one wake-up waits at
/// a time, and a doorbell waits behind such a wait at most `interval` (with
/// one scorer; with more, another hears it at once). The first message after
/// a start (or after a holder stopped mid-wait, once its lease lapses)
/// starts the ticker: any wake-up that takes the lease rings.
fn self_tick(
    interval: Duration,
    wait: bool,
    stream: &inbound::Stream,
    redis: Option<&spin_sdk::redis::Connection>,
) {
    let started = Instant::now();
    let outcome = (|| -> Result<bool, String> {
        let channel = config::events_channel().map_err(|e| e.to_string())?;
        let redis = redis.ok_or("redis is unavailable")?;
        let lease = format!("{channel}:ticker");
        let lease_ms = (interval + TICKER_LEASE_MARGIN).as_millis() as i64;
        let taken = redis
            .execute(
                "SET",
                &[
                    RedisParameter::Binary(lease.clone().into_bytes()),
                    RedisParameter::Binary(b"1".to_vec()),
                    RedisParameter::Binary(b"NX".to_vec()),
                    RedisParameter::Binary(b"PX".to_vec()),
                    RedisParameter::Int64(lease_ms),
                ],
            )
            .map_err(|e| format!("{e:?}"))?;
        if !matches!(taken.first(), Some(RedisResult::Status(_))) {
            return Ok(false);
        }
        if wait {
            let waited = Db::open().map_err(|e| e.to_string()).and_then(|db| {
                stream
                    .wait_for_new(&db, redis, interval.as_millis() as u64)
                    .map_err(|e| e.to_string())
            });
            if let Err(error) = waited {
                log::event(
                    "stream_error",
                    serde_json::json!({ "stream": stream.key, "error": error }),
                );
                // Paced even when the wait failed at once: never a hot loop.
                std::thread::sleep(interval.saturating_sub(started.elapsed()));
            }
        }
        redis
            .execute("DEL", &[RedisParameter::Binary(lease.into_bytes())])
            .map_err(|e| format!("{e:?}"))?;
        Ok(true)
    })();
    match outcome {
        Ok(true) => ring(),
        Ok(false) => {}
        Err(error) => log::event("self_tick_failed", serde_json::json!({ "error": error })),
    }
}

/// Scores due events in batches until none is left (true) or the wake-up's
/// budget is spent (false).
fn score_due(
    db: &Db,
    policy: &RetryPolicy,
    limits: &Limits,
    turn: Option<&turn::Turn>,
) -> Result<bool, DbError> {
    let started = Instant::now();
    let mut scored = 0usize;
    let mut finished = false;
    while scored < MAX_EVENTS_PER_WAKE && started.elapsed() < MAX_WAKE_DURATION {
        if let Some(turn) = turn {
            turn.renew();
        }
        let done = score_batch(db, policy, limits)?;
        if done == 0 {
            finished = true;
            break;
        }
        scored += done;
    }
    // Idle ticks are the common case; only a wake that did work is worth a line.
    if scored > 0 {
        log::event(
            "scorer_wake",
            serde_json::json!({ "scored": scored, "ms": started.elapsed().as_millis() as u64,
                                "continued": !finished }),
        );
    }
    Ok(finished)
}

/// Prunes what is past its retention window, one bounded batch
/// ([`store::MAX_PRUNED_PER_WAKE`] rows). Housekeeping: a failure is logged
/// and the next idle wake-up tries again.
fn prune(db: &Db) {
    let started = Instant::now();
    let pruned = config::Retention::load()
        .map_err(|e| e.to_string())
        .and_then(|retention| store::prune(db, &retention).map_err(|e| e.to_string()));
    match pruned {
        Ok(pruned) if pruned.is_empty() => {}
        Ok(pruned) => log::event(
            "retention_pruned",
            serde_json::json!({ "events": pruned.events, "rejected": pruned.rejected,
                                "settled_repeats": pruned.settled,
                                "level_changes": pruned.level_changes,
                                "ms": started.elapsed().as_millis() as u64 }),
        ),
        Err(error) => log::event("retention_error", serde_json::json!({ "error": error })),
    }
}

/// Records what the events stream holds; true when entries may be left. A
/// Redis failure is logged and scoring goes on: the entries stay in the
/// stream for the next wake-up.
fn drain_stream(db: &Db, redis: &spin_sdk::redis::Connection, stream: &inbound::Stream) -> bool {
    match stream.drain(db, redis, MAX_STREAM_ENTRIES_PER_WAKE) {
        Ok(handled) => handled >= MAX_STREAM_ENTRIES_PER_WAKE,
        Err(e) => {
            log::event(
                "stream_error",
                serde_json::json!({ "stream": stream.key, "error": e.to_string() }),
            );
            false
        }
    }
}

/// Rings the doorbell so that the next wake-up carries on where this one stopped.
fn ring() {
    if let Err(e) = crate::doorbell::ring(&Doorbell::Tick) {
        log::event(
            "doorbell_failed",
            serde_json::json!({ "error": e.to_string() }),
        );
    }
}

/// Claims and finishes one batch in one transaction; how many events it
/// finished (0 when none was due).
///
/// The batch runs without savepoints first (two round trips fewer per
/// event). If an event fails, that transaction is rolled back whole and the
/// batch is claimed again and run with a savepoint per event, so the failure
/// is recorded against its own event only.
fn score_batch(db: &Db, policy: &RetryPolicy, limits: &Limits) -> Result<usize, DbError> {
    let outcomes = match db.transaction(|db| counted_batch(db, policy, limits, false)) {
        Ok(outcomes) => outcomes,
        // An outage too: a real one fails the careful pass at once, and an
        // event whose own failure only looks like one is found there.
        Err(_) => db.transaction(|db| counted_batch(db, policy, limits, true))?,
    };
    let mut invalidated = Vec::new();
    for (event, outcome) in &outcomes {
        if report(event, outcome) {
            invalidated.push(event.processing_id);
        }
    }
    store::finish_scored(db, &invalidated)?;
    Ok(outcomes.len())
}

/// A batch, then its outcomes added to the metrics counters in the same
/// transaction, so they commit (or roll back) with the events' marks.
fn counted_batch(
    db: &Db,
    policy: &RetryPolicy,
    limits: &Limits,
    careful: bool,
) -> Result<Vec<(Claimed, Outcome)>, DbError> {
    let outcomes = run_batch(db, policy, limits, careful)?;
    let claimed: Vec<_> = outcomes.iter().map(|(e, _)| e.processing_id).collect();
    store::count_batch(db, &claimed)?;
    Ok(outcomes)
}

/// Scored events left unfinished by a wake-up that stopped between its
/// commit and the cache invalidation (a crash, a key-value failure): their
/// users' cached candidates are dropped, then they are marked processed.
fn finish_unfinished(db: &Db) -> Result<(), DbError> {
    let unfinished = store::scored_events(db, MAX_EVENTS_PER_WAKE)?;
    let invalidated: Vec<_> = unfinished
        .iter()
        .filter(|event| Cache::open().invalidate(&event.user_id, "level_changed"))
        .map(|event| event.processing_id)
        .collect();
    store::finish_scored(db, &invalidated)?;
    Ok(())
}

/// Claims a batch and scores it: each event decoded, planned and applied
/// by [`apply`], the one path from an event to its effect. The first pass
/// locks the batch's users in one go and applies the events in rounds, one
/// statement per round; round `k` holds the `k`-th event of each user, so a
/// statement changes each user once and a user's events apply in order; any
/// failure ends the batch (the caller runs it again carefully). The careful
/// pass applies each event as a round of its own, in a savepoint, locking
/// its user there, so that a failure is that event's own.
fn run_batch(
    db: &Db,
    policy: &RetryPolicy,
    limits: &Limits,
    careful: bool,
) -> Result<Vec<(Claimed, Outcome)>, DbError> {
    let mut claimed = store::claim_due(db, BATCH_SIZE)?;
    // Every scorer locks users in the same order, so batches never deadlock;
    // the sort is stable, so one user's events keep their order.
    claimed.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let mut outcomes: Vec<Option<Outcome>> = claimed.iter().map(|_| None).collect();
    let mut decoded: Vec<(usize, ConversationMetadata)> = Vec::with_capacity(claimed.len());
    for (i, event) in claimed.iter().enumerate() {
        match serde_json::from_str::<ConversationMetadata>(&event.payload) {
            Ok(metadata) => decoded.push((i, metadata)),
            Err(e) => {
                let error = format!("payload does not decode: {e}");
                store::mark_unprocessable(db, event.processing_id, &error)?;
                outcomes[i] = Some(Outcome::Unprocessable { error });
            }
        }
    }
    let users_of = |round: &[usize]| -> Vec<(&Claimed, &ConversationMetadata)> {
        round
            .iter()
            .map(|&k| (&claimed[decoded[k].0], &decoded[k].1))
            .collect()
    };
    let mut users = BTreeMap::new();
    if careful {
        for (k, (i, _)) in decoded.iter().enumerate() {
            outcomes[*i] = Some(apply_alone(
                db,
                users_of(&[k])[0],
                &mut users,
                policy,
                limits,
            )?);
        }
    } else if !decoded.is_empty() {
        let ids = decoded.iter().map(|(i, _)| claimed[*i].user_id.as_str());
        users = store::lock_users(db, ids.clone())?;
        for round in rounds(ids) {
            let changed = apply(db, &users_of(&round), &mut users, limits)?;
            for (k, changed) in round.into_iter().zip(changed) {
                outcomes[decoded[k].0] = Some(Outcome::Scored(changed));
            }
        }
    }
    Ok(claimed
        .into_iter()
        .zip(outcomes)
        .map(|(event, outcome)| (event, outcome.expect("every claimed event has an outcome")))
        .collect())
}

/// The one path from events to their effect: plans each event (of distinct
/// users) against its user's row in `users`, applies them in one statement,
/// and answers, per event, the status after it when it moved its user's
/// level. `users` then holds each row as its event left it, for the user's
/// next event; it is left as it was when anything fails.
fn apply(
    db: &Db,
    events: &[(&Claimed, &ConversationMetadata)],
    users: &mut BTreeMap<String, Locked>,
    limits: &Limits,
) -> Result<Vec<Option<Changed>>, DbError> {
    let changes: Vec<Change> = events
        .iter()
        .map(|(event, metadata)| {
            plan(
                &users[&event.user_id],
                event.processing_id,
                metadata,
                event.now,
                limits,
            )
        })
        .collect();
    let moved = store::apply_changes(db, &changes)?;
    // Which users moved is read back only when some, not all, did (rare).
    let now = if moved > 0 && moved < events.len() as u64 {
        let ids: Vec<&str> = events.iter().map(|(e, _)| e.user_id.as_str()).collect();
        Some(store::locked_now(db, &ids)?)
    } else {
        None
    };
    let mut outcome = Vec::with_capacity(events.len());
    let mut after = Vec::with_capacity(events.len());
    for ((event, _), change) in events.iter().zip(&changes) {
        let before = &users[&event.user_id];
        let level_moved = match &now {
            Some(now) => now
                .get(&event.user_id)
                .is_some_and(|row| row.friendship_level != before.friendship_level),
            None => moved > 0,
        };
        let changed = if level_moved {
            Some(store::changed(db, &event.user_id, before)?)
        } else {
            None
        };
        let level = changed
            .as_ref()
            .map_or(before.friendship_level, |c| c.status.friendship_level);
        after.push(before.after(change, event.now, level));
        outcome.push(changed);
    }
    for row in after {
        users.insert(row.user_id.clone(), row);
    }
    Ok(outcome)
}

/// Applies one event alone ([`apply`]) in a savepoint, locking its user
/// there when it is the user's first event in the batch, or records why it
/// could not be applied: only an outage ends the batch.
fn apply_alone(
    db: &Db,
    (event, metadata): (&Claimed, &ConversationMetadata),
    users: &mut BTreeMap<String, Locked>,
    policy: &RetryPolicy,
    limits: &Limits,
) -> Result<Outcome, DbError> {
    let known = users.get(&event.user_id).cloned();
    let applied = db.savepoint(|db| {
        let mut user = BTreeMap::new();
        let locked = match known {
            Some(locked) => locked,
            None => store::lock_user(db, &event.user_id)?,
        };
        user.insert(event.user_id.clone(), locked);
        let changed = apply(db, &[(event, metadata)], &mut user, limits)?;
        Ok::<_, DbError>((changed.into_iter().next().flatten(), user))
    });
    match applied {
        Ok((changed, user)) => {
            users.extend(user);
            Ok(Outcome::Scored(changed))
        }
        // An outage ends the batch and uses up no attempt, but only while
        // the database does not answer: a failure that merely looks like one
        // (its SQLSTATE says so) counts as this event's, so retries of it
        // stay bounded.
        Err(error) if error.kind == DbErrorKind::Unavailable && store::probe(db).is_err() => {
            Err(error)
        }
        Err(error) => {
            let attempt = u32::try_from(event.attempts).unwrap_or(0) + 1;
            let retry_in =
                friendship_domain::backoff_delay(attempt, policy.base_ms, &mut rand::rng());
            let error = error.to_string();
            store::record_failure(
                db,
                event.processing_id,
                &error,
                policy.max_attempts,
                retry_in,
            )?;
            Ok(Outcome::Failed {
                error,
                attempt,
                final_attempt: attempt >= policy.max_attempts,
                retry_in,
            })
        }
    }
}

/// After the commit: the log line of each outcome, and the consequences of
/// level changes. True when the event moved its user's level (so it is
/// `scored`) and the user's cached candidates are gone: it may be finished.
fn report(event: &Claimed, outcome: &Outcome) -> bool {
    let id = event.processing_id;
    match outcome {
        Outcome::Scored(changed) => {
            let finishable = match changed {
                Some(changed) if changed.level_changed() => {
                    cache::after_change(changed, Cause::Conversation)
                }
                _ => false,
            };
            log::event(
                "event_processed",
                serde_json::json!({ "processing_id": id, "user_id": event.user_id,
                                    "trace_id": event.trace_id }),
            );
            finishable
        }
        Outcome::Failed {
            error,
            attempt,
            final_attempt,
            retry_in,
        } => {
            log::event(
                "event_failed",
                serde_json::json!({ "processing_id": id, "trace_id": event.trace_id,
                                    "attempt": attempt, "error": error,
                                    "status": if *final_attempt { EventStatus::Failed } else { EventStatus::Pending },
                                    "retry_in_ms": retry_in.as_millis() as u64 }),
            );
            false
        }
        Outcome::Unprocessable { error } => {
            log::event(
                "event_failed",
                serde_json::json!({ "processing_id": id, "trace_id": event.trace_id,
                                    "error": error, "retry": false }),
            );
            false
        }
    }
}
