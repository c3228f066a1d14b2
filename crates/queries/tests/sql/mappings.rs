//! The agent catalogue: create, read, replace, deactivate (each write read back with a
//! read in the same transaction, as `store::mappings` does), list with filters and pages,
//! the catalogue version every change bumps, and the active agents of a level.

use chrono::NaiveDateTime;
use friendship_queries::{friendship, mappings};
use serde::Deserialize;
use serde_json::json;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgExecutor, PgPool, Postgres};

use crate::support::{read, sqlstate, with_migrated_db, write, UNIQUE_VIOLATION};

/// A row of the mapping reads, decoded from JSON as `store::Mapping` decodes it.
#[derive(Debug, Clone, PartialEq, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub id: i64,
    pub friendship_level: String,
    pub agent_type: String,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_description: String,
    pub weight: f64,
    pub is_active: bool,
    pub greeting_trigger: Option<String>,
    pub topic: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The operator-set fields (`store::MappingFields`), `$1`..`$9` of INSERT and REPLACE.
#[derive(Debug, Clone)]
pub struct Fields {
    pub level: &'static str,
    pub agent_type: &'static str,
    pub agent_id: String,
    pub name: String,
    pub description: String,
    pub weight: f64,
    pub is_active: bool,
    pub trigger: Option<&'static str>,
    pub topic: Option<&'static str>,
}

impl Fields {
    pub fn new(level: &'static str, agent_type: &'static str, agent_id: &str) -> Fields {
        Fields {
            level,
            agent_type,
            agent_id: agent_id.to_owned(),
            name: format!("{agent_id} name"),
            description: format!("{agent_id} description"),
            weight: 1.5,
            is_active: true,
            trigger: None,
            topic: (agent_type == "talk").then_some("music"),
        }
    }

    fn bind<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(self.level)
            .bind(self.agent_type)
            .bind(&self.agent_id)
            .bind(&self.name)
            .bind(&self.description)
            .bind(self.weight)
            .bind(self.is_active)
            .bind(self.trigger)
            .bind(self.topic)
    }

    fn assert_shown_by(&self, m: &Mapping) {
        assert_eq!(
            (
                m.friendship_level.as_str(),
                m.agent_type.as_str(),
                m.agent_id.as_str()
            ),
            (self.level, self.agent_type, self.agent_id.as_str())
        );
        assert_eq!(
            (&m.agent_name, &m.agent_description),
            (&self.name, &self.description)
        );
        assert_eq!((m.weight, m.is_active), (self.weight, self.is_active));
        assert_eq!(
            (m.greeting_trigger.as_deref(), m.topic.as_deref()),
            (self.trigger, self.topic)
        );
    }
}

/// [`mappings::GET_BY_KEY`]: the mapping of `(level, agent type, agent_id)`.
async fn by_key(
    executor: impl PgExecutor<'_>,
    level: &str,
    agent_type: &str,
    agent_id: &str,
) -> Option<Mapping> {
    read(&mappings::GET_BY_KEY)
        .bind(level)
        .bind(agent_type)
        .bind(agent_id)
        .optional(executor)
        .await
}

/// As `store::insert_mapping`: [`mappings::INSERT`], then [`mappings::GET_BY_KEY`] in the
/// same transaction.
pub async fn try_insert(pool: &PgPool, fields: &Fields) -> Result<Mapping, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let affected = fields
        .bind(write(&mappings::INSERT))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    assert_eq!(affected, 1, "INSERT affects the new mapping");
    let created = by_key(&mut *tx, fields.level, fields.agent_type, &fields.agent_id)
        .await
        .expect("the new mapping reads back by its key");
    tx.commit().await?;
    Ok(created)
}

pub async fn insert(pool: &PgPool, fields: &Fields) -> Mapping {
    try_insert(pool, fields).await.unwrap()
}

/// As `store::replace_mapping`: [`mappings::REPLACE`], then, when it affected the
/// mapping, [`mappings::GET`] in the same transaction; `None` for an unknown id.
async fn try_replace(
    pool: &PgPool,
    id: i64,
    fields: &Fields,
) -> Result<Option<Mapping>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let affected = fields
        .bind(write(&mappings::REPLACE))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let replaced = match affected {
        0 => None,
        1 => Some(
            get(&mut *tx, id)
                .await
                .expect("the replaced mapping reads back"),
        ),
        n => panic!("REPLACE affected {n} rows"),
    };
    tx.commit().await?;
    Ok(replaced)
}

/// [`mappings::GET`].
async fn get(executor: impl PgExecutor<'_>, id: i64) -> Option<Mapping> {
    read(&mappings::GET).bind(id).optional(executor).await
}

/// As `store::deactivate_mapping`: [`mappings::DEACTIVATE`], then, when it affected the
/// mapping, [`mappings::GET`] in the same transaction; `None` for an unknown id.
async fn deactivate(pool: &PgPool, id: i64) -> Option<Mapping> {
    let mut tx = pool.begin().await.unwrap();
    let affected = write(&mappings::DEACTIVATE)
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    let deactivated = match affected {
        0 => None,
        1 => Some(get(&mut *tx, id).await.expect("the mapping reads back")),
        n => panic!("DEACTIVATE affected {n} rows"),
    };
    tx.commit().await.unwrap();
    deactivated
}

/// [`mappings::CATALOGUE_VERSION`].
async fn version(pool: &PgPool) -> i64 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Version {
        version: i64,
    }
    read(&mappings::CATALOGUE_VERSION)
        .one::<Version>(pool)
        .await
        .version
}

/// The list filters, `None` for no filter: `(level, agent type, is_active)`.
type Filter = (Option<&'static str>, Option<&'static str>, Option<bool>);

/// [`mappings::COUNT`].
async fn count(pool: &PgPool, (level, agent_type, active): Filter) -> i64 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Count {
        total: i64,
    }
    read(&mappings::COUNT)
        .bind(level)
        .bind(agent_type)
        .bind(active)
        .one::<Count>(pool)
        .await
        .total
}

/// The agent ids of a page of [`mappings::LIST`].
async fn list(
    pool: &PgPool,
    (level, agent_type, active): Filter,
    limit: i64,
    offset: i64,
) -> Vec<String> {
    let rows: Vec<Mapping> = read(&mappings::LIST)
        .bind(level)
        .bind(agent_type)
        .bind(active)
        .bind(limit)
        .bind(offset)
        .rows(pool)
        .await;
    rows.into_iter().map(|m| m.agent_id).collect()
}

/// An active agent of [`friendship::SUGGESTION_INPUTS`]'s `agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActiveAgent {
    id: i64,
    agent_id: String,
    agent_name: String,
    agent_description: String,
    agent_type: String,
    weight: f64,
    greeting_trigger: Option<String>,
    topic: Option<String>,
}

/// The one row of [`friendship::SUGGESTION_INPUTS`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestionInputs {
    version: i64,
    status: Option<serde_json::Value>,
    agents: Vec<ActiveAgent>,
}

/// The row as the statement answers it: JSON as text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuggestionInputsRow {
    version: i64,
    status: Option<String>,
    agents: String,
}

async fn suggestion_inputs(pool: &PgPool, user_id: &str) -> SuggestionInputs {
    let mut rows: Vec<SuggestionInputsRow> = read(&friendship::SUGGESTION_INPUTS)
        .bind(user_id)
        .rows(pool)
        .await;
    assert_eq!(rows.len(), 1, "one row, whatever matches");
    let row = rows.remove(0);
    SuggestionInputs {
        version: row.version,
        status: row.status.map(|s| serde_json::from_str(&s).unwrap()),
        agents: serde_json::from_str(&row.agents).unwrap(),
    }
}

/// A user at `score`, hence at the level the score makes.
async fn user_with_score(pool: &PgPool, user_id: &str, score: f64) {
    sqlx::query("INSERT INTO friendship_status (user_id, friendship_score) VALUES ($1, $2)")
        .bind(user_id)
        .bind(score)
        .execute(pool)
        .await
        .unwrap();
}

#[test]
fn a_created_mapping_reads_back_with_utc_timestamps() {
    with_migrated_db(|db| async move {
        let mut fields = Fields::new("friend", "greeting", "birthday-bot");
        fields.trigger = Some("birthday");
        fields.weight = 1000.0;
        let created = insert(&db.pool, &fields).await;
        fields.assert_shown_by(&created);
        assert_eq!(created.created_at, created.updated_at);
        let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!((now - created.created_at.and_utc()).abs() < chrono::TimeDelta::seconds(60));
        assert_eq!(get(&db.pool, created.id).await, Some(created.clone()));
        assert_eq!(get(&db.pool, created.id + 1).await, None);

        let talk = insert(&db.pool, &Fields::new("friend", "talk", "dj")).await;
        assert_eq!(talk.topic.as_deref(), Some("music"));
        assert!(talk.id > created.id);
    });
}

#[test]
fn replace_rewrites_every_field_and_deactivate_only_the_flag() {
    with_migrated_db(|db| async move {
        let created = insert(&db.pool, &Fields::new("stranger", "game", "quiz")).await;
        let mut fields = Fields::new("acquaintance", "talk", "quiz-2");
        fields.name = "Quiz two".into();
        fields.description = String::new();
        fields.weight = 0.25;
        fields.is_active = false;
        fields.topic = Some("history");
        let replaced = try_replace(&db.pool, created.id, &fields)
            .await
            .unwrap()
            .unwrap();
        fields.assert_shown_by(&replaced);
        assert_eq!(
            (replaced.id, replaced.created_at),
            (created.id, created.created_at)
        );
        assert!(replaced.updated_at >= created.updated_at);
        assert_eq!(get(&db.pool, created.id).await, Some(replaced.clone()));

        fields.is_active = true;
        try_replace(&db.pool, created.id, &fields)
            .await
            .unwrap()
            .unwrap();
        let deactivated = deactivate(&db.pool, created.id).await.unwrap();
        assert!(!deactivated.is_active);
        fields.is_active = false;
        fields.assert_shown_by(&deactivated);

        assert_eq!(
            try_replace(&db.pool, created.id + 100, &fields)
                .await
                .unwrap(),
            None
        );
        assert_eq!(deactivate(&db.pool, created.id + 100).await, None);
    });
}

#[test]
fn a_duplicate_mapping_fails_with_a_unique_violation_even_against_an_inactive_one() {
    with_migrated_db(|db| async move {
        let fields = Fields::new("friend", "game", "chess");
        let first = insert(&db.pool, &fields).await;
        assert_eq!(
            sqlstate(try_insert(&db.pool, &fields).await),
            UNIQUE_VIOLATION
        );

        deactivate(&db.pool, first.id).await.unwrap();
        let mut renamed = fields.clone();
        renamed.name = "Another chess".into();
        assert_eq!(
            sqlstate(try_insert(&db.pool, &renamed).await),
            UNIQUE_VIOLATION,
            "inactive counts"
        );

        // The same agent id at another level or of another type is another mapping.
        let other = insert(&db.pool, &Fields::new("stranger", "game", "chess")).await;
        insert(&db.pool, &Fields::new("friend", "talk", "chess")).await;
        assert_eq!(
            sqlstate(try_replace(&db.pool, other.id, &fields).await),
            UNIQUE_VIOLATION,
            "replacing onto an existing key"
        );
        assert_eq!(
            get(&db.pool, other.id).await.unwrap().friendship_level,
            "stranger"
        );
    });
}

#[test]
fn every_change_to_the_catalogue_bumps_the_version() {
    with_migrated_db(|db| async move {
        assert_eq!(version(&db.pool).await, 1, "the migration seeds version 1");
        let created = insert(&db.pool, &Fields::new("friend", "game", "chess")).await;
        assert_eq!(version(&db.pool).await, 2);
        let mut fields = Fields::new("friend", "game", "chess");
        fields.weight = 2.0;
        try_replace(&db.pool, created.id, &fields)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version(&db.pool).await, 3);
        deactivate(&db.pool, created.id).await.unwrap();
        assert_eq!(version(&db.pool).await, 4);

        let before = version(&db.pool).await;
        try_insert(&db.pool, &fields).await.unwrap_err();
        assert_eq!(
            version(&db.pool).await,
            before,
            "a failed statement bumps nothing"
        );
        get(&db.pool, created.id).await.unwrap();
        count(&db.pool, (None, None, None)).await;
        suggestion_inputs(&db.pool, "someone").await;
        assert_eq!(version(&db.pool).await, before, "reads bump nothing");
    });
}

#[test]
fn count_and_list_apply_each_filter_and_treat_null_as_no_filter() {
    with_migrated_db(|db| async move {
        let catalogue = [
            ("stranger", "greeting", "s-hello", true),
            ("stranger", "game", "s-quiz", true),
            ("stranger", "talk", "s-dj", false),
            ("friend", "greeting", "f-hello", true),
            ("friend", "game", "f-chess", false),
            ("friend", "game", "f-quiz", true),
            ("acquaintance", "talk", "a-dj", true),
        ];
        for (level, agent_type, agent_id, active) in catalogue {
            let mut fields = Fields::new(level, agent_type, agent_id);
            fields.is_active = active;
            insert(&db.pool, &fields).await;
        }
        let all: Vec<String> = catalogue.iter().map(|m| m.2.to_owned()).collect();
        let cases: [(Filter, &[&str]); 7] = [
            (
                (None, None, None),
                &[
                    "s-hello", "s-quiz", "s-dj", "f-hello", "f-chess", "f-quiz", "a-dj",
                ],
            ),
            (
                (Some("friend"), None, None),
                &["f-hello", "f-chess", "f-quiz"],
            ),
            ((None, Some("game"), None), &["s-quiz", "f-chess", "f-quiz"]),
            ((None, None, Some(false)), &["s-dj", "f-chess"]),
            (
                (None, None, Some(true)),
                &["s-hello", "s-quiz", "f-hello", "f-quiz", "a-dj"],
            ),
            ((Some("friend"), Some("game"), Some(true)), &["f-quiz"]),
            ((Some("acquaintance"), Some("greeting"), None), &[]),
        ];
        for (filter, expected) in cases {
            assert_eq!(list(&db.pool, filter, 100, 0).await, expected, "{filter:?}");
            assert_eq!(
                count(&db.pool, filter).await,
                expected.len() as i64,
                "{filter:?}"
            );
        }
        assert_eq!(
            list(&db.pool, (None, None, None), 100, 0).await,
            all,
            "ordered by id"
        );

        // Pages: limit and offset over the same order; the count ignores them.
        assert_eq!(list(&db.pool, (None, None, None), 3, 0).await, all[0..3]);
        assert_eq!(list(&db.pool, (None, None, None), 3, 3).await, all[3..6]);
        assert_eq!(list(&db.pool, (None, None, None), 3, 6).await, all[6..]);
        assert!(list(&db.pool, (None, None, None), 3, 7).await.is_empty());
        assert!(list(&db.pool, (None, None, None), 0, 0).await.is_empty());
        assert_eq!(
            list(&db.pool, (None, None, Some(true)), 2, 1).await,
            ["s-quiz", "f-hello"]
        );
    });
}

#[test]
fn suggestion_inputs_are_the_active_agents_of_the_users_level_with_the_status_and_version() {
    with_migrated_db(|db| async move {
        let mut greeting = Fields::new("friend", "greeting", "f-birthday");
        greeting.trigger = Some("birthday");
        let greeting = insert(&db.pool, &greeting).await;
        let talk = insert(&db.pool, &Fields::new("friend", "talk", "f-dj")).await;
        let retired = insert(&db.pool, &Fields::new("friend", "game", "f-chess")).await;
        deactivate(&db.pool, retired.id).await.unwrap();
        let quiz = insert(&db.pool, &Fields::new("stranger", "game", "s-quiz")).await;
        let version = version(&db.pool).await;
        // 500 is the lowest friend score, 499.99 still an acquaintance's.
        user_with_score(&db.pool, "u-friend", 500.0).await;
        user_with_score(&db.pool, "u-acquaintance", 499.99).await;

        let friend = suggestion_inputs(&db.pool, "u-friend").await;
        assert_eq!(friend.version, version);
        let status = friend.status.expect("a known user's status");
        assert_eq!(
            (&status["user_id"], &status["friendship_level"]),
            (&json!("u-friend"), &json!("friend"))
        );
        assert_eq!(status["friendship_score"].as_f64(), Some(500.0));
        let ids: Vec<_> = friend.agents.iter().map(|a| a.id).collect();
        assert_eq!(
            ids,
            [greeting.id, talk.id],
            "active ones of that level, by id"
        );
        let first = &friend.agents[0];
        assert_eq!(
            (
                first.agent_id.as_str(),
                first.agent_name.as_str(),
                first.agent_description.as_str(),
                first.agent_type.as_str(),
                first.weight,
                first.greeting_trigger.as_deref(),
                first.topic.as_deref(),
            ),
            (
                "f-birthday",
                "f-birthday name",
                "f-birthday description",
                "greeting",
                1.5,
                Some("birthday"),
                None,
            )
        );
        assert_eq!(friend.agents[1].topic.as_deref(), Some("music"));

        let unknown = suggestion_inputs(&db.pool, "u-never-seen").await;
        assert_eq!(unknown.status, None);
        let ids: Vec<_> = unknown.agents.iter().map(|a| a.id).collect();
        assert_eq!(ids, [quiz.id], "an unknown user is a stranger");

        let acquaintance = suggestion_inputs(&db.pool, "u-acquaintance").await;
        assert_eq!(
            acquaintance.status.unwrap()["friendship_level"],
            "acquaintance"
        );
        assert!(
            acquaintance.agents.is_empty(),
            "no active acquaintance agent"
        );
        assert_eq!(acquaintance.version, version);
    });
}

#[test]
fn a_level_without_active_agents_gives_no_agent_and_still_the_version() {
    with_migrated_db(|db| async move {
        let inputs = suggestion_inputs(&db.pool, "u-stranger").await;
        assert_eq!((inputs.version, inputs.agents.len()), (1, 0));
        let only = insert(&db.pool, &Fields::new("stranger", "game", "s-quiz")).await;
        deactivate(&db.pool, only.id).await.unwrap();
        let inputs = suggestion_inputs(&db.pool, "u-stranger").await;
        assert_eq!((inputs.version, inputs.agents.len()), (3, 0));
    });
}

#[test]
fn get_by_key_reads_the_mapping_of_exactly_that_key_and_sees_its_own_transaction() {
    with_migrated_db(|db| async move {
        let chess = insert(&db.pool, &Fields::new("friend", "game", "chess")).await;
        let other_level = insert(&db.pool, &Fields::new("stranger", "game", "chess")).await;
        let other_type = insert(&db.pool, &Fields::new("friend", "talk", "chess")).await;
        for (key, expected) in [
            (("friend", "game", "chess"), &chess),
            (("stranger", "game", "chess"), &other_level),
            (("friend", "talk", "chess"), &other_type),
        ] {
            assert_eq!(
                by_key(&db.pool, key.0, key.1, key.2).await.as_ref(),
                Some(expected),
                "{key:?}"
            );
        }
        assert_eq!(by_key(&db.pool, "friend", "greeting", "chess").await, None);
        assert_eq!(
            read(&mappings::GET_BY_KEY)
                .bind("acquaintance")
                .bind("game")
                .bind("chess")
                .json(&db.pool)
                .await,
            "[]"
        );

        // Written and read back in one transaction: the read sees the write at once,
        // others only after the commit.
        let fields = Fields::new("acquaintance", "game", "go");
        let mut tx = db.pool.begin().await.unwrap();
        fields
            .bind(write(&mappings::INSERT))
            .execute(&mut *tx)
            .await
            .unwrap();
        let created = by_key(&mut *tx, "acquaintance", "game", "go")
            .await
            .expect("visible to its own transaction");
        fields.assert_shown_by(&created);
        assert_eq!(by_key(&db.pool, "acquaintance", "game", "go").await, None);
        tx.commit().await.unwrap();
        assert_eq!(
            by_key(&db.pool, "acquaintance", "game", "go").await,
            Some(created)
        );
    });
}

#[test]
fn replace_and_deactivate_affect_one_row_for_a_known_id_and_none_for_an_unknown_one() {
    with_migrated_db(|db| async move {
        let created = insert(&db.pool, &Fields::new("friend", "game", "chess")).await;
        let fields = Fields::new("friend", "game", "chess");
        for (id, expected) in [(created.id, 1), (created.id + 1, 0)] {
            let replaced = fields
                .bind(write(&mappings::REPLACE))
                .bind(id)
                .execute(&db.pool)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(replaced, expected, "REPLACE of {id}");
            for _ in 0..2 {
                let deactivated = write(&mappings::DEACTIVATE)
                    .bind(id)
                    .execute(&db.pool)
                    .await
                    .unwrap()
                    .rows_affected();
                assert_eq!(
                    deactivated, expected,
                    "DEACTIVATE of {id}, an inactive one too"
                );
            }
        }
    });
}
