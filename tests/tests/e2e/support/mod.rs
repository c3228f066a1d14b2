//! What every end-to-end test stands on: an [`Env`] (the built components run
//! by the project's wasmtime host from `spin.toml`, exactly as deployed: the
//! HTTP routes in one app, the scorer in another, supervised, and a doorbell
//! ticker), typed helpers for each route, tokens, and direct database reads
//! for assertions; [`processes`] runs the app as separate `spin-host`
//! processes instead, as a cluster would.
//!
//! The app runs on one [`Server`] for the whole run: the project's host
//! imitating the Spin line of `SPIN_COMPAT` (3.6, 4.0 — the default — or
//! 4.1; see `e2e::host::SpinCompat`), or a real Spin CLI named by `SPIN_BIN`
//! (then every component runs in real `spin up` processes: the HTTP routes in
//! one, each scorer in its own, supervised). Under the host, a statement the
//! imitated line would never answer (Spin 4.0.0–4.0.2's hang on a Postgres
//! query without rows) traps its invocation and fails the test that caused
//! it: every request, and every wait for the scorer, checks the
//! environment's violations. Under a real Spin such a request really hangs,
//! and the client's timeout ([`REQUEST_TIMEOUT`]) fails the test instead.
//! Tests that need a hook inside the runtime are named `…_on_the_host` and
//! skipped under a real Spin (`scripts/test.sh` passes `--skip _on_the_host`).
//!
//! Every environment has a database of its own (`e2e_<uuid>`), dropped with
//! it, even when its test panics; the shared one's when the test binary
//! exits (only a run killed by a signal leaves its databases behind).
//!
//! Database URLs handed to components carry `sslmode=disable` (unless
//! `DATABASE_URL` names an `sslmode`): the test servers have self-signed
//! certificates, which Spin (and so the host) refuses for any other mode.

pub mod processes;
pub mod servers;

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use e2e::host::db_url;
use e2e::host::{App, AppConfig};
use migrator::testing::ScratchDatabase;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use processes::{HostProcess, HostSpec, Ready};
use servers::PrivateRedis;

/// The longest any request of the suite may take: past it the test fails
/// (under a real Spin, a statement it never answers hangs the request).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What serves the app in this run.
#[derive(Debug, Clone)]
pub enum Server {
    /// The project's wasmtime host, imitating a Spin line.
    Host(e2e::host::SpinCompat),
    /// A real Spin CLI (`SPIN_BIN`), and the version it reports.
    Spin { bin: PathBuf, version: String },
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Server::Host(compat) => write!(f, "the test host imitating Spin {compat}"),
            Server::Spin { bin, version } => write!(f, "{version} ({})", bin.display()),
        }
    }
}

impl Server {
    pub fn is_real_spin(&self) -> bool {
        matches!(self, Server::Spin { .. })
    }
}

/// The server of this run: the real Spin CLI at `SPIN_BIN` when it is set
/// (and non-empty), else the project's host in the `SPIN_COMPAT` mode.
/// Printed once, so every run's output says what served it.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = match std::env::var_os("SPIN_BIN").filter(|v| !v.is_empty()) {
            Some(bin) => {
                let bin = PathBuf::from(bin);
                let out = std::process::Command::new(&bin)
                    .arg("--version")
                    .output()
                    .unwrap_or_else(|e| panic!("SPIN_BIN={}: {e}", bin.display()));
                assert!(
                    out.status.success(),
                    "SPIN_BIN={}: --version failed",
                    bin.display()
                );
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                Server::Spin { bin, version }
            }
            None => Server::Host(e2e::host::SpinCompat::from_env()),
        };
        // Past the test harness's capture (which takes only the print macros):
        // every run says what served it.
        let _ = writeln!(std::io::stderr(), "e2e: the app runs on {server}");
        server
    })
}

/// Panics unless the app runs on the project's host: for helpers that reach
/// inside the runtime (a test using one is named `…_on_the_host`).
#[track_caller]
pub fn require_host(what: &str) {
    assert!(
        !server().is_real_spin(),
        "{what} needs the project's host: name the test `…_on_the_host` (skipped under a real Spin)"
    );
}

/// The suite's HTTP client: bounded in time, so no request waits forever.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// The secret the suite's tokens are signed with.
pub const SECRET: &str = "e2e-secret-not-for-production";
/// The bearer token of `GET /metrics` in every environment (`metrics_token`).
pub const METRICS_TOKEN: &str = "e2e-metrics-token";
/// Scorer processes per environment.
pub const SCORERS: usize = 2;
/// How often the ticker rings the scorer (scripts/scorer.sh does the same).
pub const TICK: Duration = Duration::from_millis(300);

/// The one runtime every test runs on, so the shared [`Env`] outlives tests.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Runs a test body on the shared runtime.
pub fn run<F: Future<Output = ()>>(test: F) {
    runtime().block_on(test)
}

/// The environment [`shared`] hands out (a static: never dropped).
static SHARED: tokio::sync::OnceCell<Env> = tokio::sync::OnceCell::const_new();

/// The environment most tests share: the shared Postgres (a fresh database)
/// and a private Redis. Tests keep apart by using their own users. Its
/// database is dropped when the test binary exits.
pub async fn shared() -> &'static Env {
    SHARED
        .get_or_init(|| async {
            let env = isolated().await;
            unsafe {
                libc::atexit(drop_shared_database);
            }
            env
        })
        .await
}

/// Stops the shared environment's scorers and drops its database; run at
/// exit (a panic here would abort, so a failure is only reported).
extern "C" fn drop_shared_database() {
    let Some(env) = SHARED.get() else {
        return;
    };
    let _ = env.stop.send(true);
    let database = env
        .database
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(Err(e)) = database.map(|d| d.scratch.drop_now()) {
        eprintln!("the shared environment's database outlives the run: {e}");
    }
}

/// An environment of its own (a fresh database on the shared Postgres, a
/// private Redis), for tests that change the agent catalogue: every other
/// test's cached candidates would otherwise become misses under it.
pub async fn isolated() -> Env {
    isolated_after(HashMap::new(), |_| async {}).await
}

/// As [`isolated`], with `extra` variables, once `prepare` has run against
/// the private Redis (its URL) before any component of the app starts: for
/// what producers do while no scorer runs.
pub async fn isolated_after<F, Fut>(extra: HashMap<String, String>, prepare: F) -> Env
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let redis = PrivateRedis::start();
    prepare(redis.url()).await;
    let database = fresh_database(&admin_database_url()).await;
    Env::start(
        database,
        redis.url(),
        extra,
        Servers {
            redis: Some(redis),
            postgres: None,
            kv: None,
        },
    )
    .await
}

/// As [`isolated`], with the key-value store on a private Redis of its own
/// (`servers.kv`), for tests that pause or stop it alone.
pub async fn isolated_with_own_kv() -> Env {
    isolated_with(Some(PrivateRedis::start()), true).await
}

/// As [`isolated`], without the ticker: only doorbells wake the scorers.
pub async fn isolated_without_ticker() -> Env {
    isolated_with(None, false).await
}

/// A fresh database, a private Redis, and `kv` for the key-value store when
/// given; the ticker runs when `ticker`.
async fn isolated_with(kv: Option<PrivateRedis>, ticker: bool) -> Env {
    let redis = PrivateRedis::start();
    let database = fresh_database(&admin_database_url()).await;
    Env::start_with(
        database,
        redis.url(),
        HashMap::new(),
        Servers {
            redis: Some(redis),
            postgres: None,
            kv,
        },
        ticker,
    )
    .await
}

/// `DATABASE_URL` (or the machine's Postgres), with `sslmode=disable` added
/// when it names no `sslmode`.
pub fn admin_database_url() -> String {
    db_url::plain_unless_set(
        &std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string()),
    )
}

/// An environment's database: migrated, seeded, and dropped with it.
pub struct Database {
    /// Its URL, as components get it.
    pub url: String,
    /// Drops the database when dropped.
    scratch: ScratchDatabase,
}

/// Creates a migrated and seeded database `e2e_<uuid>` next to
/// `admin_url`'s (dropped again if that fails); its URL keeps `admin_url`'s
/// user and parameters, with `sslmode=disable` added when they name no
/// `sslmode`.
pub async fn fresh_database(admin_url: &str) -> Database {
    let scratch = ScratchDatabase::create(admin_url, "e2e").await;
    let url = db_url::plain_unless_set(&db_url::with_database(admin_url, scratch.name()));
    let mut conn = migrator::connect(&url, Duration::from_secs(10))
        .await
        .unwrap();
    migrator::up(&mut conn).await.unwrap();
    migrator::seed(&mut conn).await.unwrap();
    Database { url, scratch }
}

/// The servers an env owns (dropped with it).
pub struct Servers {
    pub redis: Option<PrivateRedis>,
    pub postgres: Option<servers::PrivatePostgres>,
    /// A Redis of its own for the key-value store (the runtime config and
    /// `kv_host`); without it the store is database 1 of the env's Redis.
    pub kv: Option<PrivateRedis>,
}

/// A running deployment of the app.
pub struct Env {
    pub base_url: String,
    pub db: PgPool,
    /// The database the components use (for tests that start an app beside).
    pub db_url: String,
    /// The Redis of the channel, the stream and the key-value store (db 1).
    pub redis_url: String,
    pub client: reqwest::Client,
    http: tokio::sync::Mutex<Option<HttpApp>>,
    stop: watch::Sender<bool>,
    pub scorer_restarts: Arc<std::sync::atomic::AtomicUsize>,
    /// Statements the imitated Spin line would never have answered, from
    /// the HTTP app and (copied as they appear) every scorer process.
    violations: Violations,
    /// The Spin line the host imitates (`SPIN_COMPAT`).
    pub spin_compat: e2e::host::SpinCompat,
    _dir: tempfile::TempDir,
    /// Dropped with the environment, before its servers (fields drop in
    /// order); taken at exit for the shared one.
    database: std::sync::Mutex<Option<Database>>,
    /// The servers an env owns (dropped with it).
    pub servers: tokio::sync::Mutex<Servers>,
}

/// Component output as `spin up` writes it, in `<dir>/logs-<name>` (where
/// a `spin up` process of that name writes its own).
fn logs_in(dir: &std::path::Path, name: &str) -> e2e::host::ComponentStdio {
    e2e::host::ComponentStdio::Spin {
        log_dir: Some(dir.join(format!("logs-{name}"))),
        follow: None,
    }
}

/// Where the scorers' supervisors copy their apps' violations.
type Violations = Arc<std::sync::Mutex<Vec<String>>>;

/// Builds the Spin components for wasm32-wasip2 into `<root>/target`, where
/// `spin.toml` finds them, once per test run: a plain `cargo test` then
/// always runs the components of the sources it was given (cargo rebuilds
/// only what changed).
pub fn ensure_components() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command
            .current_dir(&root)
            .args([
                "build",
                "--locked",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(root.join("target"));
        for entry in std::fs::read_dir(root.join("components")).unwrap() {
            command.arg("-p").arg(entry.unwrap().file_name());
        }
        let status = command.status().expect("cargo runs");
        assert!(
            status.success(),
            "building the components failed (is the wasm32-wasip2 target installed?)"
        );
    });
}

/// The workspace root (where `spin.toml` is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `host:port` of a URL, for the `*_host` variables of the allow-lists.
pub fn host_port(url: &str) -> String {
    db_url::host_port(url)
}

/// `url` with query parameter `key` set to `value` (e.g. `options`), encoded
/// as libpq and tokio-postgres read it.
pub fn with_db_param(url: &str, key: &str, value: &str) -> String {
    db_url::with_param(url, key, value)
}

impl Env {
    /// Starts the HTTP app, the supervised scorer and the ticker, with
    /// `extra` variables over the suite's defaults.
    pub async fn start(
        database: Database,
        redis_url: String,
        extra: HashMap<String, String>,
        servers: Servers,
    ) -> Env {
        Env::start_with(database, redis_url, extra, servers, true).await
    }

    /// As [`Env::start`]; without the ticker when `ticker` is false, so that
    /// only doorbells wake the scorers.
    pub async fn start_with(
        database: Database,
        redis_url: String,
        extra: HashMap<String, String>,
        servers: Servers,
        ticker: bool,
    ) -> Env {
        let db_url = database.url.clone();
        tokio::task::spawn_blocking(ensure_components)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let runtime_config = dir.path().join("runtime-config.toml");
        let kv_redis_url = servers.kv.as_ref().map_or(redis_url.clone(), |kv| kv.url());
        std::fs::write(
            &runtime_config,
            format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{kv_redis_url}/1\"\n"),
        )
        .unwrap();
        let mut variables: HashMap<String, String> = [
            ("db_url", db_url.clone()),
            ("db_host", host_port(&db_url)),
            ("redis_url", redis_url.clone()),
            ("redis_host", host_port(&redis_url)),
            // The key-value store's server (the runtime config above).
            ("kv_host", host_port(&kv_redis_url)),
            ("jwt_secret", SECRET.to_string()),
            ("metrics_token", METRICS_TOKEN.to_string()),
            ("retry_base_ms", "50".to_string()),
            ("redrive_pending_after_seconds", "30".to_string()),
            // Every suggest counted: the cache tests check the counters exactly.
            ("cache_count_every", "1".to_string()),
            // Every request counted: the request metrics are checked exactly.
            ("request_count_every", "1".to_string()),
            // The harness's ticker rings instead of the app's own, as
            // scripts/scorer.sh's does (the `plain` tests run the app's own).
            ("self_tick_ms", "0".to_string()),
            // The daily score cap off: the scoring tests check the formula's
            // exact sums (forty events for one user add up to 690 points);
            // `bounds` sets it.
            ("daily_score_cap", "0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        variables.extend(extra);
        let config = AppConfig {
            manifest: root().join("spin.toml"),
            runtime_config: Some(runtime_config),
            variables,
            listen: "127.0.0.1:0".into(),
            http: true,
            redis_trigger: false,
            env_variables: false,
            // As `spin up` writes component output (and copies it to
            // stderr): the tests read it (`Env::component_log`).
            stdio: logs_in(dir.path(), "http"),
            ..AppConfig::default()
        };
        let spin_compat = config.spin_compat;
        let http = HttpApp::start(&config, dir.path(), "http").await;
        let base_url = http.base_url();
        let (stop, stop_rx) = watch::channel(false);
        let scorer_restarts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let violations = Violations::default();
        // Two scorer processes, as two replicas of the deployment would run:
        // each receives every doorbell, so events are claimed concurrently.
        let scorer = AppConfig {
            http: false,
            redis_trigger: true,
            ..config
        };
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..SCORERS {
            let supervised = Supervised {
                config: AppConfig {
                    stdio: logs_in(dir.path(), &format!("scorer-{}", n + 1)),
                    ..scorer.clone()
                },
                name: format!("scorer-{}", n + 1),
                dir: dir.path().to_path_buf(),
                stop: stop_rx.clone(),
                restarts: scorer_restarts.clone(),
                started: started_tx.clone(),
                violations: violations.clone(),
            };
            if server().is_real_spin() {
                tokio::spawn(supervise_scorer_process(supervised));
            } else {
                tokio::spawn(supervise_scorer(supervised));
            }
        }
        // Ready when every scorer is subscribed, as a deployment is once its
        // scorer processes are up.
        for _ in 0..SCORERS {
            tokio::time::timeout(START_WITHIN, started.recv())
                .await
                .expect("the scorers start");
        }
        if ticker {
            tokio::spawn(self::ticker(redis_url.clone(), stop_rx));
        }
        let db = PgPoolOptions::new()
            .max_connections(8)
            .connect(&db_url)
            .await
            .unwrap();
        Env {
            base_url,
            db,
            db_url,
            redis_url,
            client: client(),
            http: tokio::sync::Mutex::new(Some(http)),
            stop,
            scorer_restarts,
            violations,
            spin_compat,
            _dir: dir,
            database: std::sync::Mutex::new(Some(database)),
            servers: tokio::sync::Mutex::new(servers),
        }
    }

    /// Everything a component wrote on stdout so far, in every process of
    /// the environment (the HTTP app, each scorer), one file after another:
    /// its JSON log lines.
    pub fn component_log(&self, component: &str) -> String {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self._dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs.iter()
            .filter(|d| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("logs-"))
            })
            .map(|d| {
                std::fs::read_to_string(d.join(format!("{component}_stdout.txt")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Every statement, so far, that the Spin line the host imitates would
    /// never have answered (HTTP app and scorers).
    pub async fn spin_compat_violations(&self) -> Vec<String> {
        let mut all = match self.http.lock().await.as_ref() {
            Some(app) => app.spin_compat_violations(),
            None => Vec::new(),
        };
        all.extend(
            self.violations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        all
    }

    /// Panics, listing them, when any component of this environment ran a
    /// statement the imitated Spin line would never have answered.
    pub async fn assert_no_spin_compat_violations(&self) {
        let violations = self.spin_compat_violations().await;
        assert!(
            violations.is_empty(),
            "under SPIN_COMPAT={}, Spin would have hung on: {violations:#?}",
            self.spin_compat
        );
    }

    /// A fully private deployment: its own Postgres cluster and Redis, for
    /// tests that stop, pause or restart them.
    pub async fn private(extra: HashMap<String, String>) -> Env {
        let postgres = tokio::task::spawn_blocking(servers::PrivatePostgres::start)
            .await
            .unwrap();
        let redis = PrivateRedis::start();
        let database = fresh_database(&postgres.url()).await;
        let redis_url = redis.url();
        Env::start(
            database,
            redis_url,
            extra,
            Servers {
                redis: Some(redis),
                postgres: Some(postgres),
                kv: None,
            },
        )
        .await
    }

    /// Runs `statements` on a connection of the HTTP app's own Postgres pool
    /// and puts it back as it is: what an instance that crashed mid-way
    /// leaves for the next request (Spin's pool does not roll back).
    pub async fn leave_on_a_pooled_connection(&self, statements: &str) {
        require_host("leaving a statement on a pooled connection");
        let http = self.http.lock().await;
        let Some(HttpApp::InProcess(app)) = http.as_ref() else {
            panic!("the HTTP app runs in this process");
        };
        let client = app
            .postgres_pools()
            .get(&self.db_url)
            .await
            .expect("a pooled connection");
        client.batch_execute(statements).await.unwrap();
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(app) = self.http.lock().await.take() {
            app.shutdown().await;
        }
        self.db.close().await;
    }

    /// A token signed with the suite's secret, valid for an hour.
    pub fn token(&self, sub: &str, role: &str) -> String {
        token(sub, role, SECRET, 3600)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let resp = request(&self.client, &self.base_url, method, path, token, body).await;
        self.assert_no_spin_compat_violations().await;
        resp
    }

    /// Sends raw bytes with chosen headers (for malformed requests).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Resp {
        let mut request = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{}", self.base_url, path),
        );
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let resp = Resp::read(request.body(body).send().await.expect("the app answers")).await;
        self.assert_no_spin_compat_violations().await;
        resp
    }

    pub async fn end_conversation(&self, token: &str, body: &Value) -> Resp {
        self.call("POST", "/api/v1/conversations/end", Some(token), Some(body))
            .await
    }

    pub async fn event(&self, token: &str, processing_id: &str) -> Resp {
        self.call(
            "GET",
            &format!("/api/v1/conversations/{processing_id}"),
            Some(token),
            None,
        )
        .await
    }

    pub async fn status(&self, token: &str, user_id: &str) -> Resp {
        self.call(
            "POST",
            "/api/v1/friendship/status",
            Some(token),
            Some(&json!({ "user_id": user_id })),
        )
        .await
    }

    pub async fn update(&self, token: &str, body: &Value) -> Resp {
        self.call("POST", "/api/v1/friendship/update", Some(token), Some(body))
            .await
    }

    pub async fn suggest(&self, token: &str, user_id: &str, context: Option<Value>) -> Resp {
        let mut body = json!({ "user_id": user_id });
        if let Some(context) = context {
            body["context"] = context;
        }
        self.call(
            "POST",
            "/api/v1/activities/suggest",
            Some(token),
            Some(&body),
        )
        .await
    }

    pub async fn create_mapping(&self, body: &Value) -> Resp {
        self.call(
            "POST",
            "/api/v1/agent-mappings",
            Some(&self.token("ops", "admin")),
            Some(body),
        )
        .await
    }

    pub async fn redrive(&self) -> Resp {
        self.call(
            "POST",
            "/api/v1/admin/events/redrive",
            Some(&self.token("ops", "admin")),
            None,
        )
        .await
    }

    pub async fn cache_stats(&self) -> Resp {
        self.call(
            "GET",
            "/api/v1/admin/cache/stats",
            Some(&self.token("ops", "admin")),
            None,
        )
        .await
    }

    /// Waits until an event reaches `status` (or panics after `within`).
    pub async fn wait_for_event(
        &self,
        processing_id: &str,
        status: &str,
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        let token = self.token("e2e-service", "service");
        loop {
            let resp = self.event(&token, processing_id).await;
            if resp.status == 200 && resp.json["status"] == status {
                return resp.json;
            }
            // (`event` checked the violations: a scorer that traps fails here.)
            assert!(
                Instant::now() < deadline,
                "event {processing_id} did not become {status}: last {resp:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no event of `user_id` is pending.
    pub async fn wait_until_settled(&self, user_id: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let pending: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM conversation_events WHERE user_id = $1 AND status = 'pending'",
            )
            .bind(user_id)
            .fetch_one(&self.db)
            .await
            .unwrap_or(1);
            if pending == 0 {
                return;
            }
            self.assert_no_spin_compat_violations().await;
            assert!(
                Instant::now() < deadline,
                "{pending} events of {user_id} still pending after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What a scorer supervisor needs: the scorer's configuration, where its
/// process (under a real Spin) writes, and what it reports to its [`Env`].
struct Supervised {
    config: AppConfig,
    name: String,
    dir: PathBuf,
    stop: watch::Receiver<bool>,
    restarts: Arc<std::sync::atomic::AtomicUsize>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
    violations: Violations,
}

/// Keeps a scorer running as scripts/scorer.sh does: started again whenever
/// its Redis trigger ends (or could not start). Copies the app's Spin-compat
/// violations into `violations` as they appear.
async fn supervise_scorer(s: Supervised) {
    let Supervised {
        config,
        mut stop,
        restarts,
        started,
        violations,
        ..
    } = s;
    loop {
        if *stop.borrow() {
            return;
        }
        match App::start(config.clone()).await {
            Ok(app) => {
                let _ = started.send(());
                let mut copied = 0;
                let trigger_ended = loop {
                    tokio::select! {
                        _ = app.redis_trigger_finished() => break true,
                        _ = async { let _ = stop.wait_for(|s| *s).await; } => break false,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {
                            copy_violations(&app, &mut copied, &violations);
                        }
                    }
                };
                copy_violations(&app, &mut copied, &violations);
                if trigger_ended {
                    restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                app.shutdown().await;
                if !trigger_ended {
                    return;
                }
            }
            Err(_) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            },
        }
    }
}

/// As [`supervise_scorer`], for a scorer that is a real `spin up` process
/// (`spin up --component-id scorer`, exactly scripts/scorer.sh's loop):
/// started again a moment after it exits, killed when the env stops.
async fn supervise_scorer_process(s: Supervised) {
    let Supervised {
        config,
        name,
        dir,
        mut stop,
        restarts,
        started,
        ..
    } = s;
    let spec = process_spec(
        &config,
        &name,
        vec!["scorer".to_string()],
        Ready::Subscribed,
    );
    loop {
        if *stop.borrow() {
            return;
        }
        let mut host = HostProcess::spawn(&spec, &dir);
        let ready = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                host.wait_ready(START_WITHIN)
            }))
        });
        if ready.is_ok() {
            let _ = started.send(());
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if !host.is_running() {
                        break;
                    }
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
        }
        restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
    }
}

/// How long a component process may take to start: the first start of a
/// build compiles every component (Spin caches the compiled code, so later
/// starts take well under a second).
pub const START_WITHIN: Duration = Duration::from_secs(180);

/// The process that runs `components` of `config`'s app (a real `spin up`
/// or a `spin-host`), with its variables on the command line.
fn process_spec(config: &AppConfig, name: &str, components: Vec<String>, ready: Ready) -> HostSpec {
    HostSpec {
        name: name.to_string(),
        manifest: config.manifest.clone(),
        runtime_config: config.runtime_config.clone(),
        components,
        variables: config
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        variables_in_env: false,
        spin_compat: config.spin_compat,
        ready,
    }
}

/// The HTTP components of `spin.toml` (those of its HTTP triggers).
pub fn http_components() -> Vec<String> {
    let manifest = e2e::host::manifest::Manifest::from_file(&root().join("spin.toml")).unwrap();
    let mut components: Vec<String> = manifest
        .trigger
        .http
        .iter()
        .map(|t| t.component.clone())
        .collect();
    components.sort();
    components.dedup();
    components
}

/// The HTTP side of an app: the host's, in this process, or a real
/// `spin up` process serving every HTTP component.
pub enum HttpApp {
    InProcess(App),
    /// The process, and the directory of its output when it owns one.
    Process {
        host: HostProcess,
        _dir: Option<tempfile::TempDir>,
    },
}

impl HttpApp {
    /// Starts `config`'s HTTP routes on the run's [`server`]; a process
    /// writes its output under `dir`.
    pub async fn start(config: &AppConfig, dir: &std::path::Path, name: &str) -> HttpApp {
        if !server().is_real_spin() {
            return HttpApp::InProcess(
                App::start(config.clone())
                    .await
                    .expect("the HTTP app starts"),
            );
        }
        let spec = process_spec(config, name, http_components(), Ready::Serving);
        let dir = dir.to_path_buf();
        // Spawned on a runtime worker thread, which lives as long as the
        // test binary (a process dies with the thread that spawned it).
        tokio::spawn(async move {
            let mut host = HostProcess::spawn(&spec, &dir);
            tokio::task::block_in_place(|| host.wait_ready(START_WITHIN));
            HttpApp::Process { host, _dir: None }
        })
        .await
        .expect("the HTTP process starts")
    }

    /// As [`HttpApp::start`], for an app on its own: a process's output
    /// goes to a directory of its own, removed with it.
    pub async fn start_alone(config: &AppConfig, name: &str) -> HttpApp {
        let dir = tempfile::tempdir().unwrap();
        match HttpApp::start(config, dir.path(), name).await {
            HttpApp::Process { host, .. } => HttpApp::Process {
                host,
                _dir: Some(dir),
            },
            app => app,
        }
    }

    pub fn base_url(&self) -> String {
        match self {
            HttpApp::InProcess(app) => app.base_url().to_string(),
            HttpApp::Process { host, .. } => host.base_url(),
        }
    }

    /// What the imitated Spin line would never have answered (none under
    /// a real Spin: there the request hangs, and times out).
    pub fn spin_compat_violations(&self) -> Vec<String> {
        match self {
            HttpApp::InProcess(app) => app.spin_compat_violations(),
            HttpApp::Process { host, .. } => host.spin_compat_violations(),
        }
    }

    pub async fn shutdown(self) {
        match self {
            HttpApp::InProcess(app) => app.shutdown().await,
            HttpApp::Process { mut host, .. } => host.kill(),
        }
    }
}

/// Copies the violations `app` recorded since the last call into `into`.
fn copy_violations(app: &App, copied: &mut usize, into: &Violations) {
    let seen = app.spin_compat_violations();
    if seen.len() > *copied {
        into.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(seen[*copied..].iter().cloned());
        *copied = seen.len();
    }
}

/// Rings the scorer's doorbell every [`TICK`] (scripts/scorer.sh's ticker).
async fn ticker(redis_url: String, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        let publish = async {
            let client = redis::Client::open(redis_url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PUBLISH")
                .arg("conversation-events")
                .arg(r#"{"kind":"tick"}"#)
                .query_async::<i64>(&mut conn)
                .await
                .ok()
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), publish).await;
    }
}

/// Sends a JSON request to an app at `base`.
pub async fn request(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut request = client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}{path}"),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    Resp::read(request.send().await.expect("the app answers")).await
}

/// Signs a token.
pub fn token(sub: &str, role: &str, secret: &str, ttl: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + ttl;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": sub, "role": role, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A user id no other test uses.
pub fn user(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A conversation-end body.
pub fn conversation(
    user_id: &str,
    turns: u32,
    questions: u32,
    emotion: &str,
    memories: u32,
    topics: Value,
) -> Value {
    json!({
        "user_id": user_id,
        "conversation_id": format!("c-{}", uuid::Uuid::new_v4().simple()),
        "metadata": {
            "total_turns": turns,
            "user_initiated_questions": questions,
            "emotion": emotion,
            "new_memories_count": memories,
            "topics": topics,
        }
    })
}

/// An answer as the tests see it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    async fn read(response: reqwest::Response) -> Resp {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, and for non-2xx the error schema (`Error` in openapi.json) with
    /// the request id of the header.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let request_id = self
            .header("x-request-id")
            .expect("every response carries x-request-id");
        assert!(!request_id.is_empty());
        if status >= 300 {
            assert_error_schema(self);
        }
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.json["error"], code, "error code; body: {}", self.text);
        self
    }
}

/// The error body (`Error` in openapi.json): fields, types, request id equal to the header.
#[track_caller]
pub fn assert_error_schema(resp: &Resp) {
    let body = resp
        .json
        .as_object()
        .unwrap_or_else(|| panic!("error body is not a JSON object: {:?}", resp.text));
    for field in ["error", "message", "timestamp", "request_id"] {
        assert!(
            body.get(field).is_some_and(Value::is_string),
            "error body lacks string `{field}`: {}",
            resp.text
        );
    }
    assert!(
        body.get("details")
            .is_some_and(|d| d.is_object() || d.is_null()),
        "details: {}",
        resp.text
    );
    assert_eq!(
        Some(body["request_id"].as_str().unwrap()),
        resp.header("x-request-id"),
        "request_id = header"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
}
