//! The grpc plugin's transports through the real binary and grpcio: TLS (with every
//! `client_auth_type`, the worker seeing `:peer.auth-type`), a unix socket listener, and
//! the keepalive limits (`max_connection_idle`, `max_connection_age`: GOAWAY).

use php_client_tests::grpc::{finish, grpc_config, spawn_client, GrpcServer};
use php_client_tests::h2_frames::{self, RawH2};
use php_client_tests::pki::Pki;
use php_client_tests::server::{free_port, scratch_dir, RrServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A server with `grpc.tls` (`tls_extra` lines under `tls:`, indented 4).
fn tls_server(pki: &Pki, tls_extra: &str) -> (RrServer, String) {
    let port = free_port();
    let tls = format!(
        "  tls:\n    cert: {}\n    key: {}\n{tls_extra}",
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    );
    let rr = RrServer::start(&grpc_config(port, &tls, "    num_workers: 1\n", ""));
    assert!(rr.wait_for_line("grpc server was started", Duration::from_secs(30)));
    (rr, format!("127.0.0.1:{port}"))
}

/// One Meta call over TLS as `client` (a key pair of the PKI, or none).
fn meta_over_tls(pki: &Pki, target: &str, client: Option<&str>) -> Value {
    let mut tls = json!({"ca": pki.path("ca.pem")});
    if let Some(name) = client {
        tls["cert"] = json!(pki.path(&format!("{name}.pem")));
        tls["key"] = json!(pki.path(&format!("{name}.key")));
    }
    let plan = json!({"target": target, "tls": tls,
        "calls": [{"method": "/app.main.Echo/Meta", "text": "t", "timeout": 10}]});
    finish(spawn_client(&plan)).remove(0)
}

#[test]
fn tls_serves_and_the_worker_sees_the_auth_type() {
    let Some(pki) = Pki::make() else { return };
    let (_rr, target) = tls_server(&pki, "");
    let result = meta_over_tls(&pki, &target, None);
    assert_eq!(result["code"], "OK", "{result:?}");
    let payload: Value = serde_json::from_str(result["text"].as_str().unwrap()).unwrap();
    assert_eq!(payload["context"][":peer.auth-type"], json!(["tls"]));
    let plain = finish(spawn_client(&json!({"target": target,
        "calls": [{"method": "/app.main.Echo/Ping", "text": "p", "timeout": 5}]})));
    assert_eq!(plain[0]["code"], "UNAVAILABLE", "{plain:?}");
}

#[test]
fn every_client_auth_type_with_a_root_ca() {
    let Some(pki) = Pki::make() else { return };
    // (type, no certificate, our CA's client, a stranger): rustls verifies whatever
    // certificate it is shown, so request_client_cert and require_any_client_cert refuse
    // a stranger where Go's would take it.
    let table = [
        ("no_client_cert", ["OK", "OK", "OK"]),
        ("request_client_cert", ["OK", "OK", "UNAVAILABLE"]),
        (
            "require_any_client_cert",
            ["UNAVAILABLE", "OK", "UNAVAILABLE"],
        ),
        ("verify_client_cert_if_given", ["OK", "OK", "UNAVAILABLE"]),
        (
            "require_and_verify_client_cert",
            ["UNAVAILABLE", "OK", "UNAVAILABLE"],
        ),
    ];
    for (auth_type, expected) in table {
        let extra = format!(
            "    root_ca: {}\n    client_auth_type: {auth_type}\n",
            pki.path("ca.pem").display()
        );
        let (_rr, target) = tls_server(&pki, &extra);
        for (client, want) in [None, Some("client"), Some("stranger")]
            .into_iter()
            .zip(expected)
        {
            let result = meta_over_tls(&pki, &target, client);
            assert_eq!(
                result["code"], want,
                "{auth_type} with {client:?}: {result:?}"
            );
        }
    }
}

#[test]
fn a_unix_socket_listener_serves() {
    let socket = scratch_dir().join("grpc.sock");
    let port = free_port();
    let yaml = grpc_config(port, "", "    num_workers: 1\n", "").replace(
        &format!("tcp://127.0.0.1:{port}"),
        &format!("unix://{}", socket.display()),
    );
    let rr = RrServer::start(&yaml);
    assert!(rr.wait_for_line("grpc server was started", Duration::from_secs(30)));
    // grpc-core's default :authority for a unix target is the path percent-escaped, which
    // the http crate (under h2) refuses as an authority: the client names one instead.
    let results = finish(spawn_client(
        &json!({"target": format!("unix:{}", socket.display()), "authority": "localhost",
        "calls": [{"method": "/app.main.Echo/Meta", "text": "u", "timeout": 10}]}),
    ));
    assert_eq!(results[0]["code"], "OK", "{results:?}");
    let payload: Value = serde_json::from_str(results[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(payload["context"][":peer.address"], json!(["@"]));
}

#[test]
fn idle_and_old_connections_are_sent_goaway() {
    let server = GrpcServer::start(
        "  max_connection_idle: 1s\n  max_connection_age: 3s\n  max_connection_age_grace: 1s\n",
        1,
        "",
    );
    let started = Instant::now();
    let mut idle = RawH2::connect(server.address);
    let goaway = idle.read_until(|f| f.kind == h2_frames::GOAWAY);
    assert!(goaway.is_some(), "an idle connection is sent GOAWAY");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A connection kept busy is not idle; it is sent GOAWAY at its age, and a call longer
    // than age + grace is cut.
    let busy = server.spawn(&json!([
        {"method": "/app.main.Echo/Sleep", "text": "500", "timeout": 30},
        {"method": "/app.main.Echo/Sleep", "text": "500", "timeout": 30},
        {"method": "/app.main.Echo/Sleep", "text": "500", "timeout": 30},
        {"method": "/app.main.Echo/Sleep", "text": "6000", "timeout": 30},
    ]));
    let results = finish(busy);
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes[..3], ["OK", "OK", "OK"], "{results:?}");
    assert_ne!(
        codes[3], "OK",
        "a call past age + grace is cut: {results:?}"
    );
    still_serves(&server);
}

fn still_serves(server: &GrpcServer) {
    let result =
        server.call(&json!([{"method": "/app.main.Echo/Ping", "text": "s", "timeout": 20}]));
    assert_eq!(result[0]["code"], "OK", "{result:?}");
}

#[test]
fn a_client_that_never_speaks_does_not_hold_up_the_stop() {
    let mut server = GrpcServer::start("", 1, "");
    let _silent = std::net::TcpStream::connect(server.address).expect("connects");
    let mut h2 = RawH2::connect(server.address);
    assert!(
        h2.read_until(|f| f.kind == h2_frames::SETTINGS).is_some(),
        "the server is in its loop"
    );
    let asked = Instant::now();
    let status = server.rr.stop();
    assert!(status.success(), "{status}");
    // The handshake timeout is 10 s: a stop that waited for the silent client took that.
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "stop took {:?}",
        asked.elapsed()
    );
}

#[test]
fn a_client_that_does_not_answer_keepalive_pings_is_closed() {
    let server = GrpcServer::start("  ping_time: 1s\n  timeout: 1s\n", 1, "");
    let mut deaf = RawH2::connect(server.address);
    let started = Instant::now();
    let ping = deaf.read_until(|f| f.kind == h2_frames::PING && f.flags & h2_frames::ACK == 0);
    assert!(ping.is_some(), "the server pings after ping_time");
    // Never answered: the connection ends about `timeout` later.
    while deaf.read_frame().is_some() {}
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    // grpcio answers pings: a call longer than ping_time + timeout is not cut.
    let result =
        server.call(&json!([{"method": "/app.main.Echo/Sleep", "text": "3000", "timeout": 20}]));
    assert_eq!(result[0]["code"], "OK", "{result:?}");
}
