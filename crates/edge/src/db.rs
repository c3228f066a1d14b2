//! Postgres through Spin's `spin:postgres@4.0.0`: opening, running the
//! statements of `friendship-queries`, explicit transactions, decoding, and the
//! one mapping from database errors to API errors.

use chrono::{DateTime, NaiveDateTime, Utc};
use spin_sdk::pg4::{self, Connection, DbValue, Decode, ParameterValue, RowSet};

use crate::config;
use crate::error::ApiError;

/// An open connection (pooled by Spin from 3.4 on).
pub struct Db {
    conn: Connection,
    /// No transaction of ours has run on this connection yet: it may come
    /// from the pool still inside one left by a crashed instance.
    fresh: std::cell::Cell<bool>,
}

impl Db {
    /// Opens the database named by the `db_url` variable.
    pub fn open() -> Result<Db, ApiError> {
        let url = config::db_url()?;
        let conn = Connection::open(&url).map_err(map_error)?;
        Ok(Db {
            conn,
            fresh: std::cell::Cell::new(true),
        })
    }

    pub fn query(&self, statement: &str, params: &[ParameterValue]) -> Result<Rows, ApiError> {
        self.conn
            .query(statement, params)
            .map(Rows)
            .map_err(map_error)
    }

    pub fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, ApiError> {
        self.conn.execute(statement, params).map_err(map_error)
    }

    /// Before this connection's first write: a connection can come back from
    /// Spin's pool still inside a transaction that a crashed instance left
    /// open, and a write made inside it would never commit. The check is a
    /// read that warns nothing (`ROLLBACK` outside a transaction would log a
    /// warning on the server for every request).
    pub fn reset_if_stale(&self) -> Result<(), ApiError> {
        if !self.fresh.replace(false) {
            return Ok(());
        }
        let rows = self.query(friendship_queries::session::CLEAN, &[])?;
        let clean: bool = rows
            .first()
            .map(|row| row.get("clean"))
            .transpose()?
            .unwrap_or(true);
        if !clean {
            self.execute("ROLLBACK", &[])?;
        }
        Ok(())
    }

    /// Runs `work` in a transaction that is always finished explicitly: a
    /// pooled connection must never go back to the pool inside one. A stale
    /// transaction left by a crashed instance is rolled back first.
    pub fn transaction<T>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.reset_if_stale()?;
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
}

/// A query's rows, decoded by column name.
pub struct Rows(RowSet);

impl Rows {
    pub fn len(&self) -> usize {
        self.0.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.rows.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.0.rows.iter().map(|values| RowRef {
            columns: &self.0.columns,
            values,
        })
    }

    pub fn first(&self) -> Option<RowRef<'_>> {
        self.iter().next()
    }
}

/// One row of [`Rows`].
pub struct RowRef<'a> {
    columns: &'a [pg4::Column],
    values: &'a [DbValue],
}

impl RowRef<'_> {
    fn value(&self, column: &str) -> Result<&DbValue, ApiError> {
        self.columns
            .iter()
            .position(|c| c.name == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| ApiError::Internal(format!("column `{column}` missing from the result")))
    }

    /// Decodes a column (`Option<T>` for nullable ones).
    pub fn get<T: Decode>(&self, column: &str) -> Result<T, ApiError> {
        T::decode(self.value(column)?)
            .map_err(|e| ApiError::Internal(format!("decoding column `{column}`: {e}")))
    }

    /// Decodes a UTC timestamp column read as `col AT TIME ZONE 'UTC'`.
    pub fn utc(&self, column: &str) -> Result<DateTime<Utc>, ApiError> {
        Ok(self.get::<NaiveDateTime>(column)?.and_utc())
    }

    /// As [`RowRef::utc`], for a nullable column.
    pub fn utc_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        Ok(self
            .get::<Option<NaiveDateTime>>(column)?
            .map(|t| t.and_utc()))
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

/// Decodes a UUID column.
pub fn uuid_of(row: &RowRef<'_>, column: &str) -> Result<uuid::Uuid, ApiError> {
    row.get::<uuid::Uuid>(column)
}

/// SQLSTATE of a unique-key violation.
pub const UNIQUE_VIOLATION: &str = "23505";

/// The one mapping from Postgres errors to API errors.
pub fn map_error(error: pg4::PgError) -> ApiError {
    use pg4::PgError as E;
    match error {
        E::ConnectionFailed(detail) => ApiError::Unavailable {
            dependency: "database",
            detail,
            retry_after: 1,
        },
        E::QueryFailed(pg4::QueryError::DbError(db)) => {
            let code = db.code.as_str();
            let detail = format!("sqlstate {code}: {}", db.message);
            match code {
                UNIQUE_VIOLATION => ApiError::Conflict(detail),
                "57014" => ApiError::Timeout {
                    dependency: "database",
                    detail,
                },
                c if c.starts_with("08")
                    || c.starts_with("57P")
                    || c == "40001"
                    || c == "40P01"
                    || c.starts_with("53") =>
                {
                    ApiError::Unavailable {
                        dependency: "database",
                        detail,
                        retry_after: 1,
                    }
                }
                _ => ApiError::Internal(detail),
            }
        }
        E::QueryFailed(pg4::QueryError::Text(detail)) => {
            // Without a SQLSTATE, a broken connection is told by its wording.
            let lower = detail.to_ascii_lowercase();
            if [
                "connection",
                "closed",
                "broken pipe",
                "reset",
                "timed out",
                "communicating",
            ]
            .iter()
            .any(|w| lower.contains(w))
            {
                ApiError::Unavailable {
                    dependency: "database",
                    detail,
                    retry_after: 1,
                }
            } else {
                ApiError::Internal(detail)
            }
        }
        E::BadParameter(detail) => ApiError::Internal(format!("bad parameter: {detail}")),
        E::ValueConversionFailed(detail) => {
            ApiError::Internal(format!("value conversion: {detail}"))
        }
        E::Other(detail) => ApiError::Internal(detail),
    }
}
