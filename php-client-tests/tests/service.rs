//! The `service` plugin through the real binary: Debian's nginx, php-fpm and Redis run as
//! PID-file daemons (started by priority, killed behind rr's back and restarted, stopped with
//! their own signals in reverse order, found again after rr itself was SIGKILLed, followed from
//! a launcher slower than `start_secs`), rr-style
//! services (a PHP loop, a crash loop), the RPC service from PHP with protobuf, `rr service`,
//! and bad options. Every test has its own folder and ports and kills what it started by PID.

use php_client_tests::server::{run_rr, scratch_dir, RrServer};
use rustix::process::{Pid, Signal};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

// A folder of its own: cargo would build a tests/stack.rs as a suite of its own.
#[path = "service/stack.rs"]
mod stack;

use stack::*;

#[test]
fn three_daemons_start_by_priority_and_stop_in_reverse_with_their_own_signals() {
    if !daemons_installed() {
        return;
    }
    let stack = Stack::new();
    let services = format!(
        "{}{}{}",
        stack.nginx("    priority: 30\n"),
        stack.redis("    priority: 10\n"),
        stack.fpm("    priority: 20\n")
    );
    let (yaml, dsn) = config(&services);
    let mut server = RrServer::start(&yaml);
    wait_until(Duration::from_secs(10), "nginx and redis up", || {
        nginx_up(&stack) && redis_up(&stack)
    });
    assert!(server.wait_for_line(
        "service was started\t{\"name\":\"nginx\"",
        Duration::from_secs(10)
    ));
    let pids: Vec<u32> = ["redis", "fpm", "nginx"]
        .iter()
        .map(|n| daemon_pid(&stack, n))
        .collect();
    assert!(pids.iter().all(|pid| alive(*pid)));
    let output = server.output();
    assert!(
        sorted(&line_order(
            &output,
            &[
                "\"name\":\"redis\"",
                "\"name\":\"php-fpm\"",
                "\"name\":\"nginx\""
            ]
        )),
        "{output}"
    );
    // rr service status: every process running → exit 0; rr workers has the COMMAND column.
    let status = run_rr(&server.dir, &["service", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{text}");
    assert!(
        text.contains("nginx") && text.contains("running") && text.contains(&pids[2].to_string()),
        "{text}"
    );
    let workers =
        String::from_utf8_lossy(&run_rr(&server.dir, &["workers", "service"]).stdout).into_owned();
    assert!(
        workers.contains("COMMAND") && workers.contains("redis-server"),
        "{workers}"
    );
    assert_eq!(describe(&dsn, "nginx")[0]["pid"], json!(pids[2]));
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{}", server.output());
    assert!(server.wait_for_line("stop all finished", Duration::from_secs(5)));
    let output = server.output();
    assert!(
        sorted(&line_order(
            &output,
            &[
                "service was stopped\t{\"name\":\"nginx\"",
                "service was stopped\t{\"name\":\"php-fpm\"",
                "service was stopped\t{\"name\":\"redis\""
            ]
        )),
        "{output}"
    );
    assert!(
        output.contains("stop all finished\t{\"stopped\":3,\"failed\":0}"),
        "{output}"
    );
    for pid in pids {
        assert!(!alive(pid), "{pid} outlived the stop");
    }
    assert!(!stack.pid_file("nginx").exists() && !stack.pid_file("redis").exists());
}

#[test]
fn a_daemon_killed_behind_rrs_back_is_restarted_and_a_stale_pid_file_is_cleaned() {
    if !daemons_installed() {
        return;
    }
    let stack = Stack::new();
    std::fs::write(stack.pid_file("redis"), "garbage\n").unwrap();
    let (yaml, dsn) = config(&stack.redis("    remain_after_exit: true\n    restart_sec: 1\n"));
    let server = RrServer::start(&yaml);
    assert!(
        server.wait_for_line("removed stale pid file", Duration::from_secs(10)),
        "{}",
        server.output()
    );
    let first = daemon_pid(&stack, "redis");
    wait_until(Duration::from_secs(10), "redis up", || redis_up(&stack));
    rustix::process::kill_process(Pid::from_raw(first as i32).unwrap(), Signal::KILL).unwrap();
    wait_until(Duration::from_secs(10), "redis restarted", || {
        read_pid(&stack.pid_file("redis")).is_some_and(|pid| pid != first && alive(pid))
            && redis_up(&stack)
    });
    let described = describe(&dsn, "redis");
    assert_eq!(described[0]["restarts"], json!(1), "{described:?}");
    assert_eq!(described[0]["last_exit"], json!("daemon is gone"));
}

#[test]
fn a_launcher_slower_than_start_secs_still_hands_its_daemon_to_rr() {
    let mut stack = Stack::new();
    let d = stack.dir.display();
    // The launcher outlives start_secs (as a daemon's does on a loaded machine), so rr counts
    // the service started on the launcher; then it forks the daemon and exits 0.
    std::fs::write(
        stack.dir.join("slow-launcher.sh"),
        format!("sleep 1\nsh -c 'echo $$ > {d}/run/slow.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &\nexit 0\n"),
    )
    .unwrap();
    let (yaml, dsn) = config(&format!(
        "  slow:\n    command: \"sh {d}/slow-launcher.sh\"\n    pid_file: {d}/run/slow.pid\n    start_secs: 100ms\n    stop_signal: SIGTERM\n"
    ));
    let mut server = RrServer::start(&yaml);
    let daemon = daemon_pid(&stack, "slow");
    stack.strays.push(daemon);
    wait_until(Duration::from_secs(10), "rr to follow the daemon", || {
        let described = describe(&dsn, "slow");
        described[0]["pid"] == json!(daemon) && described[0]["state"] == json!("running")
    });
    assert!(
        server.wait_for_line(
            "pid changed\t{\"name\":\"slow\",\"old\":",
            Duration::from_secs(10)
        ),
        "{}",
        server.output()
    );
    // The launcher's exit ended nothing: the daemon is still rr's to stop.
    assert_eq!(describe(&dsn, "slow")[0]["state"], json!("running"));
    assert_eq!(server.stop().code(), Some(0), "{}", server.output());
    wait_until(Duration::from_secs(5), "the daemon stopped with rr", || {
        !alive(daemon)
    });
    assert!(!stack.pid_file("slow").exists());
}

#[test]
fn daemons_are_found_again_after_rr_itself_was_killed() {
    if !daemons_installed() {
        return;
    }
    let stack = Stack::new();
    let (yaml, _) = config(&format!("{}{}", stack.redis(""), stack.nginx("")));
    let mut first = RrServer::start(&yaml);
    let pids = (daemon_pid(&stack, "redis"), daemon_pid(&stack, "nginx"));
    first.signal(Signal::KILL);
    first.wait_exit(Duration::from_secs(5)).expect("rr died");
    assert!(
        alive(pids.0) && alive(pids.1) && nginx_up(&stack),
        "the daemons outlive rr"
    );
    let mut second = RrServer::start(&yaml);
    for name in ["redis", "nginx"] {
        let line = format!("adopted running daemon\t{{\"name\":\"{name}\"");
        assert!(
            second.wait_for_line(&line, Duration::from_secs(10)),
            "{}",
            second.output()
        );
    }
    let output = second.output();
    assert!(
        output.contains(&format!(
            "adopted running daemon\t{{\"name\":\"redis\",\"pid\":{}}}",
            pids.0
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "adopted running daemon\t{{\"name\":\"nginx\",\"pid\":{}}}",
            pids.1
        )),
        "{output}"
    );
    assert_eq!(second.stop().code(), Some(0));
    assert!(
        !alive(pids.0) && !alive(pids.1),
        "the adopted daemons are stopped"
    );
}

#[test]
fn a_daemon_that_exits_at_once_fails_the_start_with_its_output_and_leaves_nothing() {
    if !daemons_installed() {
        return;
    }
    let stack = Stack::new();
    std::fs::write(stack.dir.join("nginx.conf"), "bogus_directive on;\n").unwrap();
    let d = stack.dir.display();
    let nginx = format!("  nginx:\n    command: \"nginx -c {d}/nginx.conf\"\n    pid_file: {d}/run/nginx.pid\n    priority: 30\n");
    let (yaml, _) = config(&format!("{}{nginx}", stack.redis("    priority: 10\n")));
    let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("service nginx: exited at once (exit status 1)"),
        "{output}"
    );
    assert!(
        output.contains("unknown directive \\\"bogus_directive\\\"")
            || output.contains("unknown directive \"bogus_directive\""),
        "{output}"
    );
    // Redis, started before it, was stopped again.
    assert!(
        output.contains("service was stopped\t{\"name\":\"redis\""),
        "{output}"
    );
    wait_until(Duration::from_secs(5), "redis stopped", || {
        !redis_up(&stack)
    });
}

#[test]
fn a_pid_file_naming_a_stranger_does_not_get_the_stranger_signalled() {
    if !daemons_installed() {
        return;
    }
    let mut stack = Stack::new();
    // A process started after the PID file was written: its pid was recycled.
    let path = stack.pid_file("redis");
    std::fs::write(&path, "1\n").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let mut stranger = Command::new("sleep").arg("300").spawn().unwrap();
    stack.strays.push(stranger.id());
    std::fs::write(&path, format!("{}\n", stranger.id())).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (yaml, _) = config(&stack.redis(""));
    let mut server = RrServer::start(&yaml);
    assert!(
        redis_up(&stack),
        "rr started its own daemon: {}",
        server.output()
    );
    assert_eq!(server.stop().code(), Some(0));
    assert_eq!(
        stranger.try_wait().unwrap(),
        None,
        "the stranger was not signalled"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn rr_style_services_loop_crash_restart_and_answer_the_rpc_service_from_php() {
    let dir = scratch_dir();
    std::fs::write(
        dir.join("ticker.php"),
        "<?php\nfor ($i = 0; ; $i++) { echo \"tick $i\\n\"; usleep(100000); }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("crash.php"),
        "<?php\necho \"crashing\\n\";\nexit(3);\n",
    )
    .unwrap();
    let php = php_client_tests::php_binary();
    let d = dir.display();
    let (yaml, dsn) = config(&format!(
        "  ticker:\n    command: \"{php} {d}/ticker.php\"\n    service_name_in_log: true\n  crasher:\n    command: \"{php} {d}/crash.php\"\n    remain_after_exit: true\n    restart_sec: 1\n"
    ));
    let server = RrServer::start(&yaml);
    // service_name_in_log: the records' logger is service.ticker (rr's name).
    assert!(
        server.wait_for(Duration::from_secs(10), |lines| lines.iter().any(|l| l
            .contains("\tservice.ticker")
            && l.contains("tick 3\t{\"service\":\"ticker\""))),
        "{}",
        server.output()
    );
    wait_until(
        Duration::from_secs(10),
        "two restarts of the crash loop",
        || describe(&dsn, "crasher")[0]["restarts"].as_u64() >= Some(2),
    );
    let crasher = &describe(&dsn, "crasher")[0];
    assert_eq!(crasher["last_exit"], json!("exit status 3"));
    assert!(server.wait_for_line(
        "wait	{\"name\":\"crasher\",\"error\":\"exit status 3\"}",
        Duration::from_secs(10)
    ));
    // rr's RPC service, protobuf as spiral/roadrunner-services calls it.
    let call = |method: &str, arg: Value| -> Result<Value, String> {
        let output = Command::new(php_client_tests::php_binary())
            .arg(php_client_tests::php_dir().join("service_call.php"))
            .args([dsn.as_str(), method, &arg.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        match stdout.strip_prefix("ERROR: ") {
            Some(error) => Err(error.to_owned()),
            None => Ok(serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}"))),
        }
    };
    let create = json!({"name": "extra", "command": format!("{php} {d}/ticker.php"), "process_num": 2, "env": {"app_env": "test"}});
    assert_eq!(call("Create", create.clone()), Ok(json!({"ok": true})));
    assert_eq!(
        call("Create", create),
        Err("the service with extra name already exists".into())
    );
    let statuses = call("Statuses", json!({"name": "extra"})).unwrap();
    let pids: Vec<u64> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{statuses}");
    assert!(
        statuses[0]["command"]
            .as_str()
            .unwrap()
            .ends_with("/ticker.php")
            && statuses[0]["memory_usage"].as_u64() > Some(0),
        "{statuses}"
    );
    let mut listed = call("List", json!({}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    listed.sort();
    assert_eq!(listed, ["crasher", "extra", "ticker"]);
    assert_eq!(
        call("Terminate", json!({"name": "extra"})),
        Ok(json!({"ok": true}))
    );
    wait_until(Duration::from_secs(5), "extra's processes gone", || {
        pids.iter().all(|pid| !alive(*pid as u32))
    });
    assert_eq!(
        call("Terminate", json!({"name": "extra"})),
        Err("the service with extra name doesn't exist".into())
    );
    assert_eq!(
        call(
            "Create",
            json!({"name": "none", "command": "x", "process_num": 0})
        ),
        Err("the service with none name should have at least 1 process".into())
    );
    let missing = call(
        "Create",
        json!({"name": "ghost", "command": "/nonexistent/program", "process_num": 1}),
    )
    .unwrap_err();
    assert!(
        missing.contains("service ghost") && missing.contains("No such file"),
        "{missing}"
    );
    // rr service stop | status | start: the exit codes scripts use.
    assert_eq!(
        run_rr(&server.dir, &["service", "stop", "ticker"])
            .status
            .code(),
        Some(0)
    );
    let stopped = run_rr(&server.dir, &["service", "status", "ticker"]);
    assert_eq!(
        stopped.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&stopped.stdout)
    );
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("stopped"));
    assert_eq!(
        run_rr(&server.dir, &["service", "start", "ticker"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run_rr(&server.dir, &["service", "status", "ticker"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run_rr(&server.dir, &["service", "status", "nope"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn a_crash_loop_backs_off_and_stops_at_its_start_limit() {
    let (yaml, dsn) = config(
        "  backoff:\n    command: \"false\"\n    restart: always\n    restart_sec: 1\n    restart_max_sec: 8\n    start_secs: 1s\n  limited:\n    command: \"false\"\n    restart: on-failure\n    restart_sec: 1\n    start_limit_burst: 2\n    start_limit_interval_sec: 60\n",
    );
    let server = RrServer::start(&yaml);
    wait_until(Duration::from_secs(10), "the start limit", || {
        describe(&dsn, "limited")[0]["state"] == json!("fatal")
    });
    assert!(
        server.wait_for_line(
            "start limit reached	{\"name\":\"limited\",\"burst\":2,\"interval\":60}",
            Duration::from_secs(10)
        ),
        "{}",
        server.output()
    );
    // Quick runs back off: 1 s, 2 s, then 4 s before the third restart.
    wait_until(Duration::from_secs(10), "the backoff to grow", || {
        describe(&dsn, "backoff")[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("restarting in 4s"))
    });
    assert_eq!(describe(&dsn, "backoff")[0]["restarts"], json!(2));
}

#[test]
fn bad_options_are_errors_naming_the_service_and_the_key() {
    for (services, expected) in [
        (
            "  a:\n    command: \"sleep 1\"\n    stop_signal: SIGFOO\n",
            "service.a.stop_signal",
        ),
        (
            "  a:\n    command: \"sleep 1\"\n    pid_file: /tmp/x.pid\n    process_num: 2\n",
            "service a: pid_file requires process_num: 1",
        ),
        (
            "  a:\n    process_num: 1\n",
            "service a: command is required",
        ),
        (
            "  a:\n    command: \"/nonexistent/daemon\"\n",
            "service a: /nonexistent/daemon: No such file or directory",
        ),
        (
            "  a:\n    command: \"sleep 1\"\n    pid_file: /proc/forbidden/a.pid\n",
            "service a: pid file folder /proc/forbidden",
        ),
    ] {
        let (yaml, _) = config(services);
        let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
        assert_eq!(status.code(), Some(1), "{output}");
        assert!(output.contains(expected), "{expected}:\n{output}");
        assert!(!output.contains("panicked"), "{output}");
    }
}

#[test]
fn exec_timeout_kills_a_run_and_kill_mode_group_reaches_a_wrappers_children() {
    let dir = scratch_dir();
    // A wrapper that does not exec: its child would survive a signal to the wrapper alone.
    std::fs::write(
        dir.join("wrapper.sh"),
        format!("sleep 300 &\necho $! > {}/child.pid\nwait\n", dir.display()),
    )
    .unwrap();
    let d = dir.display();
    let (yaml, dsn) = config(&format!(
        "  short:\n    command: \"sleep 30\"\n    exec_timeout: 1s\n  wrapped:\n    command: \"sh {d}/wrapper.sh\"\n    kill_mode: group\n    stop_signal: SIGTERM\n"
    ));
    let mut server = RrServer::start(&yaml);
    wait_until(
        Duration::from_secs(5),
        "exec_timeout to end the run",
        || describe(&dsn, "short")[0]["state"] == json!("exited"),
    );
    assert_eq!(
        describe(&dsn, "short")[0]["last_exit"],
        json!("signal: killed")
    );
    wait_until(Duration::from_secs(5), "the wrapper's child", || {
        read_pid(&dir.join("child.pid")).is_some()
    });
    let child = read_pid(&dir.join("child.pid")).unwrap();
    assert!(alive(child));
    assert_eq!(server.stop().code(), Some(0));
    wait_until(Duration::from_secs(5), "the group's members to die", || {
        !alive(child)
    });
}
