//! Every business rule of the friendship context service, free of Spin, HTTP
//! and SQL drivers, so it is tested natively and shared by every component.
//!
//! Modules:
//! - [`ids`]: user, conversation and topic identifiers (validated strings);
//! - [`level`]: friendship levels and the score floor;
//! - [`agent`]: agent types, weights, greeting triggers, catalogue agents;
//! - [`event`]: the conversation-end event, emotions, counts, the scorer's `Doorbell`;
//! - [`scoring`]: the score formula (emotion bonus included) and per-topic metrics;
//! - [`streak`]: the daily streak over UTC calendar days;
//! - [`change`]: what an event (or a service update) changes in a user's
//!   status, the locked row it is planned from, and a batch's rounds;
//! - [`status`]: the event status machine (`pending`, `scored`,
//!   `processed`, `failed`) and what clients are shown;
//! - [`selection`]: slots, greeting priority, talk exploration, weighted
//!   games, and every pick's reason;
//! - [`candidates`]: the cached candidate record and the whole suggestion;
//! - [`paging`]: cursor paging of a user's lists (page size, cursor);
//! - [`retry`]: the scorer's backoff with full jitter;
//! - [`error`]: `ValidationError`, naming the offending field;
//! - `text` (private): the one check of client-supplied strings (length,
//!   whitespace, no U+0000, which Postgres `TEXT` cannot hold);
//! - `timestamp` (private): RFC 3339 timestamps, read exactly as RFC 3339
//!   (and JSON Schema's `date-time`) define them.
//!
//! All wire types decode strictly (unknown fields refused, values validated
//! during deserialisation), and selection takes its random source as an
//! argument so a seeded generator makes it reproducible.

pub mod agent;
pub mod candidates;
pub mod change;
pub mod error;
pub mod event;
pub mod ids;
pub mod level;
pub mod paging;
pub mod retry;
pub mod scoring;
pub mod selection;
pub mod status;
pub mod streak;
mod text;
mod timestamp;

pub use agent::{Agent, AgentFields, AgentType, GreetingTrigger, Weight, MAX_WEIGHT};
pub use candidates::{
    candidates_key, suggest, CandidateRecord, Suggestion, CANDIDATE_FORMAT, CATALOGUE_VERSION_KEY,
};
pub use change::{plan, rounds, Cause, Change, Decay, Limits, Locked};
pub use error::ValidationError;
pub use event::{
    ConversationEnd, ConversationMetadata, Count, Doorbell, Emotion, TopicTurns, MAX_COUNT,
    MAX_TOPICS,
};
pub use ids::{ConversationId, TopicName, UserId};
pub use level::{floor_score, Level, ACQUAINTANCE_MIN_SCORE, FRIEND_MIN_SCORE};
pub use paging::{Cursor, ExportCursor, ExportKey, PageSize, Section};
pub use retry::backoff_delay;
pub use scoring::{
    conversation_score_change, topic_updates, validate_score_change, TopicMetric, TopicUpdate,
    MAX_SCORE_CHANGE,
};
pub use selection::{
    is_exploration, is_returning, select_games, select_greeting, select_talk, talk_selection_score,
    weighted_pick, weighted_sample, Absence, EmotionSource, GreetingSignals, Pick, SuggestContext,
    TalkPick, EXPLORATION_MAX_TURNS, GAME_SLOTS, GREETING_SLOTS, TALK_SLOTS,
};
pub use status::EventStatus;
pub use streak::{next_streak, next_streak_at};
