//! The health probe: up on a migrated database, down on one without the schema.

use friendship_queries::health;
use serde::Deserialize;

use crate::support::{read, sqlstate, with_db, with_migrated_db, UNDEFINED_TABLE};

/// A row of [`health::PROBE`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    version: i64,
}

#[test]
fn the_probe_answers_the_catalogue_version_on_a_migrated_database() {
    with_migrated_db(|db| async move {
        let probe: Probe = read(&health::PROBE).one(&db.pool).await;
        assert_eq!(probe.version, 1);
        assert_eq!(
            read(&health::PROBE).json(&db.pool).await,
            r#"[{"version":1}]"#
        );
    });
}

#[test]
fn the_probe_fails_on_a_database_without_migrations() {
    with_db(|db| async move {
        let probe = read(&health::PROBE).try_rows::<Probe>(&db.pool).await;
        assert_eq!(sqlstate(probe), UNDEFINED_TABLE);
    });
}
