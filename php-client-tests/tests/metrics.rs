//! The `metrics` plugin through the real binary: a scrape after known traffic has rr's
//! series with the counts sent, collectors from the config and declared from PHP over RPC
//! move as PHP moves them, and bad updates get rr's error texts.

use php_client_tests::http_client::{get, request};
use php_client_tests::rpc_call::php_call;
use php_client_tests::server::{free_port, http_config, RrServer};
use serde_json::json;
use std::io::Read;
use std::net::SocketAddr;

fn config(http_extra: &str, metrics_extra: &str) -> String {
    format!(
        "{}rpc:\n  listen: tcp://127.0.0.1:{}\nmetrics:\n  address: 127.0.0.1:0\n{metrics_extra}",
        http_config(http_extra, ""),
        free_port()
    )
}

fn start(yaml: &str) -> (RrServer, SocketAddr, String) {
    let server = RrServer::start(yaml);
    assert!(server.wait_for_line(
        "metrics server listening",
        std::time::Duration::from_secs(10)
    ));
    let scrape = server
        .listening_address("metrics server listening")
        .expect("metrics address");
    let rpc = yaml
        .split("listen: ")
        .nth(1)
        .and_then(|rest| rest.lines().next());
    (server, scrape, rpc.expect("rpc.listen").to_owned())
}

fn scrape(address: SocketAddr) -> String {
    let reply = get(address, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text()
}

/// Scrapes until `condition` holds (within 5 s).
fn scrape_until(address: SocketAddr, condition: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = scrape(address);
        if condition(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scrape never showed it:\n{text}"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(5));
    }
}

/// The value of the sample line `series` (name and labels exactly as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_scrape_after_known_traffic_has_rrs_series_with_its_counts() {
    let (server, metrics, _) = start(&config("  middleware: [http_metrics]\n", ""));
    for _ in 0..5 {
        assert_eq!(get(server.http(), "/hello").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(server.http(), "/status/404").status, 404);
    }
    // A request's counters move as its last bytes go out: the client may see the answer a
    // moment before the scrape sees the count.
    let text = scrape_until(metrics, |text| {
        value(text, "rr_http_request_total{status=\"404\"}") == Some(2.0)
            && value(text, "rr_http_request_total{status=\"200\"}") == Some(5.0)
            && value(text, "ringrunner_pool_exec_seconds_count{pool=\"http\"}") == Some(7.0)
            && value(text, "rr_http_requests_queue") == Some(0.0)
    });
    assert_eq!(
        value(&text, "rr_http_request_total{status=\"200\"}"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "rr_http_request_total{status=\"404\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "rr_http_request_duration_seconds_count{status=\"200\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            &text,
            "rr_http_request_duration_seconds_bucket{status=\"404\",le=\"+Inf\"}"
        ),
        Some(2.0)
    );
    assert_eq!(value(&text, "rr_http_requests_queue"), Some(0.0));
    assert_eq!(value(&text, "rr_http_no_free_workers_total"), Some(0.0));
    assert_eq!(value(&text, "rr_http_total_workers"), Some(2.0));
    assert_eq!(value(&text, "rr_http_workers_ready"), Some(2.0));
    assert_eq!(
        value(&text, "ringrunner_pool_exec_seconds_count{pool=\"http\"}"),
        Some(7.0)
    );
    assert_eq!(
        value(&text, "ringrunner_pool_wait_seconds_count{pool=\"http\"}"),
        Some(7.0)
    );
    assert!(text.contains("# HELP rr_http_request_total Total number of handled http requests after server restart.\n# TYPE rr_http_request_total counter\n"));
    let states = text
        .lines()
        .filter(|l| {
            l.starts_with("rr_http_worker_state{pid=\"") && l.ends_with(",state=\"ready\"} 0")
        })
        .count();
    assert_eq!(states, 2, "{text}");
    assert!(value(&text, "process_open_fds").is_some_and(|fds| fds > 5.0));
    assert!(value(&text, "process_resident_memory_bytes").is_some_and(|rss| rss > 1e6));
    // Families sorted by name, as the Go library writes them.
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    // Any path answers; a scraper that accepts gzip gets it compressed.
    let reply = request(
        metrics,
        b"GET /anything HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&reply.body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert!(unzipped.contains("rr_http_request_total{status=\"200\"} 5\n"));
}

#[test]
fn without_http_metrics_only_the_pool_is_exported() {
    let (server, metrics, _) = start(&config("", ""));
    assert_eq!(get(server.http(), "/hello").status, 200);
    let text = scrape(metrics);
    assert!(!text.contains("rr_http_request_total"), "{text}");
    assert_eq!(value(&text, "rr_http_total_workers"), Some(2.0));
}

#[test]
fn collectors_from_the_config_and_from_php_move_as_php_moves_them() {
    let collect = "  collect:\n    app_counter: { type: counter, help: \"Custom counter\" }\n    app_metric: { type: histogram, help: \"Custom application metric\", labels: [\"type\"], buckets: [0.1, 0.2, 0.3, 1.0] }\n";
    let (_server, metrics, dsn) = start(&config("", collect));
    let call = |method: &str, arg: serde_json::Value| php_call(&dsn, method, &arg, false);
    // A scalar from the config shows at 0 before any update; a vector nothing.
    let text = scrape(metrics);
    assert_eq!(value(&text, "app_counter"), Some(0.0));
    assert!(!text.contains("app_metric"));
    // The PHP client's Declare: all six keys, empty when unset.
    let declare = json!({"name": "orders", "collector": {"namespace": "app", "subsystem": "", "type": "counter", "help": "Orders placed", "labels": ["channel"], "buckets": []}});
    assert_eq!(call("metrics.Declare", declare.clone()), Ok("true".into()));
    assert_eq!(
        call("metrics.Declare", declare),
        Ok("true".into()),
        "a second Declare succeeds"
    );
    for (channel, amount) in [("web", 1), ("web", 1), ("api", 3)] {
        assert_eq!(
            call(
                "metrics.Add",
                json!({"name": "orders", "value": amount, "labels": [channel]})
            ),
            Ok("true".into())
        );
    }
    assert_eq!(
        call("metrics.Add", json!({"name": "app_counter", "value": 2.5})),
        Ok("true".into())
    );
    assert_eq!(
        call(
            "metrics.Observe",
            json!({"name": "app_metric", "value": 0.25, "labels": ["db"]})
        ),
        Ok("true".into())
    );
    let gauge = json!({"name": "temperature", "collector": {"namespace": "", "subsystem": "", "type": "gauge", "help": "Now", "labels": [], "buckets": []}});
    assert_eq!(call("metrics.Declare", gauge), Ok("true".into()));
    assert_eq!(
        call("metrics.Set", json!({"name": "temperature", "value": 20})),
        Ok("true".into())
    );
    assert_eq!(
        call("metrics.Sub", json!({"name": "temperature", "value": 1.5})),
        Ok("true".into())
    );
    // rr's error texts.
    assert_eq!(
        call(
            "metrics.Add",
            json!({"name": "orders", "value": 1, "labels": []})
        ),
        Err("metrics_plugin_add: required labels for collector `orders`".into())
    );
    assert_eq!(call("metrics.Add", json!({"name": "orders", "value": 1, "labels": ["a", "b"]})), Err("metrics_plugin_add: inconsistent label cardinality: expected 1 label values but got 2 in []string{\"a\", \"b\"}".into()));
    assert_eq!(
        call(
            "metrics.Set",
            json!({"name": "orders", "value": 1, "labels": ["a"]})
        ),
        Err("metrics_plugin_set: collector `orders` does not support method Set".into())
    );
    assert_eq!(
        call("metrics.Add", json!({"name": "app_counter", "value": -1})),
        Err("metrics_plugin_add: counter cannot decrease in value: app_counter".into())
    );
    assert_eq!(
        call("metrics.Add", json!({"name": "nope", "value": 1})),
        Err(
            "metrics_plugin_add: undefined collector nope, try first Declare the desired collector"
                .into()
        )
    );
    assert_eq!(
        call("metrics.Observe", json!({"name": "nope", "value": 1})),
        Err("metrics_plugin_observe: undefined collector nope".into())
    );
    assert_eq!(
        call(
            "metrics.Declare",
            json!({"name": "x", "collector": {"type": "meter"}})
        ),
        Err("metrics_plugin_declare: unknown collector type meter".into())
    );
    assert_eq!(
        call("metrics.Unregister", json!("nope")),
        Err("metrics_plugin_unregister: undefined collector nope".into())
    );
    let text = scrape(metrics);
    assert!(text.contains("# HELP app_orders Orders placed\n# TYPE app_orders counter\napp_orders{channel=\"api\"} 3\napp_orders{channel=\"web\"} 2\n"), "{text}");
    assert_eq!(value(&text, "app_counter"), Some(2.5));
    assert_eq!(value(&text, "temperature"), Some(18.5));
    assert!(text.contains("app_metric_bucket{type=\"db\",le=\"0.2\"} 0\napp_metric_bucket{type=\"db\",le=\"0.3\"} 1\n"), "{text}");
    assert_eq!(value(&text, "app_metric_sum{type=\"db\"}"), Some(0.25));
    // Unregistered: gone, and declarable again.
    assert_eq!(
        call("metrics.Unregister", json!("orders")),
        Ok("true".into())
    );
    assert!(!scrape(metrics).contains("app_orders"));
}

#[test]
fn an_unknown_collector_type_in_the_config_stops_the_start() {
    let yaml = config("", "  collect:\n    x: { type: meter }\n");
    let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("invalid metric type `meter` for `x`"),
        "{output}"
    );
}

#[test]
fn a_summary_from_the_config_reports_its_objectives_sum_and_count() {
    let collect = "  collect:\n    app_latency: { type: summary, help: \"Latency\", labels: [\"type\"], objectives: {0.5: 0.05, 0.99: 0.001} }\n";
    let (_server, metrics, dsn) = start(&config("", collect));
    for value in [3.0, 1.0, 2.0] {
        assert_eq!(
            php_call(
                &dsn,
                "metrics.Observe",
                &json!({"name": "app_latency", "value": value, "labels": ["db"]}),
                false
            ),
            Ok("true".into())
        );
    }
    let text = scrape(metrics);
    assert!(
        text.contains("# HELP app_latency Latency\n# TYPE app_latency summary\n"),
        "{text}"
    );
    assert_eq!(
        value(&text, "app_latency{type=\"db\",quantile=\"0.5\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "app_latency{type=\"db\",quantile=\"0.99\"}"),
        Some(3.0)
    );
    assert_eq!(value(&text, "app_latency_sum{type=\"db\"}"), Some(6.0));
    assert_eq!(value(&text, "app_latency_count{type=\"db\"}"), Some(3.0));
}
