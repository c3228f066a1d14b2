//! Postgres connection URLs for tests: the parameters components need on
//! loopback servers, set without string surgery.
//!
//! The test servers (the machine's Debian Postgres, the private ones of
//! `scripts/services.sh` and of the e2e suite) run with `ssl = on` and a
//! self-signed certificate. Spin — and so this host — verifies certificates
//! for every `sslmode` but `disable` (see [`crate::host::postgres`]), so a
//! URL handed to a component must say `sslmode=disable` unless it asks for
//! something else on purpose.
//!
//! Query values are percent-encoded with `%20` for a space, never `+`: libpq
//! and tokio-postgres decode `%XX` only (`options=-c%20statement_timeout%3D300`).

/// `url` with query parameter `key` set to `value`, replacing any `key`
/// already there and keeping every other parameter exactly as written.
///
/// # Panics
/// If `url` is not a URL (a test's own mistake).
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"));
    let mut pairs: Vec<String> = parsed
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && pair_key(pair) != key)
        .map(str::to_string)
        .collect();
    pairs.push(format!("{}={}", encode(key), encode(value)));
    parsed.set_query(Some(&pairs.join("&")));
    parsed.to_string()
}

/// The value of query parameter `key` in `url`, if present.
pub fn param(url: &str, key: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// `url` without query parameter `key` (other parameters kept as written).
pub fn without_param(url: &str, key: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"));
    let rest: Vec<&str> = parsed
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && pair_key(pair) != key)
        .collect();
    let rest = rest.join("&");
    parsed.set_query((!rest.is_empty()).then_some(rest.as_str()));
    parsed.to_string()
}

/// `url` with `sslmode=disable` added when it names no `sslmode`; an
/// explicit `sslmode` is kept (whoever set it meant it).
pub fn plain_unless_set(url: &str) -> String {
    if param(url, "sslmode").is_some() {
        url.to_string()
    } else {
        with_param(url, "sslmode", "disable")
    }
}

/// `url` pointing at database `name` on the same server, with the same
/// user, password and parameters.
pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"));
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// `host:port` of a URL (the port only when the URL has one), for the
/// `*_host` variables of the allow-lists.
pub fn host_port(url: &str) -> String {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"));
    let host = parsed.host_str().unwrap_or_default();
    match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn pair_key(pair: &str) -> String {
    let raw = pair.split_once('=').map_or(pair, |(k, _)| k);
    url::form_urlencoded::parse(format!("{raw}=").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_set_replaced_and_removed_without_touching_the_rest() {
        let base = "postgres://u:p%40ss@127.0.0.1:5432/app";
        assert_eq!(
            plain_unless_set(base),
            "postgres://u:p%40ss@127.0.0.1:5432/app?sslmode=disable"
        );
        assert_eq!(
            plain_unless_set("postgres://h/app?sslmode=require"),
            "postgres://h/app?sslmode=require"
        );
        let with = with_param(
            "postgres://h:1/app?sslmode=disable&application_name=a%20b",
            "options",
            "-c statement_timeout=300",
        );
        assert_eq!(
            with,
            "postgres://h:1/app?sslmode=disable&application_name=a%20b&options=-c%20statement_timeout%3D300"
        );
        assert_eq!(
            with_param(&with, "sslmode", "require"),
            "postgres://h:1/app?application_name=a%20b&options=-c%20statement_timeout%3D300&sslmode=require"
        );
        assert_eq!(
            without_param("postgres://h/app?sslmode=disable", "sslmode"),
            "postgres://h/app"
        );
        assert_eq!(
            param(&with, "options").as_deref(),
            Some("-c statement_timeout=300")
        );
        assert_eq!(
            with_database("postgres://u@h:5/postgres?sslmode=disable", "e2e_1"),
            "postgres://u@h:5/e2e_1?sslmode=disable"
        );
        assert_eq!(host_port("postgres://u@h:5/x?sslmode=disable"), "h:5");
        assert_eq!(host_port("redis://127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(host_port("postgres://db/x"), "db");
    }

    #[test]
    fn tokio_postgres_reads_what_with_param_writes() {
        let url = with_param(
            &plain_unless_set("postgres://postgres@127.0.0.1:5432/postgres"),
            "options",
            "-c statement_timeout=300",
        );
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert_eq!(config.get_options(), Some("-c statement_timeout=300"));
    }
}
