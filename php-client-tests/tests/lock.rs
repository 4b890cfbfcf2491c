//! The `lock` plugin through the real binary, driven from PHP processes over RPC with the
//! `lock.v1beta1` protobuf messages `roadrunner-php/lock` sends (spec devops § lock): a
//! config with only `rpc` and `lock`, as that package's setup has. Waiting calls run as
//! child processes; the tests know they wait from the server's debug line for their request,
//! and compare the wall-clock times PHP records around each call.

use php_client_tests::server::{free_port, RrServer};
use serde_json::{json, Value};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LOG_TIMEOUT: Duration = Duration::from_secs(15);

/// A call's answer and the wall-clock seconds PHP read just before and after it.
#[derive(Debug)]
struct Call {
    result: Value,
    started: f64,
    ended: f64,
}

impl Call {
    fn took(&self) -> f64 {
        self.ended - self.started
    }
}

fn command(dsn: &str, op: &str, resource: &str, args: &[&str]) -> Command {
    let mut command = Command::new(php_client_tests::php_binary());
    command
        .arg(php_client_tests::php_dir().join("lock_call.php"))
        .args([dsn, op, resource])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Reads `lock_call.php`'s output: Ok(the call) or Err(the server's error text).
fn parsed(output: &Output) -> Result<Call, String> {
    let stdout = String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned();
    if let Some(error) = stdout.strip_prefix("ERROR: ") {
        return Err(error.to_owned());
    }
    assert!(
        output.status.success(),
        "lock_call failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}"));
    Ok(Call {
        result: value["result"].clone(),
        started: value["started"].as_f64().expect("started"),
        ended: value["ended"].as_f64().expect("ended"),
    })
}

/// Runs `lock_call.php DSN OP RESOURCE ARGS…` to its end.
fn call(dsn: &str, op: &str, resource: &str, args: &[&str]) -> Result<Call, String> {
    parsed(&command(dsn, op, resource, args).output().expect("php runs"))
}

/// A call still running in its own PHP process (killed if the test ends first).
struct Pending(Option<Child>);

impl Pending {
    fn start(dsn: &str, op: &str, resource: &str, args: &[&str]) -> Self {
        Self(Some(
            command(dsn, op, resource, args)
                .spawn()
                .expect("php starts"),
        ))
    }

    fn finish(mut self) -> Result<Call, String> {
        let child = self.0.take().expect("running");
        parsed(&child.wait_with_output().expect("php ends"))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A server with only `rpc` and `lock` (debug logs: the tests wait on the request lines);
/// its RPC DSN.
fn start() -> (RrServer, String) {
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let yaml =
        format!("version: \"3\"\nrpc:\n  listen: {dsn}\nlock: {{}}\nlogs:\n  level: debug\n");
    (RrServer::start(&yaml), dsn)
}

/// Waits until the server logged `request` (e.g. `lock request received`) for `id`.
fn wait_for_request(server: &RrServer, request: &str, id: &str) {
    let id_field = format!("\"id\":\"{id}\"");
    assert!(
        server.wait_for(LOG_TIMEOUT, |lines| lines
            .iter()
            .any(|line| line.contains(request) && line.contains(&id_field))),
        "no {request} for {id}:\n{}",
        server.output()
    );
}

fn ok(result: Result<Call, String>) -> Value {
    result.expect("the call succeeds").result
}

#[test]
fn lock_exists_release() {
    let (_server, dsn) = start();
    assert_eq!(ok(call(&dsn, "lock", "res", &["a"])), json!("a"));
    assert_eq!(ok(call(&dsn, "exists", "res", &[])), json!(true));
    assert_eq!(ok(call(&dsn, "exists", "res", &["a"])), json!(true));
    assert_eq!(ok(call(&dsn, "exists", "res", &["other"])), json!(false));
    assert_eq!(ok(call(&dsn, "exists", "unknown", &[])), json!(false));
    // Without an id, PHP makes a uuid4.
    let generated = ok(call(&dsn, "lock", "res2", &[]));
    assert_eq!(generated.as_str().map(str::len), Some(36), "{generated}");
    // A non-owner's release fails and the lock stays.
    assert_eq!(ok(call(&dsn, "release", "res", &["other"])), json!(false));
    assert_eq!(ok(call(&dsn, "exists", "res", &["a"])), json!(true));
    assert_eq!(ok(call(&dsn, "release", "res", &["a"])), json!(true));
    assert_eq!(ok(call(&dsn, "exists", "res", &[])), json!(false));
    assert_eq!(ok(call(&dsn, "release", "res", &["a"])), json!(false));
    // An empty resource name is a resource like any other.
    assert_eq!(ok(call(&dsn, "lock", "", &["x"])), json!("x"));
}

#[test]
fn an_empty_id_is_rr_s_error_and_force_release_takes_none() {
    let (_server, dsn) = start();
    for op in ["lock", "lockRead", "release", "exists", "updateTTL"] {
        assert_eq!(
            call(&dsn, op, "res", &[""]).map(|c| c.result),
            Err("empty ID is not allowed".to_owned()),
            "{op}"
        );
    }
    assert_eq!(ok(call(&dsn, "forceRelease", "res", &[])), json!(false));
}

#[test]
fn a_waiter_gets_the_lock_right_after_the_release_and_wait_zero_fails_at_once() {
    let (server, dsn) = start();
    ok(call(&dsn, "lock", "res", &["a"]));
    let immediate = call(&dsn, "lock", "res", &["b", "0", "0"]).expect("answers");
    assert_eq!(immediate.result, json!(false));
    assert!(immediate.took() < 0.5, "wait 0 took {} s", immediate.took());
    let bounded = call(&dsn, "lock", "res", &["b", "0", "0.5"]).expect("answers");
    assert_eq!(bounded.result, json!(false));
    assert!(
        (0.45..3.0).contains(&bounded.took()),
        "wait 0.5 s took {} s",
        bounded.took()
    );

    let waiter = Pending::start(&dsn, "lock", "res", &["c", "0", "20"]);
    wait_for_request(&server, "lock request received", "c");
    let release = call(&dsn, "release", "res", &["a"]).expect("answers");
    assert_eq!(release.result, json!(true));
    let got = waiter.finish().expect("answers");
    assert_eq!(got.result, json!("c"));
    let after_release = got.ended - release.started;
    assert!(
        after_release < 0.2,
        "the waiter got the lock {after_release} s after the release began"
    );
    assert_eq!(ok(call(&dsn, "exists", "res", &["c"])), json!(true));
}

#[test]
fn readers_share_and_a_writer_waits_for_all_of_them() {
    let (server, dsn) = start();
    assert_eq!(ok(call(&dsn, "lockRead", "res", &["r1"])), json!("r1"));
    let second = call(&dsn, "lockRead", "res", &["r2"]).expect("answers");
    assert_eq!(second.result, json!("r2"));
    assert!(second.took() < 0.5, "the second reader waited");
    let bounded = call(&dsn, "lock", "res", &["w0", "0", "0.5"]).expect("answers");
    assert_eq!(bounded.result, json!(false));
    assert!(bounded.took() >= 0.45, "took {}", bounded.took());

    let writer = Pending::start(&dsn, "lock", "res", &["w", "0", "20"]);
    wait_for_request(&server, "lock request received", "w");
    assert_eq!(ok(call(&dsn, "release", "res", &["r1"])), json!(true));
    assert_eq!(ok(call(&dsn, "exists", "res", &["w"])), json!(false));
    assert_eq!(ok(call(&dsn, "release", "res", &["r2"])), json!(true));
    assert_eq!(writer.finish().expect("answers").result, json!("w"));
    // Behind a writer, a reader and a second writer wait; after its release a reader gets it.
    assert_eq!(
        ok(call(&dsn, "lockRead", "res", &["r3", "0", "0.2"])),
        json!(false)
    );
    assert_eq!(
        ok(call(&dsn, "lock", "res", &["w2", "0", "0.2"])),
        json!(false)
    );
    assert_eq!(ok(call(&dsn, "release", "res", &["w"])), json!(true));
    assert_eq!(ok(call(&dsn, "lockRead", "res", &["r3"])), json!("r3"));
}

/// rr's bug: after a writer timed out behind two readers, their releases failed and the
/// resource stayed locked for good.
#[test]
fn a_writer_timing_out_behind_two_readers_does_not_wedge_the_resource() {
    let (_server, dsn) = start();
    ok(call(&dsn, "lockRead", "res", &["x1"]));
    ok(call(&dsn, "lockRead", "res", &["x2"]));
    assert_eq!(
        ok(call(&dsn, "lock", "res", &["xw", "0", "0.3"])),
        json!(false)
    );
    assert_eq!(ok(call(&dsn, "release", "res", &["x1"])), json!(true));
    assert_eq!(ok(call(&dsn, "release", "res", &["x2"])), json!(true));
    assert_eq!(ok(call(&dsn, "lock", "res", &["w2"])), json!("w2"));
}

#[test]
fn a_lock_expires_at_its_ttl_and_its_waiter_gets_it() {
    let (server, dsn) = start();
    let locked = call(&dsn, "lock", "res", &["a", "1"]).expect("answers");
    assert_eq!(locked.result, json!("a"));
    let waiter = call(&dsn, "lock", "res", &["b", "0", "10"]).expect("answers");
    assert_eq!(waiter.result, json!("b"));
    let held = waiter.ended - locked.started;
    assert!((0.9..3.0).contains(&held), "ttl 1 s held {held} s");
    assert!(server.wait_for_line("r/lock: ttl expired", LOG_TIMEOUT));
    assert_eq!(ok(call(&dsn, "exists", "res", &["a"])), json!(false));
    assert_eq!(ok(call(&dsn, "exists", "res", &["b"])), json!(true));

    // Without a waiter, the expiry is seen by `exists` too.
    let read = call(&dsn, "lockRead", "other", &["r", "0.5"]).expect("answers");
    assert_eq!(read.result, json!("r"));
    assert!(server.wait_for(LOG_TIMEOUT, |lines| lines
        .iter()
        .filter(|line| line.contains("r/lock: ttl expired"))
        .count()
        == 2));
    let gone = call(&dsn, "exists", "other", &[]).expect("answers");
    assert_eq!(gone.result, json!(false));
    assert!(gone.started - read.started >= 0.45);
}

#[test]
fn update_ttl_restarts_the_timer() {
    let (_server, dsn) = start();
    ok(call(&dsn, "lock", "res", &["a", "1"]));
    let updated = call(&dsn, "updateTTL", "res", &["a", "3"]).expect("answers");
    assert_eq!(updated.result, json!(true));
    assert_eq!(
        ok(call(&dsn, "updateTTL", "res", &["other", "3"])),
        json!(false)
    );
    assert_eq!(
        ok(call(&dsn, "updateTTL", "unknown", &["a", "3"])),
        json!(false)
    );
    let waiter = call(&dsn, "lock", "res", &["b", "0", "10"]).expect("answers");
    assert_eq!(waiter.result, json!("b"));
    let held = waiter.ended - updated.started;
    assert!((2.9..5.0).contains(&held), "held {held} s after the update");
}

#[test]
fn force_release_drops_every_lock_of_the_resource() {
    let (_server, dsn) = start();
    assert_eq!(ok(call(&dsn, "forceRelease", "res", &[])), json!(false));
    ok(call(&dsn, "lockRead", "res", &["r1"]));
    ok(call(&dsn, "lockRead", "res", &["r2"]));
    assert_eq!(ok(call(&dsn, "forceRelease", "res", &[])), json!(true));
    assert_eq!(ok(call(&dsn, "exists", "res", &[])), json!(false));
    assert_eq!(ok(call(&dsn, "release", "res", &["r1"])), json!(false));
    assert_eq!(ok(call(&dsn, "lock", "res", &["w"])), json!("w"));
}

/// A stop does not wait for the calls waiting for a lock: they answer false at once and
/// the server exits 0 well within its grace period.
#[test]
fn a_stop_answers_the_waiting_calls_at_once() {
    let (mut server, dsn) = start();
    ok(call(&dsn, "lock", "res", &["a"]));
    let waiter = Pending::start(&dsn, "lock", "res", &["b", "0", "60"]);
    wait_for_request(&server, "lock request received", "b");
    let stopping = Instant::now();
    assert!(server.stop().success(), "{}", server.output());
    let answer = waiter.finish().expect("answers");
    assert_eq!(answer.result, json!(false));
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the stop took {:?}",
        stopping.elapsed()
    );
}

/// 20 PHP processes take the same lock in turn: each once, the holds never overlap.
#[test]
fn twenty_processes_contending_hold_the_lock_one_at_a_time() {
    const PROCESSES: usize = 20;
    let (_server, dsn) = start();
    let file = tempfile_path();
    let contenders: Vec<Pending> = (0..PROCESSES)
        .map(|n| {
            let id = format!("p{n}");
            Pending::start(&dsn, "contend", "res", &[&id, "0.1", &file])
        })
        .collect();
    for contender in contenders {
        assert_eq!(contender.finish().expect("answers").result, json!(true));
    }
    let text = std::fs::read_to_string(&file).expect("the holds file");
    let _ = std::fs::remove_file(&file);
    let mut holds: Vec<(String, f64, f64)> = text
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            (
                parts[0].to_owned(),
                parts[1].parse().expect("start"),
                parts[2].parse().expect("end"),
            )
        })
        .collect();
    assert_eq!(holds.len(), PROCESSES, "{text}");
    let mut ids: Vec<&str> = holds.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), PROCESSES, "each acquires exactly once: {text}");
    holds.sort_by(|a, b| a.1.total_cmp(&b.1));
    for pair in holds.windows(2) {
        assert!(pair[0].2 <= pair[1].1, "overlapping holds: {pair:?}");
    }
    // The hand-over is a wake-up, not a poll: the gaps between holds stay small.
    let span = holds[PROCESSES - 1].2 - holds[0].1;
    eprintln!("{PROCESSES} holds of 0.1 s took {span:.3} s from the first to the last");
    assert!(span < 10.0, "{PROCESSES} holds of 0.1 s took {span} s");
}

fn tempfile_path() -> String {
    php_client_tests::server::scratch_dir()
        .join("lock-holds.txt")
        .to_string_lossy()
        .into_owned()
}
