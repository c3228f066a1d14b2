//! Self-checks of the whole host that need no component: an [`App`] without
//! routes, and a start that must fail. The host running real components is
//! exercised by the end-to-end suite (`tests/e2e`).

use std::path::{Path, PathBuf};

use super::{App, AppConfig, HostError};

fn write_manifest(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("e2e-host-{name}-{}", uuid::Uuid::new_v4()))
}

#[tokio::test]
async fn an_app_without_http_triggers_does_not_listen() {
    let manifest = write_manifest(
        &scratch_dir("empty"),
        "spin_manifest_version = 2\n[application]\nname = \"empty\"\n",
    );
    let app = App::start(AppConfig {
        manifest,
        redis_trigger: false,
        env_variables: false,
        ..AppConfig::default()
    })
    .await
    .unwrap();
    assert!(
        app.local_addr().is_none(),
        "like `spin up`, no HTTP trigger means no listener"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_required_variable_fails_the_start() {
    let manifest = write_manifest(
        &scratch_dir("required"),
        "spin_manifest_version = 2\n[application]\nname = \"r\"\n[variables]\nzz_e2e_needed = { required = true }\n",
    );
    let err = App::start(AppConfig {
        manifest,
        env_variables: false,
        ..AppConfig::default()
    })
    .await
    .err()
    .expect("start fails");
    assert!(matches!(err, HostError::Variables(_)), "{err}");
}
