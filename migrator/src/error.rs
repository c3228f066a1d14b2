//! The migrator's error type. Every message is one line and never contains the
//! connection string, so the CLI can print it as it is.

use sqlx::migrate::MigrateError;

/// What can go wrong while connecting, migrating or seeding.
#[derive(Debug, thiserror::Error)]
pub enum MigratorError {
    /// The connection string does not parse; the reason never echoes the string itself.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// Postgres did not accept a connection; `target` is `host:port`, without credentials.
    #[error("cannot connect to postgres at {target}: {reason}")]
    Connect { target: String, reason: String },
    /// A migration failed, was edited after it was applied, or a previous run left it dirty.
    #[error("{}", one_line(&.0.to_string()))]
    Migrate(#[from] MigrateError),
    /// A query of the migrator itself (status, seed) failed.
    #[error("{}", describe(.0))]
    Database(#[from] sqlx::Error),
    /// The seed needs the catalogue table, which only `up` creates.
    #[error("table {0} does not exist; run `migrator up` first")]
    NotMigrated(&'static str),
}

/// A short, single-line reason for a driver error: the server's own message for database
/// errors, the OS reason for I/O errors (`connection refused`), the driver's text otherwise.
pub(crate) fn describe(error: &sqlx::Error) -> String {
    let text = match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Configuration(cause) => cause.to_string(),
        other => other.to_string(),
    };
    one_line(&text)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_described_in_plain_words() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&sqlx::Error::Io(io)), "connection refused");
    }

    #[test]
    fn multi_line_driver_messages_become_one_line() {
        let error = sqlx::Error::Protocol("first line\n  second line".to_owned());
        assert!(!describe(&error).contains('\n'));
        assert!(describe(&error).ends_with("first line second line"));
    }
}
