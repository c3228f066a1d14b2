//! Generates `$OUT_DIR/bindings.rs`: the `wasmtime::component::bindgen!` call
//! for the Spin host interfaces, pointed at the WIT that the `spin-sdk` crate
//! the components are built with ships (no WIT is copied into this repository).
//!
//! The WIT directory is found, in order, from:
//! 1. `SPIN_SDK_WIT_DIR` (an explicit override),
//! 2. `cargo metadata` of the workspace (the `spin-sdk` package the workspace
//!    locks; this also downloads it if this machine has not yet),
//! 3. `$CARGO_HOME/registry/src/*/spin-sdk-<version>/wit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The spin-sdk version the workspace pins (`spin-sdk = "=5.2.0"`).
const SPIN_SDK_VERSION: &str = "5.2.0";

fn main() {
    println!("cargo:rerun-if-env-changed=SPIN_SDK_WIT_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let wit = find_wit_dir().unwrap_or_else(|why| {
        panic!(
            "cannot find spin-sdk {SPIN_SDK_VERSION}'s WIT directory ({why}); \
             set SPIN_SDK_WIT_DIR to it"
        )
    });
    println!("cargo:rerun-if-changed={}", wit.display());

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let bindings = BINDINGS_TEMPLATE.replace("@WIT_DIR@", &wit.display().to_string());
    std::fs::write(out.join("bindings.rs"), bindings).expect("write bindings.rs");
}

fn find_wit_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SPIN_SDK_WIT_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut reasons = Vec::new();
    match from_cargo_metadata() {
        Ok(dir) => return Ok(dir),
        Err(why) => reasons.push(format!("cargo metadata: {why}")),
    }
    match from_registry_glob() {
        Ok(dir) => return Ok(dir),
        Err(why) => reasons.push(format!("registry: {why}")),
    }
    Err(reasons.join("; "))
}

fn from_cargo_metadata() -> Result<PathBuf, String> {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace_manifest = manifest_dir
        .parent()
        .ok_or("tests/ has no parent")?
        .join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&workspace_manifest)
        .env_remove("CARGO_TARGET_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Read stdout on a thread (the JSON is large) and give up after a while:
    // a nested cargo can block on a lock the outer build holds.
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("cargo metadata timed out".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader
        .join()
        .map_err(|_| "reader panicked")?
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cargo metadata failed ({status})"));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&stdout).map_err(|e| e.to_string())?;
    let packages = metadata["packages"].as_array().ok_or("no packages")?;
    let manifest_path = packages
        .iter()
        .find(|p| p["name"] == "spin-sdk" && p["version"] == SPIN_SDK_VERSION)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("the workspace does not lock spin-sdk")?;
    wit_beside(Path::new(manifest_path))
}

fn from_registry_glob() -> Result<PathBuf, String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let src = cargo_home.join("registry").join("src");
    let entries = std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    for entry in entries.flatten() {
        let candidate = entry
            .path()
            .join(format!("spin-sdk-{SPIN_SDK_VERSION}"))
            .join("Cargo.toml");
        if candidate.exists() {
            return wit_beside(&candidate);
        }
    }
    Err(format!(
        "no spin-sdk-{SPIN_SDK_VERSION} under {}",
        src.display()
    ))
}

fn wit_beside(manifest: &Path) -> Result<PathBuf, String> {
    let wit = manifest
        .parent()
        .ok_or("manifest has no parent")?
        .join("wit");
    if wit.join("world.wit").exists() {
        Ok(wit)
    } else {
        Err(format!("{} has no world.wit", wit.display()))
    }
}

/// The bindgen call. Only the interfaces this host provides are imported;
/// everything else a component may import (wasi:*) comes from wasmtime-wasi
/// and wasmtime-wasi-http.
const BINDINGS_TEMPLATE: &str = r#"// @generated by tests/build.rs from spin-sdk's WIT at @WIT_DIR@
wasmtime::component::bindgen!({
    path: "@WIT_DIR@",
    inline: "
        package e2e:host;

        /// What the host provides to components (besides WASI).
        world spin-imports {
            import fermyon:spin/key-value@2.0.0;
            import fermyon:spin/redis@2.0.0;
            import fermyon:spin/variables@2.0.0;
            import spin:postgres/postgres@4.0.0;
            import wasi:config/store@0.2.0-draft-2024-09-27;
        }

        /// What a Redis-triggered component exports.
        world redis-handler {
            export fermyon:spin/inbound-redis;
        }

        /// Both, so one `bindgen!` generates every type once.
        world spin-host {
            include spin-imports;
            include redis-handler;
        }
    ",
    world: "e2e:host/spin-host",
    // `query` may trap: under SpinCompat::V4_0 a query matching no rows is
    // where Spin 4.0.0-4.0.2 would hang forever (spinframework/spin#3671),
    // and the host fails the invocation instead (src/host/postgres.rs).
    imports: {
        "spin:postgres/postgres@4.0.0.[method]connection.query": async | trappable,
        default: async,
    },
    exports: { default: async },
    with: {
        "fermyon:spin/key-value@2.0.0.store": crate::host::kv::StoreHandle,
        "fermyon:spin/redis@2.0.0.connection": crate::host::redis_out::RedisConnection,
        "spin:postgres/postgres@4.0.0.connection": crate::host::postgres::PgConnection,
    },
});
"#;
