//! Choosing agents: the greeting by priority, talk agents by selection score
//! with exploration, games by weight — all over an injected random source,
//! so a seeded generator makes every choice reproducible.
//!
//! This module owns the numbers of a suggestion (its slots) and every pick's
//! human-readable `reason`. Every function here returns fewer picks when
//! fewer eligible agents exist, never panics, and never picks a duplicate:
//! agents are distinct by `agent_id`, the first occurrence in the given list
//! counting (this is the only de-duplication of agents).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{Agent, AgentType, GreetingTrigger};
use crate::error::{json_bool, ValidationError};
use crate::event::Emotion;
use crate::scoring::TopicMetric;

/// Greeting slots of a suggestion.
pub const GREETING_SLOTS: usize = 1;
/// Talk slots of a suggestion: the best selection score, then the second
/// best or an exploration candidate (see [`select_talk`]).
pub const TALK_SLOTS: usize = 2;
/// Game slots of a suggestion.
pub const GAME_SLOTS: usize = 2;

/// A talk agent is an *exploration* candidate when the user has discussed its
/// topic for fewer than this many turns in total (a never-discussed topic has
/// 0 turns and always qualifies): less than about one conversation's worth.
pub const EXPLORATION_MAX_TURNS: u64 = 10;
/// Weight of the topic score in a talk agent's selection score.
pub const TOPIC_SCORE_FACTOR: f64 = 0.7;
/// Weight of the novelty term `(100 - total_turns)` in a selection score.
pub const NOVELTY_FACTOR: f64 = 0.3;
/// Turns at which the novelty term reaches 0 (and goes negative beyond).
pub const NOVELTY_BASE_TURNS: f64 = 100.0;

/// What the caller of `/activities/suggest` knows about this moment. Every
/// field is optional; `null` means absent. `emotion` overrides the emotion
/// of the user's last conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SuggestContextWire")]
pub struct SuggestContext {
    pub is_birthday: Option<bool>,
    pub emotion: Option<Emotion>,
    pub memory_recall: Option<bool>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "context: an object with optional is_birthday, emotion and memory_recall"
)]
struct SuggestContextWire {
    is_birthday: Option<Value>,
    emotion: Option<Value>,
    memory_recall: Option<Value>,
}

impl TryFrom<SuggestContextWire> for SuggestContext {
    type Error = ValidationError;
    fn try_from(wire: SuggestContextWire) -> Result<Self, Self::Error> {
        let present = |value: Option<Value>| value.filter(|v| !v.is_null());
        Ok(SuggestContext {
            is_birthday: present(wire.is_birthday)
                .map(|v| json_bool(&v, "context.is_birthday"))
                .transpose()?,
            emotion: present(wire.emotion)
                .map(|v| Emotion::from_json(&v, "context.emotion"))
                .transpose()?,
            memory_recall: present(wire.memory_recall)
                .map(|v| json_bool(&v, "context.memory_recall"))
                .transpose()?,
        })
    }
}

/// Whether a user counts as returning: they have interacted before, and
/// their last interaction is at least `returning_after_days` whole days
/// (24-hour periods) before `now`. A user with no interaction is new, not
/// returning.
pub fn is_returning(
    last_interaction: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    returning_after_days: u32,
) -> bool {
    last_interaction.is_some_and(|last| {
        now.signed_duration_since(last) >= TimeDelta::days(i64::from(returning_after_days))
    })
}

/// Index of a weighted random choice. A weight that is not a finite positive
/// number makes its item ineligible; `None` when nothing is eligible. Weights
/// are scaled by the largest one first, so any finite weights sum safely.
/// Consumes exactly one `f64` from `rng` when something is eligible.
fn weighted_index<R: Rng + ?Sized>(weights: &[f64], rng: &mut R) -> Option<usize> {
    let eligible = |w: f64| w.is_finite() && w > 0.0;
    let max = weights
        .iter()
        .copied()
        .filter(|w| eligible(*w))
        .fold(0.0, f64::max);
    if max <= 0.0 {
        return None;
    }
    let total: f64 = weights
        .iter()
        .filter(|w| eligible(**w))
        .map(|w| w / max)
        .sum();
    let mut target = rng.random::<f64>() * total;
    let mut last = None;
    for (index, weight) in weights.iter().enumerate() {
        if !eligible(*weight) {
            continue;
        }
        let share = weight / max;
        if target < share {
            return Some(index);
        }
        target -= share;
        last = Some(index);
    }
    // Only reachable through rounding when `target` lands on `total`.
    last
}

/// Picks one item with probability proportional to its weight (uniform when
/// all weights are equal). Items whose weight is not finite and positive are
/// never picked; `None` when no item is eligible.
pub fn weighted_pick<'a, T, R: Rng + ?Sized>(
    items: &'a [T],
    weight: impl Fn(&T) -> f64,
    rng: &mut R,
) -> Option<&'a T> {
    let weights: Vec<f64> = items.iter().map(&weight).collect();
    weighted_index(&weights, rng).map(|index| &items[index])
}

/// Picks up to `k` distinct items (by position) without replacement: each
/// draw is a [`weighted_pick`] among the items not yet drawn. Returns fewer
/// than `k` items when fewer are eligible, in draw order.
pub fn weighted_sample<'a, T, R: Rng + ?Sized>(
    items: &'a [T],
    k: usize,
    weight: impl Fn(&T) -> f64,
    rng: &mut R,
) -> Vec<&'a T> {
    let mut weights: Vec<f64> = items.iter().map(&weight).collect();
    let mut picked = Vec::with_capacity(k.min(items.len()));
    while picked.len() < k {
        let Some(index) = weighted_index(&weights, rng) else {
            break;
        };
        weights[index] = 0.0;
        picked.push(&items[index]);
    }
    picked
}

/// A chosen agent and why it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pick {
    pub agent: Agent,
    pub reason: String,
}

/// A chosen talk agent, with the numbers behind the choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TalkPick {
    pub agent: Agent,
    pub reason: String,
    /// The user's accumulated score on the agent's topic; 0 if never discussed.
    pub topic_score: f64,
    /// The user's accumulated turns on the agent's topic; 0 if never discussed.
    pub total_turns: u64,
    /// `topic_score*0.7 + (100 - total_turns)*0.3`.
    pub selection_score: f64,
    /// `total_turns < EXPLORATION_MAX_TURNS`.
    pub exploration: bool,
}

/// The signals the greeting priority looks at, already resolved, with what
/// the pick's reason tells about them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GreetingSignals {
    pub is_birthday: bool,
    /// Set when the user is returning (see [`is_returning`]).
    pub returning: Option<Absence>,
    /// The emotion to answer, and where it was read.
    pub emotion: Option<(Emotion, EmotionSource)>,
    pub memory_recall: bool,
}

/// How long a returning user was away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absence {
    /// Whole days (24-hour periods) since the last interaction.
    pub days: i64,
    /// The configured threshold the absence reached.
    pub returning_after_days: u32,
}

/// Where the emotion a greeting answers was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmotionSource {
    /// The request's `context.emotion`.
    Request,
    /// The emotion of the user's last conversation.
    LastConversation,
}

impl GreetingSignals {
    /// The signals of one suggestion: the request's context, then what is
    /// known of the user. The request's emotion overrides `last_emotion`;
    /// the user is returning per [`is_returning`].
    pub fn resolve(
        ctx: &SuggestContext,
        last_interaction: Option<DateTime<Utc>>,
        last_emotion: Option<Emotion>,
        now: DateTime<Utc>,
        returning_after_days: u32,
    ) -> Self {
        let returning = match last_interaction {
            Some(last) if is_returning(last_interaction, now, returning_after_days) => {
                Some(Absence {
                    days: now.signed_duration_since(last).num_days(),
                    returning_after_days,
                })
            }
            _ => None,
        };
        let emotion = match (ctx.emotion, last_emotion) {
            (Some(emotion), _) => Some((emotion, EmotionSource::Request)),
            (None, Some(emotion)) => Some((emotion, EmotionSource::LastConversation)),
            (None, None) => None,
        };
        GreetingSignals {
            is_birthday: ctx.is_birthday.unwrap_or(false),
            returning,
            emotion,
            memory_recall: ctx.memory_recall.unwrap_or(false),
        }
    }
}

/// Agents of `agent_type`, first occurrence of each `agent_id` only.
fn distinct_of_type(agents: &[Agent], agent_type: AgentType) -> Vec<&Agent> {
    let mut seen = BTreeSet::new();
    agents
        .iter()
        .filter(|a| a.agent_type == agent_type && seen.insert(a.agent_id.as_str()))
        .collect()
}

/// A number for a reason: at most two decimals, no `-0`.
fn show(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    format!("{}", if rounded == 0.0 { 0.0 } else { rounded })
}

/// The greeting: the first rule that applies, in priority order birthday >
/// returning > emotion > memory recall > general. A rule applies when its
/// signal is on *and* a greeting agent with that trigger exists; among
/// several such agents the pick is weighted. The general rule picks by
/// weight among greetings without a trigger. `None` when no rule applies.
/// Agents of other types are ignored.
pub fn select_greeting<R: Rng + ?Sized>(
    agents: &[Agent],
    signals: &GreetingSignals,
    rng: &mut R,
) -> Option<Pick> {
    let greetings = distinct_of_type(agents, AgentType::Greeting);
    let rules: [Option<(GreetingTrigger, String)>; 4] = [
        signals.is_birthday.then(|| {
            (
                GreetingTrigger::Birthday,
                "birthday greeting: it is the user's birthday".to_owned(),
            )
        }),
        signals.returning.map(|absence| {
            (
                GreetingTrigger::Returning,
                format!(
                    "returning greeting: last interaction {} days ago (returning after {} days)",
                    absence.days, absence.returning_after_days
                ),
            )
        }),
        signals.emotion.map(|(emotion, source)| {
            let source = match source {
                EmotionSource::Request => "the request context",
                EmotionSource::LastConversation => "the last conversation",
            };
            (
                GreetingTrigger::Emotion(emotion),
                format!("emotion greeting: the user feels {emotion} (from {source})"),
            )
        }),
        signals.memory_recall.then(|| {
            (
                GreetingTrigger::MemoryRecall,
                "memory recall greeting: there is a memory to bring up".to_owned(),
            )
        }),
    ];
    for (trigger, reason) in rules.into_iter().flatten() {
        let matching: Vec<&Agent> = greetings
            .iter()
            .copied()
            .filter(|a| a.trigger == Some(trigger))
            .collect();
        if let Some(agent) = weighted_pick(&matching, |a| a.weight.get(), rng) {
            let reason = if matching.len() > 1 {
                format!(
                    "{reason} (chosen by weight among {} {trigger} greetings)",
                    matching.len()
                )
            } else {
                reason
            };
            return Some(Pick {
                agent: (*agent).clone(),
                reason,
            });
        }
    }
    let general: Vec<&Agent> = greetings
        .iter()
        .copied()
        .filter(|a| a.trigger.is_none())
        .collect();
    let total: f64 = general.iter().map(|a| a.weight.get()).sum();
    weighted_pick(&general, |a| a.weight.get(), rng).map(|agent| Pick {
        agent: (*agent).clone(),
        reason: format!(
            "general greeting: weighted random, weight {} of {} across {} general greetings",
            show(agent.weight.get()),
            show(total),
            general.len()
        ),
    })
}

/// A talk agent's selection score: `topic_score*0.7 + (100 - total_turns)*0.3`.
pub fn talk_selection_score(topic_score: f64, total_turns: u64) -> f64 {
    topic_score * TOPIC_SCORE_FACTOR + (NOVELTY_BASE_TURNS - total_turns as f64) * NOVELTY_FACTOR
}

/// Whether a topic discussed for `total_turns` turns is still to explore.
pub fn is_exploration(total_turns: u64) -> bool {
    total_turns < EXPLORATION_MAX_TURNS
}

/// Why a talk candidate made the cut.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rank {
    Highest,
    Second,
    Exploration,
}

impl Rank {
    fn label(self) -> &'static str {
        match self {
            Rank::Highest => "highest",
            Rank::Second => "second-highest",
            Rank::Exploration => "exploration",
        }
    }
}

struct TalkCandidate<'a> {
    agent: &'a Agent,
    topic: &'a str,
    topic_score: f64,
    total_turns: u64,
    selection_score: f64,
    exploration: bool,
}

/// Removes and returns the best remaining candidate (only exploration ones
/// when asked); ties on the selection score are broken by weighted random.
/// Also says whether there was a tie.
fn take_best<R: Rng + ?Sized>(
    candidates: &[TalkCandidate<'_>],
    remaining: &mut Vec<usize>,
    only_exploration: bool,
    rng: &mut R,
) -> Option<(usize, bool)> {
    let pool: Vec<usize> = remaining
        .iter()
        .copied()
        .filter(|i| !only_exploration || candidates[*i].exploration)
        .collect();
    let best = pool
        .iter()
        .map(|i| candidates[*i].selection_score)
        .fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<usize> = pool
        .into_iter()
        .filter(|i| candidates[*i].selection_score == best)
        .collect();
    let chosen = *weighted_pick(&tied, |i| candidates[*i].agent.weight.get(), rng)?;
    remaining.retain(|i| *i != chosen);
    Some((chosen, tied.len() > 1))
}

/// Up to [`TALK_SLOTS`] (two) talk agents. Each has a selection score from the user's metrics
/// on its topic (0 score and 0 turns when never discussed); the two best
/// scores win (ties broken by weighted random). If neither of the two is an
/// exploration candidate (see [`EXPLORATION_MAX_TURNS`]) but one exists, the
/// best-scoring exploration candidate replaces the second. Agents of other
/// types, or talk agents without a topic, are ignored.
pub fn select_talk<R: Rng + ?Sized>(
    agents: &[Agent],
    metrics: &BTreeMap<String, TopicMetric>,
    rng: &mut R,
) -> Vec<TalkPick> {
    let candidates: Vec<TalkCandidate<'_>> = distinct_of_type(agents, AgentType::Talk)
        .into_iter()
        .filter_map(|agent| {
            let topic = agent.topic.as_deref()?;
            let (topic_score, total_turns) = metrics
                .get(topic)
                .map_or((0.0, 0), |m| (m.score, m.total_turns));
            let score = talk_selection_score(topic_score, total_turns);
            Some(TalkCandidate {
                agent,
                topic,
                topic_score,
                total_turns,
                selection_score: if score.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    score
                },
                exploration: is_exploration(total_turns),
            })
        })
        .collect();
    let mut remaining: Vec<usize> = (0..candidates.len()).collect();
    let Some(first) = take_best(&candidates, &mut remaining, false, rng) else {
        return Vec::new();
    };
    let mut chosen = vec![(first, Rank::Highest)];
    if let Some(second) = take_best(&candidates, &mut remaining, false, rng) {
        let exploring = candidates[first.0].exploration || candidates[second.0].exploration;
        let replacement = if exploring {
            None
        } else {
            take_best(&candidates, &mut remaining, true, rng)
        };
        chosen.push(match replacement {
            Some(explore) => (explore, Rank::Exploration),
            None => (second, Rank::Second),
        });
    }
    chosen
        .into_iter()
        .map(|((index, tie), rank)| {
            let c = &candidates[index];
            let numbers = format!(
                "selection score {} (topic score {}, {} turns)",
                show(c.selection_score),
                show(c.topic_score),
                c.total_turns
            );
            let tie = if tie { ", tie broken by weight" } else { "" };
            let reason = if rank == Rank::Exploration {
                format!(
                    "exploration: topic '{}' discussed for {} turns (fewer than {EXPLORATION_MAX_TURNS}); {numbers}{tie}",
                    c.topic, c.total_turns
                )
            } else if c.exploration {
                format!(
                    "{} {numbers} for topic '{}'{tie}; also exploration: fewer than {EXPLORATION_MAX_TURNS} turns",
                    rank.label(),
                    c.topic
                )
            } else {
                format!("{} {numbers} for topic '{}'{tie}", rank.label(), c.topic)
            };
            TalkPick {
                agent: c.agent.clone(),
                reason,
                topic_score: c.topic_score,
                total_turns: c.total_turns,
                selection_score: c.selection_score,
                exploration: c.exploration,
            }
        })
        .collect()
}

/// Up to [`GAME_SLOTS`] distinct game agents, drawn by weight without
/// replacement. Agents of other types are ignored.
pub fn select_games<R: Rng + ?Sized>(agents: &[Agent], rng: &mut R) -> Vec<Pick> {
    let games = distinct_of_type(agents, AgentType::Game);
    let total: f64 = games.iter().map(|a| a.weight.get()).sum();
    weighted_sample(&games, GAME_SLOTS, |a| a.weight.get(), rng)
        .into_iter()
        .map(|agent| Pick {
            agent: (*agent).clone(),
            reason: format!(
                "weighted random game: weight {} of {} across {} game agents",
                show(agent.weight.get()),
                show(total),
                games.len()
            ),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::agent::Weight;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    pub(crate) fn agent(id: &str, agent_type: AgentType, weight: f64) -> Agent {
        Agent {
            mapping_id: 0,
            agent_id: id.to_owned(),
            name: format!("Agent {id}"),
            description: String::new(),
            agent_type,
            weight: Weight::new(weight).unwrap(),
            trigger: None,
            topic: None,
        }
    }

    pub(crate) fn greeting(id: &str, trigger: Option<GreetingTrigger>) -> Agent {
        Agent {
            trigger,
            ..agent(id, AgentType::Greeting, 1.0)
        }
    }

    pub(crate) fn talk(id: &str, topic: &str, weight: f64) -> Agent {
        Agent {
            topic: Some(topic.to_owned()),
            ..agent(id, AgentType::Talk, weight)
        }
    }

    pub(crate) fn metric(score: f64, total_turns: u64) -> TopicMetric {
        TopicMetric {
            score,
            total_turns,
            last_date: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    #[test]
    fn weighted_pick_returns_none_when_nothing_is_eligible() {
        let empty: [f64; 0] = [];
        assert_eq!(weighted_pick(&empty, |w| *w, &mut rng(1)), None);
        let unusable = [0.0, -1.0, f64::NAN, f64::INFINITY];
        assert_eq!(weighted_pick(&unusable, |w| *w, &mut rng(1)), None);
    }

    #[test]
    fn weighted_pick_never_picks_an_item_without_positive_weight() {
        let weights = [0.0, 1.0, -3.0, f64::NAN];
        let mut rng = rng(7);
        for _ in 0..1000 {
            assert_eq!(weighted_pick(&weights, |w| *w, &mut rng), Some(&1.0));
        }
    }

    #[test]
    fn weighted_pick_copes_with_huge_weights() {
        let weights = [f64::MAX, f64::MAX];
        let mut rng = rng(3);
        let firsts = (0..2000)
            .filter(|_| {
                std::ptr::eq(
                    weighted_pick(&weights, |w| *w, &mut rng).unwrap(),
                    &weights[0],
                )
            })
            .count();
        assert!((800..1200).contains(&firsts), "{firsts}");
    }

    #[test]
    fn weighted_sample_returns_every_eligible_item_when_k_exceeds_them() {
        let weights = [1.0, 0.0, 2.0];
        let sample = weighted_sample(&weights, 5, |w| *w, &mut rng(2));
        assert_eq!(sample.len(), 2);
        assert!(sample.contains(&&1.0) && sample.contains(&&2.0));
        assert!(weighted_sample(&weights, 0, |w| *w, &mut rng(2)).is_empty());
    }

    #[test]
    fn a_user_is_returning_after_the_configured_number_of_whole_days() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        assert!(!is_returning(None, now, 7));
        assert!(is_returning(Some(now - TimeDelta::days(7)), now, 7));
        assert!(!is_returning(
            Some(now - TimeDelta::days(7) + TimeDelta::seconds(1)),
            now,
            7
        ));
        assert!(!is_returning(Some(now + TimeDelta::days(1)), now, 7));
        assert!(is_returning(Some(now), now, 0));
    }

    #[test]
    fn suggest_context_decodes_strictly_and_names_the_field() {
        let empty: SuggestContext = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, SuggestContext::default());
        let nulls: SuggestContext =
            serde_json::from_str(r#"{"is_birthday":null,"emotion":null,"memory_recall":null}"#)
                .unwrap();
        assert_eq!(nulls, SuggestContext::default());
        let full: SuggestContext =
            serde_json::from_str(r#"{"is_birthday":true,"emotion":"sad","memory_recall":false}"#)
                .unwrap();
        assert_eq!(
            full,
            SuggestContext {
                is_birthday: Some(true),
                emotion: Some(Emotion::Sad),
                memory_recall: Some(false)
            }
        );
        for (bad, expected) in [
            (
                r#"{"is_birthday":"yes"}"#,
                "context.is_birthday must be true or false",
            ),
            (r#"{"emotion":"angry"}"#, "context.emotion must be one of"),
            (
                r#"{"memory_recall":1}"#,
                "context.memory_recall must be true or false",
            ),
            (r#"{"birthday":true}"#, "unknown field `birthday`"),
            (r#"[]"#, "expected context"),
        ] {
            let err = serde_json::from_str::<SuggestContext>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn birthday_greeting_wins_over_every_other_signal() {
        let agents = vec![
            greeting("general", None),
            greeting("bday", Some(GreetingTrigger::Birthday)),
            greeting("back", Some(GreetingTrigger::Returning)),
            greeting("sad", Some(GreetingTrigger::Emotion(Emotion::Sad))),
            greeting("memory", Some(GreetingTrigger::MemoryRecall)),
        ];
        let signals = GreetingSignals {
            is_birthday: true,
            returning: Some(AWAY),
            emotion: Some((Emotion::Sad, EmotionSource::Request)),
            memory_recall: true,
        };
        let pick = select_greeting(&agents, &signals, &mut rng(1)).unwrap();
        assert_eq!(pick.agent.agent_id, "bday");
        assert_eq!(pick.reason, "birthday greeting: it is the user's birthday");
    }

    const AWAY: Absence = Absence {
        days: 9,
        returning_after_days: 7,
    };

    #[test]
    fn signals_resolve_from_the_context_then_the_user() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let nine_days_ago = Some(now - TimeDelta::days(9) - TimeDelta::hours(3));
        let ctx = SuggestContext {
            is_birthday: Some(true),
            emotion: Some(Emotion::Happy),
            memory_recall: None,
        };
        assert_eq!(
            GreetingSignals::resolve(&ctx, nine_days_ago, Some(Emotion::Sad), now, 7),
            GreetingSignals {
                is_birthday: true,
                returning: Some(AWAY),
                emotion: Some((Emotion::Happy, EmotionSource::Request)),
                memory_recall: false,
            }
        );
        let quiet = SuggestContext::default();
        assert_eq!(
            GreetingSignals::resolve(&quiet, nine_days_ago, Some(Emotion::Sad), now, 10),
            GreetingSignals {
                emotion: Some((Emotion::Sad, EmotionSource::LastConversation)),
                ..Default::default()
            }
        );
        assert_eq!(
            GreetingSignals::resolve(&quiet, None, None, now, 0),
            GreetingSignals::default()
        );
    }

    #[test]
    fn a_triggered_reason_tells_its_signal_and_the_weighted_choice() {
        let agents = vec![
            greeting("back-1", Some(GreetingTrigger::Returning)),
            greeting("back-2", Some(GreetingTrigger::Returning)),
            greeting("sad-1", Some(GreetingTrigger::Emotion(Emotion::Sad))),
            greeting("sad-2", Some(GreetingTrigger::Emotion(Emotion::Sad))),
        ];
        let returning = GreetingSignals {
            returning: Some(AWAY),
            ..Default::default()
        };
        assert_eq!(
            select_greeting(&agents, &returning, &mut rng(1))
                .unwrap()
                .reason,
            "returning greeting: last interaction 9 days ago (returning after 7 days) \
             (chosen by weight among 2 returning greetings)"
        );
        let sad = GreetingSignals {
            emotion: Some((Emotion::Sad, EmotionSource::LastConversation)),
            ..Default::default()
        };
        assert_eq!(
            select_greeting(&agents, &sad, &mut rng(1)).unwrap().reason,
            "emotion greeting: the user feels sad (from the last conversation) \
             (chosen by weight among 2 emotion:sad greetings)"
        );
    }

    #[test]
    fn an_emotion_greeting_needs_the_same_emotion() {
        let agents = vec![
            greeting("general", None),
            greeting("happy", Some(GreetingTrigger::Emotion(Emotion::Happy))),
        ];
        let sad = GreetingSignals {
            emotion: Some((Emotion::Sad, EmotionSource::Request)),
            ..Default::default()
        };
        let pick = select_greeting(&agents, &sad, &mut rng(1)).unwrap();
        assert_eq!(pick.agent.agent_id, "general");
        assert!(
            pick.reason.starts_with("general greeting: weighted random"),
            "{}",
            pick.reason
        );
        let happy = GreetingSignals {
            emotion: Some((Emotion::Happy, EmotionSource::Request)),
            ..Default::default()
        };
        let pick = select_greeting(&agents, &happy, &mut rng(1)).unwrap();
        assert_eq!(
            pick.reason,
            "emotion greeting: the user feels happy (from the request context)"
        );
    }

    #[test]
    fn no_greeting_when_only_unmatched_trigger_agents_exist() {
        let agents = vec![
            greeting("bday", Some(GreetingTrigger::Birthday)),
            agent("game", AgentType::Game, 1.0),
        ];
        assert_eq!(
            select_greeting(&agents, &GreetingSignals::default(), &mut rng(1)),
            None
        );
        assert_eq!(
            select_greeting(&[], &GreetingSignals::default(), &mut rng(1)),
            None
        );
    }

    /// The priority rule written independently of the implementation.
    fn expected_trigger(
        signals: &GreetingSignals,
        available: &[Option<GreetingTrigger>],
    ) -> Option<Option<GreetingTrigger>> {
        let wanted = [
            signals.is_birthday.then_some(GreetingTrigger::Birthday),
            signals.returning.map(|_| GreetingTrigger::Returning),
            signals.emotion.map(|(e, _)| GreetingTrigger::Emotion(e)),
            signals
                .memory_recall
                .then_some(GreetingTrigger::MemoryRecall),
        ];
        wanted
            .into_iter()
            .flatten()
            .map(Some)
            .chain(std::iter::once(None))
            .find(|trigger| available.contains(trigger))
    }

    #[test]
    fn every_greeting_priority_case_picks_the_highest_applicable_trigger() {
        let slots: Vec<Option<GreetingTrigger>> = GreetingTrigger::ALL
            .iter()
            .copied()
            .map(Some)
            .chain(std::iter::once(None))
            .collect();
        let emotions: Vec<Option<(Emotion, EmotionSource)>> = std::iter::once(None)
            .chain(
                Emotion::ALL
                    .iter()
                    .map(|e| Some((*e, EmotionSource::Request))),
            )
            .collect();
        let mut rng = rng(11);
        let mut cases = 0;
        for mask in 0u32..(1 << slots.len()) {
            let available: Vec<Option<GreetingTrigger>> = (0..slots.len())
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| slots[bit])
                .collect();
            let mut agents: Vec<Agent> = available
                .iter()
                .enumerate()
                .map(|(i, trigger)| {
                    let id = trigger.map_or("general".to_owned(), |t| t.as_string());
                    Agent {
                        mapping_id: i as i64,
                        ..greeting(&id, *trigger)
                    }
                })
                .collect();
            agents.push(agent("not-a-greeting", AgentType::Game, 1000.0));
            for is_birthday in [false, true] {
                for returning in [None, Some(AWAY)] {
                    for memory_recall in [false, true] {
                        for emotion in &emotions {
                            let signals = GreetingSignals {
                                is_birthday,
                                returning,
                                emotion: *emotion,
                                memory_recall,
                            };
                            let picked = select_greeting(&agents, &signals, &mut rng)
                                .map(|p| p.agent.trigger);
                            assert_eq!(
                                picked,
                                expected_trigger(&signals, &available),
                                "{signals:?} {available:?}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 512 * 48);
    }

    #[test]
    fn talk_picks_the_two_best_scores_when_one_of_them_explores() {
        let agents = vec![
            talk("music", "music", 1.0),
            talk("space", "space", 1.0),
            talk("cooking", "cooking", 1.0),
        ];
        let metrics = BTreeMap::from([
            ("music".to_owned(), metric(100.0, 40)),  // 70 + 18 = 88
            ("cooking".to_owned(), metric(10.0, 90)), // 7 + 3 = 10
        ]);
        let picks = select_talk(&agents, &metrics, &mut rng(1));
        let ids: Vec<&str> = picks.iter().map(|p| p.agent.agent_id.as_str()).collect();
        assert_eq!(ids, ["music", "space"]);
        assert_eq!(picks[0].selection_score, 88.0);
        assert_eq!(
            picks[0].reason,
            "highest selection score 88 (topic score 100, 40 turns) for topic 'music'"
        );
        assert!(!picks[0].exploration);
        assert_eq!(
            (
                picks[1].topic_score,
                picks[1].total_turns,
                picks[1].selection_score
            ),
            (0.0, 0, 30.0)
        );
        assert!(picks[1].exploration);
        assert_eq!(
            picks[1].reason,
            "second-highest selection score 30 (topic score 0, 0 turns) for topic 'space'; \
             also exploration: fewer than 10 turns"
        );
    }

    #[test]
    fn an_exploration_candidate_replaces_the_second_when_the_top_two_have_none() {
        let agents = vec![
            talk("music", "music", 1.0),
            talk("films", "films", 1.0),
            talk("space", "space", 1.0),
            talk("chess", "chess", 1.0),
        ];
        let metrics = BTreeMap::from([
            ("music".to_owned(), metric(200.0, 50)), // 140 + 15 = 155
            ("films".to_owned(), metric(150.0, 30)), // 105 + 21 = 126
            ("chess".to_owned(), metric(5.0, 9)),    // 3.5 + 27.3 = 30.8
        ]);
        let picks = select_talk(&agents, &metrics, &mut rng(1));
        let ids: Vec<&str> = picks.iter().map(|p| p.agent.agent_id.as_str()).collect();
        assert_eq!(ids, ["music", "chess"]);
        assert_eq!(
            picks[1].reason,
            "exploration: topic 'chess' discussed for 9 turns (fewer than 10); \
             selection score 30.8 (topic score 5, 9 turns)"
        );
    }

    #[test]
    fn talk_keeps_the_top_two_when_nothing_explores() {
        let agents = vec![
            talk("a", "a", 1.0),
            talk("b", "b", 1.0),
            talk("c", "c", 1.0),
        ];
        let metrics = BTreeMap::from([
            ("a".to_owned(), metric(10.0, 10)),
            ("b".to_owned(), metric(20.0, 10)),
            ("c".to_owned(), metric(30.0, 10)),
        ]);
        let ids: Vec<String> = select_talk(&agents, &metrics, &mut rng(1))
            .into_iter()
            .map(|p| p.agent.agent_id)
            .collect();
        assert_eq!(ids, ["c", "b"]);
    }

    #[test]
    fn talk_ties_are_broken_by_weight() {
        let agents = vec![talk("light", "x", 1.0), talk("heavy", "y", 9.0)];
        let mut rng = rng(5);
        let heavy_first = (0..4000)
            .filter(|_| {
                select_talk(&agents, &BTreeMap::new(), &mut rng)[0]
                    .agent
                    .agent_id
                    == "heavy"
            })
            .count();
        assert!((3400..3800).contains(&heavy_first), "{heavy_first}");
        let picks = select_talk(&agents, &BTreeMap::new(), &mut rng);
        assert!(
            picks[0].reason.contains("tie broken by weight"),
            "{}",
            picks[0].reason
        );
    }

    #[test]
    fn talk_ignores_repeated_agent_ids_and_other_agent_types() {
        let agents = vec![
            talk("a", "a", 1.0),
            talk("a", "b", 1.0),
            agent("g", AgentType::Game, 1.0),
        ];
        let picks = select_talk(&agents, &BTreeMap::new(), &mut rng(1));
        assert_eq!(picks.len(), 1);
        assert_eq!(picks[0].agent.topic.as_deref(), Some("a"));
        assert!(select_talk(&[], &BTreeMap::new(), &mut rng(1)).is_empty());
    }

    #[test]
    fn games_are_two_distinct_agents_or_as_many_as_exist() {
        let games = vec![
            agent("g1", AgentType::Game, 1.0),
            agent("g2", AgentType::Game, 3.0),
        ];
        let picks = select_games(&games, &mut rng(4));
        assert_eq!(picks.len(), 2);
        assert_ne!(picks[0].agent.agent_id, picks[1].agent.agent_id);
        assert!(
            picks[0].reason.starts_with("weighted random game: weight "),
            "{}",
            picks[0].reason
        );
        assert!(
            picks[0].reason.ends_with(" of 4 across 2 game agents"),
            "{}",
            picks[0].reason
        );
        assert_eq!(select_games(&games[..1], &mut rng(4)).len(), 1);
        assert!(select_games(&[greeting("x", None)], &mut rng(4)).is_empty());
    }

    #[test]
    fn the_same_seed_gives_the_same_choices() {
        let games: Vec<Agent> = (0..10)
            .map(|i| agent(&format!("g{i}"), AgentType::Game, 1.0 + f64::from(i)))
            .collect();
        assert_eq!(
            select_games(&games, &mut rng(99)),
            select_games(&games, &mut rng(99))
        );
    }

    /// Talk, game and greeting agents drawn from small id and topic pools,
    /// so repeated ids, shared topics and ties all occur.
    pub(crate) fn arb_agents() -> impl Strategy<Value = Vec<Agent>> {
        let one = (
            0usize..8,
            proptest::sample::select(AgentType::ALL),
            prop_oneof![Just(1.0), 0.5f64..50.0],
            0usize..5,
            proptest::option::of(proptest::sample::select(GreetingTrigger::ALL.to_vec())),
        )
            .prop_map(|(id, agent_type, weight, topic, trigger)| Agent {
                trigger: if agent_type == AgentType::Greeting {
                    trigger
                } else {
                    None
                },
                topic: (agent_type == AgentType::Talk).then(|| format!("topic{topic}")),
                ..agent(&format!("agent{id}"), agent_type, weight)
            });
        proptest::collection::vec(one, 0..14).prop_map(|mut agents| {
            for (i, a) in agents.iter_mut().enumerate() {
                a.mapping_id = i as i64;
            }
            agents
        })
    }

    pub(crate) fn arb_metrics() -> impl Strategy<Value = BTreeMap<String, TopicMetric>> {
        proptest::collection::btree_map(
            (0usize..5).prop_map(|t| format!("topic{t}")),
            (
                prop_oneof![Just(0.0), -50.0f64..500.0],
                prop_oneof![0u64..20, 0u64..300],
            )
                .prop_map(|(score, turns)| metric(score, turns)),
            0..5,
        )
    }

    fn distinct_ids(agents: &[Agent], agent_type: AgentType) -> usize {
        agents
            .iter()
            .filter(|a| a.agent_type == agent_type)
            .map(|a| a.agent_id.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Draw counts of `weights`, `draws` weighted picks on `rng`.
    fn pick_counts(weights: &[f64], draws: usize, rng: &mut StdRng) -> Vec<usize> {
        let indices: Vec<usize> = (0..weights.len()).collect();
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..draws {
            counts[*weighted_pick(&indices, |i| weights[*i], rng).unwrap()] += 1;
        }
        counts
    }

    // The two statistical tests below draw everything (the weights too) from
    // one fixed seed, so they pass or fail identically on every run. Should
    // the seed or rand's `StdRng` change, their tolerance of 0.02 is at least
    // 5.6 standard deviations of an observed share at 20,000 draws (5.0 at
    // 16,000): a false failure has a probability below 1e-5 per test.

    #[test]
    fn weighted_picks_follow_the_weights_within_two_percentage_points() {
        const DRAWS: usize = 20_000;
        let mut rng = rng(0x5eed_0001);
        for case in 0..48 {
            let weights: Vec<f64> = (0..rng.random_range(1..6))
                .map(|_| rng.random_range(0.1..100.0))
                .collect();
            let counts = pick_counts(&weights, DRAWS, &mut rng);
            let total: f64 = weights.iter().sum();
            for (i, count) in counts.iter().enumerate() {
                let observed = *count as f64 / DRAWS as f64;
                let expected = weights[i] / total;
                assert!(
                    (observed - expected).abs() < 0.02,
                    "case {case}, item {i} of {weights:?}: {observed} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn equal_weights_pick_uniformly() {
        const DRAWS: usize = 16_000;
        let mut rng = rng(0x5eed_0002);
        for n in 1usize..8 {
            let weight = rng.random_range(0.1..1000.0);
            for (i, count) in pick_counts(&vec![weight; n], DRAWS, &mut rng)
                .into_iter()
                .enumerate()
            {
                let observed = count as f64 / DRAWS as f64;
                assert!(
                    (observed - 1.0 / n as f64).abs() < 0.02,
                    "{n} items of weight {weight}, item {i}: {observed}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn weighted_sample_never_repeats_an_item(
            weights in proptest::collection::vec(prop_oneof![Just(0.0), 0.1f64..10.0], 0..10),
            k in 0usize..12,
            seed in any::<u64>(),
        ) {
            let indices: Vec<usize> = (0..weights.len()).collect();
            let sample = weighted_sample(&indices, k, |i| weights[*i], &mut rng(seed));
            let distinct: BTreeSet<usize> = sample.iter().map(|i| **i).collect();
            prop_assert_eq!(distinct.len(), sample.len());
            let eligible = weights.iter().filter(|w| **w > 0.0).count();
            prop_assert_eq!(sample.len(), k.min(eligible));
            prop_assert!(sample.iter().all(|i| weights[**i] > 0.0));
        }

        #[test]
        fn games_never_repeat_an_agent(agents in arb_agents(), seed in any::<u64>()) {
            let picks = select_games(&agents, &mut rng(seed));
            let ids: BTreeSet<&str> = picks.iter().map(|p| p.agent.agent_id.as_str()).collect();
            prop_assert_eq!(ids.len(), picks.len());
            prop_assert_eq!(picks.len(), distinct_ids(&agents, AgentType::Game).min(2));
            prop_assert!(picks.iter().all(|p| p.agent.agent_type == AgentType::Game && !p.reason.is_empty()));
        }

        #[test]
        fn talk_never_repeats_an_agent_and_always_explores_when_it_can(
            agents in arb_agents(), metrics in arb_metrics(), seed in any::<u64>(),
        ) {
            let picks = select_talk(&agents, &metrics, &mut rng(seed));
            let ids: BTreeSet<&str> = picks.iter().map(|p| p.agent.agent_id.as_str()).collect();
            prop_assert_eq!(ids.len(), picks.len());
            prop_assert_eq!(picks.len(), distinct_ids(&agents, AgentType::Talk).min(2));

            // Candidates as the rule defines them: first agent of each id.
            let mut seen = BTreeSet::new();
            let candidates: Vec<(f64, u64)> = agents
                .iter()
                .filter(|a| a.agent_type == AgentType::Talk && seen.insert(a.agent_id.clone()))
                .map(|a| {
                    let m = metrics.get(a.topic.as_deref().unwrap());
                    let (score, turns) = m.map_or((0.0, 0), |m| (m.score, m.total_turns));
                    (score * 0.7 + (100.0 - turns as f64) * 0.3, turns)
                })
                .collect();
            for pick in &picks {
                let m = metrics.get(pick.agent.topic.as_deref().unwrap());
                prop_assert_eq!(pick.total_turns, m.map_or(0, |m| m.total_turns));
                prop_assert_eq!(pick.exploration, pick.total_turns < EXPLORATION_MAX_TURNS);
            }
            if let Some(first) = picks.first() {
                let best = candidates.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
                prop_assert_eq!(first.selection_score, best);
            }
            let any_exploration = candidates.iter().any(|c| c.1 < EXPLORATION_MAX_TURNS);
            if any_exploration && !picks.is_empty() {
                prop_assert!(picks.iter().any(|p| p.exploration), "{picks:?}");
            }
            if let [first, second] = &picks[..] {
                prop_assert!(second.selection_score <= first.selection_score);
                if !second.reason.starts_with("exploration:") {
                    let mut scores: Vec<f64> = candidates.iter().map(|c| c.0).collect();
                    scores.sort_by(|a, b| b.total_cmp(a));
                    prop_assert_eq!(second.selection_score, scores[1]);
                }
            }
        }
    }
}
