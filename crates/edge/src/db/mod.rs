//! Postgres through Spin's `spin:postgres@4.0.0`: the one door every
//! statement of `friendship-queries` goes through.
//!
//! - A [`Read`] runs with `query` and always answers exactly one row (see
//!   `friendship-queries`), whose JSON array is decoded here into typed rows:
//!   no read can meet Spin 4.0.0–4.0.2's hang on an empty result.
//! - A [`Write`] runs with `execute`, whose database errors carry their
//!   SQLSTATE on every Spin version.
//! - A transaction that a crashed instance left open on the pooled
//!   connection never swallows a write: it is rolled back before the first
//!   transaction, and checked for right after a first single write, which
//!   then runs again on its own ([`Db::write`]; [`Db::write_then_probe`]
//!   spares the check when the write's follower proves the connection
//!   clean). Callers cannot forget it: it is done here, once per connection.
//! - Every failure becomes a [`DbError`] classified by [`failure`].

pub mod failure;

use std::cell::Cell;

use friendship_queries::{session, Read, Write};
use serde::de::DeserializeOwned;
use spin_sdk::pg4::{Connection, DbValue, ParameterValue};

use crate::config;
pub use failure::{DbError, DbErrorKind};

/// An open connection (pooled by Spin from 3.4 on).
pub struct Db {
    conn: Connection,
    /// No write or transaction of ours has run on this connection yet: it
    /// may come from the pool still inside one left by a crashed instance.
    fresh: Cell<bool>,
}

impl Db {
    /// Opens the database named by the `db_url` variable.
    pub fn open() -> Result<Db, DbError> {
        let url = config::db_url().map_err(|e| DbError::config(e.to_string()))?;
        let conn = Connection::open(&url).map_err(failure::classify)?;
        Ok(Db {
            conn,
            fresh: Cell::new(true),
        })
    }

    /// Runs a read and decodes every matched row.
    pub fn read<T: DeserializeOwned>(
        &self,
        statement: &Read,
        params: &[ParameterValue],
    ) -> Result<Vec<T>, DbError> {
        let set = self
            .conn
            .query(statement.sql, params)
            .map_err(failure::classify)?;
        let json = match set.rows.first().and_then(|row| row.first()) {
            Some(DbValue::Str(json)) => json,
            _ => {
                return Err(DbError::decoding(
                    "a read answered without its `rows` column".into(),
                ))
            }
        };
        serde_json::from_str(json)
            .map_err(|e| DbError::decoding(format!("rows of a read do not decode: {e}")))
    }

    /// Runs a read and decodes its first row, if any matched.
    pub fn read_one<T: DeserializeOwned>(
        &self,
        statement: &Read,
        params: &[ParameterValue],
    ) -> Result<Option<T>, DbError> {
        Ok(self.read(statement, params)?.into_iter().next())
    }

    /// Runs a read that always matches one row (a count, a version, a flag).
    pub fn read_single<T: DeserializeOwned>(
        &self,
        statement: &Read,
        params: &[ParameterValue],
    ) -> Result<T, DbError> {
        self.read_one(statement, params)?
            .ok_or_else(|| DbError::decoding("a single-row read matched no row".into()))
    }

    /// Runs a write; the number of rows it affected. On a connection's first
    /// write the check for a stale transaction comes after it, at the same
    /// cost as before it: a transaction left open that had only begun or
    /// read is invisible beforehand, but once the write has joined it the
    /// write's own transaction id shows; then both are rolled back and the
    /// write runs again, on its own.
    pub fn write(&self, statement: &Write, params: &[ParameterValue]) -> Result<u64, DbError> {
        if !self.fresh.replace(false) {
            return self.execute(statement.sql, params);
        }
        match self.execute(statement.sql, params) {
            Ok(affected) if self.is_clean()? => return Ok(affected),
            // It joined a transaction left open, or met one left aborted.
            Ok(_) => {}
            Err(e) if e.sqlstate() == Some(failure::IN_FAILED_TRANSACTION) => {}
            Err(e) => return Err(e),
        }
        self.execute("ROLLBACK", &[])?;
        self.execute(statement.sql, params)
    }

    /// Runs `first`, then `probe`, each a write of its own; both affected-row
    /// counts. `probe` must affect a row whenever it runs inside a
    /// transaction that has written (its documentation says so, and a native
    /// test holds it to it): then on a connection's first write, a probe that
    /// affected none proves `first` committed on its own, and the check that
    /// [`Db::write`] makes is made only when the probe affected a row. When
    /// that check finds a transaction left open, both are rolled back and run
    /// again, on their own.
    pub fn write_then_probe(
        &self,
        first: (&Write, &[ParameterValue]),
        probe: (&Write, &[ParameterValue]),
    ) -> Result<(u64, u64), DbError> {
        let both = || -> Result<(u64, u64), DbError> {
            let affected = self.execute(first.0.sql, first.1)?;
            Ok((affected, self.execute(probe.0.sql, probe.1)?))
        };
        if !self.fresh.replace(false) {
            return both();
        }
        match both() {
            Ok(counts @ (_, 0)) => return Ok(counts),
            Ok(counts) if self.is_clean()? => return Ok(counts),
            // It joined a transaction left open, or met one left aborted.
            Ok(_) => {}
            Err(e) if e.sqlstate() == Some(failure::IN_FAILED_TRANSACTION) => {}
            Err(e) => return Err(e),
        }
        self.execute("ROLLBACK", &[])?;
        both()
    }

    /// Runs `work` in a transaction that is always finished explicitly: a
    /// pooled connection must never go back to the pool inside one.
    pub fn transaction<T, E: From<DbError>>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.leave_stale_transaction()?;
        self.execute("BEGIN", &[])?;
        match work(self) {
            Ok(value) => {
                self.execute("COMMIT", &[])?;
                Ok(value)
            }
            Err(error) => {
                // The original error matters more than a failed rollback.
                let _ = self.execute("ROLLBACK", &[]);
                Err(error)
            }
        }
    }

    /// Runs `work` inside a savepoint of the current transaction: when it
    /// fails, only its own changes are undone and the transaction goes on.
    pub fn savepoint<T, E: From<DbError>>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.execute("SAVEPOINT work", &[])?;
        match work(self) {
            Ok(value) => {
                self.execute("RELEASE SAVEPOINT work", &[])?;
                Ok(value)
            }
            Err(error) => {
                self.execute("ROLLBACK TO SAVEPOINT work", &[])?;
                Err(error)
            }
        }
    }

    fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        self.conn.execute(sql, params).map_err(failure::classify)
    }

    /// Before this connection's first transaction: a connection can come
    /// back from Spin's pool still inside a transaction that a crashed
    /// instance left open, and work done inside it would never commit. One
    /// that wrote or locked (its partial work) is rolled back here. One that
    /// had only begun or read is invisible to this check, and harmless to a
    /// transaction: `BEGIN` warns and its `COMMIT` ends both.
    fn leave_stale_transaction(&self) -> Result<(), DbError> {
        if self.fresh.replace(false) && !self.is_clean()? {
            self.execute("ROLLBACK", &[])?;
        }
        Ok(())
    }

    /// Whether the connection is outside any transaction that wrote or
    /// locked. A read that warns nothing (`ROLLBACK` outside a transaction
    /// would log a warning on the server for every request); a transaction
    /// already aborted refuses even that read (SQLSTATE 25P02): not clean.
    fn is_clean(&self) -> Result<bool, DbError> {
        #[derive(serde::Deserialize)]
        struct Clean {
            clean: bool,
        }
        match self.read_single::<Clean>(&session::CLEAN, &[]) {
            Ok(row) => Ok(row.clean),
            Err(e) if e.sqlstate() == Some(failure::IN_FAILED_TRANSACTION) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A text parameter, or NULL.
pub fn text_or_null(value: Option<&str>) -> ParameterValue {
    match value {
        Some(v) => ParameterValue::Str(v.to_owned()),
        None => ParameterValue::DbNull,
    }
}

/// A UUID parameter.
pub fn uuid_param(id: uuid::Uuid) -> ParameterValue {
    ParameterValue::Uuid(id.to_string())
}

/// Deserializes a `timestamp` read as `col AT TIME ZONE 'UTC'` (JSON renders
/// it without an offset) into a UTC date-time.
pub mod utc {
    use chrono::{DateTime, NaiveDateTime, Utc};
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        Ok(NaiveDateTime::deserialize(d)?.and_utc())
    }

    /// As the parent module, for a nullable column.
    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Ok(Option::<NaiveDateTime>::deserialize(d)?.map(|t| t.and_utc()))
        }
    }
}
