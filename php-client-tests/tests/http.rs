//! The HTTP plugin end to end: the real `rr` binary, real PHP workers (php/workers/http.php),
//! real sockets on 127.0.0.1.

use php_client_tests::http_client::{get, request, Client};
use php_client_tests::server::{http_config as config, worker_command, RrServer};
use std::time::{Duration, Instant};

fn server() -> RrServer {
    RrServer::start(&config("", ""))
}

#[test]
fn hello_world_with_date_and_length() {
    let server = server();
    let response = get(server.http(), "/hello");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello from PHP\n");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.header("content-length"), Some("15"));
    assert!(response.header("date").is_some_and(|d| d.ends_with(" GMT")));
}

#[test]
fn request_context_reaches_the_worker_as_rr_sends_it() {
    let server = server();
    let response = request(
        server.http(),
        b"GET /echo?id=5&tag[]=a HTTP/1.1\r\nHost: app.test:8080\r\nx-request-id: r1\r\nAccept: a\r\nAccept: b\r\nCookie: sid=ab%20c; theme=dark\r\nConnection: close\r\n\r\n",
    );
    let echo = response.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["protocol"], "HTTP/1.1");
    assert_eq!(echo["uri"], "http://app.test:8080/echo?id=5&tag[]=a");
    assert_eq!(echo["raw_query"], "id=5&tag[]=a");
    assert_eq!(echo["remote_addr"], "127.0.0.1");
    assert_eq!(echo["headers"]["X-Request-Id"][0], "r1");
    assert_eq!(echo["headers"]["Accept"], serde_json::json!(["a", "b"]));
    assert!(echo["headers"].get("Host").is_none());
    assert_eq!(echo["cookies"]["sid"], "ab c");
    assert_eq!(echo["cookies"]["theme"], "dark");
    assert_eq!(echo["parsed"], false);
}

#[test]
fn urlencoded_forms_are_parsed_and_other_bodies_sent_raw() {
    let server = server();
    let form = "title=Hi&meta[tags][]=a&meta[tags][]=b&n=1&n=2";
    let raw = format!("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len());
    let echo = request(server.http(), raw.as_bytes()).json();
    assert_eq!(echo["parsed"], true);
    let tree: serde_json::Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        tree,
        serde_json::json!({"title": "Hi", "meta": {"tags": ["a", "b"]}, "n": "2"})
    );
    let json = "{\"a\":1}";
    let raw = format!("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}", json.len());
    let echo = request(server.http(), raw.as_bytes()).json();
    assert_eq!(
        (echo["parsed"].clone(), echo["body"].clone()),
        (false.into(), json.into())
    );
    let bad = "a=%zz";
    let raw = format!("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}", bad.len());
    let response = request(server.http(), raw.as_bytes());
    assert_eq!(response.status, 400);
    assert!(response.text().starts_with("serve_http: "));
}

#[test]
fn chunked_request_bodies_are_de_chunked() {
    let server = server();
    let response = request(
        server.http(),
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(response.json()["body"], "hello world");
    let bad = request(
        server.http(),
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert_eq!(bad.status, 400);
    let gzip = request(
        server.http(),
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    );
    assert_eq!(gzip.status, 501);
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let server = server();
    let mut client = Client::connect(server.http());
    for _ in 0..3 {
        assert_eq!(client.get("/hello").status, 200);
    }
    let mut pipelined = Vec::new();
    for path in ["/status/201", "/hello", "/status/404"] {
        pipelined.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    client.send(&pipelined);
    let statuses: Vec<u16> = (0..3)
        .map(|_| client.read_response(false).unwrap().status)
        .collect();
    assert_eq!(statuses, [201, 200, 404]);
    client.send(b"GET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let last = client.read_response(false).unwrap();
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.is_closed());
}

#[test]
fn limits_give_413_431_and_400_and_close() {
    let server = RrServer::start(&config("  max_request_size: 1\n", ""));
    let mut client = Client::connect(server.http());
    client.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2097152\r\n\r\n");
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(
        response.text(),
        "serve_http: http: request body too large\n"
    );
    assert!(client.is_closed());
    // A chunked body that grows past the limit.
    let mut client = Client::connect(server.http());
    client.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = vec![b'x'; 64 * 1024];
    let mut status = None;
    for _ in 0..40 {
        let mut bytes = format!("{:x}\r\n", chunk.len()).into_bytes();
        bytes.extend_from_slice(&chunk);
        bytes.extend_from_slice(b"\r\n");
        if std::io::Write::write_all(
            &mut std::net::TcpStream::try_clone(&client_stream(&client)).unwrap(),
            &bytes,
        )
        .is_err()
        {
            break;
        }
    }
    if let Some(response) = client.read_response(false) {
        status = Some(response.status);
    }
    assert_eq!(status, Some(413));
    let mut many = b"GET /hello HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(request(server.http(), &many).status, 431);
    assert_eq!(request(server.http(), b"GARBAGE\r\n\r\n").status, 400);
    assert_eq!(
        request(server.http(), b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").status,
        400
    );
    assert_eq!(
        request(
            server.http(),
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"
        )
        .status,
        400
    );
    // The server still serves everyone else.
    assert_eq!(get(server.http(), "/hello").status, 200);
}

fn client_stream(client: &Client) -> std::net::TcpStream {
    client.stream_clone()
}

#[test]
fn worker_errors_crashes_and_bad_replies_map_to_rr_s_statuses() {
    let server = RrServer::start(&config("  internal_error_code: 502\n", ""));
    let error = get(server.http(), "/error");
    assert_eq!(error.status, 502);
    assert_eq!(error.header("content-length"), Some("0"));
    let crash = get(server.http(), "/crash");
    assert_eq!(crash.status, 502);
    assert_eq!(get(server.http(), "/hello").status, 200);
    let bad = get(server.http(), "/badstatus");
    assert_eq!(bad.status, 500);
    assert_eq!(bad.text(), "unknown status code from worker: 999\n");
    let garbage = get(server.http(), "/garbage");
    assert_eq!(garbage.status, 500);
    assert_eq!(get(server.http(), "/hello").status, 200);
}

#[test]
fn debug_pool_shows_the_escaped_error() {
    let server = RrServer::start(&config("", "    debug: true\n"));
    let error = get(server.http(), "/error");
    assert_eq!(error.status, 500);
    assert!(
        error
            .text()
            .contains("Uncaught TypeError &lt;b&gt;x&lt;/b&gt;"),
        "{}",
        error.text()
    );
    // A fresh worker per request.
    assert_ne!(
        get(server.http(), "/pid").text(),
        get(server.http(), "/pid").text()
    );
}

#[test]
fn exec_ttl_allocate_timeout_and_queue_limit() {
    let yaml = config(
        "",
        "    num_workers: 1\n    allocate_timeout: 300ms\n    supervisor:\n      exec_ttl: 500ms\n",
    )
    .replace("    num_workers: 2\n    allocate_timeout: 10s\n", "");
    let server = RrServer::start(&yaml);
    let started = Instant::now();
    let slow = get(server.http(), "/slow?ms=5000");
    assert_eq!(slow.status, 500);
    assert!(started.elapsed() < Duration::from_secs(3));
    // One worker busy: a second request gives up after allocate_timeout (300 ms).
    let address = server.http();
    let status = server.status.expect("status listener");
    // First the replacement of the worker exec_ttl killed must be up (/ready 200): while it
    // boots /ready is 503 too, and the next two requests would race for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(status, "/ready").status != 200 {
        assert!(Instant::now() < deadline, "no replacement worker");
    }
    let busy = std::thread::spawn(move || get(address, "/slow?ms=1500"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(status, "/ready").status == 200 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the worker"
        );
    }
    let started = Instant::now();
    let refused = get(server.http(), "/hello");
    assert_eq!(refused.status, 500);
    assert_eq!(refused.header("no-workers"), Some("true"));
    assert!(started.elapsed() >= Duration::from_millis(250));
    // exec_ttl (500 ms) ends the slow request too.
    assert_eq!(busy.join().unwrap().status, 500);
}

#[test]
fn set_cookie_lines_streams_and_early_hints() {
    let server = server();
    let cookies = get(server.http(), "/cookies");
    assert_eq!(
        cookies.headers_named("set-cookie"),
        ["a=1; Path=/", "b=2; HttpOnly"]
    );
    let stream = get(server.http(), "/stream?n=12");
    assert!(stream.chunked);
    let expected: String = (0..12).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(stream.text(), expected);
    let hints = get(server.http(), "/stream?n=2&hints=1");
    assert_eq!(hints.interim.len(), 1);
    assert_eq!(hints.interim[0].0, 103);
    assert_eq!(hints.interim[0].1[0].1, "</app.css>; rel=preload");
    assert_eq!(hints.status, 200);
    assert!(
        hints.header("link").is_none(),
        "interim headers do not leak"
    );
    assert_eq!(hints.text(), "<html>chunk 0\nchunk 1\n");
}

#[test]
fn head_expect_continue_and_http_1_0() {
    let server = server();
    let head = request(
        server.http(),
        b"HEAD /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("15"))
    );
    assert!(head.body.is_empty());
    let mut client = Client::connect(server.http());
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    );
    // The 100 comes before we send the body.
    let mut first = [0u8; 25];
    std::io::Read::read_exact(&mut client.stream_clone(), &mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"hi");
    assert_eq!(client.read_response(false).unwrap().json()["body"], "hi");
    let old = request(server.http(), b"GET /echo HTTP/1.0\r\nHost: h\r\n\r\n");
    assert_eq!(old.json()["protocol"], "HTTP/1.0");
}

#[test]
fn status_plugin_reports_health_and_readiness() {
    let server = server();
    let status = server.status.expect("status listener");
    let health = get(status, "/health?plugin=http");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.text(),
        "[{\"plugin_name\":\"http\",\"error_message\":\"\",\"status_code\":200}]"
    );
    assert_eq!(get(status, "/ready").status, 200);
    assert_eq!(get(status, "/ready?plugin=nope").text(), "[]");
}

#[test]
fn hundred_concurrent_keep_alive_clients() {
    let server = server();
    let address = server.http();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(address);
                (0..10)
                    .map(|_| client.get("/hello").status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap().iter().all(|s| *s == 200));
    }
}

#[test]
fn clients_that_vanish_or_stall_do_not_hurt_others() {
    let server = RrServer::start(&config("  read_header_timeout: 500ms\n", ""));
    // Half a body, then gone.
    let mut client = Client::connect(server.http());
    client.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc");
    drop(client);
    // A client gone while the worker runs.
    let mut client = Client::connect(server.http());
    client.send(b"GET /slow?ms=200 HTTP/1.1\r\nHost: h\r\n\r\n");
    drop(client);
    // A slow head is cut with 408 when the head timeout passes.
    let mut slow = Client::connect(server.http());
    slow.send(b"GET /hello HTTP/1.1\r\nHost");
    let started = Instant::now();
    let response = slow.read_response(false).unwrap();
    assert_eq!(response.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(slow.is_closed());
    assert_eq!(get(server.http(), "/hello").status, 200);
}

#[test]
fn a_worker_killed_under_load_fails_only_its_request() {
    let server =
        RrServer::start(&config("", "    num_workers: 4\n").replace("    num_workers: 2\n", ""));
    let address = server.http();
    let victim: i32 = get(address, "/pid").text().parse().unwrap();
    let load: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(address);
                (0..40)
                    .map(|_| client.get("/slow?ms=5").status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(victim).unwrap(),
        rustix::process::Signal::KILL,
    );
    let statuses: Vec<u16> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert!(failed <= 1, "{failed} of {} failed", statuses.len());
    assert_eq!(get(address, "/hello").status, 200);
}

#[test]
fn config_errors_name_the_key_and_line_and_exit_1() {
    let yaml = config("", "    num_workers: lots\n").replace("    num_workers: 2\n", "");
    let line = 1 + yaml.lines().position(|l| l.contains("lots")).unwrap();
    let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains(&format!(
            "http.pool.num_workers (line {line}): expected a non-negative integer, got \"lots\""
        )),
        "{output}"
    );
    let (status, output) = RrServer::start_with("http: {}\n", &[]).unwrap_err();
    assert_eq!(status.code(), Some(1));
    assert!(output.contains("rr configuration file should contain a version e.g: version: 3"));
    let broken = config("", "").replace("http.php", "no-such-worker.php");
    let (status, output) = RrServer::start_with(&broken, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1));
    assert!(output.contains("Could not open input file"), "{output}");
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let mut server =
        RrServer::start(&config("", "    num_workers: 1\n").replace("    num_workers: 2\n", ""));
    let address = server.http();
    let status = server.status.expect("status listener");
    let in_flight = std::thread::spawn(move || get(address, "/slow?ms=1000"));
    // The only worker is busy once /ready says no worker is ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(status, "/ready").status == 200 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the worker"
        );
    }
    server.signal(rustix::process::Signal::TERM);
    assert!(server.wait_for_line("stop signal received", Duration::from_secs(10)));
    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    let exit = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(exit.code(), Some(0), "{}", server.output());
}

#[test]
fn server_user_runs_workers_as_that_user() {
    if !rustix::process::geteuid().is_root() {
        // Not root: rr refuses at start with a clear error instead.
        let (status, output) =
            RrServer::start_with(&config("", ""), &["-o", "server.user=nobody"]).unwrap_err();
        assert_eq!(status.code(), Some(1));
        assert!(output.contains("needs root"), "{output}");
        return;
    }
    // The scripts go to a world-readable folder: the checkout may sit under /root.
    let scripts = php_client_tests::server::scratch_dir();
    std::fs::create_dir_all(scripts.join("workers")).unwrap();
    let php = php_client_tests::php_dir();
    for file in ["Goridge.php", "Http.php", "Rpc.php", "workers/http.php"] {
        std::fs::copy(php.join(file), scripts.join(file)).unwrap();
    }
    let yaml = config("", "").replace(
        &worker_command("http.php"),
        &format!("php {}", scripts.join("workers/http.php").display()),
    );
    let server = RrServer::start_with(&yaml, &["-o", "server.user=nobody"])
        .unwrap_or_else(|(status, output)| panic!("{status}: {output}"));
    let pid = get(server.http(), "/pid").text();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains("65534"), "{uid_line}");
    drop(server);
    let _ = std::fs::remove_dir_all(scripts);
}

#[test]
fn on_init_user_runs_the_command_as_that_user() {
    let scratch = php_client_tests::server::scratch_dir();
    let marker = scratch.join("on-init-uid");
    let on_init = format!(
        "server:\n  on_init:\n    command: [\"sh\", \"-c\", \"id -u > {}\"]\n    user: nobody\n    exit_on_error: true\n",
        marker.display()
    );
    let yaml = config("", "").replacen("server:\n", &on_init, 1);
    if !rustix::process::geteuid().is_root() {
        // Not root: rr refuses at start with a clear error naming the key instead.
        let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
        assert_eq!(status.code(), Some(1));
        assert!(output.contains("server.on_init.user"), "{output}");
        assert!(output.contains("needs root"), "{output}");
        return;
    }
    // nobody must be able to write the marker: the scratch folder may sit under /root.
    std::fs::set_permissions(
        &scratch,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let server = RrServer::start(&yaml);
    // on_init runs to its end before any pool starts, so the marker is there once rr serves.
    assert_eq!(get(server.http(), "/hello").status, 200);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "65534");
    drop(server);
    let _ = std::fs::remove_dir_all(scratch);
}

#[test]
fn a_removed_relay_timeout_is_ignored_with_a_warning() {
    let yaml = config("", "").replacen("server:\n", "server:\n  relay_timeout: 60s\n", 1);
    let server = RrServer::start(&yaml);
    assert_eq!(get(server.http(), "/hello").status, 200);
    assert!(
        server.output().contains("server.relay_timeout is ignored"),
        "{}",
        server.output()
    );
}

/// The server whatever `RINGRUNNER_TEST_CODEC` says: these tests set the codec themselves.
fn server_with(
    http_extra: &str,
    args: &[&str],
) -> Result<RrServer, (std::process::ExitStatus, String)> {
    let yaml: String = config("", "")
        .lines()
        .filter(|line| !line.starts_with("  context_codec: "))
        .map(|line| format!("{line}\n"))
        .collect();
    let yaml = yaml.replacen(
        "  address: 127.0.0.1:0\n",
        &format!("  address: 127.0.0.1:0\n{http_extra}"),
        1,
    );
    RrServer::start_with(&yaml, args)
}

#[test]
fn the_request_context_is_json_by_default_and_protobuf_on_request() {
    let codec_of = |server: &RrServer| get(server.http(), "/echo").json()["codec"].clone();
    assert_eq!(codec_of(&server_with("", &[]).unwrap()), "json");
    let proto = server_with("  context_codec: protobuf\n", &[]).unwrap();
    assert_eq!(codec_of(&proto), "protobuf");
    // rr's own switch still works either way.
    let legacy_off = server_with("  json_context: false\n", &[]).unwrap();
    assert_eq!(codec_of(&legacy_off), "protobuf");
    let legacy_on = server_with("  json_context: true\n", &[]).unwrap();
    assert_eq!(codec_of(&legacy_on), "json");
    let (status, output) =
        server_with("  context_codec: protobuf\n  json_context: true\n", &[]).unwrap_err();
    assert_eq!(status.code(), Some(1));
    assert!(output.contains("http.context_codec"), "{output}");
    assert!(output.contains("contradicts http.json_context"), "{output}");
    let (_, output) = server_with("  context_codec: xml\n", &[]).unwrap_err();
    assert!(output.contains("expected json or protobuf"), "{output}");
}

#[test]
fn header_bytes_that_are_not_utf8_are_replaced_in_json_and_exact_in_protobuf() {
    let raw = b"GET /hex?name=X-Bytes HTTP/1.1\r\nHost: h\r\nX-Bytes: caf\xc3\xa9 \xff end\r\nConnection: close\r\n\r\n";
    let json = server_with("", &[]).unwrap();
    // U+FFFD (ef bf bd) in place of the byte that is not UTF-8.
    assert_eq!(
        request(json.http(), raw).text(),
        "636166c3a920efbfbd20656e64"
    );
    let proto = server_with("  context_codec: protobuf\n", &[]).unwrap();
    assert_eq!(request(proto.http(), raw).text(), "636166c3a920ff20656e64");
}
