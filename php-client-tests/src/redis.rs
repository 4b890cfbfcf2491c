//! A real `redis-server` (Debian's) for the kv tests: started on a free port without
//! persistence, waited for until it answers PING, stopped by its PID.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Where it listens.
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port; None (with the reason printed, so a skip is visible)
    /// when `redis-server` is not installed.
    ///
    /// # Panics
    /// When it is installed but does not answer within 10 s.
    #[must_use]
    pub fn start() -> Option<Self> {
        Self::start_on(crate::server::free_port())
    }

    /// Starts one on `port` (a restart on the port of one stopped before).
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    #[must_use]
    pub fn start_on(port: u16) -> Option<Self> {
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                eprintln!("SKIPPED: redis-server cannot be started ({error}); scripts/install-deps installs it");
                return None;
            }
        };
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} never answered PING"
            );
            std::thread::park_timeout(Duration::from_millis(10));
        }
        Some(server)
    }

    /// Its pid (a test pauses it with SIGSTOP: an outage where connections hang rather
    /// than fail).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its address.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) =
            TcpStream::connect_timeout(&self.address(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// One command (inline form), its raw reply.
    ///
    /// # Panics
    /// When Redis does not answer.
    #[must_use]
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(self.address()).expect("redis answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("command sent");
        let mut reply = vec![0u8; 4096];
        let read = stream.read(&mut reply).expect("reply");
        String::from_utf8_lossy(&reply[..read]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
