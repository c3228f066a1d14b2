//! `spin:postgres/postgres@4.0.0` through tokio-postgres, with Spin's pooling,
//! TLS, type mapping and limits, and — per [`SpinCompat`] line — Spin's
//! `query`, bugs included.
//!
//! Written from a reading (never a copy) of Spin's
//! `crates/factor-outbound-pg/src/{client.rs,host.rs,types.rs,types/*.rs}` at
//! tags `v3.6.3` and `v4.0.2` and at commit f0256b37 ("Fix sync Postgres
//! deadlocking on empty result set", later than any tag). Common to every
//! line:
//! - `open(address)`: the address is parsed as a tokio-postgres connection
//!   string (parse failure → `connection-failed(<message>)`); each TCP host
//!   must be allowed by `allowed_outbound_hosts` for scheme `postgres`, else
//!   `connection-failed("address postgres://<host[:port]> is not permitted")`;
//!   Unix sockets are refused. Connections come from a deadpool pool per
//!   address (64 connections, `RecyclingMethod::Clean`); a pool or connect
//!   failure is `connection-failed("<debug of the anyhow error>")`.
//! - TLS (`create_connection_pool` in client.rs, identical in v3.6.3 and
//!   v4.0.2 for `open`): `sslmode=disable` connects in plain text (`NoTls`);
//!   every other mode — including the default, `prefer` — goes through a
//!   `postgres-native-tls` `MakeTlsConnector` over a default
//!   `native_tls::TlsConnector`, so the server certificate *and* host name are
//!   verified against the system roots. A server that accepts TLS with a
//!   self-signed certificate (Debian's default "snakeoil" set-up) therefore
//!   fails `open` with `connection-failed(..certificate verify failed..)`;
//!   there is no fallback to plain TCP once the server has said yes to TLS.
//!   (Only a server that refuses TLS is used in plain text under `prefer`.)
//! - A connection keeps its session, so `BEGIN … COMMIT` works; a connection
//!   dropped mid-transaction goes back to the pool as it is (Clean recycling
//!   does not roll back).
//! - `execute`: `client.execute`; a database error is
//!   `query-failed(db-error{…})` with severity, SQLSTATE code, message,
//!   detail and extras, any other error `query-failed(text("<debug of the
//!   tokio-postgres error>"))`.
//! - Result columns: bool, int2/4/8, float4/8, text/varchar/bpchar, bytea,
//!   date, time, timestamp (→ `datetime`), uuid, jsonb, numeric (→ `decimal`
//!   string), int4/int8/num ranges, int4/int8/numeric/text(/varchar/bpchar)
//!   arrays, interval. `timestamptz` is *declared* `datetime` but decoded as a
//!   naive timestamp, which tokio-postgres refuses, so any timestamptz column —
//!   even NULL — fails the whole query with `query-failed(text(..WrongType..))`.
//!   Every other type (plain `json`, `name`, `oid`, …) is `other("<type
//!   name>")` with values `unsupported(<raw binary bytes>)` (NULL stays
//!   `db-null`).
//! - Parameters: `timestamp(s64)` is epoch seconds → timestamptz; `datetime`
//!   → timestamp; `int8(s8)` → Postgres `"char"`; `db-null` fits any type. A
//!   parameter that fails conversion is `bad-parameter` in `query` but
//!   `value-conversion-failed` in `execute` (as in Spin).
//!
//! `query`, per line (all stream rows with `query_raw`; errors of
//! `query_raw` itself — preparing and binding, e.g. an unknown table — are
//! `query-failed(db-error{…})` like `execute`'s; errors raised *while rows
//! stream back* — a unique violation in `INSERT … RETURNING`, a statement
//! timeout, a terminated backend, a row that fails conversion — are not):
//! - [`SpinCompat::V3_6`] (client.rs `query` at v3.6.3): columns are inferred
//!   from the first row, so an empty result has no columns. A streaming error
//!   is turned into an `anyhow::Error` and flattened:
//!   `text(format!("{:?}", anyhow_error))`, e.g. `db error: ERROR: duplicate
//!   key value violates unique constraint …\n\nCaused by:\n    …`.
//! - [`SpinCompat::V4_0`] (client.rs `query`/`query_stream` at v4.0.2): each
//!   streamed row error first goes through `query_failed` (a WIT
//!   `error::query-failed(db-error{…})`; a conversion failure through
//!   `query_failed_anyhow`, `query-failed(text(..))`), and `query`'s loop then
//!   turns *that* into an `anyhow::Error` and flattens it again:
//!   `text("Error::QueryFailed(QueryError::DbError(DbError { as-text: …,
//!   code: \"23505\", … }))")`. Columns come from the first row over a
//!   oneshot channel that `query` awaits after the last row; with no rows it
//!   never resolves and the call never returns (spinframework/spin#3671). This
//!   host does not hang: it traps the invocation with "Spin 4.0.0–4.0.2 would
//!   hang here (spinframework/spin#3671): query matched no rows:
//!   <statement>", logs that at error level and records the statement
//!   (`App::spin_compat_violations`).
//! - [`SpinCompat::V4_1`] (f0256b37): as 4.0, but the statement is prepared
//!   first and the columns are the prepared statement's, so an empty result
//!   returns normally, with its columns.
//!
//! The error texts embed tokio-postgres's `Display`/`Debug`, so the crates
//! are pinned to the versions Spin 3.6.3 and 4.0.2 lock (tests/Cargo.toml):
//! tokio-postgres 0.7.12 (whose `Display` appends the cause — `db error:
//! ERROR: …`; 0.7.18 prints only `db error`), postgres-types 0.2.8,
//! postgres-protocol 0.6.7, deadpool-postgres 0.14.1.
//!
//! Not reproduced: Spin's 128 MiB cap on a buffered result, the moka pool
//! cache's 16-address capacity, `connection-builder` (postgres@4.2).

// The WIT `error` (with its `db-error` record) is what the interface returns.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{anyhow, Context as _};
use futures::{StreamExt as _, TryStreamExt as _};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::Row;
use wasmtime::component::Resource;

use crate::host::bindings::spin::postgres4_0_0::postgres::{
    self as v4, Column, DbDataType, DbValue, ParameterValue, RowSet,
};
use crate::host::compat::SpinCompat;
use crate::host::InstanceState;

/// Max connections per address (Spin's `CONNECTION_POOL_SIZE`).
pub const POOL_SIZE: usize = 64;

/// Connection pools, one per connection string, shared by all instances of
/// an app.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<String, deadpool_postgres::Pool>>,
}

impl Pools {
    fn pool(&self, address: &str) -> anyhow::Result<deadpool_postgres::Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(address) {
            return Ok(pool.clone());
        }
        let pool = create_pool(address)?;
        pools.insert(address.to_string(), pool.clone());
        Ok(pool)
    }

    /// A pooled client for `address`.
    pub async fn get(&self, address: &str) -> anyhow::Result<deadpool_postgres::Object> {
        let pool = self
            .pool(address)
            .context("establishing PostgreSQL connection pool")?;
        Ok(pool.get().await?)
    }
}

/// A pool for one address, TLS as Spin sets it up (`create_connection_pool`
/// in client.rs, v3.6.3 and v4.0.2): plain TCP only for `sslmode=disable`,
/// otherwise native-tls with default settings (system roots, certificate and
/// host name verified).
fn create_pool(address: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    let config = address
        .parse::<tokio_postgres::Config>()
        .context("parsing Postgres connection string")?;
    let manager_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Clean,
    };
    let manager = if config.get_ssl_mode() == SslMode::Disable {
        deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        let connector = native_tls::TlsConnector::builder().build()?;
        deadpool_postgres::Manager::from_config(
            config,
            postgres_native_tls::MakeTlsConnector::new(connector),
            manager_config,
        )
    };
    deadpool_postgres::Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()
        .context("building Postgres connection pool")
}

/// Why the host failed a `query` instead of answering it: the Spin line it
/// imitates would never have answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Spin 4.0.0–4.0.2 would hang here (spinframework/spin#3671): query matched no rows: {statement}")]
pub struct WouldHang {
    /// The statement, as the component sent it.
    pub statement: String,
}

/// An open connection: the host side of the `connection` resource.
pub struct PgConnection {
    client: deadpool_postgres::Object,
}

impl PgConnection {
    /// A connection over a pooled client.
    pub fn new(client: deadpool_postgres::Object) -> Self {
        Self { client }
    }

    /// Runs a statement, returning the affected row count (the same in every
    /// Spin line).
    pub async fn execute(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<u64, v4::Error> {
        let params = params
            .iter()
            .map(to_sql_parameter)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| v4::Error::ValueConversionFailed(format!("{e:?}")))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.client
            .execute(statement, refs.as_slice())
            .await
            .map_err(query_failed)
    }

    /// Runs a query as the Spin line `compat` does. The outer `Err` is a
    /// query that line would never answer (only [`SpinCompat::V4_0`], for a
    /// result without rows).
    pub async fn query(
        &self,
        compat: SpinCompat,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Result<RowSet, v4::Error>, WouldHang> {
        let params = match params
            .iter()
            .map(to_sql_parameter)
            .collect::<anyhow::Result<Vec<_>>>()
        {
            Ok(params) => params,
            Err(e) => return Ok(Err(v4::Error::BadParameter(format!("{e:?}")))),
        };
        match compat {
            SpinCompat::V3_6 => Ok(self.query_spin_3_6(statement, params).await),
            SpinCompat::V4_0 => match self.query_spin_4(false, statement, params).await {
                Ok(Some(rows)) => Ok(Ok(rows)),
                Ok(None) => Err(WouldHang {
                    statement: statement.to_string(),
                }),
                Err(e) => Ok(Err(e)),
            },
            SpinCompat::V4_1 => Ok(self
                .query_spin_4(true, statement, params)
                .await
                .map(|rows| rows.expect("4.1 takes the columns from the statement"))),
        }
    }

    /// Spin 3.6's `query` (client.rs at v3.6.3).
    async fn query_spin_3_6(
        &self,
        statement: &str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<RowSet, v4::Error> {
        let stream = self
            .client
            .query_raw(statement, params)
            .await
            .map_err(query_failed)?;
        let mut stream = std::pin::pin!(stream);
        let mut columns = None;
        let mut rows = Vec::new();
        // Everything raised while the rows arrive — the tokio-postgres error
        // of a failed row, a conversion failure — becomes an anyhow::Error
        // (`?`), flattened with `{:?}` into `query-failed(text)`.
        let streamed: anyhow::Result<()> = async {
            while let Some(row) = stream.try_next().await? {
                if columns.is_none() {
                    columns = Some(infer_columns(&row));
                }
                rows.push(convert_row(&row)?);
            }
            Ok(())
        }
        .await;
        streamed.map_err(|e| v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:?}"))))?;
        Ok(RowSet {
            columns: columns.unwrap_or_default(),
            rows,
        })
    }

    /// Spin 4's `query` (client.rs `query` + `query_stream`): at v4.0.2 when
    /// `prepared_columns` is false, as fixed by f0256b37 when it is true.
    /// `Ok(None)`: v4.0.2 would wait forever for the columns (no row came).
    async fn query_spin_4(
        &self,
        prepared_columns: bool,
        statement: &str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<Option<RowSet>, v4::Error> {
        // `query_stream`: preparing and binding fail as a WIT error directly.
        let (statement_columns, stream) = if prepared_columns {
            let prepared = self.client.prepare(statement).await.map_err(query_failed)?;
            let columns: Vec<Column> = prepared.columns().iter().map(column).collect();
            let stream = self
                .client
                .query_raw(&prepared, params)
                .await
                .map_err(query_failed)?;
            (Some(columns), stream)
        } else {
            let stream = self
                .client
                .query_raw(statement, params)
                .await
                .map_err(query_failed)?;
            (None, stream)
        };
        let mut stream = std::pin::pin!(stream);
        let mut first_row_columns = None;
        let mut rows = Vec::new();
        let streamed: anyhow::Result<()> = async {
            while let Some(item) = stream.next().await {
                // `query_stream`'s row mapping: a failed row through
                // `query_failed` (db-error when Postgres sent one), a row
                // that does not convert through `query_failed_anyhow`.
                let row: Result<Vec<DbValue>, v4::Error> =
                    item.map_err(query_failed).and_then(|row| {
                        if first_row_columns.is_none() {
                            first_row_columns = Some(infer_columns(&row));
                        }
                        convert_row(&row).map_err(query_failed_anyhow)
                    });
                // `query`'s loop: `?` wraps that WIT error in an anyhow::Error.
                rows.push(row?);
            }
            Ok(())
        }
        .await;
        streamed.map_err(|e| v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:?}"))))?;
        let columns = match (statement_columns, first_row_columns) {
            (Some(columns), _) => columns,
            (None, Some(columns)) => columns,
            (None, None) => return Ok(None),
        };
        Ok(Some(RowSet { columns, rows }))
    }
}

fn infer_columns(row: &Row) -> Vec<Column> {
    row.columns().iter().map(column).collect()
}

fn column(c: &tokio_postgres::Column) -> Column {
    Column {
        name: c.name().to_owned(),
        data_type: convert_data_type(c.type_()),
    }
}

fn convert_row(row: &Row) -> anyhow::Result<Vec<DbValue>> {
    (0..row.len()).map(|i| convert_entry(row, i)).collect()
}

/// Spin's `query_failed`: a tokio-postgres error as the WIT error.
fn query_failed(e: tokio_postgres::Error) -> v4::Error {
    let flattened = format!("{e:?}");
    let query_error = match e.as_db_error() {
        None => v4::QueryError::Text(flattened),
        Some(dbe) => v4::QueryError::DbError(v4::DbError {
            as_text: flattened,
            severity: dbe.severity().to_owned(),
            code: dbe.code().code().to_owned(),
            message: dbe.message().to_owned(),
            detail: dbe.detail().map(|s| s.to_owned()),
            extras: pg_extras(dbe),
        }),
    };
    v4::Error::QueryFailed(query_error)
}

/// Spin 4's `query_failed_anyhow`: any other error as `query-failed(text)`.
fn query_failed_anyhow(e: anyhow::Error) -> v4::Error {
    v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:?}")))
}

fn pg_extras(dbe: &tokio_postgres::error::DbError) -> Vec<(String, String)> {
    let mut extras = vec![];
    macro_rules! pg_extra {
        ( $n:ident ) => {
            if let Some(value) = dbe.$n() {
                extras.push((stringify!($n).to_owned(), value.to_string()));
            }
        };
    }
    pg_extra!(column);
    pg_extra!(constraint);
    pg_extra!(routine);
    pg_extra!(hint);
    pg_extra!(table);
    pg_extra!(datatype);
    pg_extra!(schema);
    pg_extra!(file);
    pg_extra!(line);
    pg_extra!(where_);
    extras
}

/// The WIT data type Spin reports for a Postgres column type.
pub fn convert_data_type(pg_type: &Type) -> DbDataType {
    match *pg_type {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(pg_type.name().to_owned()),
    }
}

fn value<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    convert: impl Fn(T) -> anyhow::Result<DbValue>,
) -> anyhow::Result<DbValue> {
    let v: Option<T> = row.try_get(index)?;
    match v {
        Some(v) => convert(v),
        None => Ok(DbValue::DbNull),
    }
}

/// Converts one cell the way Spin does.
pub fn convert_entry(row: &Row, index: usize) -> anyhow::Result<DbValue> {
    use chrono::{Datelike, Timelike};
    let column = &row.columns()[index];
    match *column.type_() {
        Type::BOOL => value(row, index, |v| Ok(DbValue::Boolean(v))),
        Type::BYTEA => value(row, index, |v| Ok(DbValue::Binary(v))),
        Type::FLOAT4 => value(row, index, |v| Ok(DbValue::Floating32(v))),
        Type::FLOAT8 => value(row, index, |v| Ok(DbValue::Floating64(v))),
        Type::INT2 => value(row, index, |v| Ok(DbValue::Int16(v))),
        Type::INT4 => value(row, index, |v| Ok(DbValue::Int32(v))),
        Type::INT8 => value(row, index, |v| Ok(DbValue::Int64(v))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => value(row, index, |v| Ok(DbValue::Str(v))),
        // TIMESTAMPTZ deliberately goes through NaiveDateTime too, which
        // tokio-postgres rejects (WrongType): Spin's limitation, reproduced.
        Type::TIMESTAMP | Type::TIMESTAMPTZ => value(row, index, |v: chrono::NaiveDateTime| {
            Ok(DbValue::Datetime((
                v.year(),
                v.month().try_into()?,
                v.day().try_into()?,
                v.hour().try_into()?,
                v.minute().try_into()?,
                v.second().try_into()?,
                v.nanosecond(),
            )))
        }),
        Type::DATE => value(row, index, |v: chrono::NaiveDate| {
            Ok(DbValue::Date((
                v.year(),
                v.month().try_into()?,
                v.day().try_into()?,
            )))
        }),
        Type::TIME => value(row, index, |v: chrono::NaiveTime| {
            Ok(DbValue::Time((
                v.hour().try_into()?,
                v.minute().try_into()?,
                v.second().try_into()?,
                v.nanosecond(),
            )))
        }),
        Type::UUID => value(row, index, |v: uuid::Uuid| Ok(DbValue::Uuid(v.to_string()))),
        Type::JSONB => value(row, index, |v: serde_json::Value| {
            Ok(DbValue::Jsonb(
                serde_json::to_vec(&v).context("invalid JSON from database")?,
            ))
        }),
        Type::NUMERIC => value(row, index, |v: rust_decimal::Decimal| {
            Ok(DbValue::Decimal(v.to_string()))
        }),
        Type::INT4_RANGE => value(row, index, |v: postgres_range::Range<i32>| {
            Ok(DbValue::RangeInt32(range_pg_to_wit(v, |x| *x)))
        }),
        Type::INT8_RANGE => value(row, index, |v: postgres_range::Range<i64>| {
            Ok(DbValue::RangeInt64(range_pg_to_wit(v, |x| *x)))
        }),
        Type::NUM_RANGE => value(row, index, |v: postgres_range::Range<RangeableDecimal>| {
            Ok(DbValue::RangeDecimal(range_pg_to_wit(v, |d| {
                d.0.to_string()
            })))
        }),
        Type::INT4_ARRAY => value(row, index, |v| Ok(DbValue::ArrayInt32(v))),
        Type::INT8_ARRAY => value(row, index, |v| Ok(DbValue::ArrayInt64(v))),
        Type::NUMERIC_ARRAY => value(row, index, |v: Vec<Option<rust_decimal::Decimal>>| {
            Ok(DbValue::ArrayDecimal(
                v.iter().map(|d| d.map(|d| d.to_string())).collect(),
            ))
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            value(row, index, |v| Ok(DbValue::ArrayStr(v)))
        }
        Type::INTERVAL => value(row, index, |v: Interval| Ok(DbValue::Interval(v.0))),
        _ => value(row, index, |v: Other| Ok(DbValue::Unsupported(v.0))),
    }
}

/// Converts a WIT parameter into something tokio-postgres can bind.
pub fn to_sql_parameter(value: &ParameterValue) -> anyhow::Result<Box<dyn ToSql + Send + Sync>> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(*v),
        ParameterValue::Int32(v) => Box::new(*v),
        ParameterValue::Int64(v) => Box::new(*v),
        ParameterValue::Int8(v) => Box::new(*v),
        ParameterValue::Int16(v) => Box::new(*v),
        ParameterValue::Floating32(v) => Box::new(*v),
        ParameterValue::Floating64(v) => Box::new(*v),
        ParameterValue::Str(v) => Box::new(v.clone()),
        ParameterValue::Binary(v) => Box::new(v.clone()),
        ParameterValue::Date((y, m, d)) => Box::new(
            chrono::NaiveDate::from_ymd_opt(*y, (*m).into(), (*d).into())
                .ok_or_else(|| anyhow!("invalid date y={y}, m={m}, d={d}"))?,
        ),
        ParameterValue::Time((h, min, s, ns)) => Box::new(
            chrono::NaiveTime::from_hms_nano_opt((*h).into(), (*min).into(), (*s).into(), *ns)
                .ok_or_else(|| anyhow!("invalid time {h}:{min}:{s}:{ns}"))?,
        ),
        ParameterValue::Datetime((y, mon, d, h, min, s, ns)) => {
            let date = chrono::NaiveDate::from_ymd_opt(*y, (*mon).into(), (*d).into())
                .ok_or_else(|| anyhow!("invalid date y={y}, m={mon}, d={d}"))?;
            let time =
                chrono::NaiveTime::from_hms_nano_opt((*h).into(), (*min).into(), (*s).into(), *ns)
                    .ok_or_else(|| anyhow!("invalid time {h}:{min}:{s}:{ns}"))?;
            Box::new(chrono::NaiveDateTime::new(date, time))
        }
        ParameterValue::Timestamp(v) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(*v, 0)
                .ok_or_else(|| anyhow!("invalid epoch timestamp {v}"))?,
        ),
        ParameterValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(v).with_context(|| format!("invalid UUID {v}"))?)
        }
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(v)
                .with_context(|| format!("invalid JSON {}", String::from_utf8_lossy(v)))?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(v)?),
        ParameterValue::RangeInt32(v) => Box::new(range_wit_to_pg(v, |x| Ok(*x))?),
        ParameterValue::RangeInt64(v) => Box::new(range_wit_to_pg(v, |x| Ok(*x))?),
        ParameterValue::RangeDecimal(v) => {
            Box::new(range_wit_to_pg(v, |s| decimal(s).map(RangeableDecimal))?)
        }
        ParameterValue::ArrayInt32(vs) => Box::new(vs.to_owned()),
        ParameterValue::ArrayInt64(vs) => Box::new(vs.to_owned()),
        ParameterValue::ArrayDecimal(vs) => Box::new(
            vs.iter()
                .map(|v| v.as_deref().map(decimal).transpose())
                .collect::<anyhow::Result<Vec<Option<rust_decimal::Decimal>>>>()?,
        ),
        ParameterValue::ArrayStr(vs) => Box::new(vs.to_owned()),
        ParameterValue::Interval(v) => Box::new(Interval(*v)),
        ParameterValue::DbNull => Box::new(PgNull),
    })
}

fn decimal(v: &str) -> anyhow::Result<rust_decimal::Decimal> {
    rust_decimal::Decimal::from_str_exact(v).with_context(|| format!("invalid decimal {v}"))
}

type WitRange<T> = (
    Option<(T, v4::RangeBoundKind)>,
    Option<(T, v4::RangeBoundKind)>,
);

fn bound_kind(t: postgres_range::BoundType) -> v4::RangeBoundKind {
    match t {
        postgres_range::BoundType::Inclusive => v4::RangeBoundKind::Inclusive,
        postgres_range::BoundType::Exclusive => v4::RangeBoundKind::Exclusive,
    }
}

fn bound_type(k: v4::RangeBoundKind) -> postgres_range::BoundType {
    match k {
        v4::RangeBoundKind::Inclusive => postgres_range::BoundType::Inclusive,
        v4::RangeBoundKind::Exclusive => postgres_range::BoundType::Exclusive,
    }
}

fn range_pg_to_wit<T: PartialOrd + postgres_range::Normalizable, W>(
    r: postgres_range::Range<T>,
    f: impl Fn(&T) -> W,
) -> WitRange<W> {
    (
        r.lower().map(|b| (f(&b.value), bound_kind(b.type_))),
        r.upper().map(|b| (f(&b.value), bound_kind(b.type_))),
    )
}

fn range_wit_to_pg<T: PartialOrd + postgres_range::Normalizable, W>(
    (lower, upper): &WitRange<W>,
    f: impl Fn(&W) -> anyhow::Result<T>,
) -> anyhow::Result<postgres_range::Range<T>> {
    let lower = lower
        .as_ref()
        .map(|(v, k)| {
            Ok::<_, anyhow::Error>(postgres_range::RangeBound::new(f(v)?, bound_type(*k)))
        })
        .transpose()?;
    let upper = upper
        .as_ref()
        .map(|(v, k)| {
            Ok::<_, anyhow::Error>(postgres_range::RangeBound::new(f(v)?, bound_type(*k)))
        })
        .transpose()?;
    Ok(postgres_range::Range::new(lower, upper))
}

/// A decimal usable as a range bound (Spin's `RangeableDecimal`).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
struct RangeableDecimal(rust_decimal::Decimal);

impl ToSql for RangeableDecimal {
    tokio_postgres::types::to_sql_checked!();

    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as ToSql>::accepts(ty)
    }
}

impl FromSql<'_> for RangeableDecimal {
    fn from_sql(ty: &Type, raw: &[u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(<rust_decimal::Decimal as FromSql>::from_sql(ty, raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as FromSql>::accepts(ty)
    }
}

impl postgres_range::Normalizable for RangeableDecimal {
    fn normalize<S: postgres_range::BoundSided>(
        bound: postgres_range::RangeBound<S, Self>,
    ) -> postgres_range::RangeBound<S, Self> {
        bound
    }
}

/// Postgres INTERVAL in its binary form (micros, days, months).
#[derive(Debug)]
struct Interval(v4::Interval);

impl ToSql for Interval {
    tokio_postgres::types::to_sql_checked!();

    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INTERVAL)
    }
}

impl FromSql<'_> for Interval {
    fn from_sql(_ty: &Type, raw: &[u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if raw.len() != 16 {
            return Err("unexpected binary format for Postgres INTERVAL".into());
        }
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(Self(v4::Interval {
            micros,
            days,
            months,
        }))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INTERVAL)
    }
}

/// Raw bytes of a value of a type Spin does not map.
struct Other(Vec<u8>);

impl FromSql<'_> for Other {
    fn from_sql(_ty: &Type, raw: &[u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw.to_owned()))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// SQL NULL for a parameter of any type.
#[derive(Debug)]
struct PgNull;

impl ToSql for PgNull {
    fn to_sql(
        &self,
        _ty: &Type,
        _out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(tokio_postgres::types::IsNull::Yes)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        _ty: &Type,
        _out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(tokio_postgres::types::IsNull::Yes)
    }
}

impl InstanceState {
    fn ensure_pg_address_allowed(&self, address: &str) -> Result<(), v4::Error> {
        let config = address
            .parse::<tokio_postgres::Config>()
            .map_err(|e| v4::Error::ConnectionFailed(e.to_string()))?;
        let ports = config.get_ports();
        for (i, host) in config.get_hosts().iter().enumerate() {
            match host {
                tokio_postgres::config::Host::Tcp(h) => {
                    let port = ports.get(i).or(if ports.len() == 1 {
                        ports.first()
                    } else {
                        None
                    });
                    if !self
                        .component
                        .allowed_hosts
                        .allows("postgres", h, port.copied())
                    {
                        let port_str = port.map(|p| format!(":{p}")).unwrap_or_default();
                        return Err(v4::Error::ConnectionFailed(format!(
                            "address postgres://{h}{port_str} is not permitted"
                        )));
                    }
                }
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(_) => {
                    return Err(v4::Error::ConnectionFailed(
                        "Unix sockets are not supported on WebAssembly".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn pg(&self, c: &Resource<PgConnection>) -> Result<&PgConnection, v4::Error> {
        self.table
            .get(c)
            .map_err(|_| v4::Error::ConnectionFailed("no connection found".into()))
    }
}

impl v4::Host for InstanceState {}

impl v4::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Result<Resource<PgConnection>, v4::Error> {
        self.ensure_pg_address_allowed(&address)?;
        let client = self
            .shared
            .pg
            .get(&address)
            .await
            .map_err(|e| v4::Error::ConnectionFailed(format!("{e:?}")))?;
        self.table
            .push(PgConnection::new(client))
            .map_err(|_| v4::Error::ConnectionFailed("too many connections".into()))
    }

    /// Trappable (see build.rs): a query the imitated Spin would never answer
    /// fails the invocation, loudly, instead of hanging the test.
    async fn query(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, v4::Error>> {
        let compat = self.shared.spin_compat;
        let outcome = match self.pg(&c) {
            Ok(conn) => conn.query(compat, &statement, &params).await,
            Err(e) => return Ok(Err(e)),
        };
        match outcome {
            Ok(result) => Ok(result),
            Err(hang) => {
                tracing::error!(
                    component = %self.component.id,
                    spin_compat = %compat,
                    "{hang}"
                );
                self.shared
                    .record_spin_compat_violation(hang.statement.clone());
                Err(hang.into())
            }
        }
    }

    async fn execute(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<u64, v4::Error> {
        self.pg(&c)?.execute(&statement, &params).await
    }

    async fn drop(&mut self, c: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Against a real Postgres: `DATABASE_URL`, else the machine's
    //! `postgres://postgres@127.0.0.1:5432/postgres` (with `sslmode=disable`
    //! added). Without one these tests fail: they are the host's evidence.

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::host::allowed_hosts::AllowedHosts;
    use crate::host::db_url;
    use crate::host::runtime::{ComponentContext, SharedServices};
    use crate::host::test_support::{database_url, database_url_as_given, missing, Server};
    use crate::host::variables::{AppVariables, ComponentVariables};

    const ALL: [SpinCompat; 3] = SpinCompat::ALL;

    /// A pooled connection to the test database; panics, naming the URL,
    /// when there is none.
    async fn conn() -> PgConnection {
        let url = database_url();
        let pools = Pools::default();
        match tokio::time::timeout(Duration::from_secs(10), pools.get(&url)).await {
            Ok(Ok(client)) => PgConnection::new(client),
            Ok(Err(e)) => missing(Server::Postgres, &url, format!("{e:#}")),
            Err(_) => missing(Server::Postgres, &url, "no connection within 10 s"),
        }
    }

    /// `PgConnection::query` where the line answers (a would-be hang fails).
    async fn q(
        c: &PgConnection,
        compat: SpinCompat,
        sql: &str,
        params: &[ParameterValue],
    ) -> Result<RowSet, v4::Error> {
        c.query(compat, sql, params)
            .await
            .unwrap_or_else(|hang| panic!("{compat}: {hang}"))
    }

    /// The host state of one instance of a component allowed to reach any
    /// Postgres, imitating `compat`.
    fn instance(compat: SpinCompat) -> InstanceState {
        let component = Arc::new(ComponentContext {
            id: "pg-test".into(),
            key_value_stores: vec![],
            allowed_hosts: AllowedHosts::parse(
                &["postgres://*:*".to_string()],
                &AppVariables::default(),
            )
            .unwrap(),
            variables: ComponentVariables::default(),
            environment: vec![],
        });
        let shared = Arc::new(SharedServices {
            spin_compat: compat,
            ..SharedServices::default()
        });
        InstanceState::new(component, shared)
    }

    /// `connection.open` as a component calls it; the handle's rep.
    async fn open(state: &mut InstanceState, url: &str) -> Result<u32, v4::Error> {
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            v4::HostConnection::open(state, url.to_string()),
        )
        .await
        .unwrap_or_else(|_| panic!("open({url}) took more than 10 s"))?;
        Ok(opened.rep())
    }

    async fn open_ok(state: &mut InstanceState) -> u32 {
        let url = database_url();
        open(state, &url)
            .await
            .unwrap_or_else(|e| missing(Server::Postgres, &url, format!("{e:?}")))
    }

    /// `connection.query` as a component calls it (the outer `Err` is a trap).
    async fn host_query(
        state: &mut InstanceState,
        rep: u32,
        sql: &str,
    ) -> wasmtime::Result<Result<RowSet, v4::Error>> {
        tokio::time::timeout(
            Duration::from_secs(20),
            v4::HostConnection::query(state, Resource::new_borrow(rep), sql.to_string(), vec![]),
        )
        .await
        .unwrap_or_else(|_| panic!("query {sql:?} did not return within 20 s"))
    }

    async fn host_execute(
        state: &mut InstanceState,
        rep: u32,
        sql: &str,
    ) -> Result<u64, v4::Error> {
        v4::HostConnection::execute(state, Resource::new_borrow(rep), sql.to_string(), vec![]).await
    }

    /// `query-failed(text(..))`'s text, or a panic.
    #[track_caller]
    fn text_of(result: Result<RowSet, v4::Error>, what: &str) -> String {
        match result {
            Err(v4::Error::QueryFailed(v4::QueryError::Text(text))) => text,
            other => panic!("{what}: expected query-failed(text), got {other:?}"),
        }
    }

    #[tokio::test]
    async fn supported_types_map_to_spins_db_values() {
        let c = conn().await;
        for compat in ALL {
            let rs = q(
                &c,
                compat,
                "SELECT true AS b, 2::int2 AS i2, 4::int4 AS i4, 8::int8 AS i8, \
                 1.5::float4 AS f4, 2.5::float8 AS f8, 'x'::text AS t, 'v'::varchar AS vc, \
                 'c'::bpchar AS bc, '\\x0102'::bytea AS by, DATE '2024-02-29' AS d, \
                 TIME '13:14:15.5' AS tm, TIMESTAMP '2024-01-02 03:04:05.25' AS ts, \
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '{\"a\": 1}'::jsonb AS j, \
                 12.340::numeric AS n, ARRAY[1,NULL]::int4[] AS ai4, ARRAY[1]::int8[] AS ai8, \
                 ARRAY[1.5]::numeric[] AS an, ARRAY['a',NULL]::text[] AS at, \
                 INTERVAL '1 month 2 days 3 seconds' AS iv, NULL::int4 AS nul",
                &[],
            )
            .await
            .unwrap();
            let row = &rs.rows[0];
            let col = |name: &str| rs.columns.iter().position(|c| c.name == name).unwrap();
            assert!(matches!(row[col("b")], DbValue::Boolean(true)));
            assert!(matches!(row[col("i2")], DbValue::Int16(2)));
            assert!(matches!(row[col("i4")], DbValue::Int32(4)));
            assert!(matches!(row[col("i8")], DbValue::Int64(8)));
            assert!(matches!(row[col("f4")], DbValue::Floating32(v) if v == 1.5));
            assert!(matches!(row[col("f8")], DbValue::Floating64(v) if v == 2.5));
            assert!(matches!(&row[col("t")], DbValue::Str(s) if s == "x"));
            assert!(matches!(&row[col("vc")], DbValue::Str(s) if s == "v"));
            assert!(matches!(&row[col("bc")], DbValue::Str(s) if s == "c"));
            assert!(matches!(&row[col("by")], DbValue::Binary(b) if b == &[1, 2]));
            assert!(matches!(row[col("d")], DbValue::Date((2024, 2, 29))));
            assert!(matches!(
                row[col("tm")],
                DbValue::Time((13, 14, 15, 500_000_000))
            ));
            assert!(matches!(
                row[col("ts")],
                DbValue::Datetime((2024, 1, 2, 3, 4, 5, 250_000_000))
            ));
            assert!(
                matches!(&row[col("u")], DbValue::Uuid(s) if s == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            );
            assert!(matches!(&row[col("j")], DbValue::Jsonb(b) if b == br#"{"a":1}"#));
            assert!(matches!(&row[col("n")], DbValue::Decimal(s) if s == "12.340"));
            assert!(matches!(&row[col("ai4")], DbValue::ArrayInt32(v) if v == &[Some(1), None]));
            assert!(matches!(&row[col("ai8")], DbValue::ArrayInt64(v) if v == &[Some(1)]));
            assert!(
                matches!(&row[col("an")], DbValue::ArrayDecimal(v) if v == &[Some("1.5".to_string())])
            );
            assert!(
                matches!(&row[col("at")], DbValue::ArrayStr(v) if v == &[Some("a".to_string()), None])
            );
            assert!(matches!(
                row[col("iv")],
                DbValue::Interval(v4::Interval {
                    micros: 3_000_000,
                    days: 2,
                    months: 1
                })
            ));
            assert!(matches!(row[col("nul")], DbValue::DbNull));
            assert!(matches!(
                rs.columns[col("ts")].data_type,
                DbDataType::Datetime
            ));
            assert!(matches!(
                rs.columns[col("n")].data_type,
                DbDataType::Decimal
            ));
        }
    }

    #[tokio::test]
    async fn a_timestamptz_column_fails_the_whole_query_even_when_null() {
        let c = conn().await;
        for compat in ALL {
            for sql in [
                "SELECT 1 AS a, now() AS t",
                "SELECT 1 AS a, NULL::timestamptz AS t",
            ] {
                let msg = text_of(q(&c, compat, sql, &[]).await, sql);
                assert!(
                    msg.contains("WrongType") || msg.contains("timestamptz"),
                    "{compat} {sql}: {msg}"
                );
                if compat != SpinCompat::V3_6 {
                    // Spin 4 wraps the conversion failure's text in the WIT error.
                    assert!(
                        msg.starts_with("Error::QueryFailed(QueryError::Text("),
                        "{msg}"
                    );
                }
            }
            // The documented workaround reads as a plain timestamp.
            let rs = q(&c, compat, "SELECT now() AT TIME ZONE 'UTC' AS t", &[])
                .await
                .unwrap();
            assert!(matches!(rs.rows[0][0], DbValue::Datetime(_)));
        }
    }

    #[tokio::test]
    async fn a_plain_json_column_is_unsupported_but_does_not_fail_the_query() {
        let c = conn().await;
        for compat in ALL {
            let rs = q(
                &c,
                compat,
                "SELECT '{\"a\": 1}'::json AS j, NULL::json AS n",
                &[],
            )
            .await
            .unwrap();
            assert!(matches!(&rs.columns[0].data_type, DbDataType::Other(t) if t == "json"));
            assert!(matches!(&rs.rows[0][0], DbValue::Unsupported(b) if b == br#"{"a": 1}"#));
            assert!(matches!(rs.rows[0][1], DbValue::DbNull));
        }
    }

    #[tokio::test]
    async fn an_empty_result_is_columnless_in_3_6_a_hang_in_4_0_and_typed_in_4_1() {
        let sql = "SELECT 1::int4 AS a, 'x'::text AS b WHERE false";

        // 3.6: no rows, and so no columns.
        let mut s = instance(SpinCompat::V3_6);
        let c = open_ok(&mut s).await;
        let rs = host_query(&mut s, c, sql).await.unwrap().unwrap();
        assert!(rs.columns.is_empty() && rs.rows.is_empty(), "{rs:?}");

        // 4.0: Spin would never answer; the host traps, naming the statement,
        // and records it.
        let mut s = instance(SpinCompat::V4_0);
        let c = open_ok(&mut s).await;
        let rs = host_query(&mut s, c, "SELECT 1::int4 AS a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rs.rows.len(), 1, "a result with rows answers as usual");
        let trap = host_query(&mut s, c, sql)
            .await
            .expect_err("Spin 4.0 never answers a query without rows: the host traps");
        let message = format!("{trap:#}");
        assert_eq!(
            message,
            format!(
                "Spin 4.0.0–4.0.2 would hang here (spinframework/spin#3671): query matched no rows: {sql}"
            )
        );
        assert_eq!(trap.downcast_ref::<WouldHang>().unwrap().statement, sql);
        assert_eq!(s.shared.spin_compat_violations(), vec![sql.to_string()]);
        // `execute` without rows is fine in 4.0.
        assert_eq!(
            host_execute(&mut s, c, "SELECT 1 WHERE false")
                .await
                .unwrap(),
            0
        );
        assert_eq!(s.shared.spin_compat_violations().len(), 1);

        // 4.1 (f0256b37): no rows, the prepared statement's columns.
        let mut s = instance(SpinCompat::V4_1);
        let c = open_ok(&mut s).await;
        let rs = host_query(&mut s, c, sql).await.unwrap().unwrap();
        assert!(rs.rows.is_empty());
        let columns: Vec<_> = rs
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.data_type.clone()))
            .collect();
        assert!(
            matches!(
                columns.as_slice(),
                [("a", DbDataType::Int32), ("b", DbDataType::Str)]
            ),
            "{columns:?}"
        );
        assert!(s.shared.spin_compat_violations().is_empty());
    }

    /// A unique violation raised while `INSERT … RETURNING` streams back,
    /// through `query` and through `execute`.
    async fn unique_violation(compat: SpinCompat) -> (String, v4::DbError) {
        let mut s = instance(compat);
        let c = open_ok(&mut s).await;
        host_execute(
            &mut s,
            c,
            "CREATE TEMP TABLE e2e_host_unique (id int4 PRIMARY KEY)",
        )
        .await
        .unwrap();
        host_execute(&mut s, c, "INSERT INTO e2e_host_unique VALUES (1)")
            .await
            .unwrap();
        let sql = "INSERT INTO e2e_host_unique VALUES (1) RETURNING id";
        let text = text_of(host_query(&mut s, c, sql).await.unwrap(), sql);
        let db_error = match host_execute(&mut s, c, sql).await {
            Err(v4::Error::QueryFailed(v4::QueryError::DbError(e))) => e,
            other => panic!("{compat}: execute: expected a db-error, got {other:?}"),
        };
        (text, db_error)
    }

    #[tokio::test]
    async fn a_unique_violation_mid_stream_is_text_in_query_and_a_db_error_in_execute() {
        for compat in ALL {
            let (text, db_error) = unique_violation(compat).await;
            assert_eq!(db_error.code, "23505", "{compat}");
            assert_eq!(db_error.severity, "ERROR");
            assert!(db_error.message.starts_with("duplicate key value"));
            match compat {
                SpinCompat::V3_6 => {
                    assert!(
                        text.starts_with("db error: ERROR: duplicate key value"),
                        "{compat}: {text}"
                    );
                    assert!(!text.contains("23505"), "3.6 carries no SQLSTATE: {text}");
                }
                SpinCompat::V4_0 | SpinCompat::V4_1 => {
                    assert!(
                        text.starts_with("Error::QueryFailed(QueryError::DbError(DbError {"),
                        "{compat}: {text}"
                    );
                    assert!(text.contains(r#"code: "23505""#), "{compat}: {text}");
                }
            }
        }
    }

    #[tokio::test]
    async fn an_error_before_the_rows_stream_is_a_db_error_in_every_line() {
        for compat in ALL {
            let mut s = instance(compat);
            let c = open_ok(&mut s).await;
            match host_query(&mut s, c, "SELECT * FROM no_such_table_e2e_host").await {
                Ok(Err(v4::Error::QueryFailed(v4::QueryError::DbError(e)))) => {
                    assert_eq!(e.code, "42P01", "{compat}");
                }
                other => panic!("{compat}: expected a db-error, got {other:?}"),
            }
        }
    }

    /// Prints one example of every `query-failed(text)` shape a streaming
    /// error takes, per line (run with `--nocapture`; `RUST_BACKTRACE=1`
    /// appends anyhow's backtrace to each, under Spin too).
    #[tokio::test]
    async fn prints_the_text_shapes_of_streaming_errors() {
        for compat in [SpinCompat::V3_6, SpinCompat::V4_0] {
            let (text, _) = unique_violation(compat).await;
            println!("=== {compat}: unique violation in INSERT … RETURNING (query)\n{text}\n");

            let mut s = instance(compat);
            let c = open_ok(&mut s).await;
            host_execute(&mut s, c, "SET statement_timeout = 50")
                .await
                .unwrap();
            let sql = "SELECT 1 AS one FROM pg_sleep(1)";
            let text = text_of(host_query(&mut s, c, sql).await.unwrap(), sql);
            println!("=== {compat}: statement timeout (query)\n{text}\n");
            assert!(
                text.contains("canceling statement due to statement timeout"),
                "{text}"
            );

            let sql = "SELECT pg_terminate_backend(pg_backend_pid())";
            let text = text_of(host_query(&mut s, c, sql).await.unwrap(), sql);
            println!("=== {compat}: own backend terminated (query)\n{text}\n");
            assert!(text.contains("terminating connection"), "{text}");

            let sql = "SELECT 1 AS one";
            let text = text_of(host_query(&mut s, c, sql).await.unwrap(), sql);
            println!("=== {compat}: the next query on that connection (query)\n{text}\n");
            assert!(text.contains("Closed"), "{text}");
        }
    }

    #[tokio::test]
    async fn tls_is_verified_for_every_sslmode_but_disable() {
        let given = database_url_as_given();
        let plain = db_url::with_param(&given, "sslmode", "disable");
        let mut s = instance(SpinCompat::V4_0);
        let c = open(&mut s, &plain)
            .await
            .unwrap_or_else(|e| missing(Server::Postgres, &plain, format!("{e:?}")));
        let rs = host_query(&mut s, c, "SHOW ssl").await.unwrap().unwrap();
        assert!(
            matches!(&rs.rows[0][0], DbValue::Str(on) if on == "on"),
            "the test Postgres must run with ssl = on and a self-signed certificate, as \
             Debian's does (scripts/services.sh starts private ones so); got {:?}",
            rs.rows[0][0]
        );
        let rs = host_query(
            &mut s,
            c,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            matches!(rs.rows[0][0], DbValue::Boolean(false)),
            "sslmode=disable is plain TCP"
        );

        let unset = db_url::without_param(&given, "sslmode");
        for url in [
            unset.clone(),
            db_url::with_param(&given, "sslmode", "prefer"),
            db_url::with_param(&given, "sslmode", "require"),
        ] {
            let mut s = instance(SpinCompat::V4_0);
            match open(&mut s, &url).await {
                Err(v4::Error::ConnectionFailed(text)) => {
                    assert!(
                        text.contains("certificate") || text.contains("handshake"),
                        "{url}: {text}"
                    );
                    if url == unset {
                        println!("=== open without sslmode (TLS refused)\n{text}\n");
                    }
                }
                Err(other) => panic!("{url}: expected connection-failed, got {other:?}"),
                Ok(_) => panic!(
                    "{url}: connected, but Spin verifies the server certificate and the \
                     test server's is self-signed"
                ),
            }
        }
    }

    #[tokio::test]
    async fn timestamp_parameters_are_epoch_seconds_into_timestamptz() {
        let c = conn().await;
        for compat in ALL {
            let rs = q(
                &c,
                compat,
                "SELECT ($1::timestamptz AT TIME ZONE 'UTC') AS t, $2::timestamp AS dt, \
                 $3::uuid::text AS u, $4::jsonb->>'k' AS j, $5::numeric::text AS n, $6::int4 AS nul",
                &[
                    ParameterValue::Timestamp(86_400 + 3_661),
                    ParameterValue::Datetime((2020, 5, 6, 7, 8, 9, 0)),
                    ParameterValue::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                    ParameterValue::Jsonb(br#"{"k":"v"}"#.to_vec()),
                    ParameterValue::Decimal("1.25".into()),
                    ParameterValue::DbNull,
                ],
            )
            .await
            .unwrap();
            let row = &rs.rows[0];
            assert!(matches!(
                row[0],
                DbValue::Datetime((1970, 1, 2, 1, 1, 1, 0))
            ));
            assert!(matches!(
                row[1],
                DbValue::Datetime((2020, 5, 6, 7, 8, 9, 0))
            ));
            assert!(
                matches!(&row[2], DbValue::Str(s) if s == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            );
            assert!(matches!(&row[3], DbValue::Str(s) if s == "v"));
            assert!(matches!(&row[4], DbValue::Str(s) if s == "1.25"));
            assert!(matches!(row[5], DbValue::DbNull));
        }
    }

    #[tokio::test]
    async fn a_bad_parameter_is_reported_differently_by_query_and_execute() {
        let c = conn().await;
        let bad = [ParameterValue::Uuid("not-a-uuid".into())];
        for compat in ALL {
            assert!(matches!(
                q(&c, compat, "SELECT $1::uuid", &bad).await,
                Err(v4::Error::BadParameter(_))
            ));
        }
        assert!(matches!(
            c.execute("SELECT $1::uuid", &bad).await,
            Err(v4::Error::ValueConversionFailed(_))
        ));
    }

    #[tokio::test]
    async fn database_errors_carry_sqlstate_and_message() {
        let c = conn().await;
        match c.execute("SELECT * FROM no_such_table_e2e_host", &[]).await {
            Err(v4::Error::QueryFailed(v4::QueryError::DbError(e))) => {
                assert_eq!(e.code, "42P01");
                assert!(e.message.contains("no_such_table_e2e_host"));
                assert_eq!(e.severity, "ERROR");
            }
            other => panic!("expected a db-error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_session_keeps_its_transaction_across_statements() {
        let c = conn().await;
        c.execute("BEGIN", &[]).await.unwrap();
        c.execute("CREATE TEMP TABLE e2e_host_tx (x int) ON COMMIT DROP", &[])
            .await
            .unwrap();
        let n = c
            .execute("INSERT INTO e2e_host_tx VALUES (1), (2)", &[])
            .await
            .unwrap();
        assert_eq!(n, 2);
        c.execute("COMMIT", &[]).await.unwrap();
    }
}
