//! Seeding the agent catalogue: complete, within its quotas, and idempotent.

use migrator::seed::{CATALOGUE, QUOTAS, REQUIRED_TRIGGERS};
use migrator::{MigratorError, SeedReport};
use sqlx::PgPool;

use crate::support::{catalogue_version, with_db, with_migrated_db};

/// Every column of every catalogue row, timestamps and ids included.
async fn dump(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY id), '[]')::text FROM friendship_agent_mapping m")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn seed(pool: &PgPool) -> SeedReport {
    migrator::seed(&mut pool.acquire().await.unwrap())
        .await
        .unwrap()
}

#[test]
fn seeding_twice_leaves_identical_rows_and_bumps_the_version_once() {
    with_migrated_db(|db| async move {
        let all = CATALOGUE.len();
        assert_eq!(
            seed(&db.pool).await,
            SeedReport {
                inserted: all as u64,
                already_present: 0
            }
        );
        let (rows, version) = (dump(&db.pool).await, catalogue_version(&db.pool).await);
        assert_eq!(version, 2, "one insert statement");

        assert_eq!(
            seed(&db.pool).await,
            SeedReport {
                inserted: 0,
                already_present: all
            }
        );
        assert_eq!(dump(&db.pool).await, rows);
        assert_eq!(catalogue_version(&db.pool).await, version);
    });
}

#[test]
fn seeding_adds_only_missing_rows_and_keeps_operator_edits() {
    with_migrated_db(|db| async move {
        seed(&db.pool).await;
        sqlx::query("DELETE FROM friendship_agent_mapping WHERE agent_id = 'greet-hello-friend'")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE friendship_agent_mapping SET weight = 7, is_active = false WHERE agent_id = 'talk-music-stranger'",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let before = catalogue_version(&db.pool).await;

        assert_eq!(
            seed(&db.pool).await,
            SeedReport {
                inserted: 1,
                already_present: CATALOGUE.len() - 1
            }
        );
        assert_eq!(catalogue_version(&db.pool).await, before + 1);
        let (weight, active): (f64, bool) = sqlx::query_as(
            "SELECT weight, is_active FROM friendship_agent_mapping WHERE agent_id = 'talk-music-stranger'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((weight, active), (7.0, false));
        let restored: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM friendship_agent_mapping WHERE agent_id = 'greet-hello-friend' AND greeting_trigger IS NULL",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(restored, 1);
    });
}

#[test]
fn concurrent_seeds_insert_each_row_once() {
    with_migrated_db(|db| async move {
        let (a, b) = tokio::join!(seed(&db.pool), seed(&db.pool));
        assert_eq!(a.inserted + b.inserted, CATALOGUE.len() as u64);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM friendship_agent_mapping")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(rows, CATALOGUE.len() as i64);
    });
}

#[test]
fn the_seeded_catalogue_meets_the_documented_quotas_in_the_database() {
    with_migrated_db(|db| async move {
        seed(&db.pool).await;
        for quota in &QUOTAS {
            let counts: Vec<(String, i64)> = sqlx::query_as(
                "SELECT agent_type, count(*) FROM friendship_agent_mapping
                 WHERE friendship_level = $1 AND is_active GROUP BY agent_type ORDER BY agent_type",
            )
            .bind(quota.level)
            .fetch_all(&db.pool)
            .await
            .unwrap();
            let count_of = |agent_type: &str| {
                counts
                    .iter()
                    .find(|(t, _)| t == agent_type)
                    .map_or(0, |(_, n)| *n as usize)
            };
            assert!(
                quota.greeting.contains(&count_of("greeting")),
                "{} greetings: {counts:?}",
                quota.level
            );
            assert!(
                quota.talk.contains(&count_of("talk")),
                "{} talk: {counts:?}",
                quota.level
            );
            assert!(
                quota.game.contains(&count_of("game")),
                "{} games: {counts:?}",
                quota.level
            );
            let total = counts.iter().map(|(_, n)| *n as usize).sum::<usize>();
            assert!(
                quota.total.contains(&total),
                "{} total: {total}",
                quota.level
            );

            let triggers: Vec<Option<String>> = sqlx::query_scalar(
                "SELECT greeting_trigger FROM friendship_agent_mapping
                 WHERE friendship_level = $1 AND agent_type = 'greeting'",
            )
            .bind(quota.level)
            .fetch_all(&db.pool)
            .await
            .unwrap();
            for required in REQUIRED_TRIGGERS {
                assert!(
                    triggers.contains(&Some(required.to_owned())),
                    "{} lacks {required}",
                    quota.level
                );
            }
            assert!(
                triggers.iter().flatten().any(|t| t.starts_with("emotion:")),
                "{}",
                quota.level
            );
            assert!(
                triggers.contains(&None),
                "{} lacks a general greeting",
                quota.level
            );

            let (talk, topics): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(DISTINCT topic) FROM friendship_agent_mapping
                 WHERE friendship_level = $1 AND agent_type = 'talk'",
            )
            .bind(quota.level)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            assert_eq!(
                talk, topics,
                "{}: each talk agent covers its own topic",
                quota.level
            );
        }
    });
}

#[test]
fn seeding_an_unmigrated_database_asks_for_up_first() {
    with_db(|db| async move {
        let error = migrator::seed(&mut db.pool.acquire().await.unwrap())
            .await
            .unwrap_err();
        assert!(matches!(error, MigratorError::NotMigrated(_)), "{error:?}");
        assert!(
            error.to_string().contains("run `migrator up` first"),
            "{error}"
        );
    });
}
