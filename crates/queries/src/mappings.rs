//! The agent catalogue: CRUD for operators, and the active agents of a level
//! for suggestions, read together with the catalogue version they belong to.
//!
//! Every change to `friendship_agent_mapping` bumps `catalogue_version.version`
//! in the same statement (a statement trigger), which is what makes cached
//! candidates of an older catalogue unusable.
//!
//! A create, replace or soft delete is a [`Write`] followed by a [`Read`] of
//! the mapping in the same transaction.

use crate::{Read, Write};

/// The mapping columns, in order: `id` int8, `friendship_level`, `agent_type`,
/// `agent_id`, `agent_name`, `agent_description`, `weight` float8, `is_active`
/// bool, `greeting_trigger` text?, `topic` text?, `created_at` timestamp,
/// `updated_at` timestamp.
macro_rules! mapping_columns {
    () => {
        "id, friendship_level, agent_type, agent_id, agent_name, agent_description, weight, \
         is_active, greeting_trigger, topic, \
         created_at AT TIME ZONE 'UTC' AS created_at, updated_at AT TIME ZONE 'UTC' AS updated_at"
    };
}

/// The optional filters of the list, shared by [`COUNT`] and [`LIST`]:
/// `$1` level text?, `$2` agent type text?, `$3` is_active bool?.
macro_rules! list_filter {
    () => {
        "WHERE ($1::text IS NULL OR friendship_level = $1::text)
  AND ($2::text IS NULL OR agent_type = $2::text)
  AND ($3::bool IS NULL OR is_active = $3::bool)"
    };
}

/// Counts the mappings that match the filters (see [`LIST`]). One row: `total` int8.
pub const COUNT: Read = crate::read!(
    "SELECT count(*) AS total FROM friendship_agent_mapping\n",
    list_filter!()
);

/// Lists mappings by id. `$1` level text?, `$2` agent type text?, `$3`
/// is_active bool?, `$4` limit int8, `$5` offset int8. Rows: the mapping columns.
pub const LIST: Read = crate::read!(
    "SELECT ",
    mapping_columns!(),
    "\nFROM friendship_agent_mapping\n",
    list_filter!(),
    "\nORDER BY id\nLIMIT $4::int8 OFFSET $5::int8"
);

/// Reads one mapping. `$1` id int8. Rows: the mapping columns.
pub const GET: Read = crate::read!(
    "SELECT ",
    mapping_columns!(),
    "\nFROM friendship_agent_mapping\nWHERE id = $1::int8"
);

/// Reads one mapping by its unique key. `$1` level, `$2` agent type, `$3`
/// agent_id. Rows: the mapping columns.
pub const GET_BY_KEY: Read = crate::read!(
    "SELECT ",
    mapping_columns!(),
    "\nFROM friendship_agent_mapping
WHERE friendship_level = $1::text AND agent_type = $2::text AND agent_id = $3::text"
);

/// Creates a mapping. `$1` level, `$2` agent type, `$3` agent_id, `$4` name,
/// `$5` description, `$6` weight float8, `$7` is_active bool, `$8` trigger
/// text?, `$9` topic text?. A duplicate (level, type, agent_id) fails with
/// SQLSTATE 23505. Read the new mapping back with [`GET_BY_KEY`].
pub const INSERT: Write = crate::write!(
    "INSERT INTO friendship_agent_mapping
    (friendship_level, agent_type, agent_id, agent_name, agent_description, weight,
     is_active, greeting_trigger, topic)
VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::float8, $7::bool, $8::text, $9::text)"
);

/// Replaces a mapping's fields. `$10` id int8, `$1`..`$9` as [`INSERT`].
/// Affects no row when the id is unknown; SQLSTATE 23505 on a duplicate.
pub const REPLACE: Write = crate::write!(
    "UPDATE friendship_agent_mapping
SET friendship_level = $1::text, agent_type = $2::text, agent_id = $3::text,
    agent_name = $4::text, agent_description = $5::text, weight = $6::float8,
    is_active = $7::bool, greeting_trigger = $8::text, topic = $9::text, updated_at = now()
WHERE id = $10::int8"
);

/// Soft-deletes a mapping. `$1` id int8. Affects no row when the id is unknown.
pub const DEACTIVATE: Write = crate::write!(
    "UPDATE friendship_agent_mapping
SET is_active = false, updated_at = now()
WHERE id = $1::int8"
);

/// The current catalogue version. One row: `version` int8.
pub const CATALOGUE_VERSION: Read = crate::read!("SELECT version FROM catalogue_version");
