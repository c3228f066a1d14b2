//! The state of a pooled connection's session.

use crate::Read;

/// `clean` is false on a connection that came back from the pool inside a
/// transaction that wrote or locked rows (a crashed instance's claim or
/// change), true otherwise. A read: unlike a blind `ROLLBACK`, it makes the
/// server log no warning on every request.
///
/// No parameters. One row: `clean` bool.
pub const CLEAN: Read = crate::read!("SELECT txid_current_if_assigned() IS NULL AS clean");
