//! `fermyon:spin/redis@2.0.0`: outbound Redis from components.
//!
//! A port of spin v3.6 `crates/factor-outbound-redis/src/host.rs`:
//! - `open(address)`: the address must be allowed by `allowed_outbound_hosts`
//!   (scheme `redis`), else `invalid-address`; an unparsable address is also
//!   `invalid-address`; each `open` makes a new multiplexed connection
//!   (connection failures are `other(<message>)`).
//! - `incr` is `INCRBY key 1`; `sadd` maps a Redis type error to
//!   `type-error`; everything else fails as `other(<message>)`.
//! - `execute` flattens nested arrays and sets into one list, maps `OK` to
//!   `status("OK")`, doubles and big numbers to `binary(<text>)`, booleans to
//!   `int64(0|1)`, and refuses maps, attributes, verbatim strings and pushes.

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, FromRedisValue, Value};
use wasmtime::component::Resource;

use crate::host::bindings::fermyon::spin2_0_0::redis::{self as wit, RedisParameter, RedisResult};
use crate::host::InstanceState;

/// The host side of the `connection` resource.
pub struct RedisConnection {
    conn: MultiplexedConnection,
}

fn other(e: impl std::fmt::Display) -> wit::Error {
    wit::Error::Other(e.to_string())
}

impl InstanceState {
    fn redis_conn(
        &mut self,
        c: &Resource<RedisConnection>,
    ) -> Result<&mut MultiplexedConnection, wit::Error> {
        self.table
            .get_mut(c)
            .map(|rc| &mut rc.conn)
            .map_err(|_| wit::Error::Other("could not find connection for resource".into()))
    }
}

impl wit::Host for InstanceState {}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Result<Resource<RedisConnection>, wit::Error> {
        if !self.component.allowed_hosts.allows_url(&address, "redis") {
            return Err(wit::Error::InvalidAddress);
        }
        let conn = redis::Client::open(address.as_str())
            .map_err(|_| wit::Error::InvalidAddress)?
            .get_multiplexed_async_connection()
            .await
            .map_err(other)?;
        self.table
            .push(RedisConnection { conn })
            .map_err(|_| wit::Error::TooManyConnections)
    }

    async fn publish(
        &mut self,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), wit::Error> {
        let conn = self.redis_conn(&c)?;
        let () = conn.publish(&channel, &payload).await.map_err(other)?;
        Ok(())
    }

    async fn get(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> Result<Option<Vec<u8>>, wit::Error> {
        self.redis_conn(&c)?.get(&key).await.map_err(other)
    }

    async fn set(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), wit::Error> {
        let () = self
            .redis_conn(&c)?
            .set(&key, &value)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn incr(&mut self, c: Resource<RedisConnection>, key: String) -> Result<i64, wit::Error> {
        self.redis_conn(&c)?.incr(&key, 1).await.map_err(other)
    }

    async fn del(
        &mut self,
        c: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> Result<u32, wit::Error> {
        self.redis_conn(&c)?.del(&keys).await.map_err(other)
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, wit::Error> {
        self.redis_conn(&c)?.sadd(&key, &values).await.map_err(|e| {
            if e.kind() == redis::ErrorKind::TypeError {
                wit::Error::TypeError
            } else {
                other(e)
            }
        })
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> Result<Vec<String>, wit::Error> {
        self.redis_conn(&c)?.smembers(&key).await.map_err(other)
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, wit::Error> {
        self.redis_conn(&c)?
            .srem(&key, &values)
            .await
            .map_err(other)
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> Result<Vec<RedisResult>, wit::Error> {
        let conn = self.redis_conn(&c)?;
        let mut cmd = redis::cmd(&command);
        for a in &arguments {
            match a {
                RedisParameter::Int64(v) => cmd.arg(v),
                RedisParameter::Binary(v) => cmd.arg(v),
            };
        }
        cmd.query_async::<RedisResults>(conn)
            .await
            .map(|r| r.0)
            .map_err(other)
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

/// Spin's flattening of an `execute` reply.
struct RedisResults(Vec<RedisResult>);

impl FromRedisValue for RedisResults {
    fn from_redis_value(value: &Value) -> redis::RedisResult<Self> {
        fn unsupported(what: &str) -> redis::RedisError {
            redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "Could not convert Redis response",
                what.to_string(),
            ))
        }
        fn append(values: &mut Vec<RedisResult>, value: &Value) -> redis::RedisResult<()> {
            match value {
                Value::Nil => values.push(RedisResult::Nil),
                Value::Int(v) => values.push(RedisResult::Int64(*v)),
                Value::BulkString(b) => values.push(RedisResult::Binary(b.clone())),
                Value::SimpleString(s) => values.push(RedisResult::Status(s.clone())),
                Value::Okay => values.push(RedisResult::Status("OK".to_string())),
                Value::Array(a) | Value::Set(a) => {
                    for v in a {
                        append(values, v)?;
                    }
                }
                Value::Double(d) => values.push(RedisResult::Binary(d.to_string().into_bytes())),
                Value::Boolean(b) => values.push(RedisResult::Int64(i64::from(*b))),
                Value::BigNumber(n) => values.push(RedisResult::Binary(n.to_string().into_bytes())),
                Value::Map(_) => return Err(unsupported("Redis Map type is not supported")),
                Value::Attribute { .. } => {
                    return Err(unsupported("Redis Attribute type is not supported"))
                }
                Value::VerbatimString { .. } => {
                    return Err(unsupported(
                        "Redis string with format attribute is not supported",
                    ))
                }
                Value::Push { .. } => {
                    return Err(unsupported("Redis Pub/Sub types are not supported"))
                }
                Value::ServerError(err) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ResponseError,
                        "Server error",
                        format!("{err:?}"),
                    )))
                }
            }
            Ok(())
        }
        let mut values = Vec::new();
        append(&mut values, value)?;
        Ok(RedisResults(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_replies_are_flattened_like_spin() {
        let v = Value::Array(vec![
            Value::Okay,
            Value::Int(3),
            Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil]),
            Value::Boolean(true),
            Value::Double(1.5),
        ]);
        let r = RedisResults::from_redis_value(&v).unwrap().0;
        assert!(matches!(&r[0], RedisResult::Status(s) if s == "OK"));
        assert!(matches!(r[1], RedisResult::Int64(3)));
        assert!(matches!(&r[2], RedisResult::Binary(b) if b == b"a"));
        assert!(matches!(r[3], RedisResult::Nil));
        assert!(matches!(r[4], RedisResult::Int64(1)));
        assert!(matches!(&r[5], RedisResult::Binary(b) if b == b"1.5"));
    }

    #[test]
    fn map_replies_are_refused() {
        assert!(RedisResults::from_redis_value(&Value::Map(vec![])).is_err());
    }
}
