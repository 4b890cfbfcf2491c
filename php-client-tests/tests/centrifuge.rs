//! The centrifuge plugin through the real binary (spec centrifuge): the harness plays
//! Centrifugo on both sides with grpcio, a gRPC client sending proxy events to rr
//! (`python/grpc_client.py`, messages hand-encoded from Centrifugo's proxy proto field
//! numbers) and a gRPC server recording API calls (`python/centrifugo_api.py`); the worker is
//! ours (`php/centrifuge/worker.php`), its behaviour chosen per event by metadata x-action.

use php_client_tests::grpc::{finish, spawn_client};
use php_client_tests::pki::Pki;
use php_client_tests::server::{curl, free_port, run_rr, Launch, RrServer};
use ringrunner::plugins::rpc::services::{base64, base64_decode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const PROXY: &str = "/centrifugal.centrifugo.proxy.CentrifugoProxy";
/// How long a harness wait may take on the loaded machine.
const WAIT: Duration = Duration::from_secs(30);

// ---- protobuf, by hand -----------------------------------------------------------------

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value > 0x7f {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field.
fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3 | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
}

/// The fields of a message (varint and length-delimited ones, as these messages hold).
fn fields(message: &[u8]) -> Vec<(u64, Field)> {
    let mut out = Vec::new();
    let mut at = 0;
    let read = |at: &mut usize| {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = message[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return value;
            }
        }
    };
    while at < message.len() {
        let key = read(&mut at);
        match key & 7 {
            0 => out.push((key >> 3, Field::Varint(read(&mut at)))),
            2 => {
                let len = usize::try_from(read(&mut at)).expect("length");
                out.push((key >> 3, Field::Bytes(message[at..at + len].to_vec())));
                at += len;
            }
            other => panic!("wire type {other} in {message:?}"),
        }
    }
    out
}

fn bytes_of(message: &[u8], number: u64) -> Option<Vec<u8>> {
    fields(message)
        .into_iter()
        .find_map(|(n, value)| match value {
            Field::Bytes(bytes) if n == number => Some(bytes),
            _ => None,
        })
}

fn varint_of(message: &[u8], number: u64) -> Option<u64> {
    fields(message)
        .into_iter()
        .find_map(|(n, value)| match value {
            Field::Varint(v) if n == number => Some(v),
            _ => None,
        })
}

fn text_of(message: &[u8], number: u64) -> String {
    String::from_utf8(bytes_of(message, number).unwrap_or_default()).expect("utf-8")
}

// ---- the fake Centrifugo API -------------------------------------------------------------

/// `python/centrifugo_api.py`: a gRPC server recording the API calls rr makes.
struct FakeApi {
    child: Child,
    port: u16,
    calls: Arc<(Mutex<Vec<Value>>, Condvar)>,
}

impl FakeApi {
    fn start(mode: &str) -> Self {
        Self::start_with(&[mode])
    }

    /// Started with `args` (the mode, then the TLS files).
    fn start_with(args: &[&str]) -> Self {
        let script = php_client_tests::php_dir().join("../python/centrifugo_api.py");
        let mut child = Command::new(php_client_tests::python::venv_program("python"))
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python runs");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a first line").expect("readable");
        let port = first
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("not a port line: {first}"));
        let calls = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let recorded = Arc::clone(&calls);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let call: Value = serde_json::from_str(&line).expect("a JSON call");
                recorded.0.lock().unwrap().push(call);
                recorded.1.notify_all();
            }
        });
        Self { child, port, calls }
    }

    /// The request message of the first recorded call of `method`, waiting for it.
    fn request_of(&self, method: &str) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let mut calls = self.calls.0.lock().unwrap();
        loop {
            if let Some(call) = calls.iter().find(|call| call["method"] == method) {
                return base64_decode(call["request_b64"].as_str().unwrap_or_default())
                    .expect("base64");
            }
            let now = Instant::now();
            assert!(now < deadline, "no {method} call recorded: {calls:?}");
            calls = self.calls.1.wait_timeout(calls, deadline - now).unwrap().0;
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- rr and the proxy client ---------------------------------------------------------------

struct Harness {
    rr: RrServer,
    proxy_port: u16,
}

fn config(proxy_port: u16, api_port: u16, workers: usize, extra: &str) -> String {
    format!(
        "version: '3'\nrpc:\n  listen: tcp://127.0.0.1:{rpc}\nserver:\n  command: \"{php} {worker}\"\n\
         centrifuge:\n  proxy_address: tcp://127.0.0.1:{proxy_port}\n  grpc_api_address: tcp://127.0.0.1:{api_port}\n{extra}  \
         pool:\n    num_workers: {workers}\n    allocate_timeout: 20s\n    destroy_timeout: 5s\nlogs:\n  level: info\n",
        rpc = free_port(),
        php = php_client_tests::php_binary(),
        worker = php_client_tests::php_dir()
            .join("centrifuge/worker.php")
            .display(),
    )
}

impl Harness {
    fn start(api_port: u16, workers: usize, extra: &str) -> Self {
        Self::start_launched(api_port, workers, extra, &Launch::default())
    }

    fn start_launched(api_port: u16, workers: usize, extra: &str, launch: &Launch) -> Self {
        let proxy_port = free_port();
        let yaml = config(proxy_port, api_port, workers, extra);
        Self::start_yaml(proxy_port, &yaml, launch)
    }

    /// Starts rr on `yaml`, whose proxy listens on `proxy_port`.
    fn start_yaml(proxy_port: u16, yaml: &str, launch: &Launch) -> Self {
        let rr = RrServer::start_launched(yaml, &[], launch)
            .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"));
        assert!(
            rr.wait_for_line("centrifuge proxy server was started", WAIT),
            "{}",
            rr.output()
        );
        Self { rr, proxy_port }
    }

    /// Runs proxy calls (see `python/grpc_client.py`) on one channel; one result each.
    fn calls(&self, calls: &Value) -> Vec<Value> {
        finish(self.spawn(calls))
    }

    fn spawn(&self, calls: &Value) -> Child {
        spawn_client(&json!({"target": format!("127.0.0.1:{}", self.proxy_port), "calls": calls}))
    }
}

/// A unary proxy call of `method` with `message`, the worker doing `action`.
fn event(method: &str, message: &[u8], action: &str) -> Value {
    json!({
        "method": format!("{PROXY}/{method}"),
        "raw_b64": base64(message),
        "metadata": [["x-action", action], ["x-test-header", "hdr-value-1"], ["x-channel", "news"]],
        "timeout": 20,
    })
}

fn connect_request() -> Vec<u8> {
    [
        field(1, b"client-1"),
        field(2, b"websocket"),
        field(10, br#"{"token":"good-alice"}"#),
    ]
    .concat()
}

fn answer_of(result: &Value) -> Vec<u8> {
    assert_eq!(result["code"], "OK", "{result}");
    base64_decode(result["raw_b64"].as_str().expect("an answer")).expect("base64")
}

/// The JSON the worker put in the result's data field `data_field`.
fn echo_of(result: &Value, data_field: u64) -> Value {
    let answer = answer_of(result);
    let result = bytes_of(&answer, 1).expect("a result");
    serde_json::from_slice(&bytes_of(&result, data_field).expect("data")).expect("JSON")
}

/// Each event: its method, a request, the event type PHP sees, the result's data field.
fn every_event() -> Vec<(&'static str, Vec<u8>, &'static str, u64)> {
    let common = [field(1, b"client-1"), field(2, b"websocket")].concat();
    vec![
        ("Connect", connect_request(), "connect", 5),
        (
            "Refresh",
            [common.clone(), field(10, b"carol")].concat(),
            "refresh",
            3,
        ),
        (
            "Subscribe",
            [common.clone(), field(10, b"bob"), field(11, b"news")].concat(),
            "subscribe",
            4,
        ),
        (
            "Publish",
            [
                common.clone(),
                field(10, b"writer"),
                field(11, b"chat"),
                field(12, br#"{"text":"hello"}"#),
            ]
            .concat(),
            "publish",
            1,
        ),
        (
            "RPC",
            [
                common.clone(),
                field(10, b"alice"),
                field(11, b"sum"),
                field(12, br#"{"a":1}"#),
            ]
            .concat(),
            "rpc",
            1,
        ),
        (
            "SubRefresh",
            [common.clone(), field(10, b"dave"), field(11, b"live")].concat(),
            "sub_refresh",
            3,
        ),
        ("NotifyChannelState", Vec::new(), "notifychannelstate", 0),
    ]
}

#[test]
fn each_event_is_allowed_refused_or_disconnected_by_php() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 2, "");
    let events = every_event();
    let mut calls = Vec::new();
    for (method, message, _, _) in &events {
        for action in ["allow", "refuse", "disconnect"] {
            calls.push(event(method, message, action));
        }
    }
    let results = harness.calls(&Value::Array(calls));
    assert_eq!(results.len(), events.len() * 3);
    for ((method, message, kind, data_field), results) in events.iter().zip(results.chunks(3)) {
        // Allowed: the worker saw the event's type, the metadata, the request's fields.
        if *data_field == 0 {
            assert_eq!(answer_of(&results[0]), field(1, b""), "{method}");
        } else {
            let echo = echo_of(&results[0], *data_field);
            assert_eq!(echo["type"], *kind, "{method}: {echo}");
            assert_eq!(echo["x-test"], "hdr-value-1", "{method}: {echo}");
            assert_eq!(echo["rr_mode"], "centrifuge", "{method}: {echo}");
            assert_eq!(echo["client"], "client-1", "{method}: {echo}");
            if *kind != "connect" {
                assert_eq!(echo["user"], text_of(message, 10), "{method}");
            }
            let name = if *kind == "rpc" { "method" } else { "channel" };
            if bytes_of(message, 11).is_some() {
                assert_eq!(echo[name], text_of(message, 11), "{method}");
            }
        }
        // Refused: an error {403, message}.
        let answer = answer_of(&results[1]);
        let error = bytes_of(&answer, 2).expect("an error");
        assert_eq!(varint_of(&error, 1), Some(403), "{method}");
        assert_eq!(text_of(&error, 2), format!("{kind} refused by php"));
        // Disconnected: a disconnect {4501, reason}.
        let answer = answer_of(&results[2]);
        let disconnect = bytes_of(&answer, 3).expect("a disconnect");
        assert_eq!(varint_of(&disconnect, 1), Some(4501), "{method}");
        assert_eq!(text_of(&disconnect, 2), "kicked by php");
    }
    let connect = answer_of(&results[0]);
    let result = bytes_of(&connect, 1).expect("a result");
    assert_eq!(text_of(&result, 1), "php-client-1", "the connection's user");
    let echo = echo_of(&results[0], 5);
    assert_eq!(echo["data"], r#"{"token":"good-alice"}"#);
}

/// The JSON an RPC event's answer carries after the worker called rr's RPC.
fn rpc_outcome(harness: &Harness, action: &str) -> Value {
    let rpc = [field(1, b"client-1"), field(10, b"alice"), field(11, b"go")].concat();
    let results = harness.calls(&json!([event("RPC", &rpc, action)]));
    echo_of(&results[0], 1)
}

/// Has the worker publish to `news` through rr's RPC and checks that `api` got it;
/// gives the worker's outcome.
fn publish_through_rpc(harness: &Harness, api: &FakeApi) -> Value {
    let published = rpc_outcome(harness, "publish-rpc");
    assert_eq!(
        published["ok"],
        true,
        "{published}\n{}",
        harness.rr.output()
    );
    let request = api.request_of("Publish");
    assert_eq!(text_of(&request, 1), "news");
    assert_eq!(text_of(&request, 2), r#"{"from":"php"}"#);
    published
}

#[test]
fn php_publishes_and_disconnects_through_rpc() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 2, "");

    let published = publish_through_rpc(&harness, &api);
    let reply = base64_decode(published["reply_b64"].as_str().unwrap()).unwrap();
    assert_eq!(
        reply, b"\x12\x02\x08\x07",
        "Centrifugo's reply, as it sent it"
    );

    let disconnected = rpc_outcome(&harness, "disconnect-rpc");
    assert_eq!(disconnected["ok"], true, "{disconnected}");
    let request = api.request_of("Disconnect");
    assert_eq!(text_of(&request, 1), "bob");
    let disconnect = bytes_of(&request, 2).expect("disconnect");
    assert_eq!(varint_of(&disconnect, 1), Some(4100));
    assert_eq!(text_of(&disconnect, 2), "bye from php");

    let unknown = rpc_outcome(&harness, "unknown-rpc");
    assert_eq!(unknown["ok"], false);
    assert_eq!(unknown["error"], "rpc: can't find method centrifuge.NoSuch");
}

#[test]
fn gzip_api_calls_reach_centrifugo() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 1, "  use_compressor: true\n");
    publish_through_rpc(&harness, &api);
}

#[test]
fn gzip_proxy_events_are_served() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 1, "");
    let plan = json!({
        "target": format!("127.0.0.1:{}", harness.proxy_port),
        "compression": "gzip",
        "calls": [event("Connect", &connect_request(), "allow")],
    });
    let results = finish(spawn_client(&plan));
    let echo = echo_of(&results[0], 5);
    assert_eq!(echo["data"], r#"{"token":"good-alice"}"#, "{echo}");
}

#[test]
fn two_hundred_concurrent_connects_over_four_workers() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 4, "");
    let mut connect = event("Connect", &connect_request(), "allow");
    connect["repeat"] = json!(200);
    let results = harness.calls(&json!([connect]));
    assert_eq!(results[0]["codes"], json!({"OK": 200}), "{}", results[0]);
}

#[test]
fn a_worker_crash_fails_its_event_and_the_next_is_served() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 1, "");
    let results = harness.calls(&json!([
        event("Connect", &connect_request(), "crash"),
        event("Connect", &connect_request(), "allow"),
    ]));
    assert_eq!(results[0]["code"], "UNKNOWN", "{}", results[0]);
    assert_eq!(echo_of(&results[1], 5)["type"], "connect");
}

#[test]
fn centrifugo_api_down_is_a_clear_bounded_error_and_events_go_on() {
    let harness = Harness::start(free_port(), 1, "");
    let started = Instant::now();
    let outcome = rpc_outcome(&harness, "publish-rpc");
    assert_eq!(outcome["ok"], false, "{outcome}");
    let error = outcome["error"].as_str().unwrap();
    assert!(
        error.starts_with("rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:")
            && error.ends_with("connect: connection refused\""),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{outcome}");
    let results = harness.calls(&json!([event("Connect", &connect_request(), "allow")]));
    assert_eq!(echo_of(&results[0], 5)["type"], "connect");
}

#[test]
fn an_api_that_never_answers_is_bounded_and_events_go_on() {
    let api = FakeApi::start("hang");
    let harness = Harness::start(api.port, 2, "");
    let hanging = harness.spawn(&json!([event(
        "RPC",
        &[field(1, b"c"), field(11, b"go")].concat(),
        "publish-rpc"
    )]));
    let _ = api.request_of("Publish");
    // While the API call hangs, the other worker serves events.
    let results = harness.calls(&json!([event("Connect", &connect_request(), "allow")]));
    assert_eq!(echo_of(&results[0], 5)["type"], "connect");
    let outcome = echo_of(&finish(hanging)[0], 1);
    assert_eq!(outcome["ok"], false, "{outcome}");
    // Our 10 s deadline, or the server's own (the call's grpc-timeout), whichever is first.
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("rpc error: code = DeadlineExceeded desc = "),
        "{outcome}"
    );
    let elapsed_ms = outcome["elapsed_ms"].as_u64().unwrap();
    assert!((9_000..20_000).contains(&elapsed_ms), "{outcome}");
}

#[test]
fn bad_proxy_calls_and_bad_worker_answers_get_defined_statuses() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 1, "");
    let mut calls = vec![
        event("Connect", b"\xff\xff\xff", "allow"),
        event("Nope", &connect_request(), "allow"),
        event("SubscribeUnidirectional", &connect_request(), "allow"),
        event("Connect", &connect_request(), "garbage"),
        event("Connect", &connect_request(), "stream"),
        event("Connect", &connect_request(), "soft-error"),
        event("Connect", &connect_request(), "allow"),
    ];
    calls.push(json!({"method": "/centrifugal.centrifugo.proxy.Other/Connect", "raw_b64": ""}));
    let results = harness.calls(&Value::Array(calls));
    let status = |i: usize| {
        (
            results[i]["code"].as_str().unwrap(),
            results[i]["details"].as_str().unwrap_or(""),
        )
    };
    assert_eq!(status(0).0, "INTERNAL", "{}", results[0]);
    assert_eq!(status(1).0, "UNIMPLEMENTED", "{}", results[1]);
    assert_eq!(status(2), ("UNKNOWN", "not supported"));
    assert_eq!(status(3).0, "UNKNOWN", "{}", results[3]);
    assert!(
        status(3).1.contains("invalid wire-format"),
        "{}",
        results[3]
    );
    assert_eq!(status(4), ("UNKNOWN", "streaming response not supported"));
    assert_eq!(status(5).0, "UNKNOWN", "{}", results[5]);
    assert!(status(5).1.contains("php says no"), "{}", results[5]);
    assert_eq!(echo_of(&results[6], 5)["type"], "connect");
    assert_eq!(status(7).0, "UNIMPLEMENTED", "{}", results[7]);
}

#[test]
fn a_worker_that_never_answers_meets_the_deadline_and_is_replaced() {
    let api = FakeApi::start("ok");
    let harness = Harness::start(api.port, 1, "");
    let mut hang = event("Connect", &connect_request(), "hang");
    hang["timeout"] = json!(2);
    let started = Instant::now();
    let results = harness.calls(&json!([
        hang,
        event("Connect", &connect_request(), "allow")
    ]));
    assert_eq!(results[0]["code"], "DEADLINE_EXCEEDED", "{}", results[0]);
    // The only worker slept 60 s: the next event is served by its replacement, sooner.
    assert_eq!(echo_of(&results[1], 5)["type"], "connect");
    assert!(started.elapsed() < Duration::from_secs(40));
    assert!(
        harness
            .rr
            .wait_for_line("did not answer the proxy event before its deadline", WAIT),
        "{}",
        harness.rr.output()
    );
}

#[test]
fn tls_api_calls_show_the_client_certificate() {
    let Some(pki) = Pki::make() else { return };
    let file = |name: &str| pki.path(name).display().to_string();
    let api = FakeApi::start_with(&[
        "ok",
        &file("ca.pem"),
        &file("server.pem"),
        &file("server.key"),
    ]);
    // Centrifugo's certificate is checked against the system's roots: the test CA is made
    // the system's through SSL_CERT_FILE, as Go's rr would take it.
    let launch = Launch {
        env: vec![("SSL_CERT_FILE".into(), file("ca.pem"))],
        ..Launch::default()
    };
    let tls = |name: &str| {
        format!(
            "  tls:\n    key: {}\n    cert: {}\n",
            file(&format!("{name}.key")),
            file(&format!("{name}.pem"))
        )
    };
    let harness = Harness::start_launched(api.port, 1, &tls("client"), &launch);
    publish_through_rpc(&harness, &api);
    drop(harness);

    // A certificate the server's CA did not sign: the handshake fails, PHP hears Unavailable.
    let harness = Harness::start_launched(api.port, 1, &tls("stranger"), &launch);
    let refused = rpc_outcome(&harness, "publish-rpc");
    assert_eq!(refused["ok"], false, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.starts_with("rpc error: code = Unavailable desc = "),
        "{error}"
    );
}

#[test]
fn the_pool_is_checked_measured_listed_and_reset() {
    let api = FakeApi::start("ok");
    let (proxy_port, status, metrics) = (free_port(), free_port(), free_port());
    let yaml = config(proxy_port, api.port, 2, "")
        + &format!(
            "status:\n  address: 127.0.0.1:{status}\nmetrics:\n  address: 127.0.0.1:{metrics}\n"
        );
    let harness = Harness::start_yaml(proxy_port, &yaml, &Launch::default());
    for check in ["health", "ready"] {
        let url = format!("http://127.0.0.1:{status}/{check}?plugin=centrifuge");
        let answer = curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]);
        assert_eq!(String::from_utf8_lossy(&answer.stdout), "200", "{check}");
    }
    let scrape = curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]);
    let text = String::from_utf8_lossy(&scrape.stdout);
    assert!(text.contains("\nrr_centrifugo_total_workers 2\n"), "{text}");
    assert!(text.contains("rr_centrifugo_workers_ready"), "{text}");
    let dir = harness.rr.dir.clone();
    let workers = run_rr(&dir, &["workers", "-c", ".rr.yaml"]);
    let listing = String::from_utf8_lossy(&workers.stdout);
    assert!(listing.contains("Workers of [centrifuge]"), "{listing}");
    let reset = run_rr(&dir, &["reset", "centrifuge", "-c", ".rr.yaml"]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let results = harness.calls(&json!([event("Connect", &connect_request(), "allow")]));
    assert_eq!(echo_of(&results[0], 5)["type"], "connect");
}

#[test]
fn rr_stops_promptly_while_centrifugo_stays_connected() {
    use std::io::Write;
    let api = FakeApi::start("ok");
    let mut harness = Harness::start(api.port, 1, "");
    // An idle HTTP/2 connection, as Centrifugo keeps one between events: the preface and an
    // empty SETTINGS frame.
    let mut idle =
        std::net::TcpStream::connect(("127.0.0.1", harness.proxy_port)).expect("connects");
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("preface");
    let results = harness.calls(&json!([event("Connect", &connect_request(), "allow")]));
    assert_eq!(echo_of(&results[0], 5)["type"], "connect");
    let started = Instant::now();
    let status = harness.rr.stop();
    assert_eq!(status.code(), Some(0), "{}", harness.rr.output());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn missing_tls_files_and_a_bad_proxy_scheme_stop_the_start() {
    let yaml = config(
        free_port(),
        free_port(),
        1,
        "  tls:\n    key: /nonexistent/k.pem\n    cert: /nonexistent/c.pem\n",
    );
    let (status, output) = RrServer::start_with(&yaml, &[]).expect_err("refused");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("key file '/nonexistent/k.pem' does not exists"),
        "{output}"
    );
    let yaml = config(free_port(), free_port(), 1, "")
        .replace("proxy_address: tcp://", "proxy_address: grpc://");
    let (status, output) = RrServer::start_with(&yaml, &[]).expect_err("refused");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("invalid Protocol"), "{output}");
}
