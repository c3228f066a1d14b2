//! The app as a cluster runs it: separate OS processes, each serving some of
//! `spin.toml`'s components, as replicas of a deployment would. The process
//! is the real `spin up` when the suite runs under a real Spin (`SPIN_BIN`,
//! see [`super::server`]), else the project's `spin-host` binary (its
//! stand-in) imitating the Spin line of `SPIN_COMPAT`.
//!
//! A [`HostProcess`] is started with `--listen 127.0.0.1:0` and reports the
//! address it bound (no port is guessed, so none collides), is ready once
//! it says so (`Serving http://…` for HTTP, `Active Channels…` once its
//! Redis trigger is subscribed), and is killed (SIGKILL) when dropped, also
//! when its test panics, with its process group: a real `spin up` runs each
//! trigger as a child process of its own (`spin trigger …`). Each child also
//! gets `PR_SET_PDEATHSIG`, and the groups still running when the test
//! binary exits (the shared environment's, never dropped) are killed then.
//! A binary killed by a signal takes its `spin up`s with it, but a real
//! Spin's trigger processes outlive them: `scripts/test.sh` runs the suite in
//! a session of its own and kills what is left of it. Spawn hosts from a thread that lives as long as they
//! should: the test's own (the body given to `support::run`) or a runtime
//! worker, never a blocking-pool thread, which may end before the test does.
//!
//! A host's stdout and stderr (its own tracing: start-up, Spin-compat
//! violations, trigger errors) go to files in the directory given; component
//! output goes to `<dir>/logs-<name>` only (`--quiet`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Server;

/// What the host logs (`e2e::host::postgres::WouldHang`) when the imitated
/// Spin line would never have answered a statement.
pub const WOULD_HANG: &str = "would hang here";

/// The process groups of the hosts still running: killed when the test
/// binary exits, for the ones no test drops (the shared environment's).
static GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn track_group(pgid: i32) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            libc::atexit(kill_groups_at_exit);
        }
    });
    GROUPS.lock().unwrap_or_else(|p| p.into_inner()).push(pgid);
}

fn untrack_group(pgid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|&g| g != pgid);
}

extern "C" fn kill_groups_at_exit() {
    for pgid in GROUPS.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        // SAFETY: kill(2) on a process group this binary created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// The `spin-host` binary of this package, built by cargo for the tests.
pub fn spin_host_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spin-host"))
}

/// When a starting host counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// It serves HTTP (`Serving http://ADDR`); its address is read from it.
    Serving,
    /// Its Redis trigger is subscribed (`Active Channels:`).
    Subscribed,
}

/// How to start one host.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// A name for logs and messages (`http-1`, `scorer-2`).
    pub name: String,
    pub manifest: PathBuf,
    /// `--runtime-config-file`; without one, Spin's built-in key-value
    /// store (SQLite under the state directory), as a plain `spin up`.
    pub runtime_config: Option<PathBuf>,
    /// `--component-id`s: the components whose triggers this host runs.
    pub components: Vec<String>,
    /// `--variable name=value`s (the environment's `SPIN_VARIABLE_*` are
    /// removed, so these and the manifest's defaults are all it sees).
    pub variables: Vec<(String, String)>,
    /// Pass [`HostSpec::variables`] as `SPIN_VARIABLE_<NAME>` environment
    /// variables instead, as a developer running `spin up` by hand does.
    pub variables_in_env: bool,
    pub spin_compat: e2e::host::SpinCompat,
    pub ready: Ready,
}

/// A running `spin-host` process; SIGKILLed when dropped.
pub struct HostProcess {
    name: String,
    child: Option<Child>,
    ready: Ready,
    /// Its stdout lines, until it is ready.
    lines: Option<mpsc::Receiver<String>>,
    addr: Option<String>,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Its components' output (`--log-dir`).
    log_dir: PathBuf,
}

impl HostProcess {
    /// Starts `spec` with its output under `dir`, without waiting: spawn
    /// several, then [`HostProcess::wait_ready`] each, so they compile their
    /// components side by side.
    pub fn spawn(spec: &HostSpec, dir: &Path) -> HostProcess {
        let stdout = dir.join(format!("{}.stdout.txt", spec.name));
        let stderr = dir.join(format!("{}.stderr.txt", spec.name));
        let log_dir = dir.join(format!("logs-{}", spec.name));
        let binary = match super::server() {
            Server::Host(_) => spin_host_binary(),
            Server::Spin { bin, .. } => bin.clone(),
        };
        let mut command = Command::new(&binary);
        match super::server() {
            Server::Host(_) => {
                command
                    .args(["--spin-compat", spec.spin_compat.as_str()])
                    .args(["--listen", "127.0.0.1:0"]);
            }
            // `--listen` is an option of the HTTP trigger only: a scorer
            // process refuses it.
            Server::Spin { .. } => {
                command.arg("up");
                if spec.ready == Ready::Serving {
                    command.args(["--listen", "127.0.0.1:0"]);
                }
            }
        }
        command
            .arg("--from")
            .arg(&spec.manifest)
            .arg("--quiet")
            .arg("--log-dir")
            .arg(&log_dir)
            // Spin's built-in key-value store and other state: the test's own.
            .arg("--state-dir")
            .arg(dir.join(format!("state-{}", spec.name)));
        if let Some(runtime_config) = &spec.runtime_config {
            command.arg("--runtime-config-file").arg(runtime_config);
        }
        for id in &spec.components {
            command.args(["--component-id", id]);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                command.env_remove(key);
            }
        }
        for (name, value) in &spec.variables {
            if spec.variables_in_env {
                command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
            } else {
                command.arg("--variable").arg(format!("{name}={value}"));
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("a host's stderr file"));
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // before exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // A process group of its own: `spin up` runs each trigger as
                // a child process (`spin trigger …`), which a kill of the
                // group takes too.
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        // Copies stdout to its file, and hands every line to `wait_ready`.
        let (lines_tx, lines) = mpsc::channel::<String>();
        let pipe = child.stdout.take().unwrap();
        let mut file = File::create(&stdout).expect("a host's stdout file");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                let _ = lines_tx.send(line);
            }
        });
        track_group(child.id() as i32);
        HostProcess {
            name: spec.name.clone(),
            child: Some(child),
            ready: spec.ready,
            lines: Some(lines),
            addr: None,
            stdout,
            stderr,
            log_dir,
        }
    }

    /// Waits (up to `within`) until the host says it is ready; panics, with
    /// its output, if it exits or is not ready in time.
    pub fn wait_ready(&mut self, within: Duration) {
        let Some(lines) = self.lines.take() else {
            return;
        };
        let deadline = Instant::now() + within;
        loop {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => match self.ready {
                    Ready::Serving => {
                        if let Some(addr) = line.strip_prefix("Serving http://") {
                            self.addr = Some(addr.trim().to_string());
                            return;
                        }
                    }
                    // `Active Channels on ADDR:` (Spin), `Active Channels:` (the host).
                    Ready::Subscribed => {
                        if line.starts_with("Active Channels") {
                            return;
                        }
                    }
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting.
                    let status = self.child.as_mut().map(Child::wait);
                    panic!(
                        "{} exited before it was ready ({status:?}):\n{}",
                        self.name,
                        self.output()
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} was not ready after {within:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://ADDR` of a host started with [`Ready::Serving`].
    pub fn base_url(&self) -> String {
        format!(
            "http://{}",
            self.addr
                .as_deref()
                .unwrap_or_else(|| panic!("{} serves no HTTP", self.name))
        )
    }

    /// Whether the process still runs (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed, rolled
    /// back or acknowledged) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: `spin up` and the trigger processes it runs.
            // SAFETY: kill(2) with the group id of a child we spawned.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            untrack_group(child.id() as i32);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The host's own log lines (stderr) that report a statement the
    /// imitated Spin line would never have answered.
    pub fn spin_compat_violations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(WOULD_HANG))
            .map(str::to_string)
            .collect()
    }

    /// The last lines of its stdout and stderr, and of its components'
    /// output, for failure messages.
    pub fn output(&self) -> String {
        let tail = |path: &Path, n: usize| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let mut out = format!(
            "--- {} stdout\n{}\n--- {} stderr\n{}",
            self.name,
            tail(&self.stdout, 30),
            self.name,
            tail(&self.stderr, 30)
        );
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.log_dir)
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        for log in logs {
            out += &format!("\n--- {}\n{}", log.display(), tail(&log, 10));
        }
        out
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
