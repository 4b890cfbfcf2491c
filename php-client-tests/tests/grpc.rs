//! The grpc plugin through the real binary, a real gRPC client (grpcio, from the test venv)
//! and our PHP worker (`php/grpc/worker.php`): every row of spec grpc's status table,
//! metadata both ways, trailers, several protos, health, `rr workers` / `rr reset` with no
//! failed call, 500 concurrent calls over 4 workers, a client that cancels mid-call, and
//! server reflection ([beyond] rr v2025).

use php_client_tests::grpc::{finish, grpc_config, metadata, GrpcServer};
use php_client_tests::server::{curl, free_port, run_rr, RrServer};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

const ECHO: &str = "/app.main.Echo";

/// The distinct texts of a repeated call's answers.
fn texts(result: &Value) -> BTreeSet<String> {
    let texts = result["texts"].as_array().expect("a repeated call's texts");
    texts
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn one(server: &GrpcServer, call: Value) -> Value {
    server.call(&json!([call])).remove(0)
}

#[test]
fn every_row_of_the_status_table() {
    let server = GrpcServer::start("  max_recv_msg_size: 1\n", 2, "");
    let oversize = "A".repeat(2 * 1024 * 1024 / 3 * 4);
    let results = server.call(&json!([
        {"method": format!("{ECHO}/Fail"), "text": "k42"},
        {"method": format!("{ECHO}/Boom"), "text": "b1"},
        {"method": format!("{ECHO}/NotInPhp")},
        {"method": format!("{ECHO}/NoSuchMethod")},
        {"method": "/app.nosuch.Svc/X"},
        {"method": format!("{ECHO}/Ping"), "raw_b64": oversize},
        {"method": format!("{ECHO}/Crash")},
        {"method": format!("{ECHO}/Ping"), "text": "after the crash"},
        {"method": format!("{ECHO}/Sleep"), "text": "2500", "timeout": 0.5},
    ]));
    let row = |i: usize| {
        (
            results[i]["code"].as_str().unwrap(),
            results[i]["details"].as_str().unwrap(),
        )
    };
    assert_eq!(row(0), ("NOT_FOUND", "thing k42 not found"));
    let details = metadata(&results[0]["trailing"], "grpc-status-details-bin");
    assert!(
        details
            .iter()
            .any(|d| d.contains("type.googleapis.com/google.rpc.ErrorInfo")
                && d.contains("NOT_THERE")),
        "{results:?}"
    );
    assert!(
        metadata(&results[0]["initial"], "error").is_empty(),
        "rr's error header leak is not copied"
    );
    assert_eq!(
        row(1),
        (
            "INTERNAL",
            "sync_worker_receive_frame: SoftJobError: plain boom: b1"
        )
    );
    assert_eq!(
        row(2),
        (
            "UNKNOWN",
            "Method `NotInPhp` not found in service `app.main.Echo`."
        )
    );
    assert_eq!(
        row(3),
        (
            "UNIMPLEMENTED",
            "unknown method NoSuchMethod for service app.main.Echo"
        )
    );
    assert_eq!(row(4), ("UNIMPLEMENTED", "unknown service app.nosuch.Svc"));
    assert_eq!(
        row(5),
        (
            "RESOURCE_EXHAUSTED",
            "grpc: received message larger than max (2097150 vs. 1048576)"
        )
    );
    assert_eq!(
        row(6),
        ("INTERNAL", "sync_worker_receive_frame: Network: EOF")
    );
    assert_eq!(results[7]["code"], "OK");
    assert_eq!(results[7]["text"], "after the crash");
    assert_eq!(results[8]["code"], "DEADLINE_EXCEEDED", "{:?}", results[8]);
    assert!(server.rr.wait_for_line(
        "rpc error: code = NotFound desc = thing k42 not found",
        Duration::from_secs(5)
    ));
    assert!(server
        .rr
        .output()
        .contains("\"method\":\"/app.main.Echo/Fail\""));
}

#[test]
fn metadata_reaches_php_and_headers_and_trailers_come_back() {
    let server = GrpcServer::start("  env:\n    X_GRPC_ENV: from-grpc-env\n", 1, "");
    let results = server.call(&json!([
        {"method": format!("{ECHO}/Meta"), "text": "m",
         "metadata": [["x-req-id", "abc-123"], ["x-multi", "one"], ["x-multi", "two"], ["x-bin-bin", "rr-bin-ok"]]},
        {"method": format!("{ECHO}/Headers")},
        {"method": format!("{ECHO}/Ping"), "text": "mode"},
    ]));
    let meta = &results[0];
    assert_eq!(meta["code"], "OK");
    let payload: Value = serde_json::from_str(meta["text"].as_str().unwrap()).unwrap();
    assert_eq!(payload["service"], "app.main.Echo");
    assert_eq!(payload["method"], "Meta");
    let context = &payload["context"];
    assert_eq!(context["x-req-id"], json!(["abc-123"]));
    assert_eq!(context["x-multi"], json!(["one", "two"]));
    assert_eq!(context["x-bin-bin"], json!(["rr-bin-ok"]));
    assert_eq!(context[":authority"], json!([server.address.to_string()]));
    assert!(context[":peer.address"][0]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(context["user-agent"][0]
        .as_str()
        .unwrap()
        .starts_with("grpc-python/"));
    assert_eq!(
        metadata(&meta["initial"], "x-resp-a"),
        ["alpha"],
        "old API: a header"
    );

    let headers = &results[1];
    assert_eq!(metadata(&headers["initial"], "x-hdr-new"), ["h"]);
    assert_eq!(metadata(&headers["trailing"], "x-trl-new"), ["t"]);
    assert_eq!(
        metadata(&headers["trailing"], "x-trl-num"),
        ["7"],
        "numbers as text"
    );
    assert!(metadata(&headers["initial"], "headers").is_empty());
    assert_eq!(
        metadata(&results[2]["initial"], "x-rr-mode"),
        ["grpc"],
        "RR_MODE=grpc"
    );
    assert_eq!(
        metadata(&results[2]["initial"], "x-grpc-env"),
        ["from-grpc-env"],
        "grpc.env reaches the workers"
    );
}

#[test]
fn every_service_of_every_proto_file_is_served_with_health() {
    let server = GrpcServer::start("", 1, "");
    let results = server.call(&json!([
        {"method": "/app.other.Alpha/Ping", "text": "a"},
        {"method": "/app.other.Beta/Ping", "text": "b"},
        {"method": format!("{ECHO}/Ping"), "text": "c"},
        {"method": "/grpc.health.v1.Health/Check", "text": ""},
        {"method": "/grpc.health.v1.Health/Check", "text": "app.main.Echo"},
        {"method": "/grpc.health.v1.Health/List"},
    ]));
    let texts: Vec<&str> = results
        .iter()
        .map(|r| r["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(&texts[..3], ["alpha:a", "beta:b", "c"]);
    // HealthCheckResponse{status: SERVING (1)}: field 1 varint 1.
    assert_eq!(results[3]["raw_b64"], "CAE=");
    assert_eq!(results[4]["raw_b64"], "CAE=");
    // HealthListResponse{statuses: {"grpc": {status: SERVING}}}.
    assert_eq!(results[5]["raw_b64"], "CgoKBGdycGMSAggB");
}

#[test]
fn a_missing_proto_file_stops_start_up_with_rr_s_text() {
    let port = free_port();
    let yaml =
        grpc_config(port, "", "    num_workers: 1\n", "").replace("/*.proto\"", "/missing.proto\"");
    let (status, output) = RrServer::start_with(&yaml, &[]).expect_err("must not start");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("grpc_plugin_config: proto file '"),
        "{output}"
    );
    assert!(
        output.contains("missing.proto' does not exists"),
        "{output}"
    );
    assert!(
        !output.contains("worker is allocated"),
        "no worker starts: {output}"
    );
}

#[test]
fn five_hundred_concurrent_calls_use_all_four_workers() {
    let metrics = free_port();
    let server = GrpcServer::start(
        "  max_concurrent_streams: 100\n",
        4,
        &format!("metrics:\n  address: 127.0.0.1:{metrics}\n"),
    );
    let result = one(
        &server,
        json!({"method": format!("{ECHO}/Pid"), "repeat": 500, "timeout": 60}),
    );
    assert_eq!(result["codes"], json!({"OK": 500}), "{result:?}");
    let pids = texts(&result);
    assert_eq!(pids.len(), 4, "{pids:?}");
    let scrape = curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]);
    let text = String::from_utf8_lossy(&scrape.stdout);
    assert!(text.contains("\nrr_grpc_total_workers 4\n"), "{text}");
    assert!(text.contains("rr_grpc_workers_ready"), "{text}");
}

#[test]
fn a_cancelled_call_gives_its_worker_back() {
    let server = GrpcServer::start("", 1, "");
    let before = one(&server, json!({"method": format!("{ECHO}/Pid")}));
    let started = php_client_tests::server::scratch_dir().join("started");
    let cancelled = one(
        &server,
        json!({"method": format!("{ECHO}/Sleep"), "text": "1500",
               "cancel_when_started": started.to_str().unwrap()}),
    );
    assert!(
        started.exists(),
        "the call reached the worker before the cancel"
    );
    assert_eq!(cancelled["code"], "CANCELLED");
    // The one worker finishes the sleep and serves the next call: not killed, not lost.
    let after = one(
        &server,
        json!({"method": format!("{ECHO}/Pid"), "timeout": 20}),
    );
    assert_eq!(after["code"], "OK", "{after:?}");
    assert_eq!(after["text"], before["text"], "the same worker");
}

#[test]
fn workers_are_listed_and_a_reset_under_load_fails_no_call() {
    let rpc = format!("127.0.0.1:{}", free_port());
    let server = GrpcServer::start("", 4, &format!("rpc:\n  listen: tcp://{rpc}\n"));
    let dir = server.rr.dir.clone();
    let workers = run_rr(&dir, &["workers", "-c", ".rr.yaml"]);
    let listing = String::from_utf8_lossy(&workers.stdout);
    assert!(listing.contains("Workers of [grpc]"), "{listing}");
    let named = run_rr(&dir, &["workers", "grpc", "-c", ".rr.yaml"]);
    let named = String::from_utf8_lossy(&named.stdout);
    assert!(
        named.contains("Workers of [grpc]") && named.matches("ready").count() >= 4,
        "{named}"
    );
    let old = one(
        &server,
        json!({"method": format!("{ECHO}/Pid"), "repeat": 40}),
    );
    let old_pids = texts(&old);

    let mut watch = server.spawn(&json!([{"method": "/grpc.health.v1.Health/Watch", "kind": "watch", "count": 3, "timeout": 60}]));
    let mut watched = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = watched.next().expect("a first status").expect("read");
    assert_eq!(first, r#"{"watched": "1"}"#, "SERVING before the reset");
    let load =
        server.spawn(&json!([{"method": format!("{ECHO}/Pid"), "repeat": 300, "timeout": 60}]));
    let reset = run_rr(&dir, &["reset", "-c", ".rr.yaml"]);
    let said = String::from_utf8_lossy(&reset.stderr);
    assert!(reset.status.success(), "{said}");
    assert!(
        said.contains("resetting plugin: [grpc]") && said.contains("plugin reset: [grpc]"),
        "rr's lines: {said}"
    );
    let load = finish(load).remove(0);
    assert_eq!(
        load["codes"],
        json!({"OK": 300}),
        "no failed call during the reset"
    );
    // NOT_SERVING while resetting, SERVING again.
    let rest: Vec<String> = watched.map_while(Result::ok).collect();
    assert_eq!(
        rest[..2],
        [r#"{"watched": "2"}"#, r#"{"watched": "1"}"#],
        "{rest:?}"
    );
    assert!(watch.wait().expect("watch client").success());
    let new = one(
        &server,
        json!({"method": format!("{ECHO}/Pid"), "repeat": 40}),
    );
    let new_pids = texts(&new);
    assert!(old_pids.is_disjoint(&new_pids), "{old_pids:?} {new_pids:?}");
}

#[test]
fn server_reflection_lists_services_and_serves_their_files() {
    let server = GrpcServer::start("", 1, "");
    for service in ["grpc.reflection.v1", "grpc.reflection.v1alpha"] {
        // list_services (7), file_containing_symbol (4), file_by_filename (3).
        let requests = json!([
            [7, "*"],
            [4, "app.main.Echo"],
            [3, "second.proto"],
            [4, "app.nosuch.Thing"]
        ]);
        let result = one(
            &server,
            json!({"method": format!("/{service}.ServerReflection/ServerReflectionInfo"),
                   "kind": "stream", "requests": requests, "timeout": 10}),
        );
        assert_eq!(result["code"], "OK", "{result:?}");
        let responses: Vec<&str> = result["responses"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(responses.len(), 4);
        for name in [
            "app.main.Echo",
            "app.other.Alpha",
            "app.other.Beta",
            "grpc.health.v1.Health",
        ] {
            assert!(responses[0].contains(name), "{name} listed");
        }
        assert!(responses[1].contains("echo.proto") && responses[1].contains("NotInPhp"));
        assert!(responses[2].contains("second.proto") && responses[2].contains("Beta"));
        assert!(responses[3].contains("app.nosuch.Thing not found"));
    }
}

#[test]
fn a_streamed_reply_fails_the_call_and_the_worker_serves_on() {
    let server = GrpcServer::start("", 1, "");
    let results = server.call(&json!([
        {"method": format!("{ECHO}/Pid")},
        {"method": format!("{ECHO}/Stream"), "text": "twice"},
        {"method": format!("{ECHO}/Pid"), "timeout": 20},
    ]));
    assert_eq!(
        (results[1]["code"].as_str(), results[1]["details"].as_str()),
        (Some("UNKNOWN"), Some("streaming is not supported")),
        "rr's answer to a reply with the STREAM flag: {results:?}"
    );
    assert!(server
        .rr
        .wait_for_line("streaming is not supported", Duration::from_secs(5)));
    // The one worker's stream was stopped and drained: it serves the next call.
    assert_eq!(results[2]["code"], "OK", "{results:?}");
    assert_eq!(results[2]["text"], results[0]["text"], "the same worker");
}

#[test]
fn interceptors_name_no_plugin_or_stop_start_up() {
    let server = GrpcServer::start("  interceptors: []\n", 1, "");
    let ping = one(
        &server,
        json!({"method": format!("{ECHO}/Ping"), "text": "none"}),
    );
    assert_eq!(ping["text"], "none", "an empty list is fine: {ping:?}");
    drop(server);

    let yaml = grpc_config(
        free_port(),
        "  interceptors: [\"auth\"]\n",
        "    num_workers: 1\n",
        "",
    );
    let (status, output) = RrServer::start_with(&yaml, &[]).expect_err("must not start");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("interceptor auth is not registered"),
        "rr's text, naming it: {output}"
    );
}

/// The `Traceparent` and `Uber-Trace-Id` a `Meta` call's worker saw, as (trace id, span id,
/// sampled flag) each.
fn injected_trace(result: &Value) -> [(String, String, String); 2] {
    assert_eq!(result["code"], "OK", "{result:?}");
    let payload: Value = serde_json::from_str(result["text"].as_str().unwrap()).unwrap();
    let context = &payload["context"];
    let traceparent = context["Traceparent"][0].as_str().expect("Traceparent");
    let w3c: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((w3c.len(), w3c[0]), (4, "00"), "{traceparent}");
    let uber = context["Uber-Trace-Id"][0].as_str().expect("Uber-Trace-Id");
    let jaeger: Vec<&str> = uber.split(':').collect();
    assert_eq!((jaeger.len(), jaeger[2]), (4, "0"), "{uber}");
    [
        (w3c[1].into(), w3c[2].into(), w3c[3].into()),
        (jaeger[0].into(), jaeger[1].into(), jaeger[3].into()),
    ]
}

#[test]
fn the_worker_sees_rr_s_injected_trace_context() {
    let server = GrpcServer::start("", 1, "");
    let parent = "00-9564af10281adb06d2745e80381b2970-0749dfcab0cd881a-01";
    let results = server.call(&json!([
        {"method": format!("{ECHO}/Meta"), "metadata": [["traceparent", parent]]},
        {"method": format!("{ECHO}/Meta"),
         "metadata": [["traceparent", "00-9564af10281adb06d2745e80381b2970-0749dfcab0cd881a-00"]]},
        {"method": format!("{ECHO}/Meta")},
        {"method": format!("{ECHO}/Meta")},
    ]));
    let [w3c, jaeger] = injected_trace(&results[0]);
    assert_eq!(
        w3c.0, "9564af10281adb06d2745e80381b2970",
        "the client's trace goes on"
    );
    assert_ne!(w3c.1, "0749dfcab0cd881a", "in a span of rr's");
    assert_eq!(w3c.2, "01");
    assert_eq!(
        jaeger,
        (w3c.0.clone(), w3c.1.clone(), "1".into()),
        "the same span"
    );
    let payload: Value = serde_json::from_str(results[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        payload["context"]["traceparent"],
        json!([parent]),
        "the client's own metadata as it sent it"
    );

    let [unsampled, _] = injected_trace(&results[1]);
    assert_eq!(unsampled.2, "00", "an unsampled parent stays unsampled");

    // Without a parent: a new trace each call, sampled.
    let [first, _] = injected_trace(&results[2]);
    let [second, _] = injected_trace(&results[3]);
    assert_ne!(first.0, second.0);
    assert_ne!(first.0, w3c.0);
    assert_eq!(
        (first.2.as_str(), first.0.len(), first.1.len()),
        ("01", 32, 16)
    );
}
