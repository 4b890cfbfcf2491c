//! The shards' I/O, on one of two backends chosen at start: io_uring (tokio-uring, the
//! default) or epoll (tokio's reactor), for hosts where io_uring is missing or forbidden
//! (Docker's and containerd's default seccomp profiles deny it). Everything above this
//! module is the same code on both: sockets, pipes and files are lent owned buffers (the
//! ring's model), and the epoll backend keeps that model on readiness plus a plain
//! `read`/`write`. Tasks on a shard run on tokio's `LocalSet` under either backend, so
//! spawning ([`tokio::task::spawn_local`]), timers and tokio's sync primitives are shared.

mod epoll;
mod file;
mod poll_io;
mod probe;
mod stream;
mod tls;

pub use file::{File, FileFacts};
pub use poll_io::PollStream;
pub use stream::Stream;
pub use tls::TlsStream;

/// How the shards do their I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring submissions and completions (tokio-uring).
    Uring,
    /// Readiness from epoll (tokio's reactor), then non-blocking system calls; regular
    /// files are read and written with plain blocking calls (page-cache speed: no file
    /// I/O readiness exists on epoll).
    Epoll,
}

/// The environment variable that forces a backend: `io_uring`, `epoll` or `auto`.
pub const BACKEND_VAR: &str = "RINGRUNNER_IO";

impl Backend {
    /// The backend's name as [`BACKEND_VAR`] spells it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Uring => "io_uring",
            Self::Epoll => "epoll",
        }
    }

    /// Chooses the backend for `requested` (the value of [`BACKEND_VAR`], if set): `auto`
    /// or nothing probes io_uring and falls back to epoll with one warning line; `io_uring`
    /// insists on it; `epoll` takes epoll without probing.
    ///
    /// # Errors
    /// An unknown value, or `io_uring` requested where it does not work.
    pub fn choose(requested: Option<&str>) -> Result<Self, String> {
        match requested.map(str::trim).unwrap_or("auto") {
            "" | "auto" => Ok(match probe::io_uring() {
                Ok(()) => Self::Uring,
                Err(reason) => {
                    tracing::warn!("io_uring unavailable ({reason}): using epoll");
                    Self::Epoll
                }
            }),
            "io_uring" | "uring" => probe::io_uring().map(|()| Self::Uring).map_err(|reason| {
                format!("io_uring unavailable ({reason}) and {BACKEND_VAR}=io_uring asks for it")
            }),
            "epoll" => Ok(Self::Epoll),
            other => Err(format!(
                "{BACKEND_VAR}={other}: not a backend (auto, io_uring, epoll)"
            )),
        }
    }

    /// The backend [`BACKEND_VAR`] asks for, as [`Backend::choose`] decides.
    ///
    /// # Errors
    /// As [`Backend::choose`].
    pub fn from_env() -> Result<Self, String> {
        Self::choose(std::env::var(BACKEND_VAR).ok().as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_and_unknown_ones_refused() {
        assert_eq!(Backend::choose(Some("epoll")), Ok(Backend::Epoll));
        let error = Backend::choose(Some("kqueue")).unwrap_err();
        assert_eq!(
            error,
            "RINGRUNNER_IO=kqueue: not a backend (auto, io_uring, epoll)"
        );
        // auto always gives a backend: io_uring where it works, epoll otherwise.
        assert!(Backend::choose(None).is_ok());
        assert!(Backend::choose(Some("auto")).is_ok());
    }
}
