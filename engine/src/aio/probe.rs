//! Does io_uring work here? A tiny ring is set up, asked which operations it supports, and
//! entered once: the three system calls a seccomp profile may deny (`io_uring_setup`,
//! `io_uring_register`, `io_uring_enter`), and the kernel version (the operations).

use io_uring::{opcode, IoUring, Probe};

/// The operations the shards submit (through tokio-uring), with their names for the error.
const OPERATIONS_USED: [(u8, &str); 7] = [
    (opcode::Read::CODE, "read"),
    (opcode::Write::CODE, "write"),
    (opcode::Accept::CODE, "accept"),
    (opcode::OpenAt::CODE, "openat"),
    (opcode::Statx::CODE, "statx"),
    (opcode::Close::CODE, "close"),
    (opcode::AsyncCancel::CODE, "async_cancel"),
];

/// Ok when io_uring works for the shards; otherwise what failed, in one phrase.
pub(super) fn io_uring() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|error| format!("io_uring_setup: {error}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|error| format!("io_uring_register: {error}"))?;
    let missing: Vec<&str> = OPERATIONS_USED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the kernel lacks io_uring operations: {}",
            missing.join(", ")
        ));
    }
    ring.submit()
        .map_err(|error| format!("io_uring_enter: {error}"))?;
    Ok(())
}
