//! The `service` plugin's stops through the real binary: a double-forked daemon with
//! `kill_mode: group` (not its group's leader) is really gone after rr's stop; a PID file
//! rewritten after its daemon (adopted or forked) exited does not get the process it names
//! signalled; concurrent `Create` and `Restart` calls for one name leave one set of
//! processes, all stopped by rr.

use php_client_tests::rpc_call::concurrent_calls;
use php_client_tests::server::RrServer;
use rustix::process::{Pid, Signal};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

// A folder of its own: cargo would build a tests/stack.rs as a suite of its own.
#[path = "service/stack.rs"]
#[allow(dead_code)]
mod stack;

use stack::*;

/// A launcher that double-forks `sleep 300` (it leads no process group: its group's leader,
/// the launcher, has exited) and writes its pid to `name`'s PID file.
fn double_forking_daemon(stack: &Stack, name: &str, extra: &str) -> String {
    let d = stack.dir.display();
    std::fs::write(
        stack.dir.join(format!("{name}.sh")),
        format!(
            "( sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {d}/run/{name}.pid )\nexit 0\n"
        ),
    )
    .unwrap();
    format!(
        "  {name}:\n    command: \"sh {d}/{name}.sh\"\n    pid_file: {d}/run/{name}.pid\n    stop_signal: SIGTERM\n    timeout_stop_sec: 10\n{extra}"
    )
}

#[test]
fn a_double_forked_daemon_with_kill_mode_group_is_really_stopped() {
    let mut stack = Stack::new();
    let (yaml, _) = config(&double_forking_daemon(
        &stack,
        "forked",
        "    kill_mode: group\n",
    ));
    let mut server = RrServer::start(&yaml);
    let daemon = daemon_pid(&stack, "forked");
    stack.strays.push(daemon);
    let pgid = rustix::process::getpgid(Pid::from_raw(daemon as i32)).unwrap();
    assert_ne!(
        pgid.as_raw_nonzero().get() as u32,
        daemon,
        "the daemon does not lead its group"
    );
    assert_eq!(server.stop().code(), Some(0));
    // rr's stop waited for the daemon's exit before it said so: gone (or a zombie its new
    // parent has not reaped yet) at once.
    assert!(
        !alive(daemon),
        "the daemon outlived rr's stop:\n{}",
        server.output()
    );
    assert!(
        server.output().contains(&format!(
            "service was stopped\t{{\"name\":\"forked\",\"pid\":{daemon}}}"
        )),
        "{}",
        server.output()
    );
    assert!(!stack.pid_file("forked").exists());
}

#[test]
fn a_pid_file_rewritten_after_its_adopted_daemon_exited_gets_nobody_signalled() {
    a_pid_file_rewritten_after_its_daemon_exited_gets_nobody_signalled(true);
}

#[test]
fn a_pid_file_rewritten_after_its_forked_daemon_exited_gets_nobody_signalled() {
    a_pid_file_rewritten_after_its_daemon_exited_gets_nobody_signalled(false);
}

/// The daemon (running before rr, adopted from its PID file, or forked by rr's launcher)
/// dies behind rr's back and its PID file is then rewritten to name another process, as a
/// recycled pid would: rr never signals that process.
fn a_pid_file_rewritten_after_its_daemon_exited_gets_nobody_signalled(adopted: bool) {
    let mut stack = Stack::new();
    let (yaml, dsn) = config(&double_forking_daemon(&stack, "gone", ""));
    if adopted {
        let launched = Command::new("sh")
            .arg(stack.dir.join("gone.sh"))
            .status()
            .unwrap();
        assert!(launched.success());
    }
    let mut server = RrServer::start(&yaml);
    let daemon = daemon_pid(&stack, "gone");
    stack.strays.push(daemon);
    if adopted {
        let line = format!("adopted running daemon\t{{\"name\":\"gone\",\"pid\":{daemon}}}");
        assert!(
            server.wait_for_line(&line, Duration::from_secs(10)),
            "{}",
            server.output()
        );
    }
    // Another process of ours, which rr must never signal.
    let mut bystander = Command::new("sleep").arg("300").spawn().unwrap();
    stack.strays.push(bystander.id());
    rustix::process::kill_process(Pid::from_raw(daemon as i32).unwrap(), Signal::KILL).unwrap();
    wait_until(Duration::from_secs(5), "the daemon's death", || {
        !alive(daemon)
    });
    std::fs::write(stack.pid_file("gone"), format!("{}\n", bystander.id())).unwrap();
    wait_until(Duration::from_secs(10), "rr to see the daemon gone", || {
        describe(&dsn, "gone")[0]["state"] == json!("exited")
    });
    assert_eq!(server.stop().code(), Some(0));
    assert_eq!(
        bystander.try_wait().unwrap(),
        None,
        "the bystander was signalled:\n{}",
        server.output()
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
}

/// The pids of the processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| cmdline == wanted)
                && alive(*pid)
        })
        .collect()
}

#[test]
fn concurrent_creates_and_restarts_for_one_name_leave_one_set_that_rr_stops() {
    let mut stack = Stack::new();
    // A configured service besides: the RPC ones join a running plugin.
    let (yaml, dsn) = config("  idle:\n    command: \"sleep 300\"\n");
    let rpc_port: u16 = dsn.rsplit(':').next().unwrap().parse().unwrap();
    let mut server = RrServer::start(&yaml);
    // A command line no other test runs, to count this test's processes by.
    let seconds = format!("9{rpc_port}");
    let argv = ["/usr/bin/sleep", seconds.as_str()];
    let create = json!({"name": "dup", "command": argv.join(" "), "process_num": 3});
    let mut calls = vec![("service.Create", create.clone())];
    for _ in 0..8 {
        calls.push(("service.Restart", json!({"name": "dup"})));
        calls.push(("service.Create", create.clone()));
    }
    let first = concurrent_calls(rpc_port, &calls[..1]);
    assert_eq!(first, vec![Ok("{\"ok\":true}".to_owned())]);
    let replies = concurrent_calls(rpc_port, &calls[1..]);
    stack.strays.extend(processes_running(&argv));
    for (reply, (method, _)) in replies.iter().zip(&calls[1..]) {
        match *method {
            "service.Create" => assert_eq!(
                reply,
                &Err("the service with dup name already exists".to_owned())
            ),
            _ => assert_eq!(reply, &Ok("{\"ok\":true}".to_owned())),
        }
    }
    // A restart answers once its new set is started; a process of it may still be between
    // fork and exec, so wait for the count (an event) rather than read it once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut running = processes_running(&argv);
    while running.len() < 3 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        running = processes_running(&argv);
    }
    assert_eq!(running.len(), 3, "one set of processes: {running:?}");
    assert_eq!(server.stop().code(), Some(0));
    assert_eq!(
        processes_running(&argv),
        Vec::<u32>::new(),
        "rr's stop left processes running:\n{}",
        server.output()
    );
}
