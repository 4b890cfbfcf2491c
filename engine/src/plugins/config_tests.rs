//! Reading configs into plugins: rr's own sample, expansion, overrides, includes, types,
//! warnings.

use super::http::HttpSection;
use super::logs::LogsSection;
use super::server::{user_credentials, ServerPlugin, ServerSection};
use super::status::StatusSection;
use super::{configure, Configured};
use crate::config::{Config, LoadError};
use std::path::Path;
use std::time::Duration;

fn no_env(_: &str) -> Option<String> {
    None
}

/// A config read into plugins, with the sections at hand.
#[derive(Debug)]
struct Loaded {
    version: String,
    configured: Configured,
}

impl Loaded {
    fn http(&self) -> Option<HttpSection> {
        self.configured.get::<HttpSection>().cloned()
    }

    fn server(&self) -> Option<ServerSection> {
        self.configured
            .get::<ServerPlugin>()
            .map(|server| server.section.clone())
    }

    fn rpc_listen(&self) -> Option<String> {
        self.configured
            .get::<ServerPlugin>()
            .and_then(|server| server.rpc_listen.clone())
    }

    fn status(&self) -> Option<StatusSection> {
        self.configured.get::<StatusSection>().cloned()
    }

    fn logs(&self) -> LogsSection {
        self.configured.get::<LogsSection>().cloned().unwrap()
    }

    fn warnings(&self) -> &[String] {
        &self.configured.warnings
    }

    fn notes(&self) -> &[String] {
        &self.configured.notes
    }
}

fn load_with(
    text: &str,
    overrides: &[String],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Loaded, LoadError> {
    let config = Config::load(text, overrides, env)?;
    Ok(Loaded {
        version: config.version.clone(),
        configured: configure(&config, env, &[])?,
    })
}

fn load(text: &str) -> Result<Loaded, LoadError> {
    load_with(text, &[], &no_env)
}

#[test]
fn http2_reads_h2c_and_the_stream_limit_with_rr_s_defaults() {
    let read = |extra: &str| {
        let text = format!(
            "version: \"3\"\nserver:\n  command: php w.php\nhttp:\n  address: 127.0.0.1:0\n{extra}"
        );
        load(&text).unwrap().http().unwrap().http2
    };
    let default = read("");
    assert!(!default.h2c);
    assert_eq!(default.max_concurrent_streams, 128);
    let set = read("  http2:\n    h2c: true\n    max_concurrent_streams: 7\n");
    assert!(set.h2c);
    assert_eq!(set.max_concurrent_streams, 7);
    assert_eq!(
        read("  http2:\n    max_concurrent_streams: 0\n").max_concurrent_streams,
        128
    );
    assert!(load("version: \"3\"\nserver:\n  command: php w.php\nhttp:\n  address: 127.0.0.1:0\n  http2:\n    h2c: maybe\n").is_err());
}

#[test]
fn roadrunner_s_own_sample_config_loads() {
    let text = include_str!("../../tests/data/rr-v2025.1.15-sample.rr.yaml");
    let config = load(text).unwrap();
    assert_eq!(config.version, "3");
    assert_eq!(config.rpc_listen().as_deref(), Some("tcp://127.0.0.1:6001"));
    let server = config.server().unwrap();
    assert_eq!(server.command, ["php", "psr-worker.php"]);
    assert!(server
        .env
        .contains(&("SOME_KEY".into(), "SOME_VALUE".into())));
    assert_eq!(
        server.on_init.unwrap().exec_timeout,
        Duration::from_secs(20)
    );
    let http = config.http().unwrap();
    assert_eq!(http.address, "127.0.0.1:8080");
    assert_eq!(http.internal_error_code, 505);
    assert_eq!(http.max_request_size, 256 << 20);
    assert_eq!(http.uploads.forbid, [".php", ".exe", ".bat", ".sh"]);
    assert_eq!(
        http.http2,
        super::http::Http2Section {
            h2c: false,
            max_concurrent_streams: 128
        }
    );
    assert_eq!(http.pool.command, ["php", "my-super-app.php"]);
    let supervisor = http.pool.supervisor.unwrap();
    assert_eq!(supervisor.max_worker_memory_mib, 128);
    assert_eq!(supervisor.idle_ttl, Duration::from_secs(10));
    assert_eq!(config.status().unwrap().address, "127.0.0.1:2114");
    assert_eq!(config.logs().root.mode, "development");
    assert_eq!(config.logs().channels.len(), 3);
    assert_eq!(config.configured.grace_period, Duration::from_secs(30));
    assert!(config.warnings().iter().any(|w| w
        .starts_with("sections without a ringrunner plugin yet")
        && w.contains("fileserver")
        && !w.contains("grpc")));
    let grpc = config
        .configured
        .get::<crate::plugins::grpc::GrpcSection>()
        .expect("the grpc section is read");
    assert_eq!(grpc.proto, ["*.proto", "first.proto", "second.proto"]);
    assert_eq!(grpc.max_recv_msg_size_bytes, 50 * 1024 * 1024);
    assert_eq!(grpc.ping_time, Duration::from_secs(1));
    assert_eq!(grpc.timeout, Duration::from_secs(200));
    assert_eq!(grpc.max_connection_age_grace, Duration::from_secs(8 * 3600));
}

#[test]
fn version_is_checked_with_rr_s_texts() {
    assert_eq!(
        load("http: {}\n").unwrap_err().to_string(),
        "rr configuration file should contain a version e.g: version: 3"
    );
    assert_eq!(
        load("version: 3\n").unwrap_err().to_string(),
        "config_plugin_init: version should be a string: `version: \"3\"`, actual type is: int"
    );
    assert!(load("version: 2.7\n")
        .unwrap_err()
        .to_string()
        .ends_with("actual type is: float64"));
    let old = load("version: '2.7'\n").unwrap();
    assert!(old.warnings()[0].starts_with("please, update your configuration version"));
    // -o can supply the version (it is checked after overrides).
    assert!(Config::load("rpc: {}\n", &["version=3".into()], &no_env).is_ok());
}

#[test]
fn env_expansion_and_overrides() {
    let env = |name: &str| (name == "PORT").then(|| "9000".to_owned());
    let text = "version: '3'\nhttp:\n  address: 127.0.0.1:${PORT}\n  pool:\n    num_workers: ${WORKERS:-3}\nserver:\n  command: php w.php\n";
    let config = load_with(
        text,
        &[
            "http.pool.max_jobs=7".into(),
            "server.command=\"php other.php\"".into(),
        ],
        &env,
    )
    .unwrap();
    let http = config.http().unwrap();
    assert_eq!(http.address, "127.0.0.1:9000");
    assert_eq!(http.pool.num_workers, 3);
    assert_eq!(http.pool.max_jobs, 7);
    assert_eq!(config.server().unwrap().command, ["php", "other.php"]);
    for (bad, text) in [
        ("novalue", "invalid flag `novalue`"),
        ("=x", "key should not be empty"),
        ("a=", "value should not be empty"),
    ] {
        let error = Config::load("version: '3'\n", &[bad.into()], &no_env).unwrap_err();
        assert_eq!(error.to_string(), text);
    }
}

#[test]
fn wrong_types_name_the_key_and_the_line() {
    let text = "version: '3'\nhttp:\n  address: 127.0.0.1:8080\n  pool:\n    num_workers: many\n";
    assert_eq!(
        load(text).unwrap_err().to_string(),
        "config_plugin_init: http.pool.num_workers (line 5): expected a non-negative integer, got \"many\""
    );
    let text =
        "version: '3'\nhttp:\n  address: 127.0.0.1:8080\n  pool:\n    allocate_timeout: soon\n";
    assert!(load(text)
        .unwrap_err()
        .to_string()
        .contains("http.pool.allocate_timeout (line 5)"));
    let syntax = load("version: '3'\nhttp:\n  address: [x\n").unwrap_err();
    assert!(
        syntax
            .to_string()
            .starts_with("config_plugin_init: yaml: line"),
        "{syntax}"
    );
}

#[test]
fn unknown_keys_are_debug_notes_and_defaults_apply() {
    // rr ignores keys it does not read without a word: a note at debug, not a warning.
    let text = "version: '3'\nhttp:\n  address: :8080\n  adress: x\n  pool:\n    num_worker: 2\nserver:\n  command: php w.php\n";
    let config = load(text).unwrap();
    assert!(config.notes().contains(
        &"unknown configuration key http.adress (line 4), ignored (did you mean http.address?)"
            .to_owned()
    ));
    assert!(config
        .notes()
        .contains(&"unknown configuration key http.pool.num_worker (line 6), ignored (did you mean http.pool.num_workers?)".to_owned()));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    let http = config.http().unwrap();
    assert_eq!(http.max_request_size, 1000 << 20);
    assert_eq!(http.internal_error_code, 500);
    assert_eq!(http.pool.allocate_timeout, Duration::from_secs(60));
    assert_eq!(config.logs(), LogsSection::default());
}

#[test]
fn missing_file_is_go_s_error() {
    let error = Config::load_file(Path::new("nope.yaml"), &[], &no_env).unwrap_err();
    assert_eq!(
        error.to_string(),
        "open nope.yaml: no such file or directory"
    );
}

#[test]
fn server_user_resolves_from_passwd() {
    let passwd =
        "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:34:www-data:/var/www:/usr/sbin/nologin\n";
    let as_root = rustix::process::geteuid().is_root();
    match user_credentials("www-data", passwd) {
        Ok(ids) => assert_eq!(ids, (33, 34)),
        Err(error) => {
            assert!(!as_root, "{error}");
            assert!(error.contains("needs root"), "{error}");
        }
    }
    assert_eq!(
        user_credentials("nobody-here", passwd).unwrap_err(),
        "server.user: user: unknown user nobody-here"
    );
}

#[test]
fn includes_replace_top_level_sections_after_overrides() {
    let dir = std::env::temp_dir().join(format!("rr-include-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let http = dir.join("http.yaml");
    std::fs::write(
        &http,
        "version: '3'\nhttp:\n  address: ${HOST}:9000\ninclude: [nowhere.yaml]\n",
    )
    .unwrap();
    let other_version = dir.join("old.yaml");
    std::fs::write(&other_version, "version: '2.7'\nstatus: {address: x}\n").unwrap();
    let root = format!(
        "version: '3'\ninclude: ['{}']\nhttp:\n  address: 127.0.0.1:1\n  max_request_size: 5\nstatus:\n  address: 127.0.0.1:2\n",
        http.display()
    );
    let env = |name: &str| (name == "HOST").then(|| "10.0.0.1".to_owned());
    let overrides = ["http.address=127.0.0.1:3".to_owned()];
    let config = load_with(&root, &overrides, &env).unwrap();
    let http_section = config.http().unwrap();
    assert_eq!(
        http_section.address, "10.0.0.1:9000",
        "the include wins over -o"
    );
    assert_eq!(
        http_section.max_request_size,
        1000 * 1024 * 1024,
        "sections are replaced, not merged"
    );
    assert_eq!(config.status().unwrap().address, "127.0.0.1:2");
    let both = root.replace(
        &format!("['{}']", http.display()),
        &format!("['{}', '{}']", http.display(), other_version.display()),
    );
    let error = load_with(&both, &[], &env).unwrap_err();
    assert_eq!(
        error.to_string(),
        "version in included file must be the same as in root"
    );
    let missing = root.replace(&http.display().to_string(), "/nonexistent/x.yaml");
    let error = load_with(&missing, &[], &env).unwrap_err();
    assert_eq!(
        error.to_string(),
        "open /nonexistent/x.yaml: no such file or directory"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dynamic_allocator_is_read_with_rr_s_clamps() {
    let config = load(
        "version: '3'\nserver:\n  command: php w.php\nhttp:\n  address: 127.0.0.1:0\n  pool:\n    dynamic_allocator:\n      max_workers: 200\n      spawn_rate: 3\n      idle_timeout: 500ms\n",
    )
    .unwrap();
    let http = config.http().unwrap();
    let pool = &http.pool;
    assert_eq!(
        pool.dynamic,
        Some(crate::pool::DynamicAllocator {
            max_workers: 100,
            spawn_rate: 3,
            idle_timeout: Duration::from_secs(60),
        })
    );
    let defaults =
        load("version: '3'\nhttp:\n  address: 127.0.0.1:0\n  pool:\n    dynamic_allocator: {}\n")
            .unwrap();
    assert_eq!(
        defaults.http().unwrap().pool.dynamic,
        Some(crate::pool::DynamicAllocator::default())
    );
    let none = load("version: '3'\nhttp:\n  address: 127.0.0.1:0\n  pool: {}\n").unwrap();
    assert_eq!(none.http().unwrap().pool.dynamic, None);
}

#[test]
fn a_misspelt_section_is_named_with_its_likely_meaning() {
    let text =
        "version: '3'\nhtttp:\n  address: :8080\nfileserver:\n  address: :9001\nmy_app_settings: {}\n";
    let config = load(text).unwrap();
    assert!(config.http().is_none());
    assert!(
        config
            .warnings()
            .contains(&"unknown section htttp (line 2), ignored (did you mean http?)".to_owned()),
        "{:?}",
        config.warnings()
    );
    assert!(config
        .warnings()
        .contains(&"unknown section my_app_settings (line 6), ignored".to_owned()));
    assert!(config
        .warnings()
        .contains(&"sections without a ringrunner plugin yet, ignored: fileserver".to_owned()));
}

#[test]
fn server_env_as_a_list_of_one_key_maps_loads_as_rr_loads_it() {
    let text = "version: '3'\nserver:\n  command: php w.php\n  env:\n    - APP_RUNTIME: Baldinof\\Runtime\n    - A: 1\n    - A: 2\n";
    let server = load(text).unwrap().server().unwrap();
    assert_eq!(
        server.env,
        [
            ("APP_RUNTIME".to_owned(), "Baldinof\\Runtime".to_owned()),
            ("A".to_owned(), "2".to_owned())
        ]
    );
    let error = load("version: '3'\nserver:\n  command: x\n  env: [a]\n").unwrap_err();
    assert!(error.to_string().contains("expected a map"), "{error}");
}

#[test]
fn errors_quote_long_values_cut_short() {
    let long = "x".repeat(50_000);
    let text = format!("version: '3'\nserver:\n  command: x\n  env: '{long}'\n");
    let error = load(&text).unwrap_err().to_string();
    assert!(error.len() < 300, "{} bytes", error.len());
    assert!(error.contains("(50000 bytes)"), "{error}");
}
