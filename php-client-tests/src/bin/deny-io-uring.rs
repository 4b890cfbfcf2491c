//! `deny-io-uring COMMAND [ARGS…]`: runs COMMAND where the io_uring system calls fail with
//! EPERM, as under Docker's and containerd's default seccomp profiles: a seccomp filter is
//! installed (after `no_new_privs`, so no privilege is needed), then COMMAND is executed.
//! The filter is inherited by every process COMMAND starts.

use std::io;
use std::os::unix::process::CommandExt;

/// `io_uring_setup`, `io_uring_enter`, `io_uring_register`: numbered alike on every
/// architecture since Linux 5.1 (the unified table).
const FIRST_IO_URING_CALL: u32 = 425;
const LAST_IO_URING_CALL: u32 = 427;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: deny-io-uring COMMAND [ARGS…]");
        std::process::exit(2);
    };
    if let Err(error) = deny_io_uring() {
        eprintln!("deny-io-uring: cannot install the seccomp filter: {error}");
        std::process::exit(1);
    }
    let error = std::process::Command::new(&program).args(args).exec();
    eprintln!("deny-io-uring: {}: {error}", program.to_string_lossy());
    std::process::exit(127);
}

fn statement(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::try_from(code).expect("BPF codes fit 16 bits"),
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        jt,
        jf,
        ..statement(code, k)
    }
}

fn deny_io_uring() -> io::Result<()> {
    let deny = libc::SECCOMP_RET_ERRNO | u32::try_from(libc::EPERM).expect("EPERM is small");
    let mut program = [
        // The system call number (offset 0 of `struct seccomp_data`).
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // Below the first io_uring call: allow (skip to the last instruction).
        jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            FIRST_IO_URING_CALL,
            0,
            2,
        ),
        // Above the last: allow; otherwise deny.
        jump(
            libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K,
            LAST_IO_URING_CALL,
            1,
            0,
        ),
        statement(libc::BPF_RET | libc::BPF_K, deny),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let filter = libc::sock_fprog {
        len: u16::try_from(program.len()).expect("a short program"),
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `filter` points at `program`, a valid BPF program of `len` instructions that
    // outlives the call; the kernel copies it.
    let installed = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::from_ref(&filter),
        )
    };
    if installed != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
