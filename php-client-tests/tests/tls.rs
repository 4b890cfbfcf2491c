//! `http.ssl` through the real binary and real PHP workers, with certificates made by the
//! test (Debian's `openssl`) and `curl` as the client: HTTPS with the worker seeing
//! `https://`, multi-megabyte bodies both ways, client certificates against `root_ca`, the
//! plain listener's 308 redirect, a malformed handshake, and a missing certificate file.
//! Skips, visibly, when `openssl` or `curl` is missing.

use php_client_tests::pki::Pki;
use php_client_tests::server::{curl, free_port, scratch_dir, worker_command, RrServer};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

/// A config with the plain listener on a free port and the TLS one on another; `ssl_extra`
/// lines go under `ssl:` (indented 4).
fn config(pki: &Pki, ssl_extra: &str) -> (String, u16) {
    let tls_port = free_port();
    let yaml = format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\nhttp:\n  address: 127.0.0.1:{}\n  ssl:\n    address: 127.0.0.1:{tls_port}\n    cert: {}\n    key: {}\n{ssl_extra}  pool:\n    num_workers: 2\nlogs:\n  level: info\n",
        worker_command("http.php"),
        free_port(),
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
    );
    (yaml, tls_port)
}

fn https(pki: &Pki, port: u16, path: &str, extra: &[&str]) -> Output {
    let url = format!("https://localhost:{port}{path}");
    let ca = pki.path("ca.pem");
    // HTTP/1.1 here (curl would take the h2 we offer): tests/http2.rs has HTTP/2 over TLS.
    let mut args = vec!["--http1.1", "--cacert", ca.to_str().unwrap(), "--resolve"];
    let resolve = format!("localhost:{port}:127.0.0.1");
    args.push(&resolve);
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[test]
fn https_serves_php_and_the_worker_sees_https() {
    let Some(pki) = Pki::make() else { return };
    let (yaml, port) = config(&pki, "");
    let server = RrServer::start(&yaml);
    assert!(server.wait_for_line("https server listening", Duration::from_secs(5)));
    let hello = https(&pki, port, "/hello", &[]);
    assert!(
        hello.status.success(),
        "{}",
        String::from_utf8_lossy(&hello.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "Hello from PHP\n");
    let echo = https(&pki, port, "/echo?x=1", &[]);
    let echo: Value = serde_json::from_slice(&echo.stdout).unwrap();
    assert_eq!(echo["uri"], format!("https://localhost:{port}/echo?x=1"));
    assert_eq!(echo["protocol"], "HTTP/1.1");
    // Multi-megabyte both ways, on one connection (keep-alive over TLS).
    let body = scratch_dir().join("body");
    std::fs::write(&body, vec![b'z'; 3 << 20]).unwrap();
    let data = format!("@{}", body.display());
    let len = https(
        &pki,
        port,
        "/len",
        &[
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    assert!(String::from_utf8_lossy(&len.stdout).starts_with(&format!("{} ", 3 << 20)));
    let big = https(&pki, port, "/big?kb=3072", &[]);
    assert_eq!(big.stdout.len(), 3 << 20);
    assert!(big.stdout.iter().all(|b| *b == b'x'));
}

#[test]
fn client_certificates_are_verified_against_root_ca() {
    let Some(pki) = Pki::make() else { return };
    let root_ca = format!(
        "    root_ca: {}\n    client_auth_type: require_and_verify_client_cert\n",
        pki.path("ca.pem").display()
    );
    let (yaml, port) = config(&pki, &root_ca);
    let _server = RrServer::start(&yaml);
    // curl with the client certificate `name` (none when empty).
    let with_cert = |name: &str| {
        let (pem, key) = (
            pki.path(&format!("{name}.pem")),
            pki.path(&format!("{name}.key")),
        );
        let (pem, key) = (pem.display().to_string(), key.display().to_string());
        let args: Vec<&str> = if name.is_empty() {
            Vec::new()
        } else {
            vec!["--cert", &pem, "--key", &key]
        };
        https(&pki, port, "/hello", &args)
    };
    let shown = with_cert("client");
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let none = with_cert("");
    assert!(
        !none.status.success(),
        "no certificate, yet: {}",
        String::from_utf8_lossy(&none.stdout)
    );
    let stranger = with_cert("stranger");
    assert!(
        !stranger.status.success(),
        "a certificate no CA of ours signed was taken"
    );
}

#[test]
fn the_plain_listener_redirects_to_the_tls_port() {
    let Some(pki) = Pki::make() else { return };
    let (yaml, port) = config(&pki, "    redirect: true\n");
    let server = RrServer::start(&yaml);
    let plain = server.http();
    let answer = curl(&["-i", &format!("http://{plain}/a%20b?x=1")]);
    let text = String::from_utf8_lossy(&answer.stdout);
    assert!(
        text.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Location: https://127.0.0.1:{port}/a%20b?x=1\r\n")),
        "{text}"
    );
    assert!(
        text.contains("Strict-Transport-Security: max-age=31536000; includeSubDomains; preload")
    );
    // Followed, it lands on the worker over TLS.
    let followed = curl(&[
        "-L",
        "--cacert",
        pki.path("ca.pem").to_str().unwrap(),
        &format!("http://{plain}/hello"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&followed.stdout),
        "Hello from PHP\n"
    );
}

#[test]
fn a_malformed_handshake_is_closed_and_others_are_served() {
    use std::io::{Read, Write};
    let Some(pki) = Pki::make() else { return };
    let (yaml, port) = config(&pki, "");
    let _server = RrServer::start(&yaml);
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: plain-text-on-tls\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    // rustls answers with an alert (or nothing) and the server closes: EOF, not a hang.
    let _ = garbage.read_to_end(&mut reply);
    assert!(reply.len() < 64, "{} bytes back", reply.len());
    let hello = https(&pki, port, "/hello", &[]);
    assert!(hello.status.success());
}

#[test]
fn a_missing_certificate_file_stops_the_start_with_rr_s_error() {
    let Some(pki) = Pki::make() else { return };
    let (yaml, _) = config(&pki, "");
    let yaml = yaml.replace(
        pki.path("server.pem").to_str().unwrap(),
        "/nonexistent/server.pem",
    );
    let (status, output) = RrServer::start_with(&yaml, &[]).expect_err("rr must not start");
    assert!(!status.success());
    assert!(
        output
            .contains("validation: ssl_valid: cert file '/nonexistent/server.pem' does not exists"),
        "{output}"
    );
}
