//! `spin-host`: runs the app like `spin up`, on this project's wasmtime host
//! (for machines where the Spin CLI cannot be installed).
//!
//! ```text
//! spin-host [--from spin.toml] [--runtime-config-file runtime-config.toml] \
//!           [--listen 127.0.0.1:3000] [--component-id ID]... [--variable k=v]... \
//!           [--spin-compat 3.6|4.0|4.1] [--fast-compile] [--disable-pooling] \
//!           [--state-dir DIR] [--log-dir DIR] [--truncate-logs] [--quiet | --follow ID...]
//! ```
//!
//! It serves with Spin's execution profile (`Optimization::Spin`: the Spin
//! CLI's wasmtime configuration, pooling allocator, epoch ticker, Cranelift
//! `OptLevel::Speed`; see `e2e::host`'s runtime module for what is matched)
//! and writes component output as `spin up` does for a local app: appended to
//! `<state dir>/logs/<component>_stdout.txt` and `_stderr.txt` (state dir
//! `.spin` next to the manifest) and copied to stderr. `--fast-compile`
//! swaps the engine for the test suite's (`OptLevel::None`, no pooling, no
//! epochs): quicker to start, slower to run, not for measurements.
//!
//! `--spin-compat` picks the Spin release line whose behaviour (bugs
//! included) the host reproduces; default `SPIN_COMPAT` from the
//! environment, else 4.0. See `e2e::host::SpinCompat`.
//!
//! Exits non-zero when the app cannot start, and — like `spin up` — when the
//! Redis trigger's connection drops, so a supervisor restarts it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use e2e::host::{App, AppConfig, ComponentStdio, Optimization, SpinCompat, TriggerExit};

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
    /// Compile with the test suite's engine (Cranelift OptLevel::None, no
    /// pooling allocator, no epoch interruption): starts faster, runs slower.
    /// The default is Spin's own wasmtime configuration.
    #[arg(long = "fast-compile")]
    fast_compile: bool,
    /// Accepted for compatibility: Spin's optimised profile is now the default.
    #[arg(long = "optimize", hide = true, conflicts_with = "fast_compile")]
    optimize: bool,
    /// Disable wasmtime's pooling instance allocator (as `spin up
    /// --disable-pooling`; also SPIN_WASMTIME_POOLING=0).
    #[arg(long = "disable-pooling")]
    disable_pooling: bool,
    /// The application state directory; logs go to its `logs/` unless
    /// --log-dir says otherwise. Default: `.spin` next to the manifest; an
    /// empty value unsets it (then, without --log-dir, no log files).
    #[arg(long = "state-dir")]
    state_dir: Option<String>,
    /// Log directory for the stdout and stderr of components. An empty value
    /// disables logging to disk (output then goes to stderr only).
    #[arg(short = 'L', long = "log-dir", env = "SPIN_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// Truncate the log files before starting the application.
    #[arg(long = "truncate-logs")]
    truncate_logs: bool,
    /// Print output to stderr only for the given component(s) (repeatable).
    #[arg(long = "follow", value_name = "ID")]
    follow: Vec<String>,
    /// Silence all component output to stderr (the log files still get it).
    #[arg(
        short = 'q',
        long = "quiet",
        alias = "shush",
        conflicts_with = "follow"
    )]
    quiet: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.disable_pooling {
        // Read once, when the engine is built; set before any other thread
        // exists (the async runtime starts below).
        std::env::set_var("SPIN_WASMTIME_POOLING", "0");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// The log directory as `spin up` resolves it for a local app.
fn log_dir(cli: &Cli) -> Option<PathBuf> {
    match &cli.log_dir {
        Some(dir) if dir.as_os_str().is_empty() => None,
        Some(dir) => Some(dir.clone()),
        None => match cli.state_dir.as_deref() {
            Some("") => None,
            Some(state) => Some(Path::new(state).join("logs")),
            None => Some(
                cli.manifest
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(".spin")
                    .join("logs"),
            ),
        },
    }
}

/// Spin's `--truncate-logs`: empties every `*stdout.txt` / `*stderr.txt`.
fn truncate_logs(dir: &Path) {
    if let Ok(entries) = dir.read_dir() {
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with("stdout.txt") || name.ends_with("stderr.txt") {
                let _ = std::fs::File::create(&path);
            }
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    e2e::host::init_tracing();
    let spin_compat = cli.spin_compat.unwrap_or_else(SpinCompat::from_env);
    // `--optimize` (the old opt-in to OptLevel::Speed) is the default now.
    let _ = cli.optimize;
    let optimization = if cli.fast_compile {
        Optimization::Fast
    } else {
        Optimization::Spin
    };
    let log_dir = log_dir(&cli);
    let follow = if cli.quiet {
        Some(BTreeSet::new())
    } else if cli.follow.is_empty() {
        None
    } else {
        Some(cli.follow.iter().cloned().collect())
    };
    let profile = match optimization {
        Optimization::Spin if e2e::host::spin_uses_pooling() => {
            "Spin's wasmtime profile, pooling allocator"
        }
        Optimization::Spin => "Spin's wasmtime profile, on-demand allocator",
        Optimization::Fast => "fast-compile profile (not Spin's: OptLevel::None, no pooling)",
    };
    println!(
        "spin-host: this project's wasmtime host, standing in for `spin up` (Spin {spin_compat} semantics; {profile})"
    );
    if let Some(dir) = &log_dir {
        if cli.truncate_logs {
            truncate_logs(dir);
        }
        println!("Logging component stdio to {}", dir.join("").display());
    }
    let config = AppConfig {
        manifest: cli.manifest,
        runtime_config: cli.runtime_config_file,
        variables: cli.variables.into_iter().collect::<HashMap<_, _>>(),
        listen: cli.listen,
        http: true,
        redis_trigger: true,
        components: (!cli.component_ids.is_empty()).then_some(cli.component_ids),
        env_variables: true,
        optimization,
        stdio: ComponentStdio::Spin { log_dir, follow },
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
