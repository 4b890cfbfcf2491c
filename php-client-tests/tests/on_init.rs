//! `server.on_init` with real `php` commands.

use php_client_tests::php_binary;
use ringrunner::worker::on_init::{self, OnInit, OnInitError};
use ringrunner::worker::process::WorkerCommand;
use std::time::{Duration, Instant};

fn php_on_init(code: &str, exit_on_error: bool, timeout: Duration) -> OnInit {
    OnInit {
        command: WorkerCommand {
            argv: vec![php_binary(), "-r".into(), code.into()],
            ..WorkerCommand::default()
        },
        exec_timeout: timeout,
        exit_on_error,
    }
}

#[test]
fn runs_to_completion_with_its_env() {
    let marker = std::env::temp_dir().join(format!("rr-on-init-{}", std::process::id()));
    let code = format!(
        "file_put_contents('{}', getenv('WARMUP'));",
        marker.display()
    );
    let mut init = php_on_init(&code, true, Duration::from_secs(30));
    init.command.env.push(("WARMUP".into(), "cache".into()));
    on_init::run(&init).unwrap();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "cache");
    std::fs::remove_file(marker).unwrap();
}

#[test]
fn failure_is_fatal_only_with_exit_on_error() {
    let failing = "fwrite(STDERR, 'migration failed'); exit(4);";
    on_init::run(&php_on_init(failing, false, Duration::from_secs(30))).unwrap();
    let error = on_init::run(&php_on_init(failing, true, Duration::from_secs(30))).unwrap_err();
    assert!(
        matches!(&error, OnInitError::Failed(text) if text.contains("exit status: 4")),
        "{error}"
    );
}

#[test]
fn timeout_kills_it_on_time() {
    let started = Instant::now();
    let error =
        on_init::run(&php_on_init("sleep(20);", true, Duration::from_millis(300))).unwrap_err();
    assert_eq!(error, OnInitError::Timeout);
    assert_eq!(
        error.to_string(),
        "startup process has been killed by timeout"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // Without exit_on_error a timeout is logged and start goes on.
    on_init::run(&php_on_init(
        "sleep(20);",
        false,
        Duration::from_millis(100),
    ))
    .unwrap();
}
