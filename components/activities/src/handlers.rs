//! Parsing and answering of the suggest route.

use friendship_domain::{Agent, Pick, SuggestContext, TalkPick, UserId};
use friendship_edge::http::rfc3339;
use friendship_edge::suggestions;
use friendship_edge::{ApiError, Ctx, Reply};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestRequest {
    user_id: UserId,
    #[serde(default)]
    context: Option<SuggestContext>,
}

/// An agent as every slot of the answer shows it.
fn agent_view(agent: &Agent, reason: &str) -> Value {
    json!({
        "agent_id": agent.agent_id,
        "agent_name": agent.name,
        "agent_description": agent.description,
        "agent_type": agent.agent_type,
        "weight": agent.weight.get(),
        "reason": reason,
    })
}

fn pick_view(pick: &Pick) -> Value {
    agent_view(&pick.agent, &pick.reason)
}

/// A talk agent: an agent plus the topic it covers and the user's engagement with it.
fn talk_view(pick: &TalkPick) -> Value {
    let mut view = agent_view(&pick.agent, &pick.reason);
    view["topic"] = json!(pick.agent.topic);
    view["topic_score"] = json!(pick.topic_score);
    view["total_turns"] = json!(pick.total_turns);
    view
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
    Reply::ok(&json!({
        "user_id": request.user_id.as_str(),
        "friendship_level": suggested.record.level,
        "greeting_agent": s.greeting.as_ref().map(pick_view),
        "talk_agents": s.talk.iter().map(talk_view).collect::<Vec<_>>(),
        "game_agents": s.games.iter().map(pick_view).collect::<Vec<_>>(),
        "warnings": s.warnings,
        "cached": suggested.cached,
        "generated_at": rfc3339(ctx.now),
    }))
}
