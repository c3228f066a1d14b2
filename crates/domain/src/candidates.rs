//! The cached candidate record (in one of `cache_slots` key-value slots,
//! [`candidates_key`]) and the whole suggestion computed from it.
//!
//! Key-value has no TTL, so the record carries its own expiry and the
//! catalogue version it was built from; a record that is expired, from
//! another catalogue version, of another format or of another user (sharing
//! the slot) is a cache miss. The slots bound the cache: however many users
//! are ever suggested, the store holds at most `cache_slots` records.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentType};
use crate::error::ValidationError;
use crate::event::Emotion;
use crate::level::Level;
use crate::scoring::TopicMetric;
use crate::selection::{
    select_games, select_greeting, select_talk, GreetingSignals, Pick, SuggestContext, TalkPick,
    GAME_SLOTS, TALK_SLOTS,
};

/// Format number of [`CandidateRecord`]; bump it whenever its JSON changes.
pub const CANDIDATE_FORMAT: u32 = 1;
/// Key-value key holding the catalogue version the components compare with.
pub const CATALOGUE_VERSION_KEY: &str = "catalogue:version";

/// Key-value key of the slot that holds a user's cached candidates, one of
/// `slots` (at least 1): `candidates-slot:{n}`, where `n` is the first 8
/// bytes of SHA-256 of the user id, big-endian, modulo `slots`. Users whose
/// ids share a slot evict each other's record (each sees a miss); the record
/// names its user, so one is never served another's.
pub fn candidates_key(user_id: &str, slots: u32) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(user_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let slot = u64::from_be_bytes(head) % u64::from(slots.max(1));
    format!("candidates-slot:{slot}")
}

/// Everything `suggest` needs about one user, cached. The agent lists hold
/// the active agents of `level`, one list per type, sorted by `mapping_id`
/// (so a seeded suggestion does not depend on query order, and selection,
/// which ignores a repeated `agent_id`, keeps the lowest `mapping_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CandidateRecordWire")]
pub struct CandidateRecord {
    /// Always [`CANDIDATE_FORMAT`] when built by this code.
    pub format: u32,
    pub user_id: String,
    pub level: Level,
    /// The `catalogue_version` row the agents were read under.
    pub catalogue_version: i64,
    pub computed_at: DateTime<Utc>,
    /// The record is usable strictly before this instant.
    pub expires_at: DateTime<Utc>,
    pub greeting: Vec<Agent>,
    pub talk: Vec<Agent>,
    pub game: Vec<Agent>,
    pub topic_metrics: BTreeMap<String, TopicMetric>,
    pub last_interaction: Option<DateTime<Utc>>,
    pub last_emotion: Option<Emotion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "CandidateRecord")]
struct CandidateRecordWire {
    format: u32,
    user_id: String,
    level: Level,
    catalogue_version: i64,
    computed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    greeting: Vec<Agent>,
    talk: Vec<Agent>,
    game: Vec<Agent>,
    topic_metrics: BTreeMap<String, TopicMetric>,
    last_interaction: Option<DateTime<Utc>>,
    last_emotion: Option<Emotion>,
}

impl TryFrom<CandidateRecordWire> for CandidateRecord {
    type Error = ValidationError;
    fn try_from(wire: CandidateRecordWire) -> Result<Self, Self::Error> {
        for (field, list, agent_type) in [
            ("greeting", &wire.greeting, AgentType::Greeting),
            ("talk", &wire.talk, AgentType::Talk),
            ("game", &wire.game, AgentType::Game),
        ] {
            if list.iter().any(|a| a.agent_type != agent_type) {
                return Err(ValidationError::new(
                    field,
                    format!("{field} must hold only {agent_type} agents"),
                ));
            }
        }
        Ok(CandidateRecord {
            format: wire.format,
            user_id: wire.user_id,
            level: wire.level,
            catalogue_version: wire.catalogue_version,
            computed_at: wire.computed_at,
            expires_at: wire.expires_at,
            greeting: wire.greeting,
            talk: wire.talk,
            game: wire.game,
            topic_metrics: wire.topic_metrics,
            last_interaction: wire.last_interaction,
            last_emotion: wire.last_emotion,
        })
    }
}

impl CandidateRecord {
    /// Builds a record valid from `now` for `ttl`. `agents` may mix types;
    /// the caller has already kept only active agents of `level`. Agents are
    /// split by type and sorted by `mapping_id`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        user_id: impl Into<String>,
        level: Level,
        catalogue_version: i64,
        mut agents: Vec<Agent>,
        topic_metrics: BTreeMap<String, TopicMetric>,
        last_interaction: Option<DateTime<Utc>>,
        last_emotion: Option<Emotion>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Self {
        agents.sort_by_key(|a| a.mapping_id);
        let (mut greeting, mut talk, mut game) = (Vec::new(), Vec::new(), Vec::new());
        for agent in agents {
            match agent.agent_type {
                AgentType::Greeting => greeting.push(agent),
                AgentType::Talk => talk.push(agent),
                AgentType::Game => game.push(agent),
            }
        }
        CandidateRecord {
            format: CANDIDATE_FORMAT,
            user_id: user_id.into(),
            level,
            catalogue_version,
            computed_at: now,
            expires_at: now.checked_add_signed(ttl).unwrap_or(now),
            greeting,
            talk,
            game,
            topic_metrics,
            last_interaction,
            last_emotion,
        }
    }

    /// Whether a cached record may answer: same format, `now < expires_at`,
    /// and built from `current_catalogue_version`.
    pub fn is_usable(&self, now: DateTime<Utc>, current_catalogue_version: i64) -> bool {
        self.format == CANDIDATE_FORMAT
            && now < self.expires_at
            && self.catalogue_version == current_catalogue_version
    }

    pub fn to_json(&self) -> Vec<u8> {
        // String map keys and finite numbers only: serialising cannot fail.
        serde_json::to_vec(self).expect("a candidate record always serialises")
    }

    /// Strict decoding; any error (including a record of another format
    /// that no longer parses) should be treated as a cache miss.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// One answer of `/activities/suggest`: at most one greeting, two talk
/// agents and two games, and a warning for every slot left empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suggestion {
    pub greeting: Option<Pick>,
    pub talk: Vec<TalkPick>,
    pub games: Vec<Pick>,
    pub warnings: Vec<String>,
}

/// Computes a suggestion from a (fresh or cached) record. The signals are
/// [`GreetingSignals::resolve`]d from the context and the record; the picks
/// and their reasons are selection's, the warnings for empty slots are here.
pub fn suggest<R: Rng + ?Sized>(
    record: &CandidateRecord,
    ctx: &SuggestContext,
    now: DateTime<Utc>,
    returning_after_days: u32,
    rng: &mut R,
) -> Suggestion {
    let level = record.level;
    let signals = GreetingSignals::resolve(
        ctx,
        record.last_interaction,
        record.last_emotion,
        now,
        returning_after_days,
    );
    let mut warnings = Vec::new();

    let greeting = select_greeting(&record.greeting, &signals, rng);
    if greeting.is_none() {
        warnings.push(if record.greeting.is_empty() {
            format!("no greeting: no active greeting agent for level '{level}'")
        } else {
            format!(
                "no greeting: no general greeting agent for level '{level}' and no greeting trigger applied"
            )
        });
    }

    let talk = select_talk(&record.talk, &record.topic_metrics, rng);
    if talk.len() < TALK_SLOTS {
        warnings.push(format!(
            "talk: {} of {TALK_SLOTS} slots filled; only {} eligible talk agent(s) for level '{level}'",
            talk.len(),
            talk.len()
        ));
    }
    let games = select_games(&record.game, rng);
    if games.len() < GAME_SLOTS {
        warnings.push(format!(
            "game: {} of {GAME_SLOTS} slots filled; only {} eligible game agent(s) for level '{level}'",
            games.len(),
            games.len()
        ));
    }
    Suggestion {
        greeting,
        talk,
        games,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::GreetingTrigger;
    use crate::selection::tests::{agent, arb_agents, arb_metrics, greeting, metric, talk};
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    fn full_catalogue() -> Vec<Agent> {
        vec![
            Agent {
                mapping_id: 9,
                ..agent("game-b", AgentType::Game, 1.0)
            },
            Agent {
                mapping_id: 1,
                ..greeting("hello", None)
            },
            Agent {
                mapping_id: 2,
                ..greeting("cheer-up", Some(GreetingTrigger::Emotion(Emotion::Sad)))
            },
            Agent {
                mapping_id: 3,
                ..greeting("welcome-back", Some(GreetingTrigger::Returning))
            },
            Agent {
                mapping_id: 4,
                ..talk("music", "music", 1.0)
            },
            Agent {
                mapping_id: 5,
                ..talk("space", "space", 1.0)
            },
            Agent {
                mapping_id: 8,
                ..agent("game-a", AgentType::Game, 1.0)
            },
        ]
    }

    fn record(
        agents: Vec<Agent>,
        last_interaction: Option<DateTime<Utc>>,
        last_emotion: Option<Emotion>,
    ) -> CandidateRecord {
        CandidateRecord::build(
            "u-123",
            Level::Acquaintance,
            42,
            agents,
            BTreeMap::from([("music".to_owned(), metric(12.0, 8))]),
            last_interaction,
            last_emotion,
            now(),
            Duration::hours(6),
        )
    }

    #[test]
    fn build_splits_agents_by_type_in_mapping_order() {
        let r = record(full_catalogue(), None, None);
        assert_eq!(r.format, CANDIDATE_FORMAT);
        assert_eq!(r.expires_at, now() + Duration::hours(6));
        let ids = |list: &[Agent]| list.iter().map(|a| a.agent_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&r.greeting), ["hello", "cheer-up", "welcome-back"]);
        assert_eq!(ids(&r.talk), ["music", "space"]);
        assert_eq!(ids(&r.game), ["game-a", "game-b"]);
    }

    #[test]
    fn a_repeated_agent_id_is_suggested_once_from_its_lowest_mapping_id() {
        let agents = vec![
            Agent {
                mapping_id: 2,
                ..agent("g", AgentType::Game, 5.0)
            },
            Agent {
                mapping_id: 1,
                ..agent("g", AgentType::Game, 1.0)
            },
        ];
        let r = record(agents, None, None);
        let mapping_ids: Vec<i64> = r.game.iter().map(|a| a.mapping_id).collect();
        assert_eq!(mapping_ids, [1, 2]);
        for seed in 0..20 {
            let s = suggest(
                &r,
                &SuggestContext::default(),
                now(),
                7,
                &mut StdRng::seed_from_u64(seed),
            );
            let picked: Vec<i64> = s.games.iter().map(|p| p.agent.mapping_id).collect();
            assert_eq!(picked, [1], "seed {seed}");
        }
    }

    #[test]
    fn a_record_is_usable_only_before_expiry_with_the_same_catalogue_and_format() {
        let r = record(full_catalogue(), None, None);
        assert!(r.is_usable(now(), 42));
        assert!(r.is_usable(now() + Duration::hours(6) - Duration::seconds(1), 42));
        assert!(!r.is_usable(now() + Duration::hours(6), 42));
        assert!(!r.is_usable(now(), 43));
        let old_format = CandidateRecord {
            format: CANDIDATE_FORMAT + 1,
            ..r
        };
        assert!(!old_format.is_usable(now(), 42));
    }

    #[test]
    fn a_record_round_trips_through_json_and_rejects_strangers() {
        let r = record(
            full_catalogue(),
            Some(now() - Duration::days(3)),
            Some(Emotion::Happy),
        );
        assert_eq!(CandidateRecord::from_json(&r.to_json()).unwrap(), r);

        let mut value = serde_json::to_value(&r).unwrap();
        value["surprise"] = serde_json::Value::Bool(true);
        assert!(CandidateRecord::from_json(value.to_string().as_bytes()).is_err());

        let mut mixed = serde_json::to_value(&r).unwrap();
        mixed["game"] = mixed["greeting"].clone();
        let err = CandidateRecord::from_json(mixed.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("game must hold only game agents"),
            "{err}"
        );
        assert!(CandidateRecord::from_json(b"not json").is_err());
    }

    #[test]
    fn the_cache_key_is_the_users_slot() {
        // SHA-256("u-123") begins 0x50e80268bfa82fe1: the slot is fixed by
        // the id and the count, so a new release finds the last one's records.
        assert_eq!(candidates_key("u-123", 1000), "candidates-slot:969");
        assert_eq!(candidates_key("u-123", 1), "candidates-slot:0");
        assert_eq!(candidates_key("u-123", 0), "candidates-slot:0");
        let key = candidates_key("u-123", 1 << 20);
        assert_eq!(key, candidates_key("u-123", 1 << 20));
        assert!(key.starts_with("candidates-slot:"));
    }

    proptest::proptest! {
        /// Every user id maps to one of the slots, the same one every time.
        #[test]
        fn every_user_has_one_slot_among_the_configured_ones(user in ".{0,80}", slots in 1u32..5000) {
            let key = candidates_key(&user, slots);
            let n: u32 = key.strip_prefix("candidates-slot:").unwrap().parse().unwrap();
            proptest::prop_assert!(n < slots);
            proptest::prop_assert_eq!(key, candidates_key(&user, slots));
        }
    }

    #[test]
    fn a_full_catalogue_fills_every_slot_without_warnings() {
        let r = record(full_catalogue(), None, None);
        let s = suggest(
            &r,
            &SuggestContext::default(),
            now(),
            7,
            &mut StdRng::seed_from_u64(1),
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.greeting.unwrap().agent.agent_id, "hello");
        assert_eq!(s.talk.len(), 2);
        assert_eq!(s.games.len(), 2);
    }

    #[test]
    fn the_context_emotion_overrides_the_last_conversation() {
        let r = record(full_catalogue(), None, Some(Emotion::Happy));
        let mut rng = StdRng::seed_from_u64(1);
        let plain = suggest(&r, &SuggestContext::default(), now(), 7, &mut rng);
        assert_eq!(plain.greeting.unwrap().agent.agent_id, "hello");
        let sad = SuggestContext {
            emotion: Some(Emotion::Sad),
            ..Default::default()
        };
        let pick = suggest(&r, &sad, now(), 7, &mut rng).greeting.unwrap();
        assert_eq!(pick.agent.agent_id, "cheer-up");
        assert_eq!(
            pick.reason,
            "emotion greeting: the user feels sad (from the request context)"
        );

        let remembered = record(full_catalogue(), None, Some(Emotion::Sad));
        let pick = suggest(&remembered, &SuggestContext::default(), now(), 7, &mut rng)
            .greeting
            .unwrap();
        assert_eq!(
            pick.reason,
            "emotion greeting: the user feels sad (from the last conversation)"
        );
    }

    #[test]
    fn a_user_away_for_the_configured_days_gets_the_returning_greeting() {
        let r = record(
            full_catalogue(),
            Some(now() - Duration::days(9)),
            Some(Emotion::Sad),
        );
        let pick = suggest(
            &r,
            &SuggestContext::default(),
            now(),
            7,
            &mut StdRng::seed_from_u64(1),
        )
        .greeting
        .unwrap();
        assert_eq!(pick.agent.agent_id, "welcome-back");
        assert_eq!(
            pick.reason,
            "returning greeting: last interaction 9 days ago (returning after 7 days)"
        );
        let not_yet = suggest(
            &r,
            &SuggestContext::default(),
            now(),
            10,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(not_yet.greeting.unwrap().agent.agent_id, "cheer-up");
    }

    #[test]
    fn a_returning_reason_keeps_the_weighted_choice_among_several() {
        let mut agents = full_catalogue();
        agents.push(Agent {
            mapping_id: 10,
            ..greeting("welcome-back-2", Some(GreetingTrigger::Returning))
        });
        let r = record(agents, Some(now() - Duration::days(9)), None);
        let pick = suggest(
            &r,
            &SuggestContext::default(),
            now(),
            7,
            &mut StdRng::seed_from_u64(1),
        )
        .greeting
        .unwrap();
        assert_eq!(
            pick.reason,
            "returning greeting: last interaction 9 days ago (returning after 7 days) \
             (chosen by weight among 2 returning greetings)"
        );
    }

    #[test]
    fn missing_agents_leave_slots_empty_and_say_so() {
        let r = record(
            vec![Agent {
                mapping_id: 5,
                ..talk("music", "music", 1.0)
            }],
            None,
            None,
        );
        let s = suggest(
            &r,
            &SuggestContext::default(),
            now(),
            7,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(s.greeting, None);
        assert_eq!(s.talk.len(), 1);
        assert!(s.games.is_empty());
        assert_eq!(
            s.warnings,
            [
                "no greeting: no active greeting agent for level 'acquaintance'",
                "talk: 1 of 2 slots filled; only 1 eligible talk agent(s) for level 'acquaintance'",
                "game: 0 of 2 slots filled; only 0 eligible game agent(s) for level 'acquaintance'",
            ]
        );
        let only_triggers = record(
            vec![greeting("bday", Some(GreetingTrigger::Birthday))],
            None,
            None,
        );
        let s = suggest(
            &only_triggers,
            &SuggestContext::default(),
            now(),
            7,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(
            s.warnings[0],
            "no greeting: no general greeting agent for level 'acquaintance' and no greeting trigger applied"
        );
    }

    #[test]
    fn a_suggestion_serialises_and_decodes_back() {
        let r = record(full_catalogue(), None, None);
        let s = suggest(
            &r,
            &SuggestContext::default(),
            now(),
            7,
            &mut StdRng::seed_from_u64(3),
        );
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(serde_json::from_slice::<Suggestion>(&json).unwrap(), s);
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..4_000_000_000, 0u32..1_000_000_000)
            .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
    }

    proptest! {
        #[test]
        fn any_record_round_trips_through_json(
            agents in arb_agents(),
            metrics in arb_metrics(),
            level in proptest::sample::select(Level::ALL),
            version in any::<i64>(),
            last_interaction in proptest::option::of(arb_time()),
            last_emotion in proptest::option::of(proptest::sample::select(Emotion::ALL)),
            computed_at in arb_time(),
            ttl_seconds in 0i64..1_000_000,
        ) {
            let r = CandidateRecord::build(
                "user-1", level, version, agents, metrics, last_interaction, last_emotion,
                computed_at, Duration::seconds(ttl_seconds),
            );
            prop_assert_eq!(CandidateRecord::from_json(&r.to_json()).unwrap(), r);
        }

        #[test]
        fn a_suggestion_never_repeats_an_agent_and_explains_every_gap(
            agents in arb_agents(),
            metrics in arb_metrics(),
            is_birthday in proptest::option::of(any::<bool>()),
            emotion in proptest::option::of(proptest::sample::select(Emotion::ALL)),
            seed in any::<u64>(),
        ) {
            let r = CandidateRecord::build(
                "user-1", Level::Friend, 1, agents, metrics, None, None, now(), Duration::hours(6),
            );
            let ctx = SuggestContext { is_birthday, emotion, memory_recall: None };
            let s = suggest(&r, &ctx, now(), 7, &mut StdRng::seed_from_u64(seed));
            let talk: BTreeSet<&str> = s.talk.iter().map(|p| p.agent.agent_id.as_str()).collect();
            let games: BTreeSet<&str> = s.games.iter().map(|p| p.agent.agent_id.as_str()).collect();
            prop_assert_eq!(talk.len(), s.talk.len());
            prop_assert_eq!(games.len(), s.games.len());
            let gaps = usize::from(s.greeting.is_none())
                + usize::from(s.talk.len() < TALK_SLOTS)
                + usize::from(s.games.len() < GAME_SLOTS);
            prop_assert_eq!(s.warnings.len(), gaps);
            let same = suggest(&r, &ctx, now(), 7, &mut StdRng::seed_from_u64(seed));
            prop_assert_eq!(same, s);
        }
    }
}
