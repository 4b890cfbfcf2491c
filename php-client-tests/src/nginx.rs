//! A real nginx (Debian's) for the suites that put one in front of rr or a server: started
//! with one `server { … }` block of the caller's in its `http` section, on a free port,
//! stopped by its PID when dropped.

use crate::server::{free_port, scratch_dir, wait_for_port};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// The port its server block listens on.
    pub port: u16,
}

impl Nginx {
    /// Starts nginx with the `server` block `server_block(port)` gives for a free port
    /// (`listen 127.0.0.1:<port> …`); None (with a SKIPPED line) when nginx is not installed.
    ///
    /// # Panics
    /// When nginx does not listen within 10 s.
    pub fn start(server_block: impl FnOnce(u16) -> String) -> Option<Self> {
        if Command::new("nginx").arg("-v").output().is_err() {
            eprintln!("SKIPPED: nginx is not installed; scripts/install-deps installs it");
            return None;
        }
        let dir = scratch_dir().join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let d = dir.display();
        // As root, nginx's workers would drop to a user who cannot reach our sockets.
        let user = if rustix::process::geteuid().is_root() {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
             http {{ access_log off; client_max_body_size 64m; client_body_temp_path {d}/body; fastcgi_temp_path {d}/fastcgi; proxy_temp_path {d}/proxy; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             {} }}\n",
            server_block(port)
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args([
                "-c",
                dir.join("nginx.conf").to_str().unwrap(),
                "-g",
                "daemon off;",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Self { child, port };
        assert!(
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(10)
            ),
            "nginx did not listen"
        );
        Some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
