//! `temporal.tls` through the real binary: the Temporal dev server has no TLS of its own
//! (`temporal server start-dev` takes no certificate), so nginx (Debian's) terminates TLS in
//! front of it and passes gRPC on (`grpc_pass`). rr dials nginx with the test CA as
//! `root_ca`; without it the server's certificate is not trusted and rr does not start.

#[path = "temporal/rig.rs"]
#[allow(dead_code)] // the rig's kill and pid helpers serve the other temporal suite
mod rig;

use php_client_tests::nginx::Nginx;
use php_client_tests::pki::Pki;
use php_client_tests::server::RrServer;
use php_client_tests::temporal_server::TemporalServer;
use serde_json::json;

/// nginx terminating TLS for `upstream` (gRPC). Long polls wait up to a minute on the
/// server: the proxy waits longer.
fn tls_proxy(pki: &Pki, upstream: &str) -> Option<Nginx> {
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    Nginx::start(|port| {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl http2; ssl_certificate {}; ssl_certificate_key {};\n\
             location / {{ grpc_pass grpc://{upstream}; grpc_read_timeout 300s; grpc_send_timeout 300s; }} }}",
            cert.display(),
            key.display()
        )
    })
}

#[test]
fn rr_dials_temporal_over_tls_with_the_configured_root_ca_and_refuses_an_untrusted_server() {
    let Some(pki) = Pki::make() else { return };
    let temporal = TemporalServer::start();
    let Some(proxy) = tls_proxy(&pki, &temporal.address()) else {
        return;
    };
    let address = format!("127.0.0.1:{}", proxy.port);
    let queue = format!("tls{}", std::process::id());
    // No root_ca: the system's roots do not know the test CA.
    let untrusted = rig::config(&address, &queue, 1, "  tls:\n    server_name: localhost\n");
    let refused = RrServer::start_with(&untrusted, &[]).err();
    let (status, output) = refused.expect("rr must not start against an untrusted server");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("failed reaching server"), "{output}");
    let trusted = rig::config(
        &address,
        &queue,
        1,
        &format!(
            "  tls:\n    root_ca: {}\n    server_name: localhost\n",
            pki.path("ca.pem").display()
        ),
    );
    let rr = RrServer::start(&trusted);
    let rig = rig::Rig {
        rr,
        temporal,
        queue: queue.clone(),
        log: std::env::temp_dir().join(format!("{queue}.log")),
    };
    assert!(rig.rr.output().contains("connected to temporal server"));
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Tls"]"#]),
        json!({"result": "Hello, Tls!"}),
        "{}",
        rig.rr.output()
    );
}
