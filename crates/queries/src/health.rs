//! The database probe of the health route.

use crate::Read;

/// A round trip that touches the schema, so a database without migrations is
/// reported down. One row: `version` int8.
pub const PROBE: Read = crate::read!("SELECT version FROM catalogue_version");
