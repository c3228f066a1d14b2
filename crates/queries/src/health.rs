//! The database probe of the health route.

/// A round trip that touches the schema, so a database without migrations is
/// reported down. Returns `version` int8.
pub const PROBE: &str = "SELECT version FROM catalogue_version";
