//! Connection settings for the host's self-checks against real services.

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
    let (scheme, rest) = base.split_once("://").unwrap_or(("redis", base.as_str()));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{db}")
}

/// Whether Redis answers at `url` within a second.
pub async fn redis_available(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            client.get_multiplexed_async_connection()
        )
        .await,
        Ok(Ok(_))
    )
}
