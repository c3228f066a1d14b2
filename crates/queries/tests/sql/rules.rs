//! The rules every statement kind obeys, checked over every statement of the crate
//! (`friendship_queries::READS` and `support::WRITES`):
//! - a read answers exactly one row, whose TEXT `rows` is a JSON array, even when
//!   nothing matches (Spin 4.0.0–4.0.2 never return from a `query` with no rows);
//! - a read changes nothing (no `ModifyTable` in its plan), and only the
//!   `LOCKING_READS` lock rows (`LockRows`);
//! - a write prepares untyped, as Spin prepares it;
//! - the JSON of a read carries exactly what its select answers.
//!
//! Statements are prepared with SQL `PREPARE` (Postgres infers the parameter types, as
//! for Spin) over the simple protocol, and executed with a NULL for every parameter.

use std::collections::BTreeSet;

use friendship_queries::{events, friendship, mappings, Read, LOCKING_READS, READS};
use serde_json::{json, Value};
use sqlx::{Column, PgConnection, Row, TypeInfo};

use crate::mappings::{insert, Fields, Mapping};
use crate::support::{
    apply, ensure_user, new_event, read, with_migrated_db, Change, ChangeExt, Claimed, EventRow,
    Locked, Status, WRITES,
};

/// The name every statement is prepared under here.
const PREPARED: &str = "rule_statement";

/// `PREPARE`s `sql` untyped on `conn`; the number of parameters Postgres inferred.
async fn prepare(conn: &mut PgConnection, name: &str, sql: &str) -> usize {
    sqlx::raw_sql(&format!("PREPARE {PREPARED} AS {sql}"))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name} does not prepare untyped: {e}"));
    let count: Option<i32> = sqlx::query_scalar(
        "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
    )
    .bind(PREPARED)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    count.unwrap_or(0) as usize
}

async fn deallocate(conn: &mut PgConnection) {
    sqlx::raw_sql(&format!("DEALLOCATE {PREPARED}"))
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// `EXECUTE` of the prepared statement with a NULL for each of its `parameters`.
fn execute_with_nulls(parameters: usize) -> String {
    if parameters == 0 {
        format!("EXECUTE {PREPARED}")
    } else {
        format!(
            "EXECUTE {PREPARED}({})",
            vec!["NULL"; parameters].join(", ")
        )
    }
}

fn is_locking(statement: &Read) -> bool {
    LOCKING_READS.contains(&statement)
}

/// Runs `body` on one connection for every read, inside a transaction for the locking
/// ones (rolled back), with the read prepared as `PREPARED`; `body` gets the read's
/// name and parameter count.
async fn for_every_read<F>(conn: &mut PgConnection, mut body: F)
where
    F: for<'c> FnMut(
        &'c mut PgConnection,
        &'static str,
        &'static Read,
        usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'c>>,
{
    for (name, statement) in READS {
        let locking = is_locking(statement);
        if locking {
            sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        }
        let parameters = prepare(conn, name, statement.sql).await;
        body(&mut *conn, name, statement, parameters).await;
        deallocate(conn).await;
        if locking {
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
        }
    }
}

/// The `rows` of every read when nothing matches, on a freshly migrated database: no
/// catalogue, no user, no event; only the catalogue version the migration creates.
fn answers_when_nothing_matches(name: &str) -> Value {
    let version = json!([{ "version": 1 }]);
    match name {
        "events::ANY_DUE" => {
            json!([{ "due": false, "unfinished": false, "unpublished": false }])
        }
        "mappings::COUNT" | "rejected::COUNT" | "events::COUNT_EVENTS" => json!([{ "total": 0 }]),
        "mappings::CATALOGUE_VERSION" | "health::PROBE" => version,
        // Outside a transaction that wrote or locked.
        "session::CLEAN" => json!([{ "clean": true }]),
        // The version is always there; no such user, and a stranger's (empty) agents.
        "friendship::SUGGESTION_INPUTS" => {
            json!([{ "version": 1, "status": null, "agents": "[]" }])
        }
        // Zeros, every bucket empty, and the version.
        "metrics::SNAPSHOT" => {
            let buckets: Vec<String> = [
                "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "300", "900",
                "3600",
            ]
            .iter()
            .map(|le| format!(r#"{{"le" : {le}, "count" : 0}}"#))
            .collect();
            json!([{
                "events_pending": 0, "events_failed": 0, "oldest_pending_age_seconds": 0,
                "events_processed": 0, "scoring_attempts": 0, "scoring_failures": 0,
                "rejected_messages": 0, "users_stranger": 0, "users_acquaintance": 0,
                "users_friend": 0, "lag_seconds_sum": 0,
                "lag_buckets": format!("[{}]", buckets.join(", ")),
                "catalogue_version": 1,
            }])
        }
        _ => json!([]),
    }
}

#[test]
fn every_read_answers_exactly_one_row_holding_a_json_array_when_nothing_matches() {
    with_migrated_db(|db| async move {
        let empty: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM friendship_agent_mapping)
                  + (SELECT count(*) FROM friendship_status)
                  + (SELECT count(*) FROM conversation_events)
                  + (SELECT count(*) FROM rejected_messages)",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            empty, 0,
            "a fresh database: no catalogue, user, event or rejection"
        );

        let mut conn = db.pool.acquire().await.unwrap();
        let mut checked = 0;
        for_every_read(&mut conn, |conn, name, _, parameters| {
            checked += 1;
            Box::pin(async move {
                let answered = sqlx::raw_sql(&execute_with_nulls(parameters))
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap_or_else(|e| panic!("{name} with NULLs: {e}"));
                assert_eq!(answered.len(), 1, "{name} answers exactly one row");
                let row = &answered[0];
                let columns: Vec<(&str, &str)> = row
                    .columns()
                    .iter()
                    .map(|c| (c.name(), c.type_info().name()))
                    .collect();
                assert_eq!(columns, [("rows", "TEXT")], "{name}");
                let rows: Option<String> = row.try_get("rows").unwrap();
                let rows = rows.unwrap_or_else(|| panic!("{name}: `rows` is NULL"));
                let rows: Value = serde_json::from_str(&rows)
                    .unwrap_or_else(|e| panic!("{name}: `rows` is not JSON ({e}): {rows}"));
                assert!(rows.is_array(), "{name}: {rows}");
                assert_eq!(rows, answers_when_nothing_matches(name), "{name}");
            })
        })
        .await;
        assert_eq!(checked, READS.len());
    });
}

/// Every `Node Type` of an `EXPLAIN (FORMAT JSON)` plan, at any depth (CTEs and
/// subplans included), and `function NAME` for each function a Function Scan
/// calls.
fn node_types(plan: &Value, found: &mut BTreeSet<String>) {
    match plan {
        Value::Object(fields) => {
            for (key, value) in fields {
                match (key.as_str(), value) {
                    ("Node Type", Value::String(node)) => {
                        found.insert(node.clone());
                    }
                    ("Function Name", Value::String(function)) => {
                        found.insert(format!("function {function}"));
                    }
                    _ => node_types(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| node_types(item, found)),
        _ => {}
    }
}

/// The functions of the schema that a plan's Function Scans call (see
/// [`node_types`]), each with its volatility: `v`, `s` or `i` (`pg_proc`).
async fn called_functions(
    conn: &mut PgConnection,
    nodes: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut called = Vec::new();
    for name in nodes
        .iter()
        .filter_map(|node| node.strip_prefix("function "))
    {
        let volatility: Option<String> = sqlx::query_scalar(
            "SELECT p.provolatile::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.proname = $1 AND n.nspname = current_schema()",
        )
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .unwrap();
        if let Some(volatility) = volatility {
            called.push((name.to_owned(), volatility));
        }
    }
    called
}

/// The node types of the plan of the prepared statement, run with NULLs.
async fn plan_nodes(conn: &mut PgConnection, name: &str, parameters: usize) -> BTreeSet<String> {
    let explain = format!("EXPLAIN (FORMAT JSON) {}", execute_with_nulls(parameters));
    let row = sqlx::raw_sql(&explain)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name}: {explain}: {e}"));
    let plan: Value = row.try_get(0).unwrap();
    let mut found = BTreeSet::new();
    node_types(&plan, &mut found);
    assert!(!found.is_empty(), "{name}: no plan node found in {plan}");
    found
}

#[test]
fn no_read_changes_anything_and_only_the_locking_reads_lock_rows() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        let mut locking = Vec::new();
        for_every_read(&mut conn, |conn, name, statement, parameters| {
            if is_locking(statement) {
                locking.push(name);
            }
            Box::pin(async move {
                let nodes = plan_nodes(conn, name, parameters).await;
                assert!(
                    !nodes.contains("ModifyTable"),
                    "{name} changes the database: {nodes:?}"
                );
                // A function of the schema that a read calls is declared STABLE:
                // Postgres then refuses any change it would make.
                for (function, volatility) in called_functions(conn, &nodes).await {
                    assert_eq!(
                        volatility, "s",
                        "{name} calls {function}, which is not STABLE"
                    );
                }
                assert_eq!(
                    nodes.contains("LockRows"),
                    is_locking(statement),
                    "{name}: locks rows if and only if it is in LOCKING_READS: {nodes:?}"
                );
            })
        })
        .await;
        assert_eq!(
            locking,
            [
                "events::CLAIM_DUE_EVENTS",
                "friendship::LOCK_USERS",
                "friendship::CLAIM_DECAY",
                "level_changes::CLAIM_UNPUBLISHED"
            ],
            "the locking reads were all found in READS"
        );
    });
}

#[test]
fn every_write_prepares_untyped_and_its_plan_modifies_a_table() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        for (name, statement) in WRITES {
            let parameters = prepare(&mut conn, name, statement.sql).await;
            // The same detector that finds no ModifyTable in any read finds one
            // here, or a call of a VOLATILE function of the schema (a write
            // planned once per connection, see `events::INSERT_EVENTS`).
            let nodes = plan_nodes(&mut conn, name, parameters).await;
            let volatile_call = called_functions(&mut conn, &nodes)
                .await
                .iter()
                .any(|(_, volatility)| volatility == "v");
            assert!(
                nodes.contains("ModifyTable") || volatile_call,
                "{name}: {nodes:?}"
            );
            deallocate(&mut conn).await;
        }
    });
}

#[test]
fn the_json_of_a_read_carries_exactly_what_its_select_answers() {
    with_migrated_db(|db| async move {
        // A user with a score, topics, an emotion, a streak and an interaction date.
        ensure_user(&db.pool, "user-1").await;
        let event = new_event(&db.pool, "user-1").await;
        let now = chrono::Utc::now();
        let change = Change {
            streak_day: Some(4),
            last_emotion: Some(friendship_domain::Emotion::Happy),
            ..Change::conversation("user-1", event, 123.456_789, 7)
                .topic("music", 4.25, 3, now)
                .topic("chess \"quoted\" é", 0.1, 1, now)
        };
        apply(&db.pool, &change).await;
        let pending = new_event(&db.pool, "user-1").await;
        let mut fields = Fields::new("friend", "greeting", "birthday-bot");
        fields.trigger = Some("birthday");
        fields.weight = 0.1;
        let mapping = insert(&db.pool, &fields).await;

        async fn both<T>(
            conn: &mut PgConnection,
            statement: &Read,
            bind: &[Bind],
        ) -> (Vec<T>, Vec<T>)
        where
            T: serde::de::DeserializeOwned
                + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
                + Send
                + Unpin,
        {
            let mut select = sqlx::query_as::<_, T>(statement.select);
            let mut json = read(statement);
            for value in bind {
                match value {
                    Bind::Text(v) => {
                        select = select.bind(*v);
                        json = json.bind(*v);
                    }
                    Bind::Uuid(v) => {
                        select = select.bind(*v);
                        json = json.bind(*v);
                    }
                    Bind::Int8(v) => {
                        select = select.bind(*v);
                        json = json.bind(*v);
                    }
                    Bind::Null => {
                        select = select.bind(None::<String>);
                        json = json.bind(None::<String>);
                    }
                    Bind::NullBool => {
                        select = select.bind(None::<bool>);
                        json = json.bind(None::<bool>);
                    }
                }
            }
            let selected = select.fetch_all(&mut *conn).await.unwrap();
            let decoded = json.rows(&mut *conn).await;
            (selected, decoded)
        }

        let mut conn = db.pool.acquire().await.unwrap();
        let (selected, decoded) =
            both::<Status>(&mut conn, &friendship::GET_STATUS, &[Bind::Text("user-1")]).await;
        assert_eq!(selected.len(), 1);
        assert!(selected[0].last_interaction_date.is_some());
        assert_eq!(selected[0].metrics().len(), 2);
        assert_eq!(decoded, selected, "GET_STATUS");
        // SUGGESTION_INPUTS writes its status columns out in its own function:
        // its status object is what GET_STATUS selects.
        #[derive(serde::Deserialize)]
        struct Inputs {
            status: Option<String>,
        }
        let inputs: Vec<Inputs> = read(&friendship::SUGGESTION_INPUTS)
            .bind("user-1")
            .rows(&mut *conn)
            .await;
        let status: Status = serde_json::from_str(inputs[0].status.as_deref().unwrap()).unwrap();
        assert_eq!(status, selected[0], "SUGGESTION_INPUTS's status");

        for id in [event, pending] {
            let (selected, decoded) =
                both::<EventRow>(&mut conn, &events::GET_EVENT, &[Bind::Uuid(id)]).await;
            assert_eq!(selected.len(), 1);
            assert_eq!(decoded, selected, "GET_EVENT");
        }

        let (selected, decoded) =
            both::<Mapping>(&mut conn, &mappings::GET, &[Bind::Int8(mapping.id)]).await;
        assert_eq!(selected, std::slice::from_ref(&mapping));
        assert_eq!(decoded, selected, "GET");
        let key = [
            Bind::Text("friend"),
            Bind::Text("greeting"),
            Bind::Text("birthday-bot"),
        ];
        let (selected, decoded) = both::<Mapping>(&mut conn, &mappings::GET_BY_KEY, &key).await;
        assert_eq!(selected, std::slice::from_ref(&mapping));
        assert_eq!(decoded, selected, "GET_BY_KEY");
        let filters = [
            Bind::Null,
            Bind::Null,
            Bind::NullBool,
            Bind::Int8(10),
            Bind::Int8(0),
        ];
        let (selected, decoded) = both::<Mapping>(&mut conn, &mappings::LIST, &filters).await;
        assert_eq!(selected, [mapping]);
        assert_eq!(decoded, selected, "LIST");

        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        let (selected, decoded) = both::<LockedRow>(
            &mut conn,
            &friendship::LOCK_USERS,
            &[Bind::Text(r#"["user-1"]"#)],
        )
        .await;
        assert_eq!(selected.len(), 1);
        assert_eq!(decoded, selected, "LOCK_USERS");
        let (selected, decoded) =
            both::<Claimed>(&mut conn, &events::CLAIM_DUE_EVENTS, &[Bind::Int8(10)]).await;
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].processing_id, pending);
        assert_eq!(decoded, selected, "CLAIM_DUE_EVENTS");
        sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
    });
}

/// The domain's [`Locked`] read from a select's own columns, for [`both`].
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(transparent)]
struct LockedRow(Locked);

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for LockedRow {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let level: String = row.try_get("friendship_level")?;
        Ok(LockedRow(Locked {
            user_id: row.try_get("user_id")?,
            last_interaction: row
                .try_get::<Option<chrono::NaiveDateTime>, _>("last_interaction_date")?
                .map(|t| t.and_utc()),
            streak_day: row.try_get("streak_day")?,
            friendship_level: level
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        }))
    }
}

/// A parameter of [`the_json_of_a_read_carries_exactly_what_its_select_answers`], bound
/// to both the select and the read.
enum Bind {
    Text(&'static str),
    Uuid(uuid::Uuid),
    Int8(i64),
    /// A NULL text.
    Null,
    NullBool,
}
