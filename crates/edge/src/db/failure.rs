//! What a Postgres failure is, told from the error Spin hands the guest, the
//! same way on every Spin version the service runs on.
//!
//! Spin reports a failure in one of these shapes (read in Spin's
//! `crates/factor-outbound-pg/src/client.rs`, tags v3.6.3 and v4.0.2):
//! - `connection-failed(text)`: the connection could not be opened (refused,
//!   TLS handshake, authentication);
//! - `query-failed(db-error{code, …})`: a database error of `execute`, or of a
//!   `query` before its first row, with its SQLSTATE;
//! - `query-failed(text)`: anything else, notably an error raised while a
//!   `query`'s rows stream back, flattened with `{:?}`:
//!   - Spin 4.x flattens the WIT error, so the text holds `code: "23505"`;
//!   - Spin 3.6 flattens tokio-postgres's error through anyhow, which prints
//!     its `Display` chain: `db error: ERROR: duplicate key …`, with no
//!     SQLSTATE at all, or one of tokio-postgres's fixed renderings of a
//!     non-database error kind (`connection closed`, `error communicating
//!     with the server: …`, …), or its `Debug` form `Error { kind: Closed, … }`.
//!
//! Either may end with a `Stack backtrace:` when the Spin process runs with
//! `RUST_BACKTRACE` set.
//!
//! So a failure is classified by its SQLSTATE wherever one can be had, and
//! otherwise by the error kind tokio-postgres rendered; never by words of a
//! message. The service's writes run with `execute` (SQLSTATE always there),
//! so the SQLSTATE-less text of Spin 3.6 can only come from a read.

use spin_sdk::pg4::{PgError, QueryError};

/// SQLSTATE of a unique-key violation.
pub const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE of a statement cancelled by `statement_timeout` (or a cancel).
pub const QUERY_CANCELED: &str = "57014";
/// SQLSTATE of a statement sent inside an aborted transaction.
pub const IN_FAILED_TRANSACTION: &str = "25P02";

/// How a caller should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database cannot be reached or cannot serve now (connection,
    /// shutdown, resources, a lost serialization race): try again later.
    Unavailable,
    /// The statement ran out of time (`statement_timeout`).
    Timeout,
    /// A unique key already holds this value.
    UniqueViolation,
    /// Anything else: a statement or data the database refused, an answer
    /// that does not decode. Not worth retrying as it is.
    Failed,
}

/// A Postgres failure, classified, with a one-line description for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: DbErrorKind,
    sqlstate: Option<String>,
    message: String,
}

/// Longest description kept: a flattened error can carry a whole backtrace.
const MAX_MESSAGE: usize = 400;

impl DbError {
    fn new(kind: DbErrorKind, sqlstate: Option<String>, message: &str) -> Self {
        DbError {
            kind,
            sqlstate,
            message: one_line(message),
        }
    }

    /// An answer that does not have the shape the service expects.
    pub fn decoding(message: String) -> Self {
        DbError::new(DbErrorKind::Failed, None, &message)
    }

    /// A missing or invalid `db_url`.
    pub fn config(message: String) -> Self {
        DbError::new(DbErrorKind::Failed, None, &message)
    }

    /// The SQLSTATE, when the failure carried one.
    pub fn sqlstate(&self) -> Option<&str> {
        self.sqlstate.as_deref()
    }
}

/// Classifies what Spin returned.
pub fn classify(error: PgError) -> DbError {
    match error {
        PgError::ConnectionFailed(text) => DbError::new(
            DbErrorKind::Unavailable,
            None,
            &format!("cannot connect: {}", without_backtrace(&text)),
        ),
        PgError::QueryFailed(QueryError::DbError(db)) => DbError::new(
            kind_of_sqlstate(&db.code),
            Some(db.code.clone()),
            &format!("sqlstate {}: {}", db.code, db.message),
        ),
        PgError::QueryFailed(QueryError::Text(text)) => classify_text(&text),
        PgError::BadParameter(text) => {
            DbError::new(DbErrorKind::Failed, None, &format!("bad parameter: {text}"))
        }
        PgError::ValueConversionFailed(text) => DbError::new(
            DbErrorKind::Failed,
            None,
            &format!("value conversion: {text}"),
        ),
        PgError::Other(text) => DbError::new(DbErrorKind::Failed, None, &text),
    }
}

/// Classifies the flattened text of `query-failed(text)`.
pub fn classify_text(text: &str) -> DbError {
    let text = without_backtrace(text);
    if let Some(code) = sqlstate_in(text) {
        return DbError::new(
            kind_of_sqlstate(code),
            Some(code.to_owned()),
            &format!("sqlstate {code}: {}", message_in(text).unwrap_or(text)),
        );
    }
    let kind = match client_error_kind(text) {
        Some(ClientKind::Connection) => DbErrorKind::Unavailable,
        // A server error whose SQLSTATE Spin 3.6 dropped: FATAL and PANIC end
        // the session (shutdown, terminated backend); an ERROR can't be told.
        Some(ClientKind::Database { fatal: true }) => DbErrorKind::Unavailable,
        Some(ClientKind::Database { fatal: false }) | Some(ClientKind::Other) | None => {
            DbErrorKind::Failed
        }
    };
    DbError::new(kind, None, text)
}

/// The class of a SQLSTATE, as this service treats it.
pub fn kind_of_sqlstate(code: &str) -> DbErrorKind {
    match code {
        UNIQUE_VIOLATION => DbErrorKind::UniqueViolation,
        QUERY_CANCELED => DbErrorKind::Timeout,
        // connection exceptions, operator intervention (shutdown, crash),
        // insufficient resources, serialization failure, deadlock, lock not available
        c if c.starts_with("08")
            || c.starts_with("57P")
            || c.starts_with("53")
            || c == "40001"
            || c == "40P01"
            || c == "55P03" =>
        {
            DbErrorKind::Unavailable
        }
        _ => DbErrorKind::Failed,
    }
}

/// A SQLSTATE held by a flattened error: Spin 4.x's `code: "23505"`, or
/// tokio-postgres's own `Debug` of it, `code: SqlState(E23505)`.
fn sqlstate_in(text: &str) -> Option<&str> {
    let is_code = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    for (start, _) in text.match_indices("code: \"") {
        let rest = &text[start + 7..];
        if let Some(code) = rest
            .get(..5)
            .filter(|c| is_code(c) && rest[5..].starts_with('"'))
        {
            return Some(code);
        }
    }
    for (start, _) in text.match_indices("SqlState(E") {
        let rest = &text[start + 10..];
        if let Some(code) = rest
            .get(..5)
            .filter(|c| is_code(c) && rest[5..].starts_with(')'))
        {
            return Some(code);
        }
    }
    None
}

/// The `message: "…"` of a flattened WIT db-error, for a readable log line.
fn message_in(text: &str) -> Option<&str> {
    let start = text.find("message: \"")? + 10;
    let end = text[start..].find("\", ")?;
    Some(&text[start..start + end])
}

/// The kinds of tokio-postgres error this service tells apart.
#[derive(Debug, PartialEq, Eq)]
enum ClientKind {
    /// The connection failed or was lost.
    Connection,
    /// A database error (without its SQLSTATE).
    Database { fatal: bool },
    /// Another client-side error (encoding, decoding, protocol).
    Other,
}

/// tokio-postgres's error kind, from its `Debug` (`Error { kind: Closed, …`)
/// or from the fixed `Display` of each kind that leads a flattened text.
fn client_error_kind(text: &str) -> Option<ClientKind> {
    // `Debug`: `Error { kind: Io, cause: … }` (possibly quoted inside a WIT text).
    if let Some(start) = text.find("Error { kind: ") {
        let rest = &text[start + 14..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        return Some(match name.as_str() {
            "Io" | "Closed" | "Connect" | "Timeout" | "Tls" | "Authentication" => {
                ClientKind::Connection
            }
            "Db" => ClientKind::Database { fatal: false },
            _ => ClientKind::Other,
        });
    }
    // `Display` of each kind (tokio-postgres `impl Display for Error`).
    const CONNECTION: [&str; 6] = [
        "error communicating with the server",
        "connection closed",
        "error connecting to server",
        "timeout waiting for server",
        "error performing TLS handshake",
        "authentication error",
    ];
    if CONNECTION.iter().any(|prefix| text.starts_with(prefix)) {
        return Some(ClientKind::Connection);
    }
    if let Some(rest) = text.strip_prefix("db error: ") {
        let fatal = rest.starts_with("FATAL:") || rest.starts_with("PANIC:");
        return Some(ClientKind::Database { fatal });
    }
    None
}

/// The text before a `Stack backtrace:` that anyhow appends when asked to.
fn without_backtrace(text: &str) -> &str {
    text.split("\n\nStack backtrace:")
        .next()
        .unwrap_or(text)
        .trim_end()
}

/// One line, bounded: newlines become ` | `, and the tail is cut.
fn one_line(text: &str) -> String {
    let mut line = text.trim().replace('\n', " | ");
    if line.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests;
