//! `spin-host`: runs the app like `spin up`, on this project's wasmtime host
//! (for machines where the Spin CLI cannot be installed).
//!
//! ```text
//! spin-host --manifest spin.toml --runtime-config-file runtime-config.toml \
//!           --listen 127.0.0.1:3000 [--component-id ID]... [--variable k=v]... \
//!           [--spin-compat 3.6|4.0|4.1]
//! ```
//!
//! `--spin-compat` picks the Spin release line whose behaviour (bugs
//! included) the host reproduces; default `SPIN_COMPAT` from the
//! environment, else 4.0. See `e2e::host::SpinCompat`.
//!
//! Exits non-zero when the app cannot start, and — like `spin up` — when the
//! Redis trigger's connection drops, so a supervisor restarts it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use e2e::host::{App, AppConfig, Optimization, SpinCompat, TriggerExit};

/// Run a Spin application on the project's wasmtime host (a stand-in for `spin up`).
#[derive(Debug, Parser)]
#[command(name = "spin-host", version)]
struct Cli {
    /// The application manifest (spin.toml).
    #[arg(
        short = 'f',
        long = "manifest",
        alias = "from",
        default_value = "spin.toml"
    )]
    manifest: PathBuf,
    /// Spin runtime configuration file (key-value stores).
    #[arg(long = "runtime-config-file")]
    runtime_config_file: Option<PathBuf>,
    /// Address for the HTTP trigger.
    #[arg(long = "listen", default_value = "127.0.0.1:3000")]
    listen: String,
    /// Run only this component's triggers (repeatable), as `spin up
    /// --component-id`; e.g. `-c scorer` for the supervised scorer process.
    #[arg(short = 'c', long = "component-id")]
    component_ids: Vec<String>,
    /// Application variable value, `name=value` (repeatable); wins over
    /// SPIN_VARIABLE_<NAME> and defaults.
    #[arg(long = "variable", value_parser = parse_variable)]
    variables: Vec<(String, String)>,
    /// Compile with Cranelift's speed optimisations (slower start, faster code).
    #[arg(long = "optimize")]
    optimize: bool,
    /// The Spin release line to reproduce: 3.6 (SpinKube), 4.0 (4.0.0–4.0.2,
    /// hangs on a Postgres query without rows: here a trap), 4.1 (later 4.x).
    /// Default: SPIN_COMPAT from the environment, else 4.0.
    #[arg(long = "spin-compat", value_name = "3.6|4.0|4.1")]
    spin_compat: Option<SpinCompat>,
}

fn parse_variable(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=value, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

#[tokio::main]
async fn main() -> ExitCode {
    e2e::host::init_tracing();
    let cli = Cli::parse();
    let spin_compat = cli.spin_compat.unwrap_or_else(SpinCompat::from_env);
    println!(
        "spin-host: this project's wasmtime host, standing in for `spin up` (Spin {spin_compat} semantics)"
    );
    let config = AppConfig {
        manifest: cli.manifest,
        runtime_config: cli.runtime_config_file,
        variables: cli.variables.into_iter().collect::<HashMap<_, _>>(),
        listen: cli.listen,
        http: true,
        redis_trigger: true,
        components: (!cli.component_ids.is_empty()).then_some(cli.component_ids),
        env_variables: true,
        optimization: if cli.optimize {
            Optimization::Speed
        } else {
            Optimization::Fast
        },
        spin_compat,
    };
    let app = match App::start(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = app.local_addr() {
        println!("Serving http://{addr}");
        println!("Available Routes:");
        for route in app.routes() {
            println!("  {}: http://{addr}{}", route.component, route.raw_route);
        }
    }
    if !app.redis_channels().is_empty() {
        println!("Active Channels:");
        for (address, channel, component) in app.redis_channels() {
            println!("  {}/{channel}: [{component}]", redact(address));
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            app.shutdown().await;
            ExitCode::SUCCESS
        }
        exit = app.redis_trigger_finished() => {
            match exit {
                TriggerExit::Disconnected { address } => {
                    eprintln!("Error: Redis trigger: disconnected from {}", redact(&address));
                    ExitCode::FAILURE
                }
                TriggerExit::Shutdown => ExitCode::SUCCESS,
            }
        }
    }
}

/// Hides a password in `redis://user:password@host`.
fn redact(address: &str) -> String {
    match (address.split_once("://"), address.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => address.to_string(),
    }
}
