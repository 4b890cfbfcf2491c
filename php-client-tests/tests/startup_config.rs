//! Configurations that must not give a server that says "started" and then misbehaves: an
//! address another server listens on, a misspelt section, an alias bomb; and the Symfony
//! bundle's list-shaped `server.env` and a dotenv file, which must load as rr loads them.

use php_client_tests::http_client::get;
use php_client_tests::server::{free_port, http_config as config, scratch_dir, RrServer};
use std::time::{Duration, Instant};

#[test]
fn a_second_server_on_the_same_address_is_refused_unless_it_asks_to_share() {
    let port = free_port();
    let yaml = config("", "").replacen(
        "  address: 127.0.0.1:0\n",
        &format!("  address: 127.0.0.1:{port}\n"),
        1,
    );
    assert!(yaml.contains(&format!("127.0.0.1:{port}")));
    let first = RrServer::start(&yaml);
    let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!(
            "listen tcp 127.0.0.1:{port}: bind: address already in use"
        )),
        "{output}"
    );
    // Asked for, the second joins (a hand-over), and both answer on the port.
    let second = RrServer::start_with(&yaml, &["-o", "http.reuse_port=true"]).unwrap();
    assert_eq!(get(first.http(), "/hello").status, 200);
    drop(first);
    assert_eq!(get(second.http(), "/hello").status, 200);
}

#[test]
fn a_misspelt_http_section_is_named_and_the_server_starts_as_rr_does() {
    // rr starts with what it knows and idles; the warnings name the typo and say that
    // nothing serves requests (this refused to start before, stricter than rr).
    let yaml = config("", "").replace("\nhttp:\n", "\nhtttp:\n");
    let mut server = RrServer::start_with(&yaml, &[]).expect("rr starts");
    for line in [
        "unknown section htttp",
        "did you mean http?",
        "no plugin of this configuration serves requests",
    ] {
        assert!(
            server.wait_for_line(line, Duration::from_secs(10)),
            "{line}: {}",
            server.output()
        );
    }
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn an_alias_bomb_is_a_quick_clear_error() {
    let mut yaml = String::from("version: '3'\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let aliases = vec![format!("*{}", pair[0]); 9].join(",");
        yaml.push_str(&format!("{}: &{} [{aliases}]\n", pair[1], pair[1]));
    }
    let started = Instant::now();
    let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("aliases expand the document"), "{output}");
    assert!(output.len() < 2_000, "{} bytes of output", output.len());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn server_env_as_a_list_of_one_key_maps_reaches_the_worker() {
    let yaml = config("", "").replace(
        "\nhttp:\n",
        "\n  env:\n    - APP_RUNTIME: Baldinof\\RoadRunnerBundle\\Runtime\\Runtime\n    - APP_ENV: prod\nhttp:\n",
    );
    let server = RrServer::start(&yaml);
    assert_eq!(
        get(server.http(), "/env?name=APP_RUNTIME").text(),
        "Baldinof\\RoadRunnerBundle\\Runtime\\Runtime"
    );
    assert_eq!(get(server.http(), "/env?name=APP_ENV").text(), "prod");
}

#[test]
fn dotenv_values_expand_in_the_config_and_reach_the_worker_below_server_env() {
    let dir = scratch_dir();
    let dotenv = dir.join("app.env");
    std::fs::write(
        &dotenv,
        "# app settings\nexport APP_GREETING=\"hi there\"\nAPP_MODE=dotenv\nDOTENV_LIMIT=3\n",
    )
    .unwrap();
    let yaml = config("  max_request_size: ${DOTENV_LIMIT}\n", "")
        .replace("\nhttp:\n", "\n  env:\n    APP_MODE: server-env\nhttp:\n");
    let dotenv = dotenv.display().to_string();
    let server = RrServer::start_with(&yaml, &["--dotenv", &dotenv]).unwrap();
    assert_eq!(
        get(server.http(), "/env?name=APP_GREETING").text(),
        "hi there"
    );
    assert_eq!(
        get(server.http(), "/env?name=APP_MODE").text(),
        "server-env"
    );
    // ${DOTENV_LIMIT} expanded to 3 MiB: 4 MiB is refused.
    let big = php_client_tests::http_client::request(
        server.http(),
        b"POST /len HTTP/1.1\r\nHost: h\r\nContent-Length: 4194304\r\n\r\n",
    );
    assert_eq!(big.status, 413);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_sigterm_while_the_plugins_start_is_a_clean_stop() {
    use std::io::{BufRead, BufReader};
    let dir = scratch_dir();
    std::fs::write(dir.join(".rr.yaml"), config("", "")).unwrap();
    let mut child = php_client_tests::server::spawn_serve(&dir, &[]);
    // The http listener's log line comes before the status plugin starts and the banner.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines.any(|line| line.is_ok_and(|l| l.contains("http server listening")));
    assert!(listening);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let status = php_client_tests::server::wait_child_exit(&mut child, Duration::from_secs(30))
        .expect("rr exits");
    assert_eq!(status.code(), Some(0), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_version_line_names_the_rr_release_third_as_octane_reads_it() {
    let output = php_client_tests::server::run_rr(&scratch_dir(), &["--version"]);
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    let tokens: Vec<&str> = line.split(' ').collect();
    assert_eq!(&tokens[..2], ["rr", "version"], "{line}");
    // Octane offers to download rr when this token is below 2023.3.0; the Temporal SDK
    // checks RR_VERSION the same way.
    assert_eq!(tokens[2], "2025.1.15", "{line}");
    assert!(
        line.contains(&format!("(ringrunner {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
}
