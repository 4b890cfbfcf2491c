//! The shapes of `.rr.yaml` that real apps ship (`configs/`, see its README): each started
//! by the real binary with its commands pointed at our test workers, each checked against
//! what rr does with it (starts and serves, starts and idles with its listeners up, leaves a
//! plugin out with a warning, or refuses), then stopped with SIGTERM, which must end it with
//! exit status 0.

use php_client_tests::http_client::get;
use php_client_tests::server::{free_port, scratch_dir, worker_command, Launch, RrServer};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The ports a config may name, as `TEST_<NAME>_PORT`.
const PORT_NAMES: [&str; 7] = ["http", "rpc", "metrics", "status", "tcp", "fcgi", "relay"];

/// One check from a config's `# expect:` lines.
#[derive(Debug)]
enum Expectation {
    /// An HTTP GET on the named port answers with the status.
    Get {
        port: String,
        path: String,
        status: u16,
    },
    Listening(String),
    Silent(String),
    Log(String),
    NoLog(String),
    Refuse(String),
    /// The `lock` RPC on the named port takes, shows and releases a lock.
    LockRpc(String),
}

fn parse_expectation(text: &str) -> Expectation {
    let (kind, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim().to_owned();
    match kind {
        "get" => {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "get <port> <path> <status>: {text}");
            Expectation::Get {
                port: parts[0].to_owned(),
                path: parts[1].to_owned(),
                status: parts[2].parse().expect("a status"),
            }
        }
        "listening" => Expectation::Listening(rest),
        "silent" => Expectation::Silent(rest),
        "log" => Expectation::Log(rest),
        "no-log" => Expectation::NoLog(rest),
        "refuse" => Expectation::Refuse(rest),
        "lock-rpc" => Expectation::LockRpc(rest),
        other => panic!("unknown expectation {other:?}"),
    }
}

/// The environment a config is expanded with: free ports, the scratch folder, commands.
struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    fn new(dir: &Path) -> Self {
        let mut vars: Vec<(String, String)> = PORT_NAMES
            .iter()
            .map(|name| {
                (
                    format!("TEST_{}_PORT", name.to_uppercase()),
                    free_port().to_string(),
                )
            })
            .collect();
        vars.push(("TEST_DIR".into(), dir.display().to_string()));
        vars.push(("TEST_HTTP_WORKER".into(), worker_command("http.php")));
        vars.push(("TEST_JOBS_WORKER".into(), worker_command("jobs.php")));
        vars.push(("TEST_TCP_WORKER".into(), worker_command("tcp.php")));
        vars.push(("PHP".into(), php_client_tests::php_binary()));
        Self { vars }
    }

    fn port(&self, name: &str) -> SocketAddr {
        let key = format!("TEST_{}_PORT", name.to_uppercase());
        let port = self
            .vars
            .iter()
            .find(|(known, _)| *known == key)
            .unwrap_or_else(|| panic!("no port {name}"))
            .1
            .parse::<u16>()
            .unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// `${NAME}` replaced by the variable's value (for `# args:` lines, which no shell reads).
    fn expand(&self, text: &str) -> String {
        self.vars
            .iter()
            .fold(text.to_owned(), |text, (name, value)| {
                text.replace(&format!("${{{name}}}"), value)
            })
    }
}

/// Splits an `# args:` line on blanks, keeping what is inside single quotes together (a
/// worker command after `-o server.command=`, as Octane passes it in one argument).
fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        args.push(current);
    }
    args
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// Starts `rr` on `configs/<file>` and checks its `# expect:` lines.
fn check_config(file: &str) {
    let text = std::fs::read_to_string(configs_dir().join(file)).expect("the config");
    let header: Vec<&str> = text
        .lines()
        .take_while(|line| line.starts_with('#'))
        .collect();
    let expectations: Vec<Expectation> = header
        .iter()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(parse_expectation)
        .collect();
    assert!(!expectations.is_empty(), "{file} checks nothing");
    let dir = scratch_dir();
    std::fs::create_dir_all(dir.join("public")).unwrap();
    std::fs::write(dir.join("public/styles.css"), "body { color: red; }\n").unwrap();
    let env = Environment::new(&dir);
    let args_line = header
        .iter()
        .find_map(|line| line.strip_prefix("# args: "))
        .map(|args| env.expand(args))
        .unwrap_or_default();
    let args = split_args(&args_line);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let launch = Launch {
        env: env.vars.clone(),
        ..Launch::default()
    };
    let refusal = expectations.iter().find_map(|e| match e {
        Expectation::Refuse(text) => Some(text.clone()),
        _ => None,
    });
    let started = RrServer::start_in(dir, &text, &args, &launch);
    if let Some(text) = refusal {
        let (status, output) = started.err().unwrap_or_else(|| panic!("{file} started"));
        assert_eq!(status.code(), Some(1), "{file}: {output}");
        assert!(output.contains(&text), "{file}: {output}");
        return;
    }
    let mut server = started
        .unwrap_or_else(|(status, output)| panic!("{file} did not start ({status}):\n{output}"));
    for expectation in &expectations {
        check(file, &server, &env, expectation);
    }
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{file}: {}", server.output());
}

fn check(file: &str, server: &RrServer, env: &Environment, expectation: &Expectation) {
    let context = || format!("{file}: {expectation:?}\n{}", server.output());
    match expectation {
        Expectation::Get { port, path, status } => {
            let answer = get(env.port(port), path);
            assert_eq!(answer.status, *status, "{}", context());
        }
        Expectation::Listening(port) => {
            let connected = TcpStream::connect_timeout(&env.port(port), Duration::from_secs(5));
            assert!(connected.is_ok(), "{}", context());
        }
        Expectation::Silent(port) => {
            let connected = TcpStream::connect_timeout(&env.port(port), Duration::from_secs(5));
            assert!(connected.is_err(), "{}", context());
        }
        Expectation::Log(text) => {
            assert!(
                server.wait_for_line(text, Duration::from_secs(10)),
                "{}",
                context()
            );
        }
        Expectation::NoLog(text) => {
            assert!(!server.output().contains(text.as_str()), "{}", context());
        }
        Expectation::Refuse(_) => unreachable!("handled before the start"),
        Expectation::LockRpc(port) => {
            check_lock_rpc(&format!("tcp://{}", env.port(port)), &context)
        }
    }
}

/// Locks, checks and releases a lock with `php/lock_call.php` (the `lock` plugin's RPC).
fn check_lock_rpc(dsn: &str, context: &dyn Fn() -> String) {
    for (op, answer) in [
        ("lock", r#""result":"real-configs""#),
        ("exists", r#""result":true"#),
        ("release", r#""result":true"#),
    ] {
        let output = std::process::Command::new(php_client_tests::php_binary())
            .arg(php_client_tests::php_dir().join("lock_call.php"))
            .args([dsn, op, "real-configs-resource", "real-configs"])
            .output()
            .expect("php runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(answer),
            "lock {op}: {stdout}\n{}",
            context()
        );
    }
}

/// One test per config, so the harness runs them side by side and names the one that fails.
macro_rules! real_configs {
    ($($name:ident => $file:literal,)*) => {
        $(#[test] fn $name() { check_config($file); })*

        #[test]
        fn every_config_in_the_folder_has_its_test() {
            let listed = [$($file),*];
            let mut present: Vec<String> = std::fs::read_dir(configs_dir())
                .unwrap()
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".rr.yaml"))
                .collect();
            present.sort();
            assert!(present.len() >= 40, "{} configs", present.len());
            for name in &present {
                assert!(listed.contains(&name.as_str()), "{name} has no test");
            }
        }
    };
}

real_configs! {
    symfony_bundle => "01-symfony-bundle.rr.yaml",
    spiral_app => "02-spiral-app.rr.yaml",
    octane_empty_file_and_flags => "03-octane-empty-file.rr.yaml",
    kv_sidecar => "04-kv-sidecar.rr.yaml",
    lock_sidecar => "05-lock-sidecar.rr.yaml",
    metrics_only => "06-metrics-only.rr.yaml",
    version_only => "07-version-only.rr.yaml",
    status_without_address => "08-status-without-address.rr.yaml",
    status_check_timeout_as_a_duration => "09-status-check-timeout-duration.rr.yaml",
    http_without_server => "10-http-without-server.rr.yaml",
    jobs_consume_as_an_empty_map => "11-jobs-consume-empty-map.rr.yaml",
    unknown_keys_in_known_sections => "12-unknown-keys.rr.yaml",
    version_2_7_file => "13-v27-file.rr.yaml",
    unix_relay => "14-unix-relay.rr.yaml",
    tcp_relay => "15-tcp-relay.rr.yaml",
    env_defaults_everywhere => "16-env-defaults-everywhere.rr.yaml",
    per_plugin_log_channels => "17-log-channels.rr.yaml",
    spiral_with_temporal => "18-spiral-temporal.rr.yaml",
    grpc_section => "19-grpc-section.rr.yaml",
    laravel_docker => "20-laravel-docker.rr.yaml",
    fcgi_beside_http => "21-fcgi-beside-http.rr.yaml",
    h2c => "22-h2c.rr.yaml",
    service_sidecar => "23-service-sidecar.rr.yaml",
    reload_in_development => "24-reload-dev.rr.yaml",
    otel => "25-otel.rr.yaml",
    centrifuge => "26-centrifuge.rr.yaml",
    endure_grace_period => "27-endure-grace.rr.yaml",
    debug_pool => "28-debug-pool.rr.yaml",
    limits_and_access_logs => "29-limits-and-access-logs.rr.yaml",
    jobs_memory_pipelines => "30-jobs-memory-pipelines.rr.yaml",
    two_kv_storages_and_jobs => "31-two-kv-storages-and-jobs.rr.yaml",
    server_env_map_and_on_init => "32-server-env-map.rr.yaml",
    unix_rpc => "33-unix-rpc.rr.yaml",
    metrics_collectors => "34-metrics-collectors.rr.yaml",
    tcp_servers => "35-tcp-servers.rr.yaml",
    static_etag_and_headers => "36-static-etag-headers.rr.yaml",
    development_console_logs => "37-logs-development-console.rr.yaml",
    rotated_log_file => "38-logs-file-rotation.rr.yaml",
    full_observability => "39-full-observability.rr.yaml",
    empty_maps_and_lists => "40-empty-maps-and-lists.rr.yaml",
    zero_workers => "41-zero-workers.rr.yaml",
    misspelt_section => "42-misspelt-section.rr.yaml",
    timeouts_as_whole_seconds => "43-timeouts-as-numbers.rr.yaml",
    unknown_relay_is_refused => "44-bad-relay-is-refused.rr.yaml",
}
