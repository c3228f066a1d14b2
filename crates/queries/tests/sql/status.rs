//! The event status machine lives in the domain (`friendship_domain::EventStatus`);
//! the SQL spells its states as literals. These tests hold the two together: every
//! quoted word of the statements and the migrations is a spelling of a domain enum
//! (so a status written in SQL alone fails here), the `CHECK` on
//! `conversation_events.status` allows exactly the domain's states, and the reads
//! clients are answered from show each state as `EventStatus::client_visible` says.

use std::collections::BTreeSet;
use std::path::Path;

use friendship_domain::{AgentType, Cause, Emotion, EventStatus, GreetingTrigger, Level};
use friendship_queries::events;
use uuid::Uuid;

use crate::support::{new_event, read, with_migrated_db, EventRow};

/// Quoted words that are no enum's value: time zones, trigger operations, JSON
/// keys the statements build or read, and the `/metrics` sources' names.
const NOT_ENUM_VALUES: &[&str] = &[
    "UTC",
    "INSERT",
    "DELETE",
    "score",
    "total_turns",
    "last_date",
    "score_change",
    "turns_increment",
    "stream",
    "channel",
    "le",
    "count",
];

/// The words `'like_this'` (letters and `_` between single quotes) outside
/// comments, with where they stand.
fn quoted_words(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut words = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") || code.starts_with("--") {
            continue;
        }
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\'' {
                let word_end = bytes[i + 1..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphabetic() || *b == b'_'))
                    .map(|p| i + 1 + p);
                if let Some(end) = word_end.filter(|&end| end > i + 1 && bytes[end] == b'\'') {
                    words.push((
                        code[i + 1..end].to_owned(),
                        format!("{}:{}", path.display(), n + 1),
                    ));
                    i = end + 1;
                    continue;
                }
            }
            i += 1;
        }
    }
    words
}

/// The statements (`crates/queries/src`) and the migrations' `up` scripts.
fn sql_sources() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for (dir, suffix) in [
        (root.join("src"), ".rs"),
        (root.join("../../migrator/migrations"), ".up.sql"),
    ] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(suffix) {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() > 10, "the sources were found: {files:?}");
    files
}

#[test]
fn every_quoted_word_of_the_sql_is_a_domain_spelling() {
    let mut known: BTreeSet<String> = NOT_ENUM_VALUES.iter().map(|w| w.to_string()).collect();
    known.extend(EventStatus::ALL.iter().map(|s| s.as_str().to_owned()));
    known.extend(Level::ALL.iter().map(|s| s.as_str().to_owned()));
    known.extend(Emotion::ALL.iter().map(|s| s.as_str().to_owned()));
    known.extend(AgentType::ALL.iter().map(|s| s.as_str().to_owned()));
    known.extend(Cause::ALL.iter().map(|s| s.as_str().to_owned()));
    known.extend(GreetingTrigger::ALL.iter().map(|t| t.as_string()));
    let mut statuses_seen = BTreeSet::new();
    for file in sql_sources() {
        for (word, at) in quoted_words(&file) {
            assert!(
                known.contains(&word),
                "'{word}' ({at}) is no spelling of a domain enum: a new event status \
                 belongs in friendship_domain::EventStatus first"
            );
            if word.parse::<EventStatus>().is_ok() {
                statuses_seen.insert(word);
            }
        }
    }
    assert_eq!(
        statuses_seen.len(),
        EventStatus::ALL.len(),
        "the scan finds every status"
    );
}

#[test]
fn the_check_on_event_statuses_allows_exactly_the_domain_states() {
    with_migrated_db(|db| async move {
        let definition: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conname = 'conversation_events_status_check'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let allowed: BTreeSet<String> = definition
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let domain: BTreeSet<String> = EventStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(allowed, domain, "{definition}");
    });
}

#[test]
fn clients_and_operators_see_each_state_as_the_domain_shows_it() {
    with_migrated_db(|db| async move {
        for status in EventStatus::ALL {
            let id = new_event(&db.pool, "user-1").await;
            sqlx::query("UPDATE conversation_events SET status = $2 WHERE processing_id = $1")
                .bind(id)
                .bind(status.as_str())
                .execute(&db.pool)
                .await
                .unwrap();
            let shown: EventRow = read(&events::GET_EVENT).bind(id).one(&db.pool).await;
            assert_eq!(shown.status, status.client_visible().as_str(), "{status}");
            for listed in [EventStatus::Pending, EventStatus::Failed] {
                #[derive(serde::Deserialize)]
                struct Listed {
                    processing_id: Uuid,
                    status: String,
                }
                let rows: Vec<Listed> = read(&events::LIST_EVENTS)
                    .bind(listed.as_str())
                    .bind(1_000_i64)
                    .bind(0_i64)
                    .rows(&db.pool)
                    .await;
                let row = rows.iter().find(|row| row.processing_id == id);
                assert_eq!(
                    row.is_some(),
                    status.client_visible() == listed,
                    "{status} in the {listed} list"
                );
                if let Some(row) = row {
                    assert_eq!(row.status, listed.as_str());
                }
            }
        }
    });
}
