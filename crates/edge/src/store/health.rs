//! Whether the database answers: one round trip through the schema.

use friendship_queries::health;

use crate::db::{Db, DbError};

/// Reads the catalogue version: fails when the database does not answer or
/// has no schema.
pub fn probe(db: &Db) -> Result<(), DbError> {
    db.read::<serde_json::Value>(&health::PROBE, &[])
        .map(|_| ())
}
