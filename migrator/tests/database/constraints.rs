//! The schema refuses every row the brief calls invalid, with the SQLSTATE the
//! components map (23514 → 400, 23505 → 409, ...).

use sqlx::PgPool;

use crate::support::{
    sqlstate, with_migrated_db, CHECK_VIOLATION, GENERATED_ALWAYS, UNIQUE_VIOLATION,
};

#[test]
fn friendship_status_fills_defaults_and_derives_the_level() {
    with_migrated_db(|db| async move {
        sqlx::query("INSERT INTO friendship_status (user_id) VALUES ('u-1')")
            .execute(&db.pool)
            .await
            .unwrap();
        let row: (f64, String, i64, String, i32, Option<String>, bool) = sqlx::query_as(
            "SELECT friendship_score::float8, friendship_level, total_turns, topic_metrics::text, streak_day,
                    last_emotion, last_interaction_date IS NULL
             FROM friendship_status",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            row,
            (
                0.0,
                "stranger".to_owned(),
                0,
                "{}".to_owned(),
                0,
                None,
                true
            )
        );
    });
}

#[test]
fn friendship_status_rejects_invalid_rows() {
    with_migrated_db(|db| async move {
        let cases = [
            ("negative score", "INSERT INTO friendship_status (user_id, friendship_score) VALUES ('u-1', -0.01)", CHECK_VIOLATION),
            ("explicit level", "INSERT INTO friendship_status (user_id, friendship_level) VALUES ('u-1', 'friend')", GENERATED_ALWAYS),
            ("unknown level", "INSERT INTO friendship_status (user_id, friendship_level) VALUES ('u-1', 'bestie')", GENERATED_ALWAYS),
            ("short user id", "INSERT INTO friendship_status (user_id) VALUES ('ab')", CHECK_VIOLATION),
            ("long user id", "INSERT INTO friendship_status (user_id) VALUES (repeat('x', 129))", CHECK_VIOLATION),
            ("negative turns", "INSERT INTO friendship_status (user_id, total_turns) VALUES ('u-1', -1)", CHECK_VIOLATION),
            ("negative streak", "INSERT INTO friendship_status (user_id, streak_day) VALUES ('u-1', -1)", CHECK_VIOLATION),
            ("unknown emotion", "INSERT INTO friendship_status (user_id, last_emotion) VALUES ('u-1', 'angry')", CHECK_VIOLATION),
        ];
        for (case, statement, expected) in cases {
            assert_eq!(
                sqlstate(sqlx::query(statement).execute(&db.pool).await),
                expected,
                "{case}"
            );
        }
        sqlx::query("INSERT INTO friendship_status (user_id, friendship_score) VALUES ('u-1', 10)")
            .execute(&db.pool)
            .await
            .unwrap();
        let below_zero =
            sqlx::query("UPDATE friendship_status SET friendship_score = friendship_score - 10.5")
                .execute(&db.pool)
                .await;
        assert_eq!(sqlstate(below_zero), CHECK_VIOLATION);
        let set_level = sqlx::query("UPDATE friendship_status SET friendship_level = 'friend'")
            .execute(&db.pool)
            .await;
        assert_eq!(sqlstate(set_level), GENERATED_ALWAYS);
    });
}

/// A catalogue row to insert; `talk()` is valid and each case changes one thing.
#[derive(Debug, Clone, Copy)]
struct Mapping<'a> {
    level: &'a str,
    agent_type: &'a str,
    agent_id: &'a str,
    weight: f64,
    trigger: Option<&'a str>,
    topic: Option<&'a str>,
}

const TALK: Mapping<'static> = Mapping {
    level: "friend",
    agent_type: "talk",
    agent_id: "talk-music",
    weight: 1.5,
    trigger: None,
    topic: Some("music"),
};

const GREETING: Mapping<'static> = Mapping {
    level: "friend",
    agent_type: "greeting",
    agent_id: "greet-1",
    weight: 1.0,
    trigger: Some("birthday"),
    topic: None,
};

async fn insert(
    pool: &PgPool,
    m: Mapping<'_>,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    sqlx::query(
        "INSERT INTO friendship_agent_mapping
             (friendship_level, agent_type, agent_id, agent_name, weight, greeting_trigger, topic)
         VALUES ($1, $2, $3, 'Name', $4, $5, $6)",
    )
    .bind(m.level)
    .bind(m.agent_type)
    .bind(m.agent_id)
    .bind(m.weight)
    .bind(m.trigger)
    .bind(m.topic)
    .execute(pool)
    .await
}

#[test]
fn agent_mappings_reject_invalid_rows() {
    with_migrated_db(|db| async move {
        let long_topic = "t".repeat(65);
        let cases = [
            (
                "unknown level",
                Mapping {
                    level: "bestie",
                    ..TALK
                },
            ),
            (
                "unknown agent type",
                Mapping {
                    agent_type: "quiz",
                    topic: None,
                    ..TALK
                },
            ),
            (
                "empty agent id",
                Mapping {
                    agent_id: "",
                    ..TALK
                },
            ),
            (
                "zero weight",
                Mapping {
                    weight: 0.0,
                    ..TALK
                },
            ),
            (
                "negative weight",
                Mapping {
                    weight: -1.0,
                    ..TALK
                },
            ),
            (
                "weight over 1000",
                Mapping {
                    weight: 1000.5,
                    ..TALK
                },
            ),
            (
                "infinite weight",
                Mapping {
                    weight: f64::INFINITY,
                    ..TALK
                },
            ),
            (
                "NaN weight",
                Mapping {
                    weight: f64::NAN,
                    ..TALK
                },
            ),
            (
                "talk without topic",
                Mapping {
                    topic: None,
                    ..TALK
                },
            ),
            (
                "empty topic",
                Mapping {
                    topic: Some(""),
                    ..TALK
                },
            ),
            (
                "topic over 64 characters",
                Mapping {
                    topic: Some(&long_topic),
                    ..TALK
                },
            ),
            (
                "trigger on a talk agent",
                Mapping {
                    trigger: Some("birthday"),
                    ..TALK
                },
            ),
            (
                "unknown trigger",
                Mapping {
                    trigger: Some("emotion:angry"),
                    ..GREETING
                },
            ),
            (
                "bare emotion trigger",
                Mapping {
                    trigger: Some("emotion"),
                    ..GREETING
                },
            ),
            (
                "greeting with a topic",
                Mapping {
                    topic: Some("music"),
                    ..GREETING
                },
            ),
            (
                "game with a topic",
                Mapping {
                    agent_type: "game",
                    trigger: None,
                    topic: Some("music"),
                    ..GREETING
                },
            ),
        ];
        for (case, mapping) in cases {
            assert_eq!(
                sqlstate(insert(&db.pool, mapping).await),
                CHECK_VIOLATION,
                "{case}"
            );
        }
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM friendship_agent_mapping")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 0);
    });
}

#[test]
fn agent_mappings_accept_every_documented_trigger_and_the_weight_bounds() {
    with_migrated_db(|db| async move {
        let triggers = [
            None,
            Some("birthday"),
            Some("returning"),
            Some("memory_recall"),
            Some("emotion:interesting"),
            Some("emotion:boring"),
            Some("emotion:happy"),
            Some("emotion:sad"),
            Some("emotion:neutral"),
        ];
        for (i, trigger) in triggers.into_iter().enumerate() {
            let id = format!("greet-{i}");
            insert(
                &db.pool,
                Mapping {
                    agent_id: &id,
                    trigger,
                    ..GREETING
                },
            )
            .await
            .unwrap();
        }
        insert(
            &db.pool,
            Mapping {
                weight: 1000.0,
                ..TALK
            },
        )
        .await
        .unwrap();
        insert(
            &db.pool,
            Mapping {
                weight: f64::MIN_POSITIVE,
                agent_id: "tiny",
                ..TALK
            },
        )
        .await
        .unwrap();
        insert(
            &db.pool,
            Mapping {
                agent_type: "game",
                topic: None,
                ..TALK
            },
        )
        .await
        .unwrap();
    });
}

#[test]
fn a_duplicate_mapping_is_a_unique_violation_even_when_inactive() {
    with_migrated_db(|db| async move {
        insert(&db.pool, TALK).await.unwrap();
        sqlx::query("UPDATE friendship_agent_mapping SET is_active = false")
            .execute(&db.pool)
            .await
            .unwrap();
        match insert(
            &db.pool,
            Mapping {
                weight: 2.0,
                topic: Some("movies"),
                ..TALK
            },
        )
        .await
        {
            Err(sqlx::Error::Database(e)) => {
                assert_eq!(e.code().as_deref(), Some(UNIQUE_VIOLATION));
                assert_eq!(e.constraint(), Some("friendship_agent_mapping_unique"));
            }
            other => panic!("expected a unique violation, got {other:?}"),
        }
        // The same agent id at another level or of another type is a different mapping.
        insert(
            &db.pool,
            Mapping {
                level: "stranger",
                ..TALK
            },
        )
        .await
        .unwrap();
        insert(
            &db.pool,
            Mapping {
                agent_type: "game",
                topic: None,
                ..TALK
            },
        )
        .await
        .unwrap();
    });
}

#[test]
fn conversation_events_default_to_pending_and_reject_invalid_rows() {
    with_migrated_db(|db| async move {
        let (status, attempts, due): (String, i32, bool) = sqlx::query_as(
            "INSERT INTO conversation_events (conversation_id, user_id, payload) VALUES ('c-1', 'u-1', '{}')
             RETURNING status, attempts, next_attempt_at <= now()",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((status.as_str(), attempts, due), ("pending", 0, true));

        let cases = [
            ("resent conversation", "INSERT INTO conversation_events (conversation_id, user_id, payload) VALUES ('c-1', 'u-1', '{\"x\": 1}')", UNIQUE_VIOLATION),
            ("empty conversation id", "INSERT INTO conversation_events (conversation_id, user_id, payload) VALUES ('', 'u-1', '{}')", CHECK_VIOLATION),
            ("short user id", "INSERT INTO conversation_events (conversation_id, user_id, payload) VALUES ('c-2', 'u', '{}')", CHECK_VIOLATION),
            ("unknown status", "INSERT INTO conversation_events (conversation_id, user_id, payload, status) VALUES ('c-2', 'u-1', '{}', 'done')", CHECK_VIOLATION),
            ("negative attempts", "INSERT INTO conversation_events (conversation_id, user_id, payload, attempts) VALUES ('c-2', 'u-1', '{}', -1)", CHECK_VIOLATION),
        ];
        for (case, statement, expected) in cases {
            assert_eq!(
                sqlstate(sqlx::query(statement).execute(&db.pool).await),
                expected,
                "{case}"
            );
        }
        let missing_payload = sqlx::query(
            "INSERT INTO conversation_events (conversation_id, user_id) VALUES ('c-3', 'u-1')",
        )
        .execute(&db.pool)
        .await;
        assert_eq!(sqlstate(missing_payload), "23502");
    });
}

#[test]
fn score_history_keeps_one_line_per_event_and_transitions_are_real_changes() {
    with_migrated_db(|db| async move {
        let event: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO conversation_events (conversation_id, user_id, payload) VALUES ('c-1', 'u-1', '{}')
             RETURNING processing_id",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let history = "INSERT INTO friendship_score_history
                           (user_id, cause, processing_id, score_change, score_applied,
                            score_before, score_after)
                       VALUES ('u-1', $1, $2, $3, $3, $4, $5)";
        let line = |cause: &'static str, processing_id: Option<uuid::Uuid>, after: f64| {
            sqlx::query(history)
                .bind(cause)
                .bind(processing_id)
                .bind(-5.0)
                .bind(2.0)
                .bind(after)
                .execute(&db.pool)
        };
        line("conversation", Some(event), 0.0).await.unwrap();
        assert_eq!(
            sqlstate(line("conversation", Some(event), 0.0).await),
            UNIQUE_VIOLATION,
            "same event twice"
        );
        line("service_update", None, 0.0).await.unwrap();
        line("service_update", None, 0.0).await.unwrap();
        line("decay", None, 0.0).await.unwrap();
        assert_eq!(
            sqlstate(line("manual", None, 0.0).await),
            CHECK_VIOLATION,
            "unknown cause"
        );
        assert_eq!(
            sqlstate(line("conversation", None, -1.0).await),
            CHECK_VIOLATION,
            "negative score after"
        );
        // No foreign key to the events: the history outlives an event that
        // retention deleted (its processing_id stays in pruned_conversations).
        let pruned = Some(uuid::Uuid::new_v4());
        line("conversation", pruned, 0.0).await.unwrap();

        let transition =
            "INSERT INTO friendship_level_transitions (user_id, from_level, to_level, score, cause)
                          VALUES ('u-1', $1, $2, 100, $3)";
        let change = |from: &'static str, to: &'static str, cause: &'static str| {
            sqlx::query(transition)
                .bind(from)
                .bind(to)
                .bind(cause)
                .execute(&db.pool)
        };
        change("stranger", "acquaintance", "conversation")
            .await
            .unwrap();
        change("acquaintance", "stranger", "decay").await.unwrap();
        assert_eq!(
            sqlstate(change("friend", "friend", "conversation").await),
            CHECK_VIOLATION,
            "no change"
        );
        assert_eq!(
            sqlstate(change("stranger", "bestie", "conversation").await),
            CHECK_VIOLATION,
            "unknown level"
        );
        assert_eq!(
            sqlstate(change("friend", "stranger", "reset").await),
            CHECK_VIOLATION,
            "unknown cause"
        );
    });
}
