//! `spin:postgres/postgres@4.0.0` through tokio-postgres, with Spin's pooling,
//! type mapping and limits.
//!
//! A port of spin v3.6 `crates/factor-outbound-pg` (`client.rs`, `host.rs`,
//! `types.rs`, `types/*.rs`), keeping its observable behaviour:
//! - `open(address)`: the address is parsed as a tokio-postgres connection
//!   string (parse failure → `connection-failed(<message>)`); each TCP host
//!   must be allowed by `allowed_outbound_hosts` for scheme `postgres`, else
//!   `connection-failed("address postgres://<host[:port]> is not permitted")`;
//!   Unix sockets are refused. Connections come from a deadpool pool per
//!   address (64 connections, `RecyclingMethod::Clean`); a pool or connect
//!   failure is `connection-failed("<debug of the error>")`. No TLS here (Spin
//!   uses native-tls unless `sslmode=disable`).
//! - A connection keeps its session, so `BEGIN … COMMIT` works; a connection
//!   dropped mid-transaction goes back to the pool as it is (Clean recycling
//!   does not roll back).
//! - Result columns: bool, int2/4/8, float4/8, text/varchar/bpchar, bytea,
//!   date, time, timestamp (→ `datetime`), uuid, jsonb, numeric (→ `decimal`
//!   string), int4/int8/num ranges, int4/int8/numeric/text(/varchar/bpchar)
//!   arrays, interval. `timestamptz` is *declared* `datetime` but decoded as a
//!   naive timestamp, which tokio-postgres refuses, so any timestamptz column —
//!   even NULL — fails the whole query with
//!   `query-failed(text("<debug of the WrongType error>"))`. Every other type
//!   (plain `json`, `name`, `oid`, …) is `other("<type name>")` with values
//!   `unsupported(<raw binary bytes>)` (NULL stays `db-null`).
//! - A result with no rows has no columns either.
//! - Parameters: `timestamp(s64)` is epoch seconds → timestamptz; `datetime`
//!   → timestamp; `int8(s8)` → Postgres `"char"`; `db-null` fits any type. A
//!   parameter that fails conversion is `bad-parameter` in `query` but
//!   `value-conversion-failed` in `execute` (as in Spin).
//! - Database errors are `query-failed(db-error{…})` with severity, SQLSTATE
//!   code, message, detail and extras; others `query-failed(text(..))`.

// The WIT `error` (with its `db-error` record) is what the interface returns.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{anyhow, Context as _};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::Row;
use wasmtime::component::Resource;

use crate::host::bindings::spin::postgres4_0_0::postgres::{
    self as v4, Column, DbDataType, DbValue, ParameterValue, RowSet,
};
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
        let config = address
            .parse::<tokio_postgres::Config>()
            .context("parsing Postgres connection string")?;
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Clean,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .context("building Postgres connection pool")?;
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

/// An open connection: the host side of the `connection` resource.
pub struct PgConnection {
    client: deadpool_postgres::Object,
}

impl PgConnection {
    /// Runs a statement, returning the affected row count.
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

    /// Runs a query, converting every row.
    pub async fn query(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<RowSet, v4::Error> {
        let params = params
            .iter()
            .map(to_sql_parameter)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| v4::Error::BadParameter(format!("{e:?}")))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self
            .client
            .query(statement, refs.as_slice())
            .await
            .map_err(query_failed)?;
        rows_to_wit(&rows)
    }
}

/// Converts rows the way Spin does (columns from the first row).
pub fn rows_to_wit(rows: &[Row]) -> Result<RowSet, v4::Error> {
    let Some(first) = rows.first() else {
        return Ok(RowSet {
            columns: vec![],
            rows: vec![],
        });
    };
    let columns = first
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            data_type: convert_data_type(c.type_()),
        })
        .collect();
    let rows = rows
        .iter()
        .map(|row| (0..row.len()).map(|i| convert_entry(row, i)).collect())
        .collect::<anyhow::Result<Vec<Vec<DbValue>>>>()
        .map_err(|e| v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:?}"))))?;
    Ok(RowSet { columns, rows })
}

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
            .push(PgConnection { client })
            .map_err(|_| v4::Error::ConnectionFailed("too many connections".into()))
    }

    async fn query(
        &mut self,
        c: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<RowSet, v4::Error> {
        self.pg(&c)?.query(&statement, &params).await
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
    use super::*;
    use crate::host::test_support::database_url;

    /// A pooled connection to the test database, or `None` (test skipped).
    async fn conn() -> Option<PgConnection> {
        let url = database_url();
        let pools = Pools::default();
        match tokio::time::timeout(std::time::Duration::from_secs(5), pools.get(&url)).await {
            Ok(Ok(client)) => Some(PgConnection { client }),
            _ => {
                eprintln!("skipping: no Postgres at {url}");
                None
            }
        }
    }

    #[tokio::test]
    async fn supported_types_map_to_spins_db_values() {
        let Some(c) = conn().await else { return };
        let rs = c
            .query(
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

    #[tokio::test]
    async fn a_timestamptz_column_fails_the_whole_query_even_when_null() {
        let Some(c) = conn().await else { return };
        for sql in [
            "SELECT 1 AS a, now() AS t",
            "SELECT 1 AS a, NULL::timestamptz AS t",
        ] {
            match c.query(sql, &[]).await {
                Err(v4::Error::QueryFailed(v4::QueryError::Text(msg))) => {
                    assert!(
                        msg.contains("WrongType") || msg.contains("timestamptz"),
                        "{msg}"
                    )
                }
                other => panic!("{sql}: expected query-failed(text), got {other:?}"),
            }
        }
        // The documented workaround reads as a plain timestamp.
        let rs = c
            .query("SELECT now() AT TIME ZONE 'UTC' AS t", &[])
            .await
            .unwrap();
        assert!(matches!(rs.rows[0][0], DbValue::Datetime(_)));
    }

    #[tokio::test]
    async fn a_plain_json_column_is_unsupported_but_does_not_fail_the_query() {
        let Some(c) = conn().await else { return };
        let rs = c
            .query("SELECT '{\"a\": 1}'::json AS j, NULL::json AS n", &[])
            .await
            .unwrap();
        assert!(matches!(&rs.columns[0].data_type, DbDataType::Other(t) if t == "json"));
        assert!(matches!(&rs.rows[0][0], DbValue::Unsupported(b) if b == br#"{"a": 1}"#));
        assert!(matches!(rs.rows[0][1], DbValue::DbNull));
    }

    #[tokio::test]
    async fn an_empty_result_has_no_columns() {
        let Some(c) = conn().await else { return };
        let rs = c.query("SELECT 1 AS a WHERE false", &[]).await.unwrap();
        assert!(rs.columns.is_empty() && rs.rows.is_empty());
    }

    #[tokio::test]
    async fn timestamp_parameters_are_epoch_seconds_into_timestamptz() {
        let Some(c) = conn().await else { return };
        let rs = c
            .query(
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
        assert!(matches!(&row[2], DbValue::Str(s) if s == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
        assert!(matches!(&row[3], DbValue::Str(s) if s == "v"));
        assert!(matches!(&row[4], DbValue::Str(s) if s == "1.25"));
        assert!(matches!(row[5], DbValue::DbNull));
    }

    #[tokio::test]
    async fn a_bad_parameter_is_reported_differently_by_query_and_execute() {
        let Some(c) = conn().await else { return };
        let bad = [ParameterValue::Uuid("not-a-uuid".into())];
        assert!(matches!(
            c.query("SELECT $1::uuid", &bad).await,
            Err(v4::Error::BadParameter(_))
        ));
        assert!(matches!(
            c.execute("SELECT $1::uuid", &bad).await,
            Err(v4::Error::ValueConversionFailed(_))
        ));
    }

    #[tokio::test]
    async fn database_errors_carry_sqlstate_and_message() {
        let Some(c) = conn().await else { return };
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
        let Some(c) = conn().await else { return };
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
