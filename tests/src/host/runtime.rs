//! The wasmtime side: the shared engine, the compiled-component cache, the
//! linker with every interface a Spin component may import, and the per-store
//! state ([`InstanceState`]) each fresh instance gets.
//!
//! Like Spin for spin-sdk 5.2 (WASI p2) components, every request or message
//! gets a new `Store` and a new instance from a pre-linked `InstancePre`;
//! nothing survives between invocations inside a component.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, OptLevel, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::{HttpResult, WasiHttpCtx, WasiHttpView};

use crate::host::allowed_hosts::AllowedHosts;
use crate::host::bindings;
use crate::host::compat::SpinCompat;
use crate::host::kv::Stores;
use crate::host::postgres::Pools;
use crate::host::variables::ComponentVariables;

/// How hard Cranelift optimises. Compiling is the slow part of starting an
/// app; tests want it fast, load tests want fast code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Optimization {
    /// `OptLevel::None`: quickest to compile (the default).
    #[default]
    Fast,
    /// `OptLevel::Speed`: what Spin uses; slower to compile.
    Speed,
}

/// The process-wide engine for an optimisation level. Components compiled by
/// one engine can only run on it, so Apps share engines (and the cache).
pub fn engine(opt: Optimization) -> &'static Engine {
    static FAST: OnceLock<Engine> = OnceLock::new();
    static SPEED: OnceLock<Engine> = OnceLock::new();
    let cell = match opt {
        Optimization::Fast => &FAST,
        Optimization::Speed => &SPEED,
    };
    cell.get_or_init(|| {
        let mut config = Config::new();
        config.async_support(true);
        config.wasm_component_model(true);
        config.cranelift_opt_level(match opt {
            Optimization::Fast => OptLevel::None,
            Optimization::Speed => OptLevel::Speed,
        });
        Engine::new(&config).expect("a default wasmtime configuration is valid")
    })
}

type CacheKey = (PathBuf, Option<SystemTime>, u64, Optimization);

/// Compiles a component once per (path, mtime, size, optimisation) for the
/// life of the process. Compiling takes seconds; tests start many Apps.
pub fn compile(path: &Path, opt: Optimization) -> anyhow::Result<Component> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Component>>> = OnceLock::new();
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("component {}: {e} (was it built?)", path.display()))?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let key = (canonical, meta.modified().ok(), meta.len(), opt);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let started = Instant::now();
    let component = Component::from_file(engine(opt), path)
        .map_err(|e| anyhow::anyhow!("compiling {}: {e:?}", path.display()))?;
    tracing::info!(
        path = %path.display(),
        ms = started.elapsed().as_millis() as u64,
        "compiled component"
    );
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, component.clone());
    Ok(component)
}

/// What the host knows about one component, shared by all its instances.
pub struct ComponentContext {
    /// The component id (`[component.<id>]`).
    pub id: String,
    /// Labels from `key_value_stores`.
    pub key_value_stores: Vec<String>,
    /// Parsed `allowed_outbound_hosts`.
    pub allowed_hosts: AllowedHosts,
    /// Rendered component variables.
    pub variables: ComponentVariables,
    /// `environment` entries, given to WASI.
    pub environment: Vec<(String, String)>,
}

/// Services shared by every instance of an app.
#[derive(Default)]
pub struct SharedServices {
    /// Key-value stores by label.
    pub kv: Stores,
    /// Postgres pools by address.
    pub pg: Pools,
    /// The Spin line whose behaviour the host imitates.
    pub spin_compat: SpinCompat,
    /// Statements the imitated Spin would never have answered, in order.
    pub spin_compat_violations: Mutex<Vec<String>>,
}

impl SharedServices {
    /// Records a statement the imitated Spin would never have answered.
    pub fn record_spin_compat_violation(&self, statement: String) {
        self.spin_compat_violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(statement);
    }

    /// The statements recorded so far.
    pub fn spin_compat_violations(&self) -> Vec<String> {
        self.spin_compat_violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The data of one `Store`: one instance handling one request or message.
pub struct InstanceState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) component: Arc<ComponentContext>,
    pub(crate) shared: Arc<SharedServices>,
}

impl InstanceState {
    /// Fresh state for one instance: stdout/stderr inherited (components log
    /// JSON lines to stdout), the component's environment, default clocks and
    /// randomness, TCP connects to allowed hosts only, no files, no arguments.
    pub fn new(component: Arc<ComponentContext>, shared: Arc<SharedServices>) -> Self {
        // WASI sockets: as Spin, a TCP connect must match a `tcp://` entry of
        // the component's `allowed_outbound_hosts`; binds and UDP are refused.
        let allowed = Arc::new(component.allowed_hosts.clone());
        let wasi = WasiCtx::builder()
            .inherit_stdout()
            .inherit_stderr()
            .envs(&component.environment)
            .inherit_network()
            .allow_ip_name_lookup(true)
            .socket_addr_check(move |addr, usage| {
                let allowed = allowed.clone();
                Box::pin(async move {
                    matches!(usage, wasmtime_wasi::sockets::SocketAddrUse::TcpConnect)
                        && allowed.allows("tcp", &addr.ip().to_string(), Some(addr.port()))
                })
            })
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            component,
            shared,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn ctx(&mut self) -> &mut WasiHttpCtx {
        &mut self.http
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Outbound HTTP is not offered: this project's components make none, and
    /// Spin refuses hosts missing from `allowed_outbound_hosts` the same way.
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::body::HyperOutgoingBody>,
        _config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        tracing::warn!(
            component = %self.component.id,
            uri = %request.uri(),
            "outbound HTTP refused: not supported by this host"
        );
        Err(wasmtime_wasi_http::bindings::http::types::ErrorCode::HttpRequestDenied.into())
    }
}

/// A linker with WASI p2, wasi:http and the Spin interfaces.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker)?;
    bindings::SpinHost::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// Pre-links a component. An import this host does not provide (llm,
/// sqlite, mysql, mqtt, outbound HTTP's older versions, …) fails here, naming
/// the import. (wasmtime 41's `define_unknown_imports_as_traps` is not used:
/// it clashes with the semver-matched WASI imports.)
pub fn instantiate_pre(
    linker: &Linker<InstanceState>,
    component: &Component,
) -> anyhow::Result<InstancePre<InstanceState>> {
    linker.instantiate_pre(component)
}

/// A new store for one invocation.
pub fn new_store(
    engine: &Engine,
    component: &Arc<ComponentContext>,
    shared: &Arc<SharedServices>,
) -> Store<InstanceState> {
    Store::new(
        engine,
        InstanceState::new(component.clone(), shared.clone()),
    )
}
