//! [`App`]: load `spin.toml`, compile the components, and run the HTTP and/or
//! Redis triggers in this process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), e2e::host::HostError> {
//! use e2e::host::{App, AppConfig};
//! let app = App::start(AppConfig {
//!     manifest: "spin.toml".into(),
//!     runtime_config: Some("runtime-config.toml".into()),
//!     variables: [("db_url".to_string(), "postgres://postgres@127.0.0.1/app".to_string())].into(),
//!     http: true,
//!     redis_trigger: false,
//!     ..AppConfig::default()
//! })
//! .await?;
//! let url = format!("{}/health", app.base_url());
//! # let _ = url;
//! app.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::host::allowed_hosts::{AllowedHostError, AllowedHosts};
use crate::host::bindings::exports::fermyon::spin::inbound_redis::GuestIndices;
use crate::host::compat::SpinCompat;
use crate::host::http::{HttpApp, HttpComponent};
use crate::host::kv::Stores;
use crate::host::manifest::{Manifest, ManifestError};
use crate::host::postgres::Pools;
use crate::host::redis_trigger::{RedisComponent, Subscriber, TriggerExit};
use crate::host::routing::{Route, RouteError, Router};
use crate::host::runtime::{self, ComponentContext, ComponentStdio, Optimization, SharedServices};
use crate::host::runtime_config::{RuntimeConfig, RuntimeConfigError};
use crate::host::variables::{AppVariables, ComponentVariables, Provider, VariableError};

/// How to start an [`App`].
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Path of `spin.toml`; component sources are relative to its directory.
    pub manifest: PathBuf,
    /// Path of `runtime-config.toml` (`--runtime-config-file`); `None` backs
    /// the default key-value store with memory.
    pub runtime_config: Option<PathBuf>,
    /// Application variable values (like `spin up --variable k=v`); they win
    /// over `SPIN_VARIABLE_*` and defaults.
    pub variables: HashMap<String, String>,
    /// Where to listen for HTTP, e.g. `127.0.0.1:0` for a free port.
    pub listen: String,
    /// Serve the `[[trigger.http]]` routes.
    pub http: bool,
    /// Run the `[[trigger.redis]]` subscriptions.
    pub redis_trigger: bool,
    /// Read `SPIN_VARIABLE_<NAME>` from the environment (Spin does).
    pub env_variables: bool,
    /// The engine profile: [`Optimization::Fast`] for tests,
    /// [`Optimization::Spin`] for Spin's own wasmtime configuration.
    pub optimization: Optimization,
    /// Where component stdout and stderr go: inherited (the default), or as
    /// `spin up` writes them ([`ComponentStdio::Spin`]).
    pub stdio: ComponentStdio,
    /// Run only the triggers of these components, like Spin's
    /// `spin up --component-id` (None: every component).
    pub components: Option<Vec<String>>,
    /// The Spin release line whose behaviour (bugs included) the host
    /// imitates; see [`SpinCompat`]. Default: [`SpinCompat::from_env`]
    /// (`SPIN_COMPAT`, else 4.0).
    pub spin_compat: SpinCompat,
}

impl Default for AppConfig {
    /// `spin.toml` in the current directory, no runtime config, no explicit
    /// variables, `127.0.0.1:0`, both triggers, env variables on, fast
    /// compile, inherited stdio, the Spin line of `SPIN_COMPAT` (default 4.0).
    fn default() -> Self {
        Self {
            manifest: PathBuf::from("spin.toml"),
            runtime_config: None,
            variables: HashMap::new(),
            listen: "127.0.0.1:0".to_string(),
            http: true,
            redis_trigger: true,
            env_variables: true,
            optimization: Optimization::Fast,
            stdio: ComponentStdio::Inherit,
            components: None,
            spin_compat: SpinCompat::from_env(),
        }
    }
}

/// Why an [`App`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// `spin.toml` is unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// `runtime-config.toml` is unreadable or invalid.
    #[error(transparent)]
    RuntimeConfig(#[from] RuntimeConfigError),
    /// A variable could not be resolved (e.g. a required one is missing).
    #[error("variables: {0}")]
    Variables(#[from] VariableError),
    /// An `allowed_outbound_hosts` entry is invalid.
    #[error(transparent)]
    AllowedHosts(#[from] AllowedHostError),
    /// A route is invalid.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Something else about the app is inconsistent.
    #[error("{0}")]
    Config(String),
    /// A component failed to compile or link.
    #[error("wasm: {0:#}")]
    Wasm(anyhow::Error),
    /// The HTTP listener could not be bound.
    #[error("listening on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Redis trigger could not connect or subscribe.
    #[error("redis trigger: {0:#}")]
    RedisTrigger(anyhow::Error),
}

/// A running app. Dropping it stops everything (prefer [`App::shutdown`]).
pub struct App {
    local_addr: Option<SocketAddr>,
    base_url: Option<String>,
    routes: Vec<Route>,
    channels: Vec<(String, String, String)>,
    stop: watch::Sender<bool>,
    trigger_exit: watch::Receiver<Option<TriggerExit>>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<SharedServices>,
}

impl App {
    /// Loads the manifest, resolves variables, compiles (or reuses) the
    /// components the enabled triggers need, binds HTTP and subscribes to
    /// Redis. Returns once both are ready.
    pub async fn start(config: AppConfig) -> Result<App, HostError> {
        let mut manifest = Manifest::from_file(&config.manifest)?;
        if let Some(keep) = &config.components {
            // As Spin's `retain_components`: unknown ids are an error, and the
            // triggers of every other component are dropped.
            if let Some(unknown) = keep.iter().find(|id| !manifest.component.contains_key(*id)) {
                return Err(HostError::Config(format!(
                    "no component {unknown:?} in the manifest"
                )));
            }
            manifest
                .trigger
                .http
                .retain(|t| keep.contains(&t.component));
            manifest
                .trigger
                .redis
                .retain(|t| keep.contains(&t.component));
        }
        let runtime_config = match &config.runtime_config {
            Some(p) => RuntimeConfig::from_file(p)?,
            None => RuntimeConfig::default(),
        };
        let provider = Provider {
            explicit: config.variables.clone(),
            use_env: config.env_variables,
        };
        let app_vars = AppVariables::resolve(&manifest.declared_variables(), &provider)?;

        // Key-value labels: every label a component lists must be defined.
        let mut labels = BTreeMap::new();
        for (id, c) in &manifest.component {
            for label in &c.key_value_stores {
                let store = runtime_config.store(label).ok_or_else(|| {
                    HostError::Config(format!(
                        "component {id:?} uses key-value store {label:?}, which the runtime config does not define"
                    ))
                })?;
                labels.insert(label.clone(), store);
            }
        }
        if let ComponentStdio::Spin { log_dir, follow } = &config.stdio {
            // As Spin's `StdioLoggingExecutorHooks::configure_app`.
            if let Some(unknown) = follow
                .iter()
                .flatten()
                .find(|id| !manifest.component.contains_key(*id))
            {
                return Err(HostError::Config(format!(
                    "the component {unknown:?} given to --follow does not exist in the application"
                )));
            }
            if let Some(dir) = log_dir {
                std::fs::create_dir_all(dir).map_err(|e| {
                    HostError::Config(format!("Failed to create log dir {}: {e}", dir.display()))
                })?;
            }
        }
        let shared = Arc::new(SharedServices {
            kv: Stores::new(labels),
            pg: Pools::default(),
            spin_compat: config.spin_compat,
            spin_compat_violations: Default::default(),
            profile: config.optimization,
            stdio: config.stdio.clone(),
        });

        let mut contexts = HashMap::new();
        for (id, c) in &manifest.component {
            contexts.insert(
                id.clone(),
                Arc::new(ComponentContext {
                    id: id.clone(),
                    key_value_stores: c.key_value_stores.clone(),
                    allowed_hosts: AllowedHosts::parse(&c.allowed_outbound_hosts, &app_vars)?,
                    variables: ComponentVariables::render(id, &c.variables, &app_vars)?,
                    environment: c.environment.clone().into_iter().collect(),
                }),
            );
        }

        let router = Router::build(&manifest.trigger.http)?;
        // As `spin up`: the HTTP trigger runs (and listens) only when the app,
        // after `--component-id` filtering, has HTTP triggers.
        let serve_http = config.http && !manifest.trigger.http.is_empty();
        let mut needed: Vec<String> = Vec::new();
        if serve_http {
            needed.extend(router.routes().iter().map(|r| r.component.clone()));
        }
        if config.redis_trigger {
            needed.extend(manifest.trigger.redis.iter().map(|t| t.component.clone()));
        }
        needed.sort();
        needed.dedup();

        let engine = runtime::engine(config.optimization).clone();
        let linker = runtime::linker(&engine).map_err(HostError::Wasm)?;
        let mut compiled = HashMap::new();
        for id in &needed {
            let path = manifest.component_path(id).ok_or_else(|| {
                HostError::Config(format!("component {id:?} has no local source"))
            })?;
            let opt = config.optimization;
            let component = tokio::task::spawn_blocking(move || runtime::compile(&path, opt))
                .await
                .map_err(|e| HostError::Wasm(e.into()))?
                .map_err(HostError::Wasm)?;
            let pre = runtime::instantiate_pre(&linker, &component).map_err(HostError::Wasm)?;
            compiled.insert(id.clone(), pre);
        }

        let (stop, stop_rx) = watch::channel(false);
        let (exit_tx, trigger_exit) = watch::channel(None);
        let mut tasks = Vec::new();

        // Redis trigger first: it is the part that can fail to connect.
        let mut channels = Vec::new();
        if config.redis_trigger && !manifest.trigger.redis.is_empty() {
            let default_address = manifest
                .application
                .trigger
                .redis
                .as_ref()
                .map(|r| r.address.clone());
            let mut by_address: BTreeMap<String, BTreeMap<String, Vec<Arc<RedisComponent>>>> =
                BTreeMap::new();
            for t in &manifest.trigger.redis {
                let address_template = t
                    .address
                    .clone()
                    .or_else(|| default_address.clone())
                    .unwrap_or_default();
                let address = app_vars.render(&address_template)?;
                let channel = app_vars.render(&t.channel)?;
                let pre = compiled[&t.component].clone();
                let indices = GuestIndices::new(&pre).map_err(|e| {
                    HostError::Wasm(e.context(format!(
                        "component {:?} does not export fermyon:spin/inbound-redis",
                        t.component
                    )))
                })?;
                channels.push((address.clone(), channel.clone(), t.component.clone()));
                by_address
                    .entry(address)
                    .or_default()
                    .entry(channel)
                    .or_default()
                    .push(Arc::new(RedisComponent {
                        pre,
                        indices,
                        context: contexts[&t.component].clone(),
                    }));
            }
            let mut runs = Vec::new();
            for (address, channels) in by_address {
                let subscriber = Arc::new(Subscriber {
                    address,
                    channels,
                    engine: engine.clone(),
                    shared: shared.clone(),
                });
                let pubsub = subscriber
                    .connect()
                    .await
                    .map_err(HostError::RedisTrigger)?;
                runs.push(Box::pin(subscriber.run(pubsub)));
            }
            let stop_on_exit = stop.clone();
            let mut stop_rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let exit = tokio::select! {
                    (exit, _, _) = futures::future::select_all(runs) => exit,
                    _ = stop_rx.wait_for(|s| *s) => TriggerExit::Shutdown,
                };
                let _ = exit_tx.send(Some(exit));
                // Like `spin up`, the end of the Redis trigger ends the app.
                let _ = stop_on_exit.send(true);
            }));
        } else {
            // Keep the sender alive so `redis_trigger_finished` pends forever.
            tasks.push(tokio::spawn(async move {
                let mut stop_rx = stop_rx;
                let _ = stop_rx.wait_for(|s| *s).await;
                drop(exit_tx);
            }));
        }

        let routes = if serve_http {
            router.routes().to_vec()
        } else {
            Vec::new()
        };
        let mut local_addr = None;
        if serve_http {
            let listener = tokio::net::TcpListener::bind(&config.listen)
                .await
                .map_err(|source| HostError::Listen {
                    address: config.listen.clone(),
                    source,
                })?;
            local_addr = Some(listener.local_addr().map_err(|source| HostError::Listen {
                address: config.listen.clone(),
                source,
            })?);
            let mut components = HashMap::new();
            for route in router.routes() {
                if components.contains_key(&route.component) {
                    continue;
                }
                let pre =
                    wasmtime_wasi_http::bindings::ProxyPre::new(compiled[&route.component].clone())
                        .map_err(|e| {
                            HostError::Wasm(e.context(format!(
                                "component {:?} does not export wasi:http/incoming-handler",
                                route.component
                            )))
                        })?;
                components.insert(
                    route.component.clone(),
                    HttpComponent {
                        pre,
                        context: contexts[&route.component].clone(),
                    },
                );
            }
            let http_app = Arc::new(HttpApp {
                app_name: manifest.application.name.clone(),
                app_version: manifest.application.version.clone(),
                router,
                components,
                engine: engine.clone(),
                shared: shared.clone(),
            });
            tasks.push(tokio::spawn(crate::host::http::serve(
                listener,
                http_app,
                stop.subscribe(),
            )));
        }

        Ok(App {
            base_url: local_addr.map(|a| format!("http://{a}")),
            local_addr,
            routes,
            channels,
            stop,
            trigger_exit,
            tasks,
            shared,
        })
    }

    /// `http://127.0.0.1:<port>`.
    ///
    /// # Panics
    /// If the app was started without HTTP.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .expect("App::base_url: this App was started with http: false")
    }

    /// The bound HTTP address, if serving HTTP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The routes being served (empty without HTTP).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// `(address, channel, component)` for every Redis subscription.
    pub fn redis_channels(&self) -> &[(String, String, String)] {
        &self.channels
    }

    /// The app's Postgres pools, as its components' `open` uses them: tests
    /// leave on a pooled connection what a crashed instance would.
    pub fn postgres_pools(&self) -> &Pools {
        &self.shared.pg
    }

    /// The Spin line this app imitates.
    pub fn spin_compat(&self) -> SpinCompat {
        self.shared.spin_compat
    }

    /// Every statement this app's components sent that the imitated Spin
    /// would never have answered (under [`SpinCompat::V4_0`]: a `query`
    /// matching no rows, spinframework/spin#3671), in order. Each one also
    /// trapped its invocation and was logged at error level; a test should
    /// treat any entry as a failure.
    pub fn spin_compat_violations(&self) -> Vec<String> {
        self.shared.spin_compat_violations()
    }

    /// Resolves when the Redis trigger has ended: the subscriber connection
    /// dropped ([`TriggerExit::Disconnected`], after which the App also stops
    /// serving HTTP, as `spin up` exits) or the App was shut down. Never
    /// resolves for an App without a Redis trigger.
    pub async fn redis_trigger_finished(&self) -> TriggerExit {
        let mut rx = self.trigger_exit.clone();
        let exit = rx.wait_for(|e| e.is_some()).await.map(|e| e.clone());
        match exit {
            Ok(exit) => exit.unwrap_or(TriggerExit::Shutdown),
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops serving and unsubscribes; waits for the tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
