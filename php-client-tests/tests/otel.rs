//! The `otel` plugin and HTTP middleware through the real binary, with a real OTLP/HTTP
//! receiver in the harness (spec devops § otel): rr's two spans per request with their
//! names, scopes, attributes and resource; an incoming `traceparent` (or Jaeger
//! `uber-trace-id`) continued; the worker handed `Traceparent` and `Uber-Trace-Id` of the
//! `http` span; status ERROR on a 500; a collector down or hanging costs requests nothing
//! and shows in `rr_otel_spans_dropped_total`; SIGTERM flushes pending spans.

use php_client_tests::http_client::{request, Response};
use php_client_tests::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use php_client_tests::server::{free_port, http_config, Launch, RrServer};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SPANS_TIMEOUT: Duration = Duration::from_secs(20);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const OTELHTTP: &str = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp";

/// A server with `otel` in the middleware, exporting to `endpoint`, with `env` (the batch
/// delay and queue variables) and `extra` lines (the metrics section).
fn server(endpoint: &str, env: &[(&str, &str)], extra: &str) -> RrServer {
    let yaml = format!(
        "{}otel:\n  insecure: true\n  exporter: otlp\n  client: http\n  endpoint: {endpoint}\n  service_name: my-svc\n{extra}",
        http_config("  middleware: [otel, gzip]\n", "")
    );
    let launch = Launch {
        env: env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ..Launch::default()
    };
    RrServer::start_launched(&yaml, &[], &launch)
        .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"))
}

fn get(address: SocketAddr, path: &str, headers: &str) -> Response {
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: otel-test\r\n{headers}Connection: close\r\n\r\n",
        address.port()
    );
    request(address, raw.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text<'a>(span: &'a ReceivedSpan, key: &str) -> Option<&'a str> {
    span.attribute(key).and_then(|kv| kv.as_str())
}

fn int(span: &ReceivedSpan, key: &str) -> Option<i64> {
    span.attribute(key).and_then(|kv| kv.as_int())
}

/// The server span and the `http` span of the request named `name`.
fn pair(spans: &[ReceivedSpan], name: &str) -> (ReceivedSpan, ReceivedSpan) {
    let server = spans
        .iter()
        .find(|s| s.span.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
        .clone();
    let http = spans
        .iter()
        .find(|s| s.span.name == "http" && s.span.parent_span_id == server.span.span_id)
        .expect("the http span, child of the server span")
        .clone();
    (server, http)
}

fn header_of(echo: &serde_json::Value, name: &str) -> String {
    echo["headers"][name][0]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {echo}"))
        .to_owned()
}

#[test]
fn an_incoming_traceparent_is_continued_with_rrs_spans_and_the_worker_gets_the_http_span() {
    let receiver = OtlpReceiver::start();
    let server = server(
        &receiver.address().to_string(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        "",
    );
    let traceparent = format!("traceparent: 00-{TRACE}-{CALLER_SPAN}-01\r\n");
    let answer = get(server.http(), "/echo?x=1", &traceparent);
    assert_eq!(answer.status, 200);
    let echo = answer.json();
    let spans = receiver.wait_for_spans(2, SPANS_TIMEOUT);
    let (server_span, http_span) = pair(&spans, "/echo?x=1");

    assert_eq!(server_span.scope, OTELHTTP);
    assert_eq!(http_span.scope, "my-svc");
    assert_eq!((server_span.span.kind, http_span.span.kind), (2, 2));
    assert_eq!(hex(&server_span.span.trace_id), TRACE);
    assert_eq!(hex(&server_span.span.parent_span_id), CALLER_SPAN);
    assert_eq!(http_span.span.trace_id, server_span.span.trace_id);
    assert!(http_span.span.attributes.is_empty());
    assert_eq!(text(&server_span, "http.request.method"), Some("GET"));
    assert_eq!(text(&server_span, "url.scheme"), Some("http"));
    assert_eq!(text(&server_span, "url.path"), Some("/echo"));
    assert_eq!(text(&server_span, "server.address"), Some("127.0.0.1"));
    let port = i64::from(server.http().port());
    assert_eq!(int(&server_span, "server.port"), Some(port));
    assert_eq!(
        text(&server_span, "network.peer.address"),
        Some("127.0.0.1")
    );
    assert_eq!(text(&server_span, "client.address"), Some("127.0.0.1"));
    assert!(int(&server_span, "network.peer.port").is_some_and(|p| p > 0));
    assert_eq!(text(&server_span, "user_agent.original"), Some("otel-test"));
    assert_eq!(text(&server_span, "network.protocol.version"), Some("1.1"));
    assert_eq!(int(&server_span, "http.response.status_code"), Some(200));
    assert!(int(&server_span, "http.response.body.size").is_some_and(|n| n > 0));
    assert_eq!(server_span.attribute("http.route"), None);
    assert_eq!(server_span.span.status.as_ref().map_or(0, |s| s.code), 0);
    assert!(server_span.span.end_time_unix_nano >= server_span.span.start_time_unix_nano);

    assert_eq!(server_span.resource_text("service.name"), Some("my-svc"));
    assert_eq!(server_span.resource_text("service.version"), Some("1.0.0"));
    assert_eq!(server_span.resource_text("os.name"), Some("linux"));
    assert_eq!(
        server_span.resource_text("webengine.name"),
        Some("RoadRunner")
    );
    assert!(server_span
        .resource_text("service.namespace")
        .is_some_and(|ns| ns.starts_with("my-svc-")));

    // The worker's parent is the `http` span, in both header forms.
    let http_id = hex(&http_span.span.span_id);
    assert_eq!(
        header_of(&echo, "Traceparent"),
        format!("00-{TRACE}-{http_id}-01")
    );
    assert_eq!(
        header_of(&echo, "Uber-Trace-Id"),
        format!("{TRACE}:{http_id}:0:1")
    );
    let export = &receiver.exports()[0];
    assert_eq!(export.path, "/v1/traces");
    assert_eq!(export.content_type, "application/x-protobuf");
    assert!(!export.gzip);
}

#[test]
fn a_500_is_an_error_span_and_a_request_without_context_starts_a_trace() {
    let receiver = OtlpReceiver::start();
    let server = server(
        &receiver.address().to_string(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        "",
    );
    assert_eq!(get(server.http(), "/status/500", "").status, 500);
    let echo = get(server.http(), "/echo", "uber-trace-id: abc:1f:0:1\r\n").json();
    let spans = receiver.wait_for_spans(4, SPANS_TIMEOUT);

    let (failed, _) = pair(&spans, "/status/500");
    assert_eq!(failed.span.status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(int(&failed, "http.response.status_code"), Some(500));
    assert!(failed.span.parent_span_id.is_empty(), "a root span");
    assert!(failed.span.trace_id.iter().any(|&b| b != 0));

    // Jaeger's header is continued as well (ids left-padded).
    let (jaeger, http_span) = pair(&spans, "/echo");
    assert_eq!(
        hex(&jaeger.span.trace_id),
        "00000000000000000000000000000abc"
    );
    assert_eq!(hex(&jaeger.span.parent_span_id), "000000000000001f");
    let traceparent = header_of(&echo, "Traceparent");
    assert_eq!(
        traceparent,
        format!(
            "00-00000000000000000000000000000abc-{}-01",
            hex(&http_span.span.span_id)
        )
    );
}

/// The dropped-spans counter for `reason` in a scrape.
fn dropped(metrics: SocketAddr, reason: &str) -> f64 {
    let body = php_client_tests::http_client::get(metrics, "/metrics").text();
    let prefix = format!("rr_otel_spans_dropped_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
}

fn metrics_address(server: &RrServer) -> SocketAddr {
    assert!(server.wait_for_line("metrics server listening", SPANS_TIMEOUT));
    server
        .listening_address("metrics server listening")
        .expect("metrics address")
}

/// Requests answered while the collector is away: each well under a second.
fn requests_stay_fast(address: SocketAddr, count: usize) {
    for _ in 0..count {
        let began = Instant::now();
        assert_eq!(get(address, "/hello", "").status, 200);
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "a request waited {:?} on the collector",
            began.elapsed()
        );
    }
}

#[test]
fn a_collector_that_is_down_costs_requests_nothing_and_its_spans_are_counted() {
    let down = format!("127.0.0.1:{}", free_port());
    let server = server(
        &down,
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
        "metrics:\n  address: 127.0.0.1:0\n",
    );
    let metrics = metrics_address(&server);
    requests_stay_fast(server.http(), 20);
    let deadline = Instant::now() + SPANS_TIMEOUT;
    while dropped(metrics, "export_failed") < 40.0 {
        assert!(
            Instant::now() < deadline,
            "the failed exports were not counted"
        );
        // Each scrape is an event the exporter's next failure may already be behind.
        assert!(server.wait_for_line("span export failed", SPANS_TIMEOUT));
    }
}

#[test]
fn a_hanging_collector_fills_the_bounded_queue_and_spans_are_dropped_not_waited_for() {
    // A listener that never accepts: connections complete in its backlog, answers never come.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = hanging.local_addr().unwrap().to_string();
    let server = server(
        &endpoint,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        ],
        "metrics:\n  address: 127.0.0.1:0\n",
    );
    let metrics = metrics_address(&server);
    requests_stay_fast(server.http(), 30);
    assert!(
        dropped(metrics, "queue_full") >= 2.0,
        "the full queue's spans were not counted"
    );
    assert!(server.wait_for_line("span export queue is full", SPANS_TIMEOUT));
    drop(hanging);
}

#[test]
fn sigterm_flushes_the_pending_spans_before_exit() {
    let receiver = OtlpReceiver::start();
    // A batch delay far longer than the test: only the stop's flush can send them.
    let mut server = server(
        &receiver.address().to_string(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
        "",
    );
    for _ in 0..3 {
        assert_eq!(get(server.http(), "/hello", "").status, 200);
    }
    assert!(receiver.spans().is_empty(), "exported before the delay");
    let status = server.stop();
    assert!(status.success(), "{status}\n{}", server.output());
    let spans = receiver.spans();
    assert_eq!(spans.len(), 6, "{spans:#?}");
    assert_eq!(spans.iter().filter(|s| s.span.name == "/hello").count(), 3);
}

#[test]
fn compress_gzips_the_export_and_headers_go_with_it() {
    let receiver = OtlpReceiver::start();
    let server = server(
        &receiver.address().to_string(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        "  compress: true\n  custom_url: /custom/traces\n  headers:\n    x-api-key: secret\n",
    );
    assert_eq!(get(server.http(), "/hello", "").status, 200);
    let spans = receiver.wait_for_spans(2, SPANS_TIMEOUT);
    assert_eq!(spans.len(), 2);
    let export = &receiver.exports()[0];
    assert!(export.gzip, "not gzipped");
    assert_eq!(export.path, "/custom/traces");
    assert!(export
        .headers
        .contains(&("x-api-key".to_owned(), "secret".to_owned())));
}

#[test]
fn the_stdout_exporter_writes_one_json_line_per_span() {
    let yaml = format!(
        "{}otel:\n  exporter: stdout\n  resource:\n    service_name: json-svc\n",
        http_config("  middleware: [otel]\n", "")
    );
    let launch = Launch {
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into())],
        ..Launch::default()
    };
    let server = RrServer::start_launched(&yaml, &[], &launch).expect("starts");
    assert_eq!(get(server.http(), "/hello?q=1", "").status, 200);
    assert!(server.wait_for_line(r#""Name":"/hello?q=1""#, SPANS_TIMEOUT));
    assert!(server.wait_for_line(r#""Name":"http""#, SPANS_TIMEOUT));
    let output = server.output();
    let line = output
        .lines()
        .find(|line| line.contains(r#""Name":"/hello?q=1""#))
        .expect("the span's line");
    let span: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
    assert_eq!(span["Attributes"]["url.path"], "/hello");
    assert_eq!(span["Resource"]["service.name"], "json-svc");
    assert_eq!(span["InstrumentationScope"], OTELHTTP);
}

#[test]
fn the_grpc_client_makes_the_export_call_over_h2c() {
    let receiver = OtlpReceiver::start_grpc();
    let yaml = format!(
        "{}otel:\n  insecure: true\n  client: grpc\n  compress: true\n  endpoint: {}\n  resource:\n    service_name: grpc-svc\n",
        http_config("  middleware: [otel]\n", ""),
        receiver.address()
    );
    let launch = Launch {
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into())],
        ..Launch::default()
    };
    let server = RrServer::start_launched(&yaml, &[], &launch).expect("starts");
    assert_eq!(get(server.http(), "/hello", "").status, 200);
    let spans = receiver.wait_for_spans(2, SPANS_TIMEOUT);
    let (server_span, _) = pair(&spans, "/hello");
    assert_eq!(server_span.resource_text("service.name"), Some("grpc-svc"));
    let export = &receiver.exports()[0];
    assert_eq!(
        export.path,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    );
    assert!(export.gzip, "the message was not gzipped");
    assert!(
        !server.output().contains("span export failed"),
        "{}",
        server.output()
    );
}
