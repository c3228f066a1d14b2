//! One test per shape in which Spin hands a failure to the guest. The texts
//! in `fixtures/` were printed by the project's test host, which builds them
//! the way each Spin line does (tests/src/host/postgres.rs), against
//! PostgreSQL 15.

use super::*;
use spin_sdk::pg4::DbError as WitDbError;

fn text(t: &str) -> DbError {
    classify(PgError::QueryFailed(QueryError::Text(t.into())))
}

#[test]
fn a_db_error_is_classified_by_its_sqlstate() {
    let error = classify(PgError::QueryFailed(QueryError::DbError(WitDbError {
        as_text: "db error: ERROR: duplicate key value violates unique constraint \"k\"".into(),
        severity: "ERROR".into(),
        code: "23505".into(),
        message: "duplicate key value violates unique constraint \"k\"".into(),
        detail: None,
        extras: vec![],
    })));
    assert_eq!(error.kind, DbErrorKind::UniqueViolation);
    assert_eq!(error.sqlstate(), Some("23505"));
}

#[test]
fn sqlstates_map_to_kinds() {
    for (code, kind) in [
        ("23505", DbErrorKind::UniqueViolation),
        ("57014", DbErrorKind::Timeout),
        ("57P01", DbErrorKind::Unavailable),
        ("08006", DbErrorKind::Unavailable),
        ("53300", DbErrorKind::Unavailable),
        ("40001", DbErrorKind::Unavailable),
        ("40P01", DbErrorKind::Unavailable),
        ("23514", DbErrorKind::Failed),
        ("22021", DbErrorKind::Failed),
        ("42P01", DbErrorKind::Failed),
    ] {
        assert_eq!(kind_of_sqlstate(code), kind, "{code}");
    }
}

#[test]
fn a_connection_failure_is_unavailable_and_one_line() {
    let error = classify(PgError::ConnectionFailed(
        include_str!("fixtures/connection-failed-tls.txt").into(),
    ));
    assert_eq!(error.kind, DbErrorKind::Unavailable);
    assert!(!error.to_string().contains('\n'));
    assert!(error.to_string().contains("certificate verify failed"));
}

/// Spin 4.x, an error raised while rows stream back: the WIT error's Debug.
#[test]
fn spin_4_mid_stream_text_keeps_its_sqlstate() {
    let error = text(include_str!("fixtures/spin-4.0-unique-violation.txt"));
    assert_eq!(error.kind, DbErrorKind::UniqueViolation);
    assert_eq!(error.sqlstate(), Some("23505"));
    assert!(
        error
            .to_string()
            .starts_with("sqlstate 23505: duplicate key value"),
        "{error}"
    );
}

/// Spin 3.6, the same error: tokio-postgres's Display chain, no SQLSTATE.
#[test]
fn spin_3_6_mid_stream_text_is_a_database_error_without_sqlstate() {
    let error = text(include_str!("fixtures/spin-3.6-unique-violation.txt"));
    assert_eq!(error.kind, DbErrorKind::Failed);
    assert_eq!(error.sqlstate(), None);
}

#[test]
fn spin_4_mid_stream_timeouts_and_terminations_keep_their_sqlstate() {
    let error = text(include_str!("fixtures/spin-4.0-statement-timeout.txt"));
    assert_eq!(
        (error.kind, error.sqlstate()),
        (DbErrorKind::Timeout, Some("57014"))
    );
    let error = text(include_str!("fixtures/spin-4.0-backend-terminated.txt"));
    assert_eq!(
        (error.kind, error.sqlstate()),
        (DbErrorKind::Unavailable, Some("57P01"))
    );
}

#[test]
fn spin_3_6_a_fatal_server_error_mid_stream_is_unavailable() {
    let error = text(include_str!("fixtures/spin-3.6-backend-terminated.txt"));
    assert_eq!(error.kind, DbErrorKind::Unavailable);
}

/// Without its SQLSTATE, an ERROR cannot be told from a bug: the service's
/// reads are the only statements that can meet this (writes use `execute`).
#[test]
fn spin_3_6_a_mid_stream_timeout_is_a_failure_without_sqlstate() {
    let error = text(include_str!("fixtures/spin-3.6-statement-timeout.txt"));
    assert_eq!((error.kind, error.sqlstate()), (DbErrorKind::Failed, None));
}

#[test]
fn a_lost_connection_is_unavailable_in_every_rendering() {
    for shape in [
        // execute, or a query on 4.x: tokio-postgres's Debug
        "Error { kind: Closed, cause: None }",
        // 4.x mid-stream: the Debug inside the flattened WIT text
        "QueryFailed(Text(\"Error { kind: Closed, cause: None }\"))",
        // 3.6 mid-stream: the Display chain
        "connection closed",
        "error communicating with the server: Connection reset by peer (os error 104)\n\nCaused by:\n    Connection reset by peer (os error 104)",
    ] {
        assert_eq!(text(shape).kind, DbErrorKind::Unavailable, "{shape}");
    }
}

#[test]
fn words_in_a_message_decide_nothing() {
    // A deterministic failure whose message says "connection" or "closed".
    let error = text("db error: ERROR: the connection table is closed for business");
    assert_eq!(error.kind, DbErrorKind::Failed);
    let error = text("query result exceeds limit of 16777216 bytes: connection reset");
    assert_eq!(error.kind, DbErrorKind::Failed);
}

#[test]
fn a_backtrace_never_reaches_the_message() {
    let error =
        text("connection closed\n\nStack backtrace:\n   0: anyhow::error::<impl ...>\n   1: ...");
    assert_eq!(error.kind, DbErrorKind::Unavailable);
    assert_eq!(error.to_string(), "connection closed");
}

#[test]
fn a_long_message_stays_one_bounded_line() {
    let error = text(&"x\n".repeat(1_000));
    let message = error.to_string();
    assert!(!message.contains('\n'));
    assert!(message.chars().count() <= MAX_MESSAGE + 1);
}
