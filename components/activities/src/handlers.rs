//! Parsing and answering of the suggest route.

use friendship_domain::{Agent, AgentType, Level, Pick, SuggestContext, TalkPick, UserId};
use friendship_edge::http::rfc3339;
use friendship_edge::suggestions;
use friendship_edge::{ApiError, Ctx, Reply};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestRequest {
    user_id: UserId,
    #[serde(default)]
    context: Option<SuggestContext>,
}

/// An agent as every slot of the answer shows it (fields in the order of
/// the rest of the service's JSON, alphabetical).
#[derive(Serialize)]
struct AgentView<'a> {
    agent_description: &'a str,
    agent_id: &'a str,
    agent_name: &'a str,
    agent_type: AgentType,
    reason: &'a str,
    weight: f64,
}

impl<'a> AgentView<'a> {
    fn of(agent: &'a Agent, reason: &'a str) -> Self {
        AgentView {
            agent_description: &agent.description,
            agent_id: &agent.agent_id,
            agent_name: &agent.name,
            agent_type: agent.agent_type,
            reason,
            weight: agent.weight.get(),
        }
    }

    fn pick(pick: &'a Pick) -> Self {
        AgentView::of(&pick.agent, &pick.reason)
    }
}

/// A talk agent: an agent plus the topic it covers and the user's engagement with it.
#[derive(Serialize)]
struct TalkView<'a> {
    #[serde(flatten)]
    agent: AgentView<'a>,
    topic: Option<&'a str>,
    topic_score: f64,
    total_turns: u64,
}

impl<'a> TalkView<'a> {
    fn of(pick: &'a TalkPick) -> Self {
        TalkView {
            agent: AgentView::of(&pick.agent, &pick.reason),
            topic: pick.agent.topic.as_deref(),
            topic_score: pick.topic_score,
            total_turns: pick.total_turns,
        }
    }
}

/// The answer, serialised straight from the suggestion (no JSON tree built
/// on the way: this is the service's hottest route).
#[derive(Serialize)]
struct SuggestReply<'a> {
    cached: bool,
    friendship_level: Level,
    game_agents: Vec<AgentView<'a>>,
    generated_at: String,
    greeting_agent: Option<AgentView<'a>>,
    talk_agents: Vec<TalkView<'a>>,
    user_id: &'a str,
    warnings: &'a [String],
}

/// `POST /api/v1/activities/suggest`.
pub fn suggest_activities(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let principal = ctx.authenticate()?;
    let request: SuggestRequest = ctx.json_body()?;
    ctx.user_id = Some(request.user_id.as_str().to_owned());
    principal.may_act_for(request.user_id.as_str())?;

    let context = request.context.unwrap_or_default();
    let suggested = suggestions::suggest(&request.user_id, &context, ctx.now)?;
    ctx.log_fields
        .insert("cached".into(), json!(suggested.cached));
    let s = &suggested.suggestion;
    Reply::ok(&SuggestReply {
        cached: suggested.cached,
        friendship_level: suggested.record.level,
        game_agents: s.games.iter().map(AgentView::pick).collect(),
        generated_at: rfc3339(ctx.now),
        greeting_agent: s.greeting.as_ref().map(AgentView::pick),
        talk_agents: s.talk.iter().map(TalkView::of).collect(),
        user_id: request.user_id.as_str(),
        warnings: &s.warnings,
    })
}
