//! The built `migrator` binary: the commands end to end, exit codes, one-line errors.

use std::process::{Command, Output};

use crate::support::{tables, with_db, MIGRATIONS};

fn migrator(database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_migrator"));
    command.args(args).env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("the migrator binary runs")
}

/// Runs a command that must succeed and returns its standard output.
fn succeed(database_url: &str, args: &[&str]) -> String {
    let output = migrator(Some(database_url), args);
    assert!(
        output.status.success(),
        "migrator {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Asserts a failure with exit code 1 and a single `error: ` line; returns that line.
fn fail(output: Output) -> String {
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr.trim_end().to_owned()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn up_seed_down_all_by_number_up_round_trips_a_fresh_database() {
    with_db(|db| async move {
        let url = db.url.as_str();
        let status = succeed(url, &["status"]);
        assert_eq!(
            status.lines().filter(|l| l.contains(" pending ")).count(),
            MIGRATIONS,
            "{status}"
        );

        let up = succeed(url, &["up"]);
        assert_eq!(
            up.lines().filter(|l| l.starts_with("applied ")).count(),
            MIGRATIONS,
            "{up}"
        );
        assert!(succeed(url, &["seed"]).starts_with("seeded "));
        assert!(succeed(url, &["seed"]).contains("nothing changed"));
        let status = succeed(url, &["status"]);
        assert_eq!(
            status.lines().filter(|l| l.contains(" applied ")).count(),
            MIGRATIONS,
            "{status}"
        );

        let down = succeed(url, &["down", &MIGRATIONS.to_string()]);
        assert_eq!(
            down.lines().filter(|l| l.starts_with("reverted ")).count(),
            MIGRATIONS,
            "{down}"
        );
        assert!(tables(&db.pool).await.is_empty());

        succeed(url, &["up"]);
        assert_eq!(tables(&db.pool).await.len(), 12, "every table is back");
        assert!(succeed(url, &["up"]).contains("nothing to apply"));
    });
}

#[test]
fn down_without_a_count_reverts_one_migration() {
    with_db(|db| async move {
        let url = db.url.as_str();
        succeed(url, &["up"]);
        let down = succeed(url, &["down"]);
        assert_eq!(
            down.trim_end().lines().collect::<Vec<_>>().len(),
            1,
            "{down}"
        );
        assert!(down.contains("user data"), "{down}");
        let everything = succeed(&db.url, &["--database-url", url, "down", "all"]);
        assert_eq!(everything.lines().count(), MIGRATIONS - 1, "{everything}");
    });
}

#[test]
fn a_failed_migration_exits_non_zero_with_one_line() {
    with_db(|db| async move {
        sqlx::query("CREATE TABLE conversation_events (id int)")
            .execute(&db.pool)
            .await
            .unwrap();
        let line = fail(migrator(Some(&db.url), &["up"]));
        assert!(line.contains("already exists"), "{line}");
    });
}

#[test]
fn an_unreachable_database_exits_non_zero_with_one_line_and_no_password() {
    let port = free_port();
    let url = format!("postgres://admin:s3cret-pw@127.0.0.1:{port}/postgres");
    for args in [&["up"][..], &["status"], &["seed"], &["down", "4"]] {
        let line = fail(migrator(Some(&url), args));
        assert_eq!(
            line,
            format!("error: cannot connect to postgres at 127.0.0.1:{port}: connection refused")
        );
    }
    let line = fail(migrator(None, &["--database-url", &url, "status"]));
    assert!(!line.contains("s3cret-pw"), "{line}");
}

#[test]
fn a_missing_database_url_is_named() {
    let line = fail(migrator(None, &["up"]));
    assert!(line.contains("DATABASE_URL"), "{line}");
}

#[test]
fn help_never_shows_the_database_url() {
    let output = migrator(Some("postgres://admin:s3cret-pw@db.example/x"), &["--help"]);
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("s3cret-pw"));
}
