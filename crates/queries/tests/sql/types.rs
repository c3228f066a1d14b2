//! The Postgres types of every statement's parameters and result columns.
//!
//! The runtime tests bind through sqlx, which tells Postgres the type of each argument;
//! Spin's host prepares a statement without types, lets Postgres infer them, and then
//! refuses a value whose type differs (an `int8` value for an `int4` parameter fails).
//! So this module prepares each statement *untyped*, as Spin does, and compares the
//! inferred parameter types with what `crates/edge/src/store.rs` and `scorer.rs` bind.
//!
//! Spin's Postgres interface cannot return a `timestamptz` column at all (the whole
//! query fails, even for NULL) nor a plain `json` one; every result column must be one
//! of the types the components decode.

use friendship_queries::{events, friendship, health, mappings, session};
use sqlx::{Column, Either, Executor, Statement, TypeInfo};

use crate::support::with_migrated_db;

/// One statement of the crate, with the parameter types the components bind and the
/// `(name, type)` of its result columns.
struct Signature {
    name: &'static str,
    sql: &'static str,
    parameters: &'static [&'static str],
    columns: &'static [(&'static str, &'static str)],
}

/// The types a component decodes from a result: `bool`, `i32`, `i64`, `f64`, `String`,
/// `NaiveDateTime` (plain `timestamp`) and `uuid`.
const READABLE: [&str; 7] = [
    "BOOL",
    "INT4",
    "INT8",
    "FLOAT8",
    "TEXT",
    "TIMESTAMP",
    "UUID",
];

const STATUS: [(&str, &str); 8] = [
    ("user_id", "TEXT"),
    ("friendship_score", "FLOAT8"),
    ("friendship_level", "TEXT"),
    ("last_interaction_date", "TIMESTAMP"),
    ("streak_day", "INT4"),
    ("total_turns", "INT8"),
    ("topic_metrics", "TEXT"),
    ("last_emotion", "TEXT"),
];

const APPLIED: [(&str, &str); 9] = [
    STATUS[0],
    STATUS[1],
    STATUS[2],
    STATUS[3],
    STATUS[4],
    STATUS[5],
    STATUS[6],
    STATUS[7],
    ("previous_level", "TEXT"),
];

const MAPPING: [(&str, &str); 12] = [
    ("id", "INT8"),
    ("friendship_level", "TEXT"),
    ("agent_type", "TEXT"),
    ("agent_id", "TEXT"),
    ("agent_name", "TEXT"),
    ("agent_description", "TEXT"),
    ("weight", "FLOAT8"),
    ("is_active", "BOOL"),
    ("greeting_trigger", "TEXT"),
    ("topic", "TEXT"),
    ("created_at", "TIMESTAMP"),
    ("updated_at", "TIMESTAMP"),
];

/// The mapping fields `$1`..`$9` of INSERT and REPLACE (`MappingFields::params`).
const MAPPING_FIELDS: [&str; 9] = [
    "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "FLOAT8", "BOOL", "TEXT", "TEXT",
];

const REPLACE_PARAMETERS: [&str; 10] = [
    "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "FLOAT8", "BOOL", "TEXT", "TEXT", "INT8",
];

/// Every constant of the crate.
const SIGNATURES: &[Signature] = &[
    // events
    Signature {
        name: "events::INSERT_EVENT",
        sql: events::INSERT_EVENT,
        parameters: &["TEXT", "TEXT", "TEXT"],
        columns: &[("processing_id", "UUID")],
    },
    Signature {
        name: "events::FIND_EVENT_BY_CONVERSATION",
        sql: events::FIND_EVENT_BY_CONVERSATION,
        parameters: &["TEXT", "TEXT"],
        columns: &[
            ("processing_id", "UUID"),
            ("user_id", "TEXT"),
            ("same_payload", "BOOL"),
        ],
    },
    Signature {
        name: "events::GET_EVENT",
        sql: events::GET_EVENT,
        parameters: &["UUID"],
        columns: &[
            ("processing_id", "UUID"),
            ("conversation_id", "TEXT"),
            ("user_id", "TEXT"),
            ("status", "TEXT"),
            ("attempts", "INT4"),
            ("last_error", "TEXT"),
            ("accepted_at", "TIMESTAMP"),
            ("processed_at", "TIMESTAMP"),
        ],
    },
    Signature {
        name: "session::CLEAN",
        sql: session::CLEAN,
        parameters: &[],
        columns: &[("clean", "BOOL")],
    },
    Signature {
        name: "events::ANY_DUE",
        sql: events::ANY_DUE,
        parameters: &[],
        columns: &[("due", "BOOL")],
    },
    Signature {
        name: "events::CLAIM_DUE_EVENT",
        sql: events::CLAIM_DUE_EVENT,
        parameters: &[],
        columns: &[
            ("processing_id", "UUID"),
            ("user_id", "TEXT"),
            ("payload", "TEXT"),
            ("attempts", "INT4"),
            ("now", "TIMESTAMP"),
        ],
    },
    Signature {
        name: "events::MARK_PROCESSED",
        sql: events::MARK_PROCESSED,
        parameters: &["UUID"],
        columns: &[],
    },
    Signature {
        name: "events::RECORD_FAILURE",
        sql: events::RECORD_FAILURE,
        parameters: &["UUID", "TEXT", "INT4", "FLOAT8"],
        columns: &[("status", "TEXT"), ("attempts", "INT4")],
    },
    Signature {
        name: "events::MARK_UNPROCESSABLE",
        sql: events::MARK_UNPROCESSABLE,
        parameters: &["UUID", "TEXT"],
        columns: &[],
    },
    Signature {
        name: "events::REDRIVE",
        sql: events::REDRIVE,
        parameters: &["FLOAT8"],
        columns: &[("processing_id", "UUID")],
    },
    // friendship
    Signature {
        name: "friendship::GET_STATUS",
        sql: friendship::GET_STATUS,
        parameters: &["TEXT"],
        columns: &STATUS,
    },
    Signature {
        name: "friendship::GET_LEVEL",
        sql: friendship::GET_LEVEL,
        parameters: &["TEXT"],
        columns: &[("friendship_level", "TEXT")],
    },
    Signature {
        name: "friendship::ENSURE_USER",
        sql: friendship::ENSURE_USER,
        parameters: &["TEXT"],
        columns: &[],
    },
    Signature {
        name: "friendship::LOCK_FOR_CONVERSATION",
        sql: friendship::LOCK_FOR_CONVERSATION,
        parameters: &["TEXT"],
        columns: &[
            ("last_interaction_date", "TIMESTAMP"),
            ("streak_day", "INT4"),
        ],
    },
    Signature {
        name: "friendship::APPLY_CHANGE",
        sql: friendship::APPLY_CHANGE,
        parameters: &[
            "TEXT", "FLOAT8", "INT8", "INT4", "TEXT", "TEXT", "UUID", "TEXT", "BOOL",
        ],
        columns: &APPLIED,
    },
    // health
    Signature {
        name: "health::PROBE",
        sql: health::PROBE,
        parameters: &[],
        columns: &[("version", "INT8")],
    },
    // mappings
    Signature {
        name: "mappings::COUNT",
        sql: mappings::COUNT,
        parameters: &["TEXT", "TEXT", "BOOL"],
        columns: &[("total", "INT8")],
    },
    Signature {
        name: "mappings::LIST",
        sql: mappings::LIST,
        parameters: &["TEXT", "TEXT", "BOOL", "INT8", "INT8"],
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::GET",
        sql: mappings::GET,
        parameters: &["INT8"],
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::INSERT",
        sql: mappings::INSERT,
        parameters: &MAPPING_FIELDS,
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::REPLACE",
        sql: mappings::REPLACE,
        parameters: &REPLACE_PARAMETERS,
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::DEACTIVATE",
        sql: mappings::DEACTIVATE,
        parameters: &["INT8"],
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::CATALOGUE_VERSION",
        sql: mappings::CATALOGUE_VERSION,
        parameters: &[],
        columns: &[("version", "INT8")],
    },
    Signature {
        name: "mappings::ACTIVE_AGENTS_OF_LEVEL",
        sql: mappings::ACTIVE_AGENTS_OF_LEVEL,
        parameters: &["TEXT"],
        columns: &[
            ("version", "INT8"),
            ("id", "INT8"),
            ("agent_id", "TEXT"),
            ("agent_name", "TEXT"),
            ("agent_description", "TEXT"),
            ("agent_type", "TEXT"),
            ("weight", "FLOAT8"),
            ("greeting_trigger", "TEXT"),
            ("topic", "TEXT"),
        ],
    },
];

/// `(parameter types, (column name, column type))` of `sql`, prepared without argument
/// types, so Postgres infers them as it does for Spin.
async fn prepare(pool: &sqlx::PgPool, sql: &str) -> (Vec<String>, Vec<(String, String)>) {
    let statement = pool
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\ndoes not prepare: {e}"));
    let parameters = match statement.parameters() {
        Some(Either::Left(types)) => types.iter().map(|t| t.name().to_owned()).collect(),
        Some(Either::Right(count)) => panic!("Postgres reports {count} untyped parameters"),
        None => Vec::new(),
    };
    let columns = statement
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_info().name().to_owned()))
        .collect();
    (parameters, columns)
}

#[test]
fn every_statement_infers_the_parameter_types_the_components_bind() {
    with_migrated_db(|db| async move {
        for signature in SIGNATURES {
            let (parameters, _) = prepare(&db.pool, signature.sql).await;
            assert_eq!(parameters, signature.parameters, "{}", signature.name);
        }
    });
}

#[test]
fn every_statement_returns_the_documented_columns_in_order() {
    with_migrated_db(|db| async move {
        for signature in SIGNATURES {
            let (_, columns) = prepare(&db.pool, signature.sql).await;
            let expected: Vec<(String, String)> = signature
                .columns
                .iter()
                .map(|(name, ty)| ((*name).to_owned(), (*ty).to_owned()))
                .collect();
            assert_eq!(columns, expected, "{}", signature.name);
        }
    });
}

#[test]
fn no_statement_returns_a_timestamptz_or_json_column() {
    with_migrated_db(|db| async move {
        let mut returning = 0;
        for signature in SIGNATURES {
            let (_, columns) = prepare(&db.pool, signature.sql).await;
            returning += usize::from(!columns.is_empty());
            for (name, ty) in columns {
                assert!(
                    ty != "TIMESTAMPTZ" && ty != "JSON" && READABLE.contains(&ty.as_str()),
                    "{}: column `{name}` is {ty}, which a component cannot read",
                    signature.name
                );
            }
        }
        assert_eq!(
            returning, 21,
            "every SELECT and RETURNING statement was checked"
        );
    });
}

#[test]
fn every_constant_of_the_crate_has_a_signature() {
    let sources = [
        ("events", include_str!("../../src/events.rs")),
        ("friendship", include_str!("../../src/friendship.rs")),
        ("health", include_str!("../../src/health.rs")),
        ("mappings", include_str!("../../src/mappings.rs")),
        ("session", include_str!("../../src/session.rs")),
    ];
    let mut constants: Vec<String> = sources
        .iter()
        .flat_map(|(module, source)| {
            source.lines().filter_map(move |line| {
                let name = line.strip_prefix("pub const ")?.split(':').next()?;
                Some(format!("{module}::{name}"))
            })
        })
        .collect();
    constants.sort();
    let mut listed: Vec<String> = SIGNATURES.iter().map(|s| s.name.to_owned()).collect();
    listed.sort();
    assert_eq!(listed, constants);
}
