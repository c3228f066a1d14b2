//! Moving the schema up and down, the generated level, and the catalogue version.

use friendship_domain::Level;
use migrator::{DownCount, MigrationState};

use crate::support::{
    catalogue_version, sqlstate, tables, with_db, with_migrated_db, CHECK_VIOLATION, MIGRATIONS,
    UNIQUE_VIOLATION,
};

const ALL_TABLES: [&str; 12] = [
    "catalogue_version",
    "conversation_events",
    "erased_conversations",
    "friendship_agent_mapping",
    "friendship_level_transitions",
    "friendship_score_history",
    "friendship_status",
    "level_change_outbox",
    "pruned_conversations",
    "rejected_messages",
    "scorer_doorbell",
    "service_counters",
];

fn states(lines: &[migrator::MigrationStatus]) -> Vec<MigrationState> {
    lines.iter().map(|l| l.state).collect()
}

#[test]
fn status_reads_an_empty_database_without_creating_anything() {
    with_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        let lines = migrator::status(&mut conn).await.unwrap();
        assert_eq!(states(&lines), [MigrationState::Pending; MIGRATIONS]);
        let bookkeeping: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert!(!bookkeeping);
    });
}

#[test]
fn up_then_down_all_then_up_round_trips_the_schema() {
    with_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        assert_eq!(migrator::up(&mut conn).await.unwrap().len(), MIGRATIONS);
        assert_eq!(tables(&db.pool).await, ALL_TABLES);
        assert_eq!(
            states(&migrator::status(&mut conn).await.unwrap()),
            [MigrationState::Applied; MIGRATIONS]
        );

        let reverted = migrator::down(&mut conn, DownCount::All).await.unwrap();
        let versions: Vec<_> = reverted.iter().map(|m| m.version).collect();
        let mut newest_first = versions.clone();
        newest_first.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(versions, newest_first);
        assert_eq!(versions.len(), MIGRATIONS);
        assert!(tables(&db.pool).await.is_empty());
        let trigger_function: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'bump_catalogue_version')",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert!(!trigger_function);

        assert_eq!(migrator::up(&mut conn).await.unwrap().len(), MIGRATIONS);
        assert_eq!(tables(&db.pool).await, ALL_TABLES);
        assert_eq!(catalogue_version(&db.pool).await, 1);
    });
}

#[test]
fn up_on_an_up_to_date_schema_applies_nothing() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        assert!(migrator::up(&mut conn).await.unwrap().is_empty());
    });
}

#[test]
fn down_reverts_the_requested_number_of_migrations_newest_first() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        assert!(migrator::down(&mut conn, DownCount::Last(0))
            .await
            .unwrap()
            .is_empty());

        let reverted = migrator::down(&mut conn, DownCount::Last(13))
            .await
            .unwrap();
        let names: Vec<_> = reverted.iter().map(|m| m.description.as_str()).collect();
        assert_eq!(
            names,
            [
                "user data",
                "inactivity decay",
                "level change outbox",
                "daily score cap",
                "event trace id",
                "idempotency per user",
                "planned once",
                "retention",
                "metrics",
                "scorer doorbell",
                "scored before processed",
                "catalogue version on change only",
                "rejected messages",
            ]
        );
        let reverted = migrator::down(&mut conn, DownCount::Last(1)).await.unwrap();
        assert_eq!(reverted.len(), 1);
        assert_eq!(reverted[0].description, "friendship history");
        assert_eq!(
            tables(&db.pool).await,
            [
                "catalogue_version",
                "conversation_events",
                "friendship_agent_mapping",
                "friendship_status"
            ]
        );
        // The first three applied, every later one pending.
        let mut expected = vec![MigrationState::Pending; MIGRATIONS];
        expected[..3].fill(MigrationState::Applied);
        assert_eq!(
            states(&migrator::status(&mut conn).await.unwrap()),
            expected
        );

        let reverted = migrator::down(&mut conn, DownCount::Last(2)).await.unwrap();
        let names: Vec<_> = reverted.iter().map(|m| m.description.as_str()).collect();
        assert_eq!(names, ["conversation events", "friendship agent mapping"]);
        assert_eq!(tables(&db.pool).await, ["friendship_status"]);

        assert_eq!(
            migrator::down(&mut conn, DownCount::Last(9))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(tables(&db.pool).await.is_empty());
    });
}

#[test]
fn status_flags_an_applied_migration_whose_file_changed() {
    with_migrated_db(|db| async move {
        sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE description = 'conversation events'")
            .execute(&db.pool)
            .await
            .unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        let lines = migrator::status(&mut conn).await.unwrap();
        // The third migration, conversation events, is the one edited.
        let mut expected = vec![MigrationState::Applied; MIGRATIONS];
        expected[2] = MigrationState::Modified;
        assert_eq!(states(&lines), expected);
        assert!(
            migrator::up(&mut conn).await.is_err(),
            "sqlx refuses to run over an edited migration"
        );
    });
}

/// Inserts one user per score (passed as `float8`, as the components do) and returns
/// `(score, generated level)` pairs read back as the components read them.
async fn levels_of(pool: &sqlx::PgPool, scores: &[f64]) -> Vec<(f64, String)> {
    let ids: Vec<String> = (0..scores.len()).map(|i| format!("user-{i}")).collect();
    sqlx::query("INSERT INTO friendship_status (user_id, friendship_score) SELECT * FROM unnest($1::text[], $2::float8[])")
        .bind(&ids)
        .bind(scores)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT friendship_score::float8, friendship_level FROM friendship_status
         ORDER BY substr(user_id, 6)::int",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[test]
fn the_generated_level_follows_the_rule_at_the_boundaries() {
    with_migrated_db(|db| async move {
        let got = levels_of(&db.pool, &[0.0, 99.99, 100.0, 499.5, 500.0, 1e9]).await;
        let levels: Vec<_> = got.iter().map(|(_, level)| level.as_str()).collect();
        assert_eq!(
            levels,
            [
                "stranger",
                "stranger",
                "acquaintance",
                "acquaintance",
                "friend",
                "friend"
            ]
        );
    });
}

#[test]
fn the_generated_level_agrees_with_the_domain_rule_over_a_range_of_scores() {
    with_migrated_db(|db| async move {
        // i / 20 is the double nearest to each two-decimal score, so it survives NUMERIC.
        let scores: Vec<f64> = (0..=24_000).map(|i| f64::from(i) / 20.0).collect();
        let got = levels_of(&db.pool, &scores).await;
        assert_eq!(got.len(), scores.len());
        for ((score, level), sent) in got.iter().zip(&scores) {
            assert_eq!(score, sent, "the score round-trips through NUMERIC");
            assert_eq!(level, Level::from_score(*score).as_str(), "score {score}");
        }
    });
}

#[test]
fn the_generated_level_follows_score_updates() {
    with_migrated_db(|db| async move {
        sqlx::query(
            "INSERT INTO friendship_status (user_id, friendship_score) VALUES ('user-1', 99.5)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        for (change, expected) in [
            (0.5, "acquaintance"),
            (400.0, "friend"),
            (-0.01, "acquaintance"),
            (-400.0, "stranger"),
        ] {
            let level: String = sqlx::query_scalar(
                "UPDATE friendship_status SET friendship_score = friendship_score + $1::float8
                 WHERE user_id = 'user-1' RETURNING friendship_level",
            )
            .bind(change)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            assert_eq!(level, expected, "after a change of {change}");
        }
    });
}

#[test]
fn catalogue_version_bumps_once_per_statement_that_changes_the_catalogue() {
    with_migrated_db(|db| async move {
        let pool = &db.pool;
        assert_eq!(catalogue_version(pool).await, 1);
        let statements = [
            "INSERT INTO friendship_agent_mapping (friendship_level, agent_type, agent_id, agent_name, weight)
             VALUES ('friend', 'game', 'g1', 'G1', 1)",
            "INSERT INTO friendship_agent_mapping (friendship_level, agent_type, agent_id, agent_name, weight)
             VALUES ('friend', 'game', 'g2', 'G2', 1), ('friend', 'game', 'g3', 'G3', 1)",
            "UPDATE friendship_agent_mapping SET weight = 2 WHERE agent_id = 'g1'",
            "UPDATE friendship_agent_mapping SET is_active = false",
            "DELETE FROM friendship_agent_mapping WHERE agent_id = 'g3'",
        ];
        for (i, statement) in statements.iter().enumerate() {
            sqlx::query(statement).execute(pool).await.unwrap();
            assert_eq!(
                catalogue_version(pool).await,
                2 + i as i64,
                "after {statement}"
            );
        }
        // A statement that changes no row leaves every cached record usable.
        let last = catalogue_version(pool).await;
        for statement in [
            "UPDATE friendship_agent_mapping SET weight = 3 WHERE agent_id = 'nobody'",
            "DELETE FROM friendship_agent_mapping WHERE agent_id = 'nobody'",
            "INSERT INTO friendship_agent_mapping (friendship_level, agent_type, agent_id, agent_name, weight)
             SELECT 'friend', 'game', 'g9', 'G9', 1 WHERE false",
        ] {
            sqlx::query(statement).execute(pool).await.unwrap();
            assert_eq!(catalogue_version(pool).await, last, "after {statement}");
        }
    });
}

#[test]
fn catalogue_version_stays_a_single_row() {
    with_migrated_db(|db| async move {
        let second = sqlx::query("INSERT INTO catalogue_version (id, version) VALUES (false, 1)")
            .execute(&db.pool)
            .await;
        assert_eq!(sqlstate(second), CHECK_VIOLATION);
        let duplicate = sqlx::query("INSERT INTO catalogue_version (version) VALUES (1)")
            .execute(&db.pool)
            .await;
        assert_eq!(sqlstate(duplicate), UNIQUE_VIOLATION);
    });
}

/// Migration `idempotency_per_user` widens the keys of the events and of the
/// pruned conversations to `(user_id, conversation_id)` and loses none; its
/// down migration is refused while two users share a conversation id.
#[test]
fn idempotency_per_user_moves_every_key_and_goes_down_only_while_ids_are_unshared() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        let reverted = migrator::down(&mut conn, DownCount::Last(6)).await.unwrap();
        let names: Vec<_> = reverted.iter().map(|m| m.description.as_str()).collect();
        assert_eq!(
            names,
            [
                "user data",
                "inactivity decay",
                "level change outbox",
                "daily score cap",
                "event trace id",
                "idempotency per user"
            ]
        );
        for statement in [
            "INSERT INTO conversation_events (conversation_id, user_id, payload)
             SELECT 'c-' || n, 'u-' || (n % 7), '{}' FROM generate_series(1, 500) n",
            "INSERT INTO pruned_conversations (conversation_id, processing_id, user_id, payload_digest)
             SELECT 'p-' || n, gen_random_uuid(), 'u-' || (n % 7), sha256('x') FROM generate_series(1, 300) n",
        ] {
            sqlx::query(statement).execute(&mut *conn).await.unwrap();
        }
        let keys = "SELECT (SELECT count(DISTINCT (user_id, conversation_id)) FROM conversation_events)
                         + (SELECT count(DISTINCT (user_id, conversation_id)) FROM pruned_conversations)";
        let before: i64 = sqlx::query_scalar(keys)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(before, 800);
        migrator::up(&mut conn).await.unwrap();
        let after: i64 = sqlx::query_scalar(keys)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(after, 800, "every key kept");

        // Now a conversation id is the user's: another user may use it, the same may not.
        let insert = |conversation: &'static str, user: &'static str| {
            sqlx::query(
                "INSERT INTO conversation_events (conversation_id, user_id, payload) VALUES ($1, $2, '{}')",
            )
            .bind(conversation)
            .bind(user)
        };
        insert("c-1", "u-other").execute(&mut *conn).await.unwrap();
        assert!(insert("c-1", "u-1").execute(&mut *conn).await.is_err());
        let shared: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM conversation_events WHERE conversation_id = 'c-1'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(shared, 2);

        // The later migrations first (they go down whatever the ids).
        let above = migrator::down(&mut conn, DownCount::Last(5)).await.unwrap();
        assert_eq!(above[3].description, "daily score cap");
        assert_eq!(above[4].description, "event trace id");
        // Going down would have to drop one of the two: refused, nothing changed.
        assert!(migrator::down(&mut conn, DownCount::Last(1)).await.is_err());
        sqlx::query("DELETE FROM conversation_events WHERE user_id = 'u-other'")
            .execute(&mut *conn)
            .await
            .unwrap();
        let reverted = migrator::down(&mut conn, DownCount::Last(1)).await.unwrap();
        assert_eq!(reverted.len(), 1);
    });
}

/// Migration `inactivity_decay` goes down only while no history line or
/// transition was caused by decay (going down would have to forget why
/// those scores moved), and then drops the day counter; the outbox of level
/// changes goes down with its rows.
#[test]
fn inactivity_decay_goes_down_only_without_decay_lines_and_the_outbox_after_it() {
    with_migrated_db(|db| async move {
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::query(
            "INSERT INTO friendship_score_history
                 (user_id, cause, score_change, score_applied, score_before, score_after)
             VALUES ('u-1', 'decay', -5, -5, 7, 2)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        // The later migration first (it goes down whatever the history holds).
        let above = migrator::down(&mut conn, DownCount::Last(1)).await.unwrap();
        assert_eq!(above[0].description, "user data");
        assert!(migrator::down(&mut conn, DownCount::Last(1)).await.is_err());
        let kept: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'friendship_status' AND column_name = 'decay_days_applied'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(kept, 1, "nothing changed");

        sqlx::query("DELETE FROM friendship_score_history WHERE cause = 'decay'")
            .execute(&mut *conn)
            .await
            .unwrap();
        let reverted = migrator::down(&mut conn, DownCount::Last(2)).await.unwrap();
        let names: Vec<_> = reverted.iter().map(|m| m.description.as_str()).collect();
        assert_eq!(names, ["inactivity decay", "level change outbox"]);
        let decay = "INSERT INTO friendship_score_history
                         (user_id, cause, score_change, score_applied, score_before, score_after)
                     VALUES ('u-1', 'decay', -5, -5, 7, 2)";
        assert_eq!(
            sqlstate(sqlx::query(decay).execute(&mut *conn).await),
            CHECK_VIOLATION
        );
        assert!(!tables(&db.pool)
            .await
            .contains(&"level_change_outbox".to_owned()));
    });
}
