//! Private Postgres and Redis servers on free ports, for tests that pause,
//! stop or restart a server (never the shared ones), and for isolating the
//! suite's key-value, counters and channels.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Processes to kill when the test binary exits, whatever happened.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn kill_children() {
    if let Ok(pids) = CHILDREN.lock() {
        for pid in pids.iter() {
            unsafe {
                libc::kill(*pid as i32, libc::SIGCONT);
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
}

fn remember(pid: u32) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| unsafe {
        libc::atexit(kill_children);
    });
    CHILDREN.lock().unwrap().push(pid);
}

fn forget(pid: u32) {
    CHILDREN.lock().unwrap().retain(|p| *p != pid);
}

/// A TCP port nobody listens on at 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {within:?}");
}

fn signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A private `redis-server` that keeps nothing on disk.
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let dir = tempfile::tempdir().unwrap();
        let mut redis = PrivateRedis {
            port: free_port(),
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        remember(child.id());
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }

    /// `redis://127.0.0.1:PORT` (database 0).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        signal(self.child.as_ref().unwrap().id(), libc::SIGSTOP);
    }

    pub fn resume(&self) {
        signal(self.child.as_ref().unwrap().id(), libc::SIGCONT);
    }

    /// Kills the server; its data (none is kept) and connections are gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
            forget(child.id());
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private Postgres cluster (initdb) with trust auth and, like Debian's
/// clusters, `ssl = on` with a freshly generated self-signed certificate: a
/// client that insists on verified TLS (Spin, for every `sslmode` but
/// `disable`) fails here as it does on the machine's Postgres.
pub struct PrivatePostgres {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    running: bool,
}

fn postgres_bin() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres server binaries in /usr/lib/postgresql (scripts/test.sh installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    candidates.sort();
    candidates
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Runs a Postgres tool, as the `postgres` user when we are root (Postgres
/// refuses to run as root).
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    as_server_user(&bin.join(tool), args)
}

/// Runs a program as the user the server runs as: `postgres` when we are
/// root, else ourselves.
fn as_server_user(program: &Path, args: &[&str]) -> std::process::Output {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// Writes a fresh self-signed certificate and its key (mode 0600, owned by
/// the server's user, as Postgres requires) into the data directory, like
/// Debian's "snakeoil" pair.
fn self_signed_certificate(data: &Path) -> (PathBuf, PathBuf) {
    let cert = data.join("server.crt");
    let key = data.join("server.key");
    let out = as_server_user(
        Path::new("openssl"),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "openssl req (openssl must be installed): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_server_user(Path::new("chmod"), &["600", key.to_str().unwrap()]);
    assert!(out.status.success(), "chmod 600 of the server key");
    (cert, key)
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the private cluster's directory");
        }
        let bin = postgres_bin();
        let data = dir.path().join("data");
        let out = pg_tool(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self_signed_certificate(&data);
        let mut pg = PrivatePostgres {
            port: free_port(),
            dir,
            bin,
            running: false,
        };
        pg.start_server();
        pg
    }

    fn start_server(&mut self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=200 \
             -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            self.port,
            self.dir.path().display(),
            data.join("server.crt").display(),
            data.join("server.key").display(),
        );
        let out = pg_tool(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable` (its
    /// certificate is self-signed).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Every process of the cluster: the postmaster and its children.
    fn pids(&self) -> Vec<u32> {
        let pid_file = std::fs::read_to_string(self.dir.path().join("data").join("postmaster.pid"))
            .unwrap_or_default();
        let Some(main) = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        else {
            return Vec::new();
        };
        let children = Command::new("pgrep")
            .args(["-P", &main.to_string()])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let mut pids = vec![main];
        pids.extend(
            String::from_utf8_lossy(&children)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
        pids
    }

    /// Freezes every process of the cluster (SIGSTOP): connections stay
    /// open, nothing answers, new connections are never served.
    pub fn pause(&self) {
        for pid in self.pids() {
            signal(pid, libc::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        for pid in self.pids() {
            signal(pid, libc::SIGCONT);
        }
    }

    /// Stops the server at once, dropping every connection (a crash, as far
    /// as clients can tell).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.dir.path().join("data");
            let _ = pg_tool(
                &self.bin,
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
            self.running = false;
        }
    }

    /// Stops and starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The private cluster is set up like the machine's Debian one: TLS on, with
/// a certificate the host (as Spin) refuses, so only `sslmode=disable` works.
#[test]
fn a_private_postgres_has_tls_on_with_a_self_signed_certificate() {
    crate::support::run(async {
        let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
            .await
            .unwrap();
        let url = pg.url();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let ssl: String = sqlx::query_scalar("SHOW ssl")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(ssl, "on");
        pool.close().await;

        let pools = e2e::host::postgres::Pools::default();
        assert!(pools.get(&url).await.is_ok(), "sslmode=disable connects");
        let verified = e2e::host::db_url::without_param(&url, "sslmode");
        let text = match pools.get(&verified).await {
            Ok(_) => panic!("{verified}: connected, but its certificate is self-signed"),
            Err(err) => format!("{err:?}"),
        };
        assert!(text.contains("self-signed certificate"), "{text}");
    });
}
