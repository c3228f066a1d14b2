//! The wasmtime side: the shared engines, the compiled-component cache, the
//! linker with every interface a Spin component may import, and the per-store
//! state ([`InstanceState`]) each fresh instance gets.
//!
//! Like Spin for spin-sdk 5.2 (WASI p2) components, every request or message
//! gets a new `Store` and a new instance from a pre-linked `InstancePre`;
//! nothing survives between invocations inside a component.
//!
//! # Execution profiles ([`Optimization`])
//!
//! - [`Optimization::Fast`] (the test suite's default): Cranelift
//!   `OptLevel::None` (compiles several times faster), wasmtime's on-demand
//!   allocator, no epoch interruption, no call hook, no resource limiter.
//! - [`Optimization::Spin`] (what `spin-host` serves with, as `spin up`
//!   would): the wasmtime configuration of the Spin CLI, read in Spin's source
//!   at tags v3.6.3 and v4.0.2 (identical there): `crates/core/src/lib.rs`
//!   (`Config::default`, `use_pooling_allocator_by_default`,
//!   `EngineBuilder::maybe_spawn_epoch_ticker`), `crates/core/src/store.rs`
//!   (`StoreBuilder::build`), `crates/factors-executor/src/lib.rs`
//!   (`CpuTimeCallHook`, on through the CLI's default `cpu-time-metrics`
//!   feature), `crates/trigger/src/cli.rs` and `cli/stdio.rs` (component
//!   stdio), `crates/factor-wasi/src/io.rs` (`PipedWriteStream`).
//!
//! Matched under [`Optimization::Spin`], on wasmtime 41:
//!
//! | Spin | here |
//! |---|---|
//! | `epoch_interruption(true)`; a ticker thread calls `increment_epoch` every 10 ms (`DEFAULT_EPOCH_TICK_INTERVAL`) while the engine lives | same ([`EPOCH_TICK_INTERVAL`]) |
//! | every store: `set_epoch_deadline(u64::MAX / 2)` (the HTTP and Redis triggers never set a shorter one) | same |
//! | every store: an async resource limiter (`StoreLimitsAsync`: no memory limit unless `max_instance_memory` is configured; counts the memory grown) | same, without a limit |
//! | every store: a call hook timing guest CPU on each host/guest transition (`cpu-time-metrics`), reported at drop as `tracing::trace!` histograms | same (the `call-hook` wasmtime feature); the trace events carry the same names |
//! | pooling allocator when `SPIN_WASMTIME_POOLING=1`, or unset and a 42-bit address-space probe (a static 64-bit memory of 2^42 bytes) succeeds; on-demand otherwise | same probe, same variable |
//! | pooling limits: `SPIN_MAX_INSTANCE_COUNT` (1000) and every `SPIN_WASMTIME_*` override; component instances, memories, stacks = N; tables 2N; core instances 4N; 100 000 table elements; 10 MiB instance sizes; 200 core instances, 64 tables, 32 memories per component; 2 tables, 2 memories per module; 4 GiB max memory; 2 MiB / 512 KiB kept resident | same values, same variables (all exist in wasmtime 41) |
//! | `wasm_component_model(true)`, `wasm_component_model_async(true)` | same (plus `async_support(true)`, which wasmtime 41 needs for the async API) |
//! | Cranelift `OptLevel::Speed` (wasmtime's default; Spin does not set it) | `OptLevel::Speed` |
//! | component stdout/stderr appended to `<log dir>/<component>_stdout.txt` / `_stderr.txt` (files opened per instance, `create + append`, and duplicated for the async path), each write copied to Spin's stderr unless `--quiet` (or not in `--follow`); without a log dir, both streams go to Spin's stderr | same, with [`ComponentStdio::Spin`] (the profile's stdio, chosen per app; `spin-host` always uses it) |
//!
//! Not matched, and why:
//!
//! - **The wasmtime line**: 41 here, 42 in Spin 3.6.3 and 44 in 4.0.2
//!   (see [`crate::host`]). Code generation and allocator internals may differ
//!   a little between lines.
//! - **Wasmtime's compilation cache** (`spin up` enables it unless
//!   `--disable-cache`): the `cache` feature would add crates to Cargo.lock.
//!   It changes start-up time only (a cached start skips Cranelift), never
//!   how the compiled code runs; here every start compiles (with
//!   `OptLevel::Speed`, 0.4–1.7 s per component of this app on a 2-core
//!   machine).
//! - **Wasmtime's other default features** (Spin builds wasmtime with its
//!   defaults: `gc`, `threads`, `stack-switching`, `profiling`, ...): with
//!   `gc` and `threads` compiled in, wasmtime also accepts the GC-types and
//!   threads proposals; the components use neither (nor anything else those
//!   features bring), so they compile to the same code. This host builds only
//!   the features it uses.
//! - **`max_instance_memory`** (runtime config / `--max-instance-memory`):
//!   not read; Spin's default is no limit, as here.
//! - **Per-instance factor state**: Spin builds the instance state of every
//!   factor it links (outbound HTTP and networking, LLM, SQLite, MQTT, ...)
//!   and runs each factor's hooks per request; this host builds only the
//!   state of what it implements. The two servers' per-request overheads
//!   therefore differ, which is why performance targets are ratios against a
//!   hello-world component served by the same server in the same run
//!   (`scripts/bench.sh`).
//! - **OpenTelemetry** (`spin_telemetry`: component output forwarded as OTel
//!   logs, traces and metrics exported): a no-op unless an OTel endpoint is
//!   configured; not reproduced.
//!
//! The [`ComponentStdio::Spin`] stream cannot fail an instance of the Redis
//! trigger: if a log file cannot be opened there, the host logs an error and
//! the instance writes to the host's stderr (Spin fails that invocation; the
//! HTTP trigger here does too, through [`try_new_store`]).

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{
    CallHook, Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    ResourceLimiterAsync, Store,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::{HttpResult, WasiHttpCtx, WasiHttpView};

use crate::host::allowed_hosts::AllowedHosts;
use crate::host::bindings;
use crate::host::compat::SpinCompat;
use crate::host::kv::Stores;
use crate::host::postgres::Pools;
use crate::host::variables::ComponentVariables;

/// The engine profile: how components are compiled and run. See the module
/// documentation for what [`Optimization::Spin`] matches of Spin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Optimization {
    /// `OptLevel::None`, on-demand allocation, no epochs, no call hook, no
    /// limiter: quickest to compile (the test suite's default).
    #[default]
    Fast,
    /// The Spin CLI's wasmtime configuration (`spin up`): pooling allocator
    /// (when the address-space probe allows it), epoch interruption with a
    /// 10 ms ticker, per-store deadline, limiter and CPU-time call hook,
    /// `OptLevel::Speed`. Slower to compile; what `spin-host` serves with.
    Spin,
}

/// Spin's `DEFAULT_EPOCH_TICK_INTERVAL`: how often the ticker thread of a
/// [`Optimization::Spin`] engine increments its epoch.
pub const EPOCH_TICK_INTERVAL: Duration = Duration::from_millis(10);

/// The process-wide engine of a profile. Components compiled by one engine
/// can only run on it, so Apps share engines (and the cache).
pub fn engine(opt: Optimization) -> &'static Engine {
    static FAST: OnceLock<Engine> = OnceLock::new();
    static SPIN: OnceLock<Engine> = OnceLock::new();
    match opt {
        Optimization::Fast => FAST.get_or_init(|| {
            let mut config = Config::new();
            config.async_support(true);
            config.wasm_component_model(true);
            config.cranelift_opt_level(OptLevel::None);
            Engine::new(&config).expect("a default wasmtime configuration is valid")
        }),
        Optimization::Spin => SPIN.get_or_init(|| {
            let engine = Engine::new(&spin_config())
                .expect("Spin's wasmtime configuration is valid on this host");
            spawn_epoch_ticker(&engine, EPOCH_TICK_INTERVAL);
            engine
        }),
    }
}

/// Whether the [`Optimization::Spin`] engine uses the pooling allocator
/// (`SPIN_WASMTIME_POOLING`, else the 42-bit probe), as Spin decides it.
pub fn spin_uses_pooling() -> bool {
    use_pooling_allocator_by_default()
}

/// Spin's `spin_core::Config::default()` (v3.6.3 = v4.0.2), on wasmtime 41.
fn spin_config() -> Config {
    const MB: u64 = 1 << 20;
    const GB: usize = 1 << 30;
    let mut inner = Config::new();
    // Wasmtime 41 needs this for the async API (Spin's wasmtime 42+ does not).
    inner.async_support(true);
    inner.epoch_interruption(true);
    inner.wasm_component_model(true);
    inner.wasm_component_model_async(true);
    // Spin leaves Cranelift at wasmtime's default, which is Speed.
    inner.cranelift_opt_level(OptLevel::Speed);
    // A diagnostic of this host only (Spin has none): with SPIN_HOST_PERFMAP
    // set, guest code is named in /tmp/perf-<pid>.map, so `perf report`
    // shows wasm functions (by name when the component keeps its name
    // section: CARGO_PROFILE_RELEASE_STRIP=false). It changes no behaviour.
    if std::env::var_os("SPIN_HOST_PERFMAP").is_some() {
        inner.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if use_pooling_allocator_by_default() {
        let max_instances = env("SPIN_MAX_INSTANCE_COUNT", 1_000);
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(env("SPIN_WASMTIME_INSTANCE_COUNT", max_instances))
            .total_memories(env("SPIN_WASMTIME_TOTAL_MEMORIES", max_instances))
            .total_tables(env("SPIN_WASMTIME_TOTAL_TABLES", 2 * max_instances))
            .total_stacks(env("SPIN_WASMTIME_TOTAL_STACKS", max_instances))
            .total_core_instances(env("SPIN_WASMTIME_TOTAL_CORE_INSTANCES", 4 * max_instances))
            .table_elements(env("SPIN_WASMTIME_INSTANCE_TABLE_ELEMENTS", 100_000))
            .max_component_instance_size(env("SPIN_WASMTIME_INSTANCE_SIZE", 10 * MB) as usize)
            .max_core_instance_size(env("SPIN_WASMTIME_CORE_INSTANCE_SIZE", 10 * MB) as usize)
            .max_core_instances_per_component(env("SPIN_WASMTIME_CORE_INSTANCE_COUNT", 200))
            .max_tables_per_component(env("SPIN_WASMTIME_INSTANCE_TABLES", 64))
            .max_memories_per_component(env("SPIN_WASMTIME_INSTANCE_MEMORIES", 32))
            .max_tables_per_module(env("SPIN_WASMTIME_MAX_TABLES_PER_MODULE", 2))
            .max_memories_per_module(env("SPIN_WASMTIME_MAX_MEMORIES_PER_MODULE", 2))
            .max_memory_size(4 * GB)
            .linear_memory_keep_resident(
                env("SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT", 2 * MB) as usize
            )
            .table_keep_resident(env("SPIN_WASMTIME_TABLE_KEEP_RESIDENT", MB / 2) as usize);
        inner.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    return inner;

    /// Spin's `env` helper: the variable parsed, else the default; a value
    /// that does not parse is fatal, as in Spin.
    fn env<T>(name: &str, default: T) -> T
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match std::env::var(name) {
            Ok(val) => val
                .parse()
                .unwrap_or_else(|e| panic!("failed to parse env var `{name}={val}`: {e}")),
            Err(_) => default,
        }
    }
}

/// Spin's `use_pooling_allocator_by_default`: `SPIN_WASMTIME_POOLING=1|0`
/// decides; otherwise pooling is used when 42 bits of address space can be
/// reserved (1000 memories of about 6 GiB of reservation each).
fn use_pooling_allocator_by_default() -> bool {
    static USE_POOLING: OnceLock<bool> = OnceLock::new();
    const BITS_TO_TEST: u32 = 42;
    *USE_POOLING.get_or_init(|| {
        match std::env::var("SPIN_WASMTIME_POOLING") {
            Ok(s) if s == "1" => return true,
            Ok(s) if s == "0" => return false,
            Ok(s) => panic!("SPIN_WASMTIME_POOLING={s} not supported, only 1/0 supported"),
            Err(_) => {}
        }
        let mut config = Config::new();
        config.wasm_memory64(true);
        config.memory_reservation(1 << BITS_TO_TEST);
        match Engine::new(&config) {
            Ok(engine) => {
                let mut store = Store::new(&engine, ());
                // The maximum is in 64 KiB wasm pages.
                let ty = wasmtime::MemoryType::new64(0, Some(1 << (BITS_TO_TEST - 16)));
                wasmtime::Memory::new(&mut store, ty).is_ok()
            }
            Err(_) => {
                tracing::debug!(
                    "unable to create an engine to test the pooling allocator, disabling pooling allocation"
                );
                false
            }
        }
    })
}

/// Spin's `EngineBuilder::maybe_spawn_epoch_ticker`: a thread that holds a
/// weak reference to the engine and increments its epoch every `interval`
/// until the engine is gone.
fn spawn_epoch_ticker(engine: &Engine, interval: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(engine) = weak.upgrade() else {
                break;
            };
            engine.increment_epoch();
        })
        .expect("spawning the epoch ticker thread");
}

type CacheKey = (PathBuf, Option<SystemTime>, u64, Optimization);

/// Compiles a component once per (path, mtime, size, profile) for the life
/// of the process. Compiling takes seconds; tests start many Apps.
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
        profile = ?opt,
        ms = started.elapsed().as_millis() as u64,
        "compiled component"
    );
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, component.clone());
    Ok(component)
}

/// Where component stdout and stderr go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ComponentStdio {
    /// The host process's stdout and stderr (the test suite's default).
    #[default]
    Inherit,
    /// As `spin up` (`crates/trigger/src/cli/stdio.rs`): with a `log_dir`,
    /// every instance opens `<log_dir>/<component>_stdout.txt` and
    /// `_stderr.txt` in append mode (creating them) and writes there,
    /// copying each write to the host's stderr when the component is
    /// followed; without a `log_dir` (Spin's `--log-dir ""`), both streams
    /// go to the host's stderr.
    Spin {
        /// The log directory (Spin's default: `.spin/logs` next to
        /// `spin.toml`); it must exist ([`crate::host::App::start`] creates it).
        log_dir: Option<PathBuf>,
        /// Components whose output is copied to stderr: `None` is every
        /// component (Spin's default), `Some(empty)` none (`--quiet`),
        /// otherwise those named (`--follow`).
        follow: Option<BTreeSet<String>>,
    },
}

impl ComponentStdio {
    /// The log file of a component's stream (`stdout` or `stderr`), as Spin
    /// names it: `<log_dir>/<component>_<stream>.txt`.
    pub fn log_path(&self, component_id: &str, stream: &str) -> Option<PathBuf> {
        match self {
            ComponentStdio::Spin {
                log_dir: Some(dir), ..
            } => Some(dir.join(format!("{}_{stream}.txt", sanitize(component_id)))),
            _ => None,
        }
    }

    fn follows(&self, component_id: &str) -> bool {
        match self {
            ComponentStdio::Spin { follow: None, .. } => true,
            ComponentStdio::Spin {
                follow: Some(ids), ..
            } => ids.contains(component_id),
            ComponentStdio::Inherit => true,
        }
    }
}

/// What Spin's `sanitize_filename::sanitize` does to a component id (ids are
/// kebab-case, so in practice nothing): drops characters a file name cannot
/// hold.
fn sanitize(id: &str) -> String {
    id.chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '/' | '\\' | '?' | '<' | '>' | ':' | '*' | '|' | '"')
        })
        .collect()
}

/// Spin's `ComponentStdioWriter`: a log file (with a copy to the host's
/// stderr when followed), or the host's stderr alone.
enum ComponentStdioWriter {
    Stderr,
    File {
        file: std::fs::File,
        /// Spin opens a second, async handle on the file (a `dup`) for its
        /// `AsyncWrite` path, which its p2 streams never use; kept so an
        /// instance makes the same system calls.
        _async_file: tokio::fs::File,
        follow: bool,
    },
}

impl ComponentStdioWriter {
    fn open(log_path: Option<&Path>, follow: bool) -> std::io::Result<Self> {
        let Some(path) = log_path else {
            return Ok(Self::Stderr);
        };
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("Failed to open log file {}: {e}", path.display()),
                )
            })?;
        let async_file = tokio::fs::File::from_std(file.try_clone()?);
        Ok(Self::File {
            file,
            _async_file: async_file,
            follow,
        })
    }
}

impl std::io::Write for ComponentStdioWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ComponentStdioWriter::Stderr => {
                std::io::stderr().write_all(buf)?;
                Ok(buf.len())
            }
            ComponentStdioWriter::File { file, follow, .. } => {
                let written = file.write(buf)?;
                if *follow {
                    std::io::stderr().write_all(&buf[..written])?;
                }
                Ok(written)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ComponentStdioWriter::Stderr => std::io::stderr().flush(),
            ComponentStdioWriter::File { file, follow, .. } => {
                file.flush()?;
                if *follow {
                    std::io::stderr().flush()?;
                }
                Ok(())
            }
        }
    }
}

/// Spin's `PipedWriteStream` (`crates/factor-wasi/src/io.rs`): a shareable,
/// synchronous WASI output stream over a writer.
#[derive(Clone)]
struct PipedWriteStream(Arc<Mutex<ComponentStdioWriter>>);

impl PipedWriteStream {
    fn new(writer: ComponentStdioWriter) -> Self {
        Self(Arc::new(Mutex::new(writer)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ComponentStdioWriter> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OutputStream for PipedWriteStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.lock()
            .write_all(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(anyhow::Error::from(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.lock()
            .flush()
            .map_err(|e| StreamError::LastOperationFailed(anyhow::Error::from(e)))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1024 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PipedWriteStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for PipedWriteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.lock().write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.lock().flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for PipedWriteStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PipedWriteStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Spin's `StoreLimitsAsync` without a memory limit (Spin sets one only
/// with `max_instance_memory`): allows every growth and counts the memory
/// grown.
#[derive(Debug, Default)]
pub(crate) struct StoreLimits {
    memory_consumed: u64,
}

#[wasmtime_wasi::async_trait]
impl ResourceLimiterAsync for StoreLimits {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.memory_consumed =
            (self.memory_consumed as i64 + (desired as i64 - current as i64)) as u64;
        Ok(true)
    }

    async fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Spin's per-instance CPU-time accounting (`CpuTimeCallHook`).
#[derive(Debug, Default)]
pub(crate) struct CpuTime {
    last_entry: Option<Instant>,
    elapsed: Duration,
}

impl CpuTime {
    fn on_call(&mut self, hook: CallHook) {
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => {
                self.last_entry = Some(Instant::now());
            }
            CallHook::ReturningFromWasm | CallHook::CallingHost => {
                if let Some(entry) = self.last_entry.take() {
                    self.elapsed += entry.elapsed();
                }
            }
        }
    }
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
    /// The engine profile the app's components were compiled with; under
    /// [`Optimization::Spin`] every store gets Spin's deadline, limiter and
    /// call hook ([`new_store`]).
    pub profile: Optimization,
    /// Where component stdout and stderr go.
    pub stdio: ComponentStdio,
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
    /// Spin's store limiter (installed under [`Optimization::Spin`]).
    pub(crate) limits: StoreLimits,
    /// Spin's CPU-time accounting (the call hook, under [`Optimization::Spin`]).
    pub(crate) cpu_time: CpuTime,
}

impl InstanceState {
    /// Fresh state for one instance: stdout/stderr as `shared.stdio` says
    /// (components log JSON lines to stdout), the component's environment,
    /// default clocks and randomness, TCP connects to allowed hosts only, no
    /// files, no arguments. A log file that cannot be opened is logged and
    /// replaced by the host's stderr (see [`InstanceState::try_new`]).
    pub fn new(component: Arc<ComponentContext>, shared: Arc<SharedServices>) -> Self {
        match Self::try_new(component.clone(), shared.clone()) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(component = %component.id, "{e}; writing its output to stderr");
                Self::build(component, shared, |b| {
                    b.stdout(PipedWriteStream::new(ComponentStdioWriter::Stderr));
                    b.stderr(PipedWriteStream::new(ComponentStdioWriter::Stderr));
                })
            }
        }
    }

    /// As [`InstanceState::new`], but failing, as Spin fails the
    /// invocation, when a log file of [`ComponentStdio::Spin`] cannot be
    /// opened.
    pub fn try_new(
        component: Arc<ComponentContext>,
        shared: Arc<SharedServices>,
    ) -> std::io::Result<Self> {
        let stdio = match &shared.stdio {
            ComponentStdio::Inherit => None,
            spin @ ComponentStdio::Spin { .. } => {
                let follow = spin.follows(&component.id);
                let out = ComponentStdioWriter::open(
                    spin.log_path(&component.id, "stdout").as_deref(),
                    follow,
                )?;
                let err = ComponentStdioWriter::open(
                    spin.log_path(&component.id, "stderr").as_deref(),
                    follow,
                )?;
                Some((PipedWriteStream::new(out), PipedWriteStream::new(err)))
            }
        };
        Ok(Self::build(component, shared, move |b| match stdio {
            None => {
                b.inherit_stdout().inherit_stderr();
            }
            Some((out, err)) => {
                b.stdout(out).stderr(err);
            }
        }))
    }

    fn build(
        component: Arc<ComponentContext>,
        shared: Arc<SharedServices>,
        stdio: impl FnOnce(&mut wasmtime_wasi::WasiCtxBuilder),
    ) -> Self {
        let mut builder = WasiCtx::builder();
        stdio(&mut builder);
        // WASI sockets: as Spin, a TCP connect must match a `tcp://` entry of
        // the component's `allowed_outbound_hosts`; binds and UDP are refused.
        let allowed = Arc::new(component.allowed_hosts.clone());
        let wasi = builder
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
            limits: StoreLimits::default(),
            cpu_time: CpuTime::default(),
        }
    }
}

impl Drop for InstanceState {
    /// Spin's `InstanceState` drop: the component's CPU time and memory as
    /// `tracing` histogram events (a no-op unless trace level is enabled).
    fn drop(&mut self) {
        if self.shared.profile == Optimization::Spin {
            tracing::trace!(
                histogram.spin.component_cpu_time = self.cpu_time.elapsed.as_secs_f64(),
                component_id = %self.component.id,
                unit = "s"
            );
            tracing::trace!(
                histogram.spin.component_memory_used = self.limits.memory_consumed,
                component_id = %self.component.id,
                unit = "By"
            );
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

/// A new store for one invocation. Under [`Optimization::Spin`] it gets what
/// Spin's `StoreBuilder::build` and `FactorsInstanceBuilder::instantiate`
/// give every store: the async limiter, an epoch deadline of `u64::MAX / 2`
/// ticks and the CPU-time call hook.
pub fn new_store(
    engine: &Engine,
    component: &Arc<ComponentContext>,
    shared: &Arc<SharedServices>,
) -> Store<InstanceState> {
    store_for(
        engine,
        InstanceState::new(component.clone(), shared.clone()),
    )
}

/// As [`new_store`], failing (as Spin fails the request) when a log file of
/// [`ComponentStdio::Spin`] cannot be opened.
pub fn try_new_store(
    engine: &Engine,
    component: &Arc<ComponentContext>,
    shared: &Arc<SharedServices>,
) -> anyhow::Result<Store<InstanceState>> {
    Ok(store_for(
        engine,
        InstanceState::try_new(component.clone(), shared.clone())?,
    ))
}

fn store_for(engine: &Engine, state: InstanceState) -> Store<InstanceState> {
    let spin = state.shared.profile == Optimization::Spin;
    let mut store = Store::new(engine, state);
    if spin {
        store.limiter_async(|state| &mut state.limits);
        // With epoch interruption on, a store needs a deadline or it traps at
        // once; Spin's is "practically forever".
        store.set_epoch_deadline(u64::MAX / 2);
        store.call_hook(|mut store, hook| {
            store.data_mut().cpu_time.on_call(hook);
            Ok(())
        });
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::variables::AppVariables;

    fn context(id: &str) -> Arc<ComponentContext> {
        Arc::new(ComponentContext {
            id: id.into(),
            key_value_stores: vec![],
            allowed_hosts: AllowedHosts::parse(&[], &AppVariables::default()).unwrap(),
            variables: ComponentVariables::default(),
            environment: vec![],
        })
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "e2e-runtime-{name}-{}-{:?}",
            std::process::id(),
            SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A component whose `grow` export grows its memory by one page.
    const GROW: &str = r#"(component
        (core module $m
            (memory (export "mem") 1)
            (func (export "grow") (result i32) (memory.grow (i32.const 1))))
        (core instance $i (instantiate $m))
        (func (export "grow") (result s32) (canon lift (core func $i "grow"))))"#;

    #[tokio::test]
    async fn the_spin_profile_runs_a_component_with_spins_store_settings() {
        let engine = engine(Optimization::Spin);
        let component = Component::new(engine, GROW).unwrap();
        let linker = Linker::<InstanceState>::new(engine);
        let shared = Arc::new(SharedServices {
            profile: Optimization::Spin,
            ..SharedServices::default()
        });
        // Without the u64::MAX / 2 deadline, epoch interruption would trap
        // the first call at once.
        let mut store = new_store(engine, &context("grow"), &shared);
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .unwrap();
        let grow = instance
            .get_typed_func::<(), (i32,)>(&mut store, "grow")
            .unwrap();
        let (previous_pages,) = grow.call_async(&mut store, ()).await.unwrap();
        grow.post_return_async(&mut store).await.unwrap();
        assert_eq!(previous_pages, 1);
        // The limiter saw the initial page and the grown one; the call hook
        // timed the guest.
        assert_eq!(store.data().limits.memory_consumed, 2 * 65536);
        assert!(store.data().cpu_time.elapsed > Duration::ZERO);
        // Still running after ticks of the 10 ms epoch ticker.
        tokio::time::sleep(3 * EPOCH_TICK_INTERVAL).await;
        grow.call_async(&mut store, ()).await.unwrap();
        grow.post_return_async(&mut store).await.unwrap();
    }

    #[test]
    fn spin_stdio_appends_each_instance_to_the_components_log_files() {
        let dir = scratch("stdio");
        let stdio = ComponentStdio::Spin {
            log_dir: Some(dir.clone()),
            // Quiet, so the test's stderr stays clean.
            follow: Some(BTreeSet::new()),
        };
        let path = stdio.log_path("health", "stdout").unwrap();
        assert_eq!(path, dir.join("health_stdout.txt"));
        for line in ["first\n", "second\n"] {
            // One instance each, as Spin opens the files per instance.
            let writer = ComponentStdioWriter::open(Some(&path), stdio.follows("health")).unwrap();
            let mut stream = PipedWriteStream::new(writer).p2_stream();
            assert!(stream.check_write().unwrap() >= line.len());
            stream.write(bytes::Bytes::from(line)).unwrap();
            stream.flush().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spin_stdio_follows_every_component_unless_told_otherwise() {
        let all = ComponentStdio::Spin {
            log_dir: None,
            follow: None,
        };
        assert!(all.follows("health"));
        assert_eq!(all.log_path("health", "stdout"), None);
        let some = ComponentStdio::Spin {
            log_dir: None,
            follow: Some(["scorer".to_string()].into()),
        };
        assert!(some.follows("scorer"));
        assert!(!some.follows("health"));
        assert_eq!(sanitize("a/b:c"), "abc");
    }

    #[test]
    fn an_instance_whose_log_file_cannot_be_opened_fails_as_in_spin() {
        let missing = scratch("missing").join("no-such-dir");
        let shared = Arc::new(SharedServices {
            stdio: ComponentStdio::Spin {
                log_dir: Some(missing),
                follow: None,
            },
            ..SharedServices::default()
        });
        let err = InstanceState::try_new(context("health"), shared.clone())
            .err()
            .expect("the log file cannot be created");
        assert!(
            err.to_string().starts_with("Failed to open log file"),
            "{err}"
        );
        // The infallible constructor (the Redis trigger's) falls back to stderr.
        let _ = InstanceState::new(context("health"), shared);
    }
}
