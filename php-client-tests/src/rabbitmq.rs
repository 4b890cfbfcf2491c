//! A real RabbitMQ node (Debian's `rabbitmq-server`) for the amqp tests: a private node on
//! free ports with its own data folder and its own `epmd`, waited for until it answers the
//! AMQP protocol header, stopped by its PID (the start script's, which stops the node), and
//! restartable on the same ports and data (durable queues survive).

use rustix::process::{kill_process, test_kill_process, Pid, Signal};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the node's start script (run directly: the `rabbitmq-server` on
/// `PATH` is a wrapper that switches to the `rabbitmq` user and its shared data).
const START_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The largest message the test node takes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long a boot may take (about 7 s on two cores).
const BOOT_WITHIN: Duration = Duration::from_secs(90);

/// A running (or stopped, restartable) node.
#[derive(Debug)]
pub struct RabbitMq {
    node: Option<Child>,
    epmd: Child,
    dir: PathBuf,
    /// The AMQP port.
    pub port: u16,
    dist_port: u16,
    epmd_port: u16,
}

impl RabbitMq {
    /// Starts one; None (with the reason printed, so the skip is visible) when RabbitMQ is
    /// not installed.
    ///
    /// # Panics
    /// When it is installed but does not boot within 90 s.
    #[must_use]
    pub fn start(dir: &Path) -> Option<Self> {
        if !Path::new(START_SCRIPT).exists() {
            eprintln!(
                "SKIPPED: rabbitmq-server is not installed ({START_SCRIPT}); scripts/install-deps installs it"
            );
            return None;
        }
        std::fs::create_dir_all(dir).expect("broker folder");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        // A message limit the tests can reach (RabbitMQ's default is 128 MiB).
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("max_message_size = {MAX_MESSAGE_BYTES}\n"),
        )
        .expect("config file");
        let epmd_port = crate::server::free_port();
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("epmd (installed with erlang) starts");
        let mut broker = Self {
            node: None,
            epmd,
            dir: dir.to_owned(),
            port: crate::server::free_port(),
            dist_port: crate::server::free_port(),
            epmd_port,
        };
        broker.boot();
        Some(broker)
    }

    /// The URI rr dials.
    #[must_use]
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let dir = self.dir.display();
        vec![
            ("HOME", dir.to_string()),
            (
                "RABBITMQ_NODENAME",
                format!("rrtest{}@localhost", self.port),
            ),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", format!("{dir}/mnesia")),
            ("RABBITMQ_LOG_BASE", format!("{dir}/log")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                format!("{dir}/enabled_plugins"),
            ),
            ("RABBITMQ_PID_FILE", format!("{dir}/pid")),
            ("RABBITMQ_CONFIG_FILE", format!("{dir}/rabbitmq.conf")),
            ("ERL_EPMD_PORT", self.epmd_port.to_string()),
            // One scheduler that sleeps when idle: the tests share two cores with it.
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none".into(),
            ),
        ]
    }

    fn boot(&mut self) {
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.out"))
            .expect("node output file");
        let node = Command::new(START_SCRIPT)
            .envs(self.env())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("output"))
            .stderr(output)
            .spawn()
            .expect("rabbitmq-server starts");
        self.node = Some(node);
        let deadline = Instant::now() + BOOT_WITHIN;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "RabbitMQ did not boot within {BOOT_WITHIN:?}:\n{}",
                std::fs::read_to_string(self.dir.join("node.out")).unwrap_or_default()
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// True when the AMQP port answers the protocol header with `connection.start`.
    fn answers(&self) -> bool {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut frame_type = [0u8; 1];
        stream.write_all(b"AMQP\x00\x00\x09\x01").is_ok()
            && stream.read_exact(&mut frame_type).is_ok()
            && frame_type[0] == 1
    }

    /// Stops the node (the start script, on SIGTERM, stops it cleanly: clients get
    /// `connection.close`), waiting until it is gone.
    pub fn stop(&mut self) {
        let Some(mut node) = self.node.take() else {
            return;
        };
        if let Some(pid) = i32::try_from(node.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(20));
        }
        let _ = node.kill();
        let _ = node.wait();
        // The VM itself, should the script have left it behind.
        if let Some(pid) = std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .and_then(Pid::from_raw)
        {
            let deadline = Instant::now() + Duration::from_secs(10);
            while test_kill_process(pid).is_ok() && Instant::now() < deadline {
                std::thread::park_timeout(Duration::from_millis(20));
            }
            let _ = kill_process(pid, Signal::KILL);
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    /// Starts the node again, on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// `rabbitmqctl` against this node, its output.
    ///
    /// # Panics
    /// When rabbitmqctl fails.
    #[must_use]
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .envs(self.env())
            .args(["-n", &format!("rrtest{}@localhost", self.port), "-q"])
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Messages (ready, unacknowledged) in `queue`; None when it does not exist.
    #[must_use]
    pub fn queue_counts(&self, queue: &str) -> Option<(u64, u64)> {
        self.ctl(&[
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?, fields.next()?, fields.next()?))
        })
        .find(|(name, _, _)| *name == queue)
        .and_then(|(_, ready, unacked)| Some((ready.parse().ok()?, unacked.parse().ok()?)))
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
