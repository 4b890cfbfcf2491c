//! The real `rr` binary under test: built once per test run, started on a config of the
//! test's, synchronised on its log lines, stopped (SIGTERM, then SIGKILL) when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace's `target` folder.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// Path of the `rr` binary, built (debug profile) the first time it is asked for, so the
/// tests always drive the current code.
///
/// # Panics
/// When the build fails.
#[must_use]
pub fn rr_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            // The variables cargo set for this test binary: build scripts that watch them
            // (ring's watches CARGO_MANIFEST_DIR and CARGO_PKG_*) would otherwise see them
            // change between this build and the shell's, and rebuild every time.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                let set_for_the_test = name == "OUT_DIR"
                    || name.starts_with("CARGO_PKG_")
                    || name.starts_with("CARGO_MANIFEST_")
                    || name.starts_with("CARGO_BIN_")
                    || [
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                    ]
                    .contains(&name.as_ref());
                if set_for_the_test {
                    build.env_remove(name.as_ref());
                }
            }
            let status = build
                .args(["build", "-q", "-p", "ringrunner", "--bin", "rr"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building rr failed");
            target_dir().join("debug/rr")
        })
        .clone()
}

/// A fresh folder for one server's config and files. A test binary cannot remove its folders
/// at its end (the harness has no exit hook), so the first call of each test process removes
/// those of earlier processes that have ended: the folders of one run are there to look at
/// until the next run.
#[must_use]
pub fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_scratch_dirs_of_ended_processes);
    let dir = std::env::temp_dir().join(format!(
        "ringrunner-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Removes `ringrunner-test-PID-N` folders whose process is gone (no `/proc/PID`).
fn remove_scratch_dirs_of_ended_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("ringrunner-test-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A config for `http.php` with `http_extra` lines under `http:` and `pool_extra` under
/// `http.pool:` (each already indented), status on a free port, logs at info. The request
/// context codec is the server's default (JSON) unless `RINGRUNNER_TEST_CODEC` names one
/// (`scripts/test` runs the HTTP suites again with `protobuf`).
#[must_use]
pub fn http_config(http_extra: &str, pool_extra: &str) -> String {
    let codec = std::env::var("RINGRUNNER_TEST_CODEC")
        .ok()
        .filter(|codec| !codec.is_empty())
        .map(|codec| format!("  context_codec: {codec}\n"))
        .unwrap_or_default();
    format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\nhttp:\n  address: 127.0.0.1:0\n{codec}{http_extra}  pool:\n    num_workers: 2\n    allocate_timeout: 10s\n{pool_extra}status:\n  address: 127.0.0.1:0\nlogs:\n  level: info\n",
        worker_command("http.php")
    )
}

/// `php /abs/path/php/workers/<script>` for a config's command.
#[must_use]
pub fn worker_command(script: &str) -> String {
    format!(
        "{} {}",
        crate::php_binary(),
        crate::php_dir().join("workers").join(script).display()
    )
}

/// How `rr serve` is started beyond its arguments: a command in front of it (which runs it
/// with its arguments) and extra environment.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// A launcher such as `deny-io-uring`, given the rr binary and its arguments.
    pub wrapper: Option<PathBuf>,
    /// Variables set for the server (and so for its workers).
    pub env: Vec<(String, String)>,
}

/// `rr serve` in `dir` (which holds its `.rr.yaml`) with `args`, two shards, stdout and
/// stderr piped: the caller reads them, or leaves them unread on purpose.
///
/// # Panics
/// When the binary cannot be started.
#[must_use]
pub fn spawn_serve(dir: &Path, args: &[&str]) -> Child {
    spawn_serve_launched(dir, args, &Launch::default())
}

/// [`spawn_serve`], launched as `launch` says.
///
/// # Panics
/// When the binary cannot be started.
#[must_use]
pub fn spawn_serve_launched(dir: &Path, args: &[&str], launch: &Launch) -> Child {
    let mut command = match &launch.wrapper {
        Some(wrapper) => {
            let mut command = Command::new(wrapper);
            command.arg(rr_binary());
            command
        }
        None => Command::new(rr_binary()),
    };
    command
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .env("RINGRUNNER_SHARDS", "2")
        .envs(launch.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rr starts")
}

/// Runs an `rr` client subcommand (`workers`, `reset`, `stop`) in `dir` to its end.
///
/// # Panics
/// When the binary cannot be started.
#[must_use]
pub fn run_rr(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(rr_binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("rr runs")
}

/// Waits for `child` to exit, up to `timeout`. The exit has no event a test can block on
/// without reaping the child, so it is polled every 5 ms.
pub fn wait_child_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// Waits until something accepts connections on `address`, up to `timeout`: for a server
/// whose output the test does not read, the port answering is the event to wait on.
pub fn wait_for_port(address: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(address).is_err() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(5));
    }
    true
}

/// A port on 127.0.0.1 that nothing listens on right now.
///
/// # Panics
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The collected output of a running server, with a wake-up for each new line.
#[derive(Debug, Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
    /// Output streams that reached EOF (2: the server has exited).
    closed: AtomicUsize,
}

/// A running `rr serve`.
#[derive(Debug)]
pub struct RrServer {
    child: Child,
    output: Arc<Output>,
    /// The config folder (the server's working directory).
    pub dir: PathBuf,
    /// The HTTP listener's address, when the config has one.
    pub http: Option<SocketAddr>,
    /// The status listener's address, when the config has one.
    pub status: Option<SocketAddr>,
}

/// How long a server gets to start (boot PHP workers) in tests.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl RrServer {
    /// Writes `yaml` as `.rr.yaml` in a scratch folder and starts `rr serve` on it with
    /// `args`; waits for the listeners' log lines.
    ///
    /// # Errors
    /// The exit status and output when the server exits instead of starting.
    pub fn start_with(yaml: &str, args: &[&str]) -> Result<Self, (ExitStatus, String)> {
        Self::start_launched(yaml, args, &Launch::default())
    }

    /// [`RrServer::start_with`], launched as `launch` says.
    ///
    /// # Errors
    /// The exit status and output when the server exits instead of starting.
    pub fn start_launched(
        yaml: &str,
        args: &[&str],
        launch: &Launch,
    ) -> Result<Self, (ExitStatus, String)> {
        Self::start_in(scratch_dir(), yaml, args, launch)
    }

    /// [`RrServer::start_launched`] in `dir` (its working directory, which holds the
    /// config; removed when the server is dropped).
    ///
    /// # Errors
    /// The exit status and output when the server exits instead of starting.
    pub fn start_in(
        dir: PathBuf,
        yaml: &str,
        args: &[&str],
        launch: &Launch,
    ) -> Result<Self, (ExitStatus, String)> {
        std::fs::write(dir.join(".rr.yaml"), yaml).expect("write config");
        let mut child = spawn_serve_launched(&dir, args, launch);
        let output = Arc::new(Output::default());
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lines.lock().unwrap().push(line);
                    output.grew.notify_all();
                }
                let _lines = output.lines.lock().unwrap();
                output.closed.fetch_add(1, Ordering::AcqRel);
                output.grew.notify_all();
            });
        }
        let mut server = Self {
            child,
            output,
            dir,
            http: None,
            status: None,
        };
        // An `http` section with a plain listener (our configs name its address first).
        let wants_http = yaml.contains("\nhttp:\n  address:");
        let wants_status = yaml.contains("\nstatus:");
        let started = server.wait_for(START_TIMEOUT, |lines| {
            lines
                .iter()
                .any(|l| l.contains("RoadRunner server started"))
        });
        if !started {
            let status = server.stop();
            return Err((status, server.output()));
        }
        // stdout and stderr are read by two threads: wait for each line itself.
        if wants_http && server.wait_for_line("http server listening", START_TIMEOUT) {
            server.http = server.listening_address("http server listening");
        }
        if wants_status && server.wait_for_line("status server listening", START_TIMEOUT) {
            server.status = server.listening_address("status server listening");
        }
        Ok(server)
    }

    /// Starts a server that must start.
    ///
    /// # Panics
    /// With the server's output when it does not.
    #[must_use]
    pub fn start(yaml: &str) -> Self {
        Self::start_with(yaml, &[])
            .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"))
    }

    /// The `address` of the first log line containing `message` (a listener's).
    #[must_use]
    pub fn listening_address(&self, message: &str) -> Option<SocketAddr> {
        let lines = self.output.lines.lock().unwrap();
        let line = lines.iter().find(|l| l.contains(message))?;
        let json = &line[line.rfind('{')?..];
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        value["address"].as_str()?.parse().ok()
    }

    /// Waits until `condition` holds over the output lines, or `timeout`, or the server has
    /// exited.
    pub fn wait_for(&self, timeout: Duration, condition: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.output.lines.lock().unwrap();
        loop {
            if condition(&lines) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.output.closed.load(Ordering::Acquire) == 2 {
                return false;
            }
            lines = self
                .output
                .grew
                .wait_timeout(lines, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for(timeout, |lines| lines.iter().any(|l| l.contains(needle)))
    }

    /// Everything the server printed so far.
    #[must_use]
    pub fn output(&self) -> String {
        self.output.lines.lock().unwrap().join("\n")
    }

    /// The HTTP address.
    ///
    /// # Panics
    /// When the config has no `http` section.
    #[must_use]
    pub fn http(&self) -> SocketAddr {
        self.http.expect("http listener")
    }

    /// The server's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Waits for the server to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child_exit(&mut self.child, timeout)
    }

    /// SIGTERM, then SIGKILL after 20 s; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        match self.wait_exit(Duration::from_secs(20)) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                self.child.wait().expect("reaped")
            }
        }
    }
}

impl Drop for RrServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `curl -sS --max-time 20` with `args` (the TLS, HTTP/2 and FastCGI tests' client).
///
/// # Panics
/// When curl cannot be run.
#[must_use]
pub fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs")
}

/// Sends `request` (raw bytes) on a new connection to `address` and reads the answer until
/// the server closes the connection (ask for it: `Connection: close`, or HTTP/1.0), each read
/// bounded by 30 s.
///
/// # Panics
/// When the connection or a read fails.
#[must_use]
pub fn raw_exchange(address: SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream.write_all(request).expect("request written");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("answer read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The resident set (`VmRSS`) of process `pid`, in KiB.
///
/// # Panics
/// When the process is gone or its status has no `VmRSS` line.
#[must_use]
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("a VmRSS line")
}
