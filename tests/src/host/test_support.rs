//! Connection settings for the host's self-checks against real services,
//! and the one way those checks fail when a service is missing.
//!
//! The checks never skip: the project's test command (`scripts/test.sh`)
//! always provides Postgres and Redis, so a check that passed without its
//! server would pass without having shown anything.

use std::fmt::Display;
use std::time::Duration;

/// `DATABASE_URL`, or the local trust-auth Postgres, as given (no
/// `sslmode` added).
pub fn database_url_as_given() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// [`database_url_as_given`] with `sslmode=disable` unless it names an
/// `sslmode`: the test servers use self-signed certificates, which the host
/// (as Spin) refuses for every other mode.
pub fn database_url() -> String {
    crate::host::db_url::plain_unless_set(&database_url_as_given())
}

/// `REDIS_URL` (its database replaced by `db`), or the local Redis.
pub fn redis_url(db: u8) -> String {
    let base = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let mut url =
        url::Url::parse(&base).unwrap_or_else(|e| panic!("REDIS_URL {base:?} is not a URL: {e}"));
    url.set_path(&format!("/{db}"));
    url.to_string()
}

/// A server the self-checks need.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    Postgres,
    Redis,
}

/// Fails the calling test: `server` does not answer at `url` (`why` says
/// how it failed), naming the variable that points at another one and the
/// command that provides both.
#[track_caller]
pub fn missing(server: Server, url: &str, why: impl Display) -> ! {
    let (name, variable) = match server {
        Server::Postgres => ("Postgres", "DATABASE_URL"),
        Server::Redis => ("Redis", "REDIS_URL"),
    };
    panic!(
        "no {name} at {url}: {why}. This test needs a real {name}: run it through \
         `bash scripts/test.sh` (which provides Postgres and Redis), start them with \
         `. scripts/services.sh; ensure_services`, or set {variable} to one that answers"
    )
}

/// A connection to the Redis at `url`; fails the calling test (see
/// [`missing`]) when there is none within a second.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| missing(Server::Redis, url, e));
    match tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => missing(Server::Redis, url, e),
        Err(_) => missing(Server::Redis, url, "no connection within 1 s"),
    }
}
