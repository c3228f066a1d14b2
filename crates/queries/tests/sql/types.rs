//! The Postgres types of every statement's parameters and result columns.
//!
//! The runtime tests bind through sqlx, which tells Postgres the type of each argument;
//! Spin's host prepares a statement without types, lets Postgres infer them, and then
//! refuses a value whose type differs (an `int8` value for an `int4` parameter fails).
//! So this module prepares each statement *untyped*, as Spin does, and compares the
//! inferred parameter types with what `crates/edge/src/store/` and `scorer.rs` bind.
//!
//! A read runs as its `sql`, which must answer one TEXT column, `rows` (the JSON array
//! the components decode); the fields of each JSON row are the columns of its `select`,
//! checked here too. None of them may be a `timestamptz` (JSON renders it with an
//! offset, which the components' `NaiveDateTime` refuses; Spin cannot return one as a
//! column at all) nor a `json` (it would nest, where the components expect JSON text).
//! A write runs with `execute`, which answers the affected-row count: writes return no
//! columns.

use friendship_queries::{
    events, friendship, health, level_changes, mappings, metrics, rejected, retention, session,
    user_data, Read, Write, READS,
};
use sqlx::{Column, Either, Executor, Statement, TypeInfo};

use crate::support::{with_migrated_db, WRITES};

/// How a statement runs: a read with `query` (its `sql` answers one TEXT `rows`; its
/// `select` the documented columns), a write with `execute`.
#[derive(Clone, Copy)]
enum Kind {
    Read(&'static Read),
    Write(&'static Write),
}

/// One statement of the crate, with the parameter types the components bind and the
/// `(name, type)` of its result columns (for a read, those of its `select`, the fields
/// of each JSON row).
struct Signature {
    name: &'static str,
    kind: Kind,
    parameters: &'static [&'static str],
    columns: &'static [(&'static str, &'static str)],
}

impl Signature {
    /// The text the components send.
    fn sql(&self) -> &'static str {
        match self.kind {
            Kind::Read(read) => read.sql,
            Kind::Write(write) => write.sql,
        }
    }

    /// The text whose columns are documented: a read's select, a write itself.
    fn documented(&self) -> &'static str {
        match self.kind {
            Kind::Read(read) => read.select,
            Kind::Write(write) => write.sql,
        }
    }
}

/// The types a component decodes from a read's JSON: `bool`, `i32`, `i64`, `f64`,
/// `String`, `NaiveDateTime` (a plain `timestamp`) and a UUID (as a string).
const READABLE: [&str; 7] = [
    "BOOL",
    "INT4",
    "INT8",
    "FLOAT8",
    "TEXT",
    "TIMESTAMP",
    "UUID",
];

/// What `Read::sql` answers, whatever the read.
const ROWS: [(&str, &str); 1] = [("rows", "TEXT")];

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

const HISTORY_LINE: [(&str, &str); 8] = [
    ("id", "INT8"),
    ("created_at", "TIMESTAMP"),
    ("cause", "TEXT"),
    ("processing_id", "UUID"),
    ("score_change", "FLOAT8"),
    ("score_applied", "FLOAT8"),
    ("score_before", "FLOAT8"),
    ("score_after", "FLOAT8"),
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
    // doorbell
    Signature {
        name: "doorbell::RING",
        kind: Kind::Write(&friendship_queries::doorbell::RING),
        parameters: &["INT8"],
        columns: &[],
    },
    Signature {
        name: "doorbell::CLEAR",
        kind: Kind::Write(&friendship_queries::doorbell::CLEAR),
        parameters: &[],
        columns: &[],
    },
    // events
    Signature {
        name: "events::INSERT_EVENTS",
        kind: Kind::Write(&events::INSERT_EVENTS),
        parameters: &["TEXT"],
        columns: &[],
    },
    Signature {
        name: "events::FIND_EVENT_BY_CONVERSATION",
        kind: Kind::Read(&events::FIND_EVENT_BY_CONVERSATION),
        parameters: &["TEXT", "TEXT", "TEXT"],
        columns: &[
            ("processing_id", "UUID"),
            ("user_id", "TEXT"),
            ("same_payload", "BOOL"),
        ],
    },
    Signature {
        name: "events::GET_EVENT",
        kind: Kind::Read(&events::GET_EVENT),
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
        name: "events::LIST_EVENTS",
        kind: Kind::Read(&events::LIST_EVENTS),
        parameters: &["TEXT", "INT8", "INT8"],
        columns: &[
            ("processing_id", "UUID"),
            ("conversation_id", "TEXT"),
            ("user_id", "TEXT"),
            ("status", "TEXT"),
            ("attempts", "INT4"),
            ("last_error", "TEXT"),
            ("accepted_at", "TIMESTAMP"),
            ("processed_at", "TIMESTAMP"),
            ("next_attempt_at", "TIMESTAMP"),
        ],
    },
    Signature {
        name: "events::COUNT_EVENTS",
        kind: Kind::Read(&events::COUNT_EVENTS),
        parameters: &["TEXT"],
        columns: &[("total", "INT8")],
    },
    // user_data
    Signature {
        name: "user_data::HISTORY",
        kind: Kind::Read(&user_data::HISTORY),
        parameters: &["TEXT", "INT8", "INT8"],
        columns: &HISTORY_LINE,
    },
    Signature {
        name: "user_data::EXPORT_EVENTS",
        kind: Kind::Read(&user_data::EXPORT_EVENTS),
        parameters: &["TEXT", "UUID", "INT8"],
        columns: &[
            ("processing_id", "UUID"),
            ("conversation_id", "TEXT"),
            ("status", "TEXT"),
            ("attempts", "INT4"),
            ("last_error", "TEXT"),
            ("accepted_at", "TIMESTAMP"),
            ("processed_at", "TIMESTAMP"),
            ("trace_id", "TEXT"),
            ("payload", "TEXT"),
        ],
    },
    Signature {
        name: "user_data::EXPORT_TRANSITIONS",
        kind: Kind::Read(&user_data::EXPORT_TRANSITIONS),
        parameters: &["TEXT", "INT8", "INT8"],
        columns: &[
            ("id", "INT8"),
            ("from_level", "TEXT"),
            ("to_level", "TEXT"),
            ("score", "FLOAT8"),
            ("cause", "TEXT"),
            ("processing_id", "UUID"),
            ("created_at", "TIMESTAMP"),
        ],
    },
    Signature {
        name: "user_data::EXPORT_REJECTED",
        kind: Kind::Read(&user_data::EXPORT_REJECTED),
        parameters: &["TEXT", "INT8", "INT8"],
        columns: &[
            ("id", "INT8"),
            ("source", "TEXT"),
            ("reason", "TEXT"),
            ("stream_entry_id", "TEXT"),
            ("payload_head", "TEXT"),
            ("payload_bytes", "INT4"),
            ("received_at", "TIMESTAMP"),
        ],
    },
    Signature {
        name: "user_data::ERASE_BATCH",
        kind: Kind::Write(&user_data::ERASE_BATCH),
        parameters: &["TEXT", "INT4"],
        columns: &[],
    },
    Signature {
        name: "session::CLEAN",
        kind: Kind::Read(&session::CLEAN),
        parameters: &[],
        columns: &[("clean", "BOOL")],
    },
    Signature {
        name: "events::ANY_DUE",
        kind: Kind::Read(&events::ANY_DUE),
        parameters: &[],
        columns: &[
            ("due", "BOOL"),
            ("unfinished", "BOOL"),
            ("unpublished", "BOOL"),
        ],
    },
    Signature {
        name: "events::SCORED_EVENTS",
        kind: Kind::Read(&events::SCORED_EVENTS),
        parameters: &["INT8"],
        columns: &[("processing_id", "UUID"), ("user_id", "TEXT")],
    },
    Signature {
        name: "events::FINISH_SCORED",
        kind: Kind::Write(&events::FINISH_SCORED),
        parameters: &["TEXT"],
        columns: &[],
    },
    Signature {
        name: "events::CLAIM_DUE_EVENTS",
        kind: Kind::Read(&events::CLAIM_DUE_EVENTS),
        parameters: &["INT8"],
        columns: &[
            ("processing_id", "UUID"),
            ("user_id", "TEXT"),
            ("payload", "TEXT"),
            ("attempts", "INT4"),
            ("trace_id", "TEXT"),
            ("now", "TIMESTAMP"),
        ],
    },
    Signature {
        name: "events::RECORD_FAILURE",
        kind: Kind::Write(&events::RECORD_FAILURE),
        parameters: &["UUID", "TEXT", "INT4", "FLOAT8"],
        columns: &[],
    },
    Signature {
        name: "events::MARK_UNPROCESSABLE",
        kind: Kind::Write(&events::MARK_UNPROCESSABLE),
        parameters: &["UUID", "TEXT"],
        columns: &[],
    },
    Signature {
        name: "events::REDRIVE",
        kind: Kind::Write(&events::REDRIVE),
        parameters: &["FLOAT8"],
        columns: &[],
    },
    Signature {
        name: "events::REDRIVE_SELECTED",
        kind: Kind::Write(&events::REDRIVE_SELECTED),
        parameters: &["TEXT"],
        columns: &[],
    },
    // friendship
    Signature {
        name: "friendship::GET_STATUS",
        kind: Kind::Read(&friendship::GET_STATUS),
        parameters: &["TEXT"],
        columns: &STATUS,
    },
    Signature {
        name: "friendship::GET_LEVEL",
        kind: Kind::Read(&friendship::GET_LEVEL),
        parameters: &["TEXT"],
        columns: &[("friendship_level", "TEXT")],
    },
    Signature {
        name: "friendship::ENSURE_USERS",
        kind: Kind::Write(&friendship::ENSURE_USERS),
        parameters: &["TEXT"],
        columns: &[],
    },
    Signature {
        name: "friendship::LOCK_USERS",
        kind: Kind::Read(&friendship::LOCK_USERS),
        parameters: &["TEXT"],
        columns: &[
            ("user_id", "TEXT"),
            ("last_interaction_date", "TIMESTAMP"),
            ("streak_day", "INT4"),
            ("friendship_level", "TEXT"),
        ],
    },
    Signature {
        name: "friendship::CLAIM_DECAY",
        kind: Kind::Read(&friendship::CLAIM_DECAY),
        parameters: &["INT4", "INT8"],
        columns: &[
            ("user_id", "TEXT"),
            ("last_interaction_date", "TIMESTAMP"),
            ("streak_day", "INT4"),
            ("friendship_level", "TEXT"),
        ],
    },
    Signature {
        name: "friendship::APPLY_CHANGES",
        kind: Kind::Write(&friendship::APPLY_CHANGES),
        parameters: &["TEXT"],
        columns: &[],
    },
    // level_changes
    Signature {
        name: "level_changes::CLAIM_UNPUBLISHED",
        kind: Kind::Read(&level_changes::CLAIM_UNPUBLISHED),
        parameters: &["INT8"],
        columns: &[
            ("id", "INT8"),
            ("user_id", "TEXT"),
            ("from_level", "TEXT"),
            ("to_level", "TEXT"),
            ("score", "FLOAT8"),
            ("cause", "TEXT"),
            ("processing_id", "UUID"),
            ("at", "TIMESTAMP"),
        ],
    },
    Signature {
        name: "level_changes::MARK_PUBLISHED",
        kind: Kind::Write(&level_changes::MARK_PUBLISHED),
        parameters: &["TEXT"],
        columns: &[],
    },
    // health
    Signature {
        name: "health::PROBE",
        kind: Kind::Read(&health::PROBE),
        parameters: &[],
        columns: &[("version", "INT8")],
    },
    // mappings
    Signature {
        name: "mappings::COUNT",
        kind: Kind::Read(&mappings::COUNT),
        parameters: &["TEXT", "TEXT", "BOOL"],
        columns: &[("total", "INT8")],
    },
    Signature {
        name: "mappings::LIST",
        kind: Kind::Read(&mappings::LIST),
        parameters: &["TEXT", "TEXT", "BOOL", "INT8", "INT8"],
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::GET",
        kind: Kind::Read(&mappings::GET),
        parameters: &["INT8"],
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::GET_BY_KEY",
        kind: Kind::Read(&mappings::GET_BY_KEY),
        parameters: &["TEXT", "TEXT", "TEXT"],
        columns: &MAPPING,
    },
    Signature {
        name: "mappings::INSERT",
        kind: Kind::Write(&mappings::INSERT),
        parameters: &MAPPING_FIELDS,
        columns: &[],
    },
    Signature {
        name: "mappings::REPLACE",
        kind: Kind::Write(&mappings::REPLACE),
        parameters: &REPLACE_PARAMETERS,
        columns: &[],
    },
    Signature {
        name: "mappings::DEACTIVATE",
        kind: Kind::Write(&mappings::DEACTIVATE),
        parameters: &["INT8"],
        columns: &[],
    },
    Signature {
        name: "mappings::CATALOGUE_VERSION",
        kind: Kind::Read(&mappings::CATALOGUE_VERSION),
        parameters: &[],
        columns: &[("version", "INT8")],
    },
    Signature {
        name: "friendship::SUGGESTION_INPUTS",
        kind: Kind::Read(&friendship::SUGGESTION_INPUTS),
        parameters: &["TEXT"],
        columns: &[("version", "INT8"), ("status", "TEXT"), ("agents", "TEXT")],
    },
    // metrics
    Signature {
        name: "metrics::COUNT_BATCH",
        kind: Kind::Write(&metrics::COUNT_BATCH),
        parameters: &["TEXT"],
        columns: &[],
    },
    Signature {
        name: "metrics::SNAPSHOT",
        kind: Kind::Read(&metrics::SNAPSHOT),
        parameters: &[],
        columns: &[
            ("events_pending", "INT8"),
            ("events_failed", "INT8"),
            ("oldest_pending_age_seconds", "FLOAT8"),
            ("events_processed", "INT8"),
            ("scoring_attempts", "INT8"),
            ("scoring_failures", "INT8"),
            ("rejected_messages", "INT8"),
            ("users_stranger", "INT8"),
            ("users_acquaintance", "INT8"),
            ("users_friend", "INT8"),
            ("lag_seconds_sum", "FLOAT8"),
            ("lag_buckets", "TEXT"),
            ("catalogue_version", "INT8"),
        ],
    },
    // rejected
    Signature {
        name: "rejected::INSERT",
        kind: Kind::Write(&rejected::INSERT),
        parameters: &["TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "INT4"],
        columns: &[],
    },
    Signature {
        name: "rejected::COUNT",
        kind: Kind::Read(&rejected::COUNT),
        parameters: &[],
        columns: &[("total", "INT8")],
    },
    Signature {
        name: "rejected::LIST",
        kind: Kind::Read(&rejected::LIST),
        parameters: &["INT8", "INT8"],
        columns: &[
            ("id", "INT8"),
            ("source", "TEXT"),
            ("stream_entry_id", "TEXT"),
            ("reason", "TEXT"),
            ("payload_head", "TEXT"),
            ("payload_bytes", "INT4"),
            ("received_at", "TIMESTAMP"),
        ],
    },
    // retention
    Signature {
        name: "retention::PRUNE_EVENTS",
        kind: Kind::Write(&retention::PRUNE_EVENTS),
        parameters: &["INT4", "INT8"],
        columns: &[],
    },
    Signature {
        name: "retention::SETTLE_PRUNED_REPEATS",
        kind: Kind::Write(&retention::SETTLE_PRUNED_REPEATS),
        parameters: &["INT8"],
        columns: &[],
    },
    Signature {
        name: "retention::PRUNE_REJECTED",
        kind: Kind::Write(&retention::PRUNE_REJECTED),
        parameters: &["INT4", "INT8"],
        columns: &[],
    },
    Signature {
        name: "retention::PRUNE_PUBLISHED",
        kind: Kind::Write(&retention::PRUNE_PUBLISHED),
        parameters: &["INT4", "INT8"],
        columns: &[],
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
            let (parameters, _) = prepare(&db.pool, signature.sql()).await;
            assert_eq!(parameters, signature.parameters, "{}", signature.name);
            if let Kind::Read(read) = signature.kind {
                let (select, _) = prepare(&db.pool, read.select).await;
                assert_eq!(
                    select, parameters,
                    "{}: the wrapping keeps them",
                    signature.name
                );
            }
        }
    });
}

#[test]
fn every_read_answers_one_text_column_rows() {
    with_migrated_db(|db| async move {
        let mut reads = 0;
        for signature in SIGNATURES {
            if let Kind::Read(_) = signature.kind {
                let (_, columns) = prepare(&db.pool, signature.sql()).await;
                let expected: Vec<(String, String)> = ROWS
                    .iter()
                    .map(|(name, ty)| ((*name).to_owned(), (*ty).to_owned()))
                    .collect();
                assert_eq!(columns, expected, "{}", signature.name);
                reads += 1;
            }
        }
        assert_eq!(reads, READS.len());
    });
}

#[test]
fn every_statement_returns_the_documented_columns_in_order() {
    with_migrated_db(|db| async move {
        for signature in SIGNATURES {
            let (_, columns) = prepare(&db.pool, signature.documented()).await;
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
fn no_read_returns_a_timestamptz_or_json_column() {
    with_migrated_db(|db| async move {
        let mut returning = 0;
        for signature in SIGNATURES {
            let (_, columns) = prepare(&db.pool, signature.documented()).await;
            returning += usize::from(!columns.is_empty());
            for (name, ty) in columns {
                assert!(
                    ty != "TIMESTAMPTZ" && ty != "JSON" && READABLE.contains(&ty.as_str()),
                    "{}: column `{name}` is {ty}, which a component cannot read",
                    signature.name
                );
            }
        }
        assert_eq!(returning, READS.len(), "every read's select was checked");
    });
}

/// A write's effect is read back by a read: Postgres, asked to describe each
/// write as sent, finds no result column.
#[test]
fn no_write_returns_columns() {
    with_migrated_db(|db| async move {
        let mut writes = 0;
        for signature in SIGNATURES {
            if let Kind::Write(write) = signature.kind {
                let (_, columns) = prepare(&db.pool, write.sql).await;
                assert!(columns.is_empty(), "{}: {columns:?}", signature.name);
                writes += 1;
            }
        }
        assert!(writes > 10, "the writes were described");
    });
}

/// The statement modules of the crate, with their sources.
const SOURCES: [(&str, &str); 11] = [
    ("doorbell", include_str!("../../src/doorbell.rs")),
    ("events", include_str!("../../src/events.rs")),
    ("friendship", include_str!("../../src/friendship.rs")),
    ("health", include_str!("../../src/health.rs")),
    ("level_changes", include_str!("../../src/level_changes.rs")),
    ("mappings", include_str!("../../src/mappings.rs")),
    ("metrics", include_str!("../../src/metrics.rs")),
    ("rejected", include_str!("../../src/rejected.rs")),
    ("retention", include_str!("../../src/retention.rs")),
    ("session", include_str!("../../src/session.rs")),
    ("user_data", include_str!("../../src/user_data.rs")),
];

#[test]
fn the_constant_scan_reads_every_module_of_the_crate() {
    let mut modules: Vec<&str> = include_str!("../../src/lib.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    modules.sort();
    let scanned: Vec<&str> = SOURCES.iter().map(|(module, _)| *module).collect();
    assert_eq!(scanned, modules, "add the new module to SOURCES");
}

/// `(module::NAME, type)` of every `pub const` of the crate's sources.
fn constants() -> Vec<(String, String)> {
    let sources = SOURCES;
    let mut constants: Vec<(String, String)> = sources
        .iter()
        .flat_map(|(module, source)| {
            source.lines().filter_map(move |line| {
                let (name, rest) = line.strip_prefix("pub const ")?.split_once(':')?;
                let ty = rest.split('=').next()?.trim().to_owned();
                Some((format!("{module}::{}", name.trim()), ty))
            })
        })
        .collect();
    constants.sort();
    constants
}

#[test]
fn every_constant_of_the_crate_has_a_signature() {
    let constants = constants();
    assert!(
        constants.len() >= 25,
        "the scan finds the constants: {constants:?}"
    );
    for (name, ty) in &constants {
        assert!(
            ty == "Read" || ty == "Write",
            "{name} is a `{ty}`: every statement is a Read or a Write"
        );
    }
    let mut listed: Vec<(String, String)> = SIGNATURES
        .iter()
        .map(|s| {
            let ty = match s.kind {
                Kind::Read(_) => "Read",
                Kind::Write(_) => "Write",
            };
            (s.name.to_owned(), ty.to_owned())
        })
        .collect();
    listed.sort();
    assert_eq!(listed, constants);
}

#[test]
fn every_read_is_in_reads_and_every_write_in_writes_under_its_own_name() {
    let constants = constants();
    let mut reads: Vec<&str> = READS.iter().map(|(name, _)| *name).collect();
    let mut writes: Vec<&str> = WRITES.iter().map(|(name, _)| *name).collect();
    reads.sort();
    writes.sort();
    let expected = |kind: &str| -> Vec<&str> {
        constants
            .iter()
            .filter(|(_, ty)| ty == kind)
            .map(|(name, _)| name.as_str())
            .collect()
    };
    assert_eq!(reads, expected("Read"), "READS lists every Read constant");
    assert_eq!(
        writes,
        expected("Write"),
        "WRITES lists every Write constant"
    );

    // And each entry is the constant it is named after.
    for signature in SIGNATURES {
        match signature.kind {
            Kind::Read(read) => {
                let listed = READS.iter().find(|(name, _)| *name == signature.name);
                assert_eq!(listed.map(|(_, r)| *r), Some(read), "{}", signature.name);
            }
            Kind::Write(write) => {
                let listed = WRITES.iter().find(|(name, _)| *name == signature.name);
                assert_eq!(listed.map(|(_, w)| *w), Some(write), "{}", signature.name);
            }
        }
    }
}
