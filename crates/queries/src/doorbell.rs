//! Whether a doorbell is on its way to a scorer wake-up that has not started
//! yet (the one row of `scorer_doorbell`).

use crate::Write;

/// Marks a doorbell as on its way, unless one already is: affects 1 row when
/// the caller must publish it, 0 when a wake-up that has not started yet
/// will claim the caller's event anyway. A mark older than `$1` ms counts as
/// gone (its doorbell was lost, or no scorer runs to clear it).
///
/// Run after the caller's event committed, on its own: a mark it finds was
/// made before the wake-up that clears it, and that wake-up claims after
/// clearing, so it sees the event. Modifies nothing (and writes no WAL)
/// when it finds a fresh mark, the common case under load.
///
/// Inside a transaction that has written, it always affects its row: run
/// right after a connection's first write, 0 proves that write committed on
/// its own (not inside a transaction a crashed instance left open), which
/// spares the check ([`crate::session::CLEAN`]) in the common case.
///
/// `$1` the mark's lifetime, milliseconds, int8.
pub const RING: Write = crate::write!(
    "UPDATE scorer_doorbell SET rung_at = clock_timestamp()
WHERE txid_current_if_assigned() IS NOT NULL
   OR rung_at IS NULL
   OR rung_at < clock_timestamp() - $1::int8 * interval '1 millisecond'"
);

/// Unmarks the doorbell as a scorer wake-up starts, before it claims
/// anything: events committed from now on need a doorbell of their own.
/// Modifies nothing when no doorbell is marked. No parameters.
pub const CLEAR: Write =
    crate::write!("UPDATE scorer_doorbell SET rung_at = NULL WHERE rung_at IS NOT NULL");
