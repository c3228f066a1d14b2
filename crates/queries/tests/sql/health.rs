//! The health probe: up on a migrated database, down on one without the schema.

use friendship_queries::health;

use crate::support::{sqlstate, with_db, with_migrated_db, UNDEFINED_TABLE};

#[test]
fn the_probe_answers_the_catalogue_version_on_a_migrated_database() {
    with_migrated_db(|db| async move {
        let version: i64 = sqlx::query_scalar(health::PROBE)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(version, 1);
    });
}

#[test]
fn the_probe_fails_on_a_database_without_migrations() {
    with_db(|db| async move {
        let probe = sqlx::query_scalar::<_, i64>(health::PROBE)
            .fetch_one(&db.pool)
            .await;
        assert_eq!(sqlstate(probe), UNDEFINED_TABLE);
    });
}
