//! The RPC control plane through the real binary: every method over tcp and unix from our
//! PHP goridge RPC client, an app calling the server back over RR_RPC, `rr workers` cell by
//! cell, `rr reset` under load, and bad input that must not hurt the server.

use php_client_tests::http_client::{get, Client};
use php_client_tests::rpc_call::php_call;
use php_client_tests::server::{free_port, http_config, run_rr, RrServer};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `http_config` plus an `rpc` section listening on `listen`.
fn config_with_rpc(listen: &str) -> String {
    format!("{}rpc:\n  listen: {listen}\n", http_config("", ""))
}

fn call_json(dsn: &str, method: &str, arg: Value) -> Value {
    serde_json::from_str(&php_call(dsn, method, &arg, false).unwrap()).unwrap()
}

fn worker_pids(dsn: &str) -> Vec<u64> {
    let reply = call_json(dsn, "informer.Workers", json!("http"));
    let mut pids: Vec<u64> = reply["workers"]
        .as_array()
        .map(|workers| workers.iter().filter_map(|w| w["pid"].as_u64()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Polls `informer.Workers` until `condition` holds over the ready workers' pids.
fn wait_for_workers(dsn: &str, condition: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = call_json(dsn, "informer.Workers", json!("http"));
        let ready: Vec<u64> = reply["workers"]
            .as_array()
            .map(|workers| {
                workers
                    .iter()
                    .filter(|w| w["statusStr"] == "ready" || w["statusStr"] == "working")
                    .filter_map(|w| w["pid"].as_u64())
                    .collect()
            })
            .unwrap_or_default();
        if condition(&ready) {
            return ready;
        }
        assert!(Instant::now() < deadline, "workers never became {ready:?}+");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn check_every_method(dsn: &str) {
    assert_eq!(
        call_json(dsn, "informer.List", json!(true)),
        json!(["http"])
    );
    let workers = call_json(dsn, "informer.Workers", json!("http"));
    let list = workers["workers"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{workers}");
    for worker in list {
        let keys: Vec<&str> = worker
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "pid",
            "status",
            "numExecs",
            "created",
            "memoryUsage",
            "CPUPercent",
            "command",
            "statusStr",
        ] {
            assert!(keys.contains(&key), "{key} missing in {worker}");
        }
        assert_eq!(worker["status"], 1);
        assert_eq!(worker["statusStr"], "ready");
        assert!(worker["memoryUsage"].as_u64().unwrap() > 1_000_000);
        assert!(worker["created"].as_u64().unwrap() > 1_700_000_000_000_000_000);
        assert!(worker["CPUPercent"].is_f64() || worker["CPUPercent"].is_u64());
    }
    assert_eq!(
        call_json(dsn, "informer.Workers", json!("nope")),
        json!({"workers": null})
    );
    assert_eq!(call_json(dsn, "informer.Jobs", json!("http")), Value::Null);
    assert_eq!(
        call_json(dsn, "resetter.List", json!(true)),
        json!(["http"])
    );
    assert_eq!(
        call_json(dsn, "rpc.Version", json!(true)),
        json!("2025.1.15")
    );
    let config: Value =
        serde_json::from_str(&php_call(dsn, "rpc.Config", &json!(true), true).unwrap()).unwrap();
    assert_eq!(config["http"]["pool"]["num_workers"], 2, "{config}");
    assert_eq!(
        call_json(dsn, "status.Status", json!("http")),
        json!({"code": 200})
    );
    assert_eq!(
        call_json(dsn, "status.Ready", json!("http")),
        json!({"code": 200})
    );
    // Add one, then remove one: the pool goes to 3 and back to 2.
    let before = worker_pids(dsn);
    assert_eq!(
        call_json(dsn, "informer.AddWorker", json!("http")),
        json!(false)
    );
    let grown = wait_for_workers(dsn, |pids| pids.len() == 3);
    assert!(before.iter().all(|pid| grown.contains(pid)));
    assert_eq!(
        call_json(dsn, "informer.RemoveWorker", json!("http")),
        json!(false)
    );
    wait_for_workers(dsn, |pids| pids.len() == 2);
    // Errors in net/rpc's words.
    assert_eq!(
        php_call(dsn, "informer.Nope", &json!(true), false),
        Err("rpc: can't find method informer.Nope".into())
    );
    assert_eq!(
        php_call(dsn, "nothing.Here", &json!(true), false),
        Err("rpc: can't find service nothing.Here".into())
    );
    assert_eq!(
        php_call(dsn, "resetter.Reset", &json!("nope"), false),
        Err("resetter_rpc_reset: resetter_plugin_reset_by_name: no such plugin: nope".into())
    );
    assert_eq!(
        php_call(dsn, "informer.AddWorker", &json!("nope"), false),
        Err("plugin nope does not support workers management".into())
    );
}

#[test]
fn every_method_answers_over_tcp() {
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let server = RrServer::start(&config_with_rpc(&dsn));
    check_every_method(&dsn);
    // A worker calls the server back over RR_RPC, as apps do.
    let reply = get(server.http(), "/rpc");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["workers"]
        .as_array()
        .is_some_and(|w| w.len() == 2));
}

#[test]
fn every_method_answers_over_unix() {
    let dir = php_client_tests::server::scratch_dir();
    let socket = dir.join("rr.sock");
    let dsn = format!("unix://{}", socket.display());
    let server = RrServer::start(&config_with_rpc(&dsn));
    check_every_method(&dsn);
    drop(server);
    assert!(!socket.exists(), "the socket file goes with the server");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rr_workers_prints_rr_s_table() {
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let server = RrServer::start(&config_with_rpc(&dsn));
    for _ in 0..3 {
        assert_eq!(get(server.http(), "/hello").status, 200);
    }
    let output = run_rr(&server.dir, &["workers"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "Workers of [http]:", "{stdout}");
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('│')
            .split('│')
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    assert_eq!(
        cells(lines[2]),
        ["PID", "STATUS", "EXECS", "MEMORY", "CPU %", "CREATED"]
    );
    let rows: Vec<Vec<String>> = lines[4..6].iter().map(|line| cells(line)).collect();
    let pids = worker_pids(&dsn);
    let mut execs = 0;
    for (row, pid) in rows.iter().zip(&pids) {
        assert_eq!(row[0], pid.to_string(), "rows sorted by pid: {stdout}");
        assert_eq!(row[1], "ready");
        execs += row[2].parse::<u64>().unwrap();
        assert!(row[3].ends_with(" MB"), "{}", row[3]);
        let (whole, decimals) = row[4].split_once('.').unwrap();
        assert!(
            whole.parse::<u32>().is_ok() && decimals.len() == 2,
            "{}",
            row[4]
        );
        assert!(
            row[5] == "now" || row[5].ends_with("seconds ago") || row[5] == "1 second ago",
            "{}",
            row[5]
        );
    }
    assert_eq!(execs, 3);
    assert!(lines[6].starts_with('└'), "{stdout}");
    // Named plugins; an unknown one prints nothing.
    let output = run_rr(&server.dir, &["workers", "http"]);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("Workers of [http]:"));
    let output = run_rr(&server.dir, &["workers", "nope"]);
    assert!(output.status.success() && output.stdout.is_empty());
}

#[test]
fn rr_reset_replaces_every_worker_without_failing_a_request() {
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let server = RrServer::start(&config_with_rpc(&dsn));
    let address = server.http();
    let before = worker_pids(&dsn);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(address);
                while !stop.load(Ordering::Relaxed) {
                    let started = std::time::Instant::now();
                    let reply = client.get("/hello");
                    if reply.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let elapsed = started.elapsed();
                        failed.lock().unwrap().push(format!(
                            "{} after {elapsed:?}: {}",
                            reply.status,
                            reply.text()
                        ));
                    }
                }
            })
        })
        .collect();
    while served.load(Ordering::Relaxed) < 50 {
        std::thread::yield_now();
    }
    let output = run_rr(&server.dir, &["reset"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resetting plugin: [http]"), "{stderr}");
    assert!(stderr.contains("plugin reset: [http]"), "{stderr}");
    let during = served.load(Ordering::Relaxed);
    while served.load(Ordering::Relaxed) < during + 50 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(failed.is_empty(), "failed during the reset: {failed:?}");
    let after = wait_for_workers(&dsn, |pids| pids.len() == 2);
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "every pid changes: {before:?} → {after:?}"
    );
}

#[test]
fn bad_rpc_input_is_refused_and_the_server_goes_on() {
    use std::io::{Read, Write};
    let port = free_port();
    let dsn = format!("tcp://127.0.0.1:{port}");
    let _server = RrServer::start(&config_with_rpc(&dsn));
    let connect = || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };
    let closed = |mut stream: std::net::TcpStream| {
        let mut byte = [0; 1];
        matches!(stream.read(&mut byte), Ok(0))
    };
    // A client that connects and never sends holds nothing up.
    let silent = connect();
    // Garbage: closed without a reply.
    let mut garbage = connect();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(closed(garbage));
    // A frame announcing 4 GiB: closed, nothing allocated for it.
    let mut huge = connect();
    let mut header = vec![0x15, 0x08];
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(&[0, 0]);
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&4u32.to_le_bytes());
    huge.write_all(&header).unwrap();
    assert!(closed(huge));
    // One option instead of two: closed.
    let mut one_option = connect();
    let mut frame = Vec::new();
    ringrunner_protocol::frame::FrameHeader::with_options(
        ringrunner_protocol::frame::Flags::CODEC_JSON,
        &[1],
        4,
    )
    .unwrap()
    .encode_frame_into(b"true", &mut frame)
    .unwrap();
    one_option.write_all(&frame).unwrap();
    assert!(closed(one_option));
    // An argument that is not JSON: an error reply, the connection usable.
    assert!(php_call(&dsn, "informer.Workers", &json!(true), false).is_ok());
    let error = php_call(&dsn, "informer.List", &json!("x"), true).unwrap_err();
    assert!(error.contains("raw codec"), "{error}");
    // The server still answers everything.
    assert_eq!(worker_pids(&dsn).len(), 2);
    drop(silent);
}

#[test]
fn client_commands_fail_fast_with_rr_s_texts() {
    let dir = php_client_tests::server::scratch_dir();
    std::fs::write(dir.join(".rr.yaml"), "version: '3'\n").unwrap();
    let output = run_rr(&dir, &["workers"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: rpc service not specified in the configuration. Tip: add\n rpc:\n\r listen: rr_rpc_address\n"
    );
    let port = free_port();
    let started = Instant::now();
    let output = run_rr(
        &dir,
        &["reset", "-o", &format!("rpc.listen=tcp://127.0.0.1:{port}")],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: dial tcp 127.0.0.1:{port}: connect: connection refused\n")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(dir);
}

/// What Laravel Octane runs (its StartRoadRunnerCommand), from an app folder whose
/// `.rr.yaml` is empty.
fn octane_serve(dir: &Path, http_port: u16, rpc_port: u16) -> std::process::Child {
    std::fs::write(dir.join(".rr.yaml"), "").unwrap();
    let worker = php_client_tests::php_dir().join("workers/http.php");
    let overrides = [
        "version=3".to_owned(),
        format!("http.address=127.0.0.1:{http_port}"),
        format!(
            "server.command={},{}",
            php_client_tests::php_binary(),
            worker.display()
        ),
        "http.pool.num_workers=2".into(),
        "http.pool.max_jobs=500".into(),
        format!("rpc.listen=tcp://127.0.0.1:{rpc_port}"),
        "http.pool.supervisor.exec_ttl=30s".into(),
        format!("http.static.dir={}", dir.join("public").display()),
        "http.middleware=static".into(),
        "logs.mode=production".into(),
        "logs.level=debug".into(),
        "logs.output=stdout".into(),
        "logs.encoding=json".into(),
    ];
    let mut command = Command::new(php_client_tests::server::rr_binary());
    command.arg("-c").arg(dir.join(".rr.yaml"));
    for value in &overrides {
        command.arg("-o").arg(value);
    }
    command
        .arg("serve")
        .current_dir(dir)
        .env("RINGRUNNER_SHARDS", "2")
        .env("LARAVEL_OCTANE", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn laravel_octane_s_command_lines_work_unchanged() {
    use std::io::{BufRead, BufReader};
    let version = run_rr(Path::new("."), &["--version"]);
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.starts_with("rr version "), "{version}");
    let dir = php_client_tests::server::scratch_dir();
    std::fs::create_dir_all(dir.join("public")).unwrap();
    let (http_port, rpc_port) = (free_port(), free_port());
    let mut child = octane_serve(&dir, http_port, rpc_port);
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let address: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    assert!(php_client_tests::server::wait_for_port(
        address,
        Duration::from_secs(30)
    ));
    let first = get(address, "/pid").text();
    assert!(first.trim().parse::<u32>().is_ok(), "{first}");
    // Every stdout line but the banner is JSON with Octane's keys; the request has its
    // `http log` line.
    let mut http_log = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_log.is_none() && Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) else {
            break;
        };
        if line.starts_with("[INFO] RoadRunner server started") {
            continue;
        }
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        for key in ["msg", "logger", "level"] {
            assert!(value.get(key).is_some(), "{key} missing: {line}");
        }
        if value["msg"] == "http log" {
            http_log = Some(value);
        }
    }
    let http_log = http_log.expect("an http log line");
    assert_eq!(http_log["level"], "info");
    assert_eq!(http_log["method"], "GET");
    assert_eq!(http_log["URI"], "/pid");
    assert_eq!(http_log["status"], 200);
    assert!(http_log["elapsed"].is_u64(), "{http_log}");
    assert!(http_log["remote_address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Octane's reload: no -c, no version, -s; nothing on stderr; new workers.
    let pids_before = {
        let dsn = format!("tcp://127.0.0.1:{rpc_port}");
        worker_pids(&dsn)
    };
    let reset = run_rr(
        &dir,
        &[
            "reset",
            "-o",
            &format!("rpc.listen=tcp://127.0.0.1:{rpc_port}"),
            "-s",
        ],
    );
    assert!(reset.status.success());
    assert_eq!(String::from_utf8_lossy(&reset.stderr), "");
    let dsn = format!("tcp://127.0.0.1:{rpc_port}");
    let after = wait_for_workers(&dsn, |pids| pids.len() == 2);
    assert!(after.iter().all(|pid| !pids_before.contains(pid)));
    // Octane's stop: SIGTERM, a clean exit.
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = php_client_tests::server::wait_child_exit(&mut child, Duration::from_secs(30))
        .expect("rr exits");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_demo_serves_and_rr_workers_reads_its_rpc_section() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/.rr.yaml");
    let (http_port, status_port, rpc_port) = (free_port(), free_port(), free_port());
    let env = [
        ("RR_DEMO_ADDRESS", format!("127.0.0.1:{http_port}")),
        ("RR_DEMO_STATUS", format!("127.0.0.1:{status_port}")),
        ("RR_DEMO_RPC", format!("tcp://127.0.0.1:{rpc_port}")),
    ];
    let mut child = Command::new(php_client_tests::server::rr_binary())
        .arg("serve")
        .arg("-c")
        .arg(&demo)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RINGRUNNER_SHARDS", "2")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    assert!(php_client_tests::server::wait_for_port(
        address,
        Duration::from_secs(30)
    ));
    let reply = get(address, "/?name=you");
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("you"), "{}", reply.text());
    let workers = Command::new(php_client_tests::server::rr_binary())
        .arg("workers")
        .arg("-c")
        .arg(&demo)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&workers.stdout);
    assert!(workers.status.success(), "{stdout}");
    assert!(stdout.starts_with("Workers of [http]:"), "{stdout}");
    assert_eq!(stdout.matches("│ ready ").count(), 2, "{stdout}");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = php_client_tests::server::wait_child_exit(&mut child, Duration::from_secs(30))
        .expect("rr exits");
    assert!(status.success(), "{status}");
}

#[test]
fn rr_workers_interactive_redraws_until_interrupted() {
    use std::io::Read;
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let server = RrServer::start(&config_with_rpc(&dsn));
    let mut child = Command::new(php_client_tests::server::rr_binary())
        .args(["workers", "-i"])
        .current_dir(&server.dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Two screens: cleared, then drawn again a second later.
    let mut seen = Vec::new();
    let mut chunk = [0; 4096];
    let screens = |seen: &[u8]| String::from_utf8_lossy(seen).matches("└").count();
    while screens(&seen) < 2 {
        let read = stdout.read(&mut chunk).unwrap();
        assert!(read > 0, "rr workers -i ended early");
        seen.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(
        text.matches("\x1b[2J\x1b[1;1HWorkers of [http]:").count(),
        2,
        "{text}"
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = php_client_tests::server::wait_child_exit(&mut child, Duration::from_secs(10))
        .expect("rr workers -i exits on SIGINT");
    assert!(status.success(), "{status}");
}

#[test]
fn rr_stop_signals_the_pid_in_the_pid_file() {
    let mut server = RrServer::start_with(&http_config("", ""), &["-p"]).unwrap();
    let pid_file = server.dir.join(".pid");
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let output = run_rr(&server.dir, &["stop"]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.ends_with(&format!(" stopping process with PID: {pid}\n")),
        "{stderr}"
    );
    let status = server.wait_exit(Duration::from_secs(30)).expect("rr exits");
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "the .pid file goes with the server");
    let output = run_rr(&server.dir, &["stop"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("open .pid: no such file"));
}

#[test]
fn a_client_that_stops_reading_its_replies_is_closed_after_write_timeout() {
    use std::io::{Read, Write};
    let port = free_port();
    let dsn = format!("tcp://127.0.0.1:{port}");
    // An unknown section rides along in `rpc.Config`'s reply: 256 KiB a reply.
    let pad = "x".repeat(256 * 1024);
    let yaml = format!(
        "{}rpc:\n  listen: {dsn}\n  write_timeout: 3s\npad: \"{pad}\"\n",
        http_config("", "")
    );
    let server = RrServer::start(&yaml);
    // 200 calls (50 MiB of replies, far past the socket buffers), never a byte read.
    let mut requests = Vec::new();
    for seq in 0..200 {
        ringrunner_protocol::rpc::encode_rpc_frame(
            seq,
            ringrunner_protocol::frame::Flags::CODEC_JSON,
            b"rpc.Config",
            b"true",
            &mut requests,
        )
        .unwrap();
    }
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let reader = stalled.try_clone().unwrap();
    // Once rr stops reading requests (it is blocked on a reply), this write blocks too,
    // until rr closes the connection.
    let writer = std::thread::spawn(move || {
        let _ = stalled.write_all(&requests);
    });
    // Other clients are answered while that one is stuck.
    assert_eq!(worker_pids(&dsn).len(), 2);
    assert!(
        server.wait_for_line(
            "rpc client stopped reading its replies",
            Duration::from_secs(60)
        ),
        "{}",
        server.output()
    );
    writer.join().unwrap();
    // What the kernel had buffered drains, then the end: the connection is closed.
    let mut reader = reader;
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut drained = Vec::new();
    let end = reader.read_to_end(&mut drained);
    assert!(
        end.is_ok() || end.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection stays open"
    );
    assert!(drained.len() < 200 * pad.len(), "every reply was written");
    assert_eq!(worker_pids(&dsn).len(), 2);
}
