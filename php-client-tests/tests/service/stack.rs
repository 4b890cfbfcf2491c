//! The service tests' stack: a folder with nginx's, php-fpm's and Redis's configs, PID files
//! and logs, their `service` sections, and the checks the tests make of them.

use php_client_tests::rpc_call::php_call;
use php_client_tests::server::{free_port, scratch_dir};
use rustix::process::{Pid, Signal};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A folder with the daemons' configs, PID files and logs; kills whatever its PID files
/// name (and the processes recorded) when dropped, so no daemon outlives a test.
pub struct Stack {
    pub dir: PathBuf,
    pub nginx_port: u16,
    pub redis_port: u16,
    pub strays: Vec<u32>,
}

impl Stack {
    pub fn new() -> Self {
        let dir = scratch_dir();
        for sub in ["run", "log", "nginx"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let stack = Self {
            dir,
            nginx_port: free_port(),
            redis_port: free_port(),
            strays: Vec::new(),
        };
        let d = stack.dir.display();
        std::fs::write(
            stack.dir.join("nginx.conf"),
            format!(
                "worker_processes 1;\npid {d}/run/nginx.pid;\nerror_log {d}/log/nginx-error.log;\nevents {{ worker_connections 64; }}\n\
                 http {{ access_log off; client_body_temp_path {d}/nginx/body; fastcgi_temp_path {d}/nginx/fastcgi; proxy_temp_path {d}/nginx/proxy; uwsgi_temp_path {d}/nginx/uwsgi; scgi_temp_path {d}/nginx/scgi;\n\
                 server {{ listen 127.0.0.1:{}; location / {{ return 200 \"nginx up\\n\"; }} }} }}\n",
                stack.nginx_port
            ),
        )
        .unwrap();
        std::fs::write(
            stack.dir.join("fpm.conf"),
            format!("[global]\npid = {d}/run/fpm.pid\nerror_log = {d}/log/fpm.log\ndaemonize = no\n[www]\nuser = nobody\nlisten = {d}/run/fpm.sock\npm = static\npm.max_children = 1\n"),
        )
        .unwrap();
        stack
    }

    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.dir.join("run").join(format!("{name}.pid"))
    }

    pub fn redis(&self, extra: &str) -> String {
        let d = self.dir.display();
        format!(
            "  redis:\n    command: \"redis-server --port {} --bind 127.0.0.1 --daemonize yes --pidfile {d}/run/redis.pid --logfile {d}/log/redis.log --dir {d}/run\"\n    pid_file: {d}/run/redis.pid\n    stop_signal: SIGTERM\n{extra}",
            self.redis_port
        )
    }

    pub fn fpm(&self, extra: &str) -> String {
        let d = self.dir.display();
        format!("  php-fpm:\n    command: \"php-fpm8.2 -R --nodaemonize --fpm-config {d}/fpm.conf\"\n    pid_file: {d}/run/fpm.pid\n    stop_signal: SIGQUIT\n{extra}")
    }

    pub fn nginx(&self, extra: &str) -> String {
        let d = self.dir.display();
        format!("  nginx:\n    command: \"nginx -c {d}/nginx.conf\"\n    pid_file: {d}/run/nginx.pid\n    log_file: {d}/log/nginx-stdout.log\n    stop_signal: SIGQUIT\n{extra}")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut pids = self.strays.clone();
        for name in ["redis", "fpm", "nginx"] {
            if let Some(pid) = read_pid(&self.pid_file(name)) {
                pids.push(pid);
            }
        }
        for pid in pids {
            if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
}

/// Debian's daemons, or a visible skip.
pub fn daemons_installed() -> bool {
    let missing: Vec<&str> = ["nginx", "php-fpm8.2", "redis-server"]
        .into_iter()
        .filter(|program| {
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {} not installed (scripts/install-deps installs them)",
            missing.join(", ")
        );
    }
    missing.is_empty()
}

pub fn config(services: &str) -> (String, String) {
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    (
        format!(
            "version: \"3\"\nrpc:\n  listen: {dsn}\nservice:\n{services}logs:\n  level: info\n"
        ),
        dsn,
    )
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The pid of `name`'s daemon once its PID file names a live process: rr's start waits for
/// a daemon's launcher up to `start_secs` only, and the daemon writes its file when it gets to.
pub fn daemon_pid(stack: &Stack, name: &str) -> u32 {
    let path = stack.pid_file(name);
    wait_until(
        Duration::from_secs(10),
        &format!("{name}'s pid file"),
        || read_pid(&path).is_some_and(alive),
    );
    read_pid(&path).unwrap()
}

pub fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            != Some("Z")
}

/// Polls `condition` (a daemon's state, which has no event to wait on) every 20 ms.
pub fn wait_until(limit: Duration, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

pub fn answers(port: u16, request: &[u8], expected: &[u8]) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = Vec::new();
    stream.write_all(request).is_ok()
        && {
            let _ = stream.read_to_end(&mut reply);
            true
        }
        && reply.windows(expected.len()).any(|w| w == expected)
}

pub fn nginx_up(stack: &Stack) -> bool {
    answers(stack.nginx_port, b"GET / HTTP/1.0\r\n\r\n", b"nginx up")
}

pub fn redis_up(stack: &Stack) -> bool {
    answers(stack.redis_port, b"PING\r\nQUIT\r\n", b"+PONG")
}

pub fn describe(dsn: &str, name: &str) -> Vec<Value> {
    let reply = php_call(dsn, "service.Describe", &json!({ "name": name }), false).unwrap();
    serde_json::from_str::<Value>(&reply)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Positions of the first log lines containing each needle, in order.
pub fn line_order(output: &str, needles: &[&str]) -> Vec<usize> {
    let lines: Vec<&str> = output.lines().collect();
    needles
        .iter()
        .map(|needle| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle}:\n{output}"))
        })
        .collect()
}

pub fn sorted(order: &[usize]) -> bool {
    order.windows(2).all(|pair| pair[0] < pair[1])
}
