//! The `kv` plugin through the real binary, driven from PHP over RPC with the protobuf
//! messages `spiral/roadrunner-kv` sends: the memory driver, and the redis driver on a real
//! `redis-server` (stopped and started again mid-run: a clear error, then recovery).

use php_client_tests::redis::RedisServer;
use php_client_tests::server::{free_port, http_config, RrServer};
use rustix::process::{Pid, Signal};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `kv_call.php DSN STORAGE OP ARGS…`: Ok(reply JSON) or Err(error text).
fn kv(dsn: &str, storage: &str, op: &str, args: &[&str]) -> Result<Value, String> {
    let output = Command::new(php_client_tests::php_binary())
        .arg(php_client_tests::php_dir().join("kv_call.php"))
        .args([dsn, storage, op])
        .args(args)
        .output()
        .expect("php runs");
    let stdout = String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned();
    match stdout.strip_prefix("ERROR: ") {
        Some(error) => Err(error.to_owned()),
        None if output.status.success() => {
            Ok(serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}")))
        }
        None => panic!(
            "kv_call {op} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// A server with `kv_section` and rpc; its RPC DSN.
fn start(kv_section: &str) -> (RrServer, String) {
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let yaml = format!(
        "{}rpc:\n  listen: {dsn}\nkv:\n{kv_section}",
        http_config("", "")
    );
    (RrServer::start(&yaml), dsn)
}

/// A server with the redis storage `shared` on 127.0.0.1:`port`, `extra` config keys
/// added; its RPC DSN.
fn start_shared_redis(port: u16, extra: &str) -> (RrServer, String) {
    start(&format!(
        "  shared:\n    driver: redis\n    config:\n      addrs: [\"127.0.0.1:{port}\"]\n{extra}"
    ))
}

/// Polls `has` until the key is gone (its expiry), within `limit`.
fn wait_until_gone(dsn: &str, storage: &str, key: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while kv(dsn, storage, "has", &[&json!(key).to_string()]) == Ok(json!(true)) {
        assert!(
            started.elapsed() < limit,
            "{key} did not expire within {limit:?}"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
    started.elapsed()
}

/// What both drivers must do alike.
fn common_behaviour(dsn: &str, storage: &str) {
    let set = |values: Value| kv(dsn, storage, "set", &[&values.to_string()]);
    assert_eq!(
        set(json!({"user:1": {"name": "Ann"}, "n": 42, "empty": ""})),
        Ok(json!(true))
    );
    assert_eq!(
        kv(
            dsn,
            storage,
            "get",
            &[&json!(["user:1", "n", "empty", "missing"]).to_string()]
        ),
        Ok(json!({"user:1": {"name": "Ann"}, "n": 42, "empty": ""}))
    );
    assert_eq!(kv(dsn, storage, "has", &["\"n\""]), Ok(json!(true)));
    assert_eq!(kv(dsn, storage, "has", &["\"nope\""]), Ok(json!(false)));
    assert_eq!(
        kv(
            dsn,
            storage,
            "delete",
            &[&json!(["n", "never-there"]).to_string()]
        ),
        Ok(json!(true))
    );
    assert_eq!(kv(dsn, storage, "has", &["\"n\""]), Ok(json!(false)));
    // A TTL: reported, then honoured. The package writes expiry times to the second, so a
    // 1 s TTL lives between 0 and 1 s: the reported one is a long TTL, the honoured one short.
    let set_with_ttl =
        |key: &str, ttl: &str| kv(dsn, storage, "set", &[&json!({key: "v"}).to_string(), ttl]);
    assert_eq!(set_with_ttl("later", "600"), Ok(json!(true)));
    let ttl = kv(dsn, storage, "ttl", &[&json!(["later"]).to_string()]).unwrap();
    assert!(
        ttl["later"].as_str().is_some_and(|t| t.ends_with("+00:00")),
        "{ttl}"
    );
    assert_eq!(set_with_ttl("short", "1"), Ok(json!(true)));
    wait_until_gone(dsn, storage, "short", Duration::from_secs(3));
    // Empty keys and big values: rr's and our errors, nothing stored.
    assert_eq!(
        kv(dsn, storage, "get", &[&json!(["", "n"]).to_string()]),
        Err("rpc_mget: key can't be empty string".into())
    );
    let big = kv(dsn, storage, "sized", &["\"big\"", &(17 << 20).to_string()]).unwrap_err();
    assert!(
        big.starts_with("rpc_set: the value of key \"big\" is 17825792 bytes, over the limit"),
        "{big}"
    );
    assert_eq!(kv(dsn, storage, "has", &["\"big\""]), Ok(json!(false)));
    assert_eq!(kv(dsn, storage, "call", &["Set", &json!([["k", "v", "tomorrow"]]).to_string()]).unwrap_err(),
        "rpc_set: parsing time \"tomorrow\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"tomorrow\" as RFC 3339");
    assert_eq!(kv(dsn, storage, "clear", &[]), Ok(json!(true)));
    assert_eq!(kv(dsn, storage, "has", &["\"user:1\""]), Ok(json!(false)));
}

#[test]
fn the_memory_driver_from_php() {
    let (_server, dsn) = start("  local:\n    driver: memory\n    config: {}\n");
    common_behaviour(&dsn, "local");
    // Keys without a TTL are present with an empty timeout (rr's memory driver).
    kv(&dsn, "local", "set", &[&json!({"plain": 1}).to_string()]).unwrap();
    assert_eq!(
        kv(
            &dsn,
            "local",
            "ttl",
            &[&json!(["plain", "missing"]).to_string()]
        ),
        Ok(json!({"plain": null}))
    );
    // MExpire keeps the value, ignores missing keys (rr overwrote and created them), and
    // reports the new time.
    let later = "2099-01-01T00:00:00+00:00";
    kv(
        &dsn,
        "local",
        "call",
        &[
            "MExpire",
            &json!([["plain", "", later], ["ghost", "", later]]).to_string(),
        ],
    )
    .unwrap();
    assert_eq!(
        kv(
            &dsn,
            "local",
            "get",
            &[&json!(["plain", "ghost"]).to_string()]
        ),
        Ok(json!({"plain": 1}))
    );
    assert_eq!(
        kv(&dsn, "local", "ttl", &[&json!(["plain"]).to_string()]),
        Ok(json!({"plain": later}))
    );
    // A past time deletes the key (rr's Go timer panicked).
    kv(
        &dsn,
        "local",
        "call",
        &[
            "MExpire",
            &json!([["plain", "", "2000-01-01T00:00:00Z"]]).to_string(),
        ],
    )
    .unwrap();
    assert_eq!(kv(&dsn, "local", "has", &["\"plain\""]), Ok(json!(false)));
    assert_eq!(
        kv(
            &dsn,
            "local",
            "call",
            &["MExpire", &json!([["plain", "", ""]]).to_string()]
        )
        .unwrap_err(),
        "rpc_mexpire: timeout for MExpire is empty or key is empty"
    );
    // Unknown storages: the substring the PHP package maps to StorageException.
    assert_eq!(
        kv(&dsn, "cache", "get", &[&json!(["a"]).to_string()]).unwrap_err(),
        "rpc_mget: no such storage: cache"
    );
    assert_eq!(
        kv(&dsn, "", "has", &["\"a\""]).unwrap_err(),
        "rpc_has: no storage provided"
    );
}

#[test]
fn the_redis_driver_on_a_real_redis_restarted_mid_run() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let port = redis.port;
    let (_server, dsn) = start_shared_redis(port, "      db: 1\n");
    common_behaviour(&dsn, "shared");
    // The value lands in Redis as the PHP serializer wrote it, in the configured db.
    kv(
        &dsn,
        "shared",
        "set",
        &[&json!({"greeting": "hello world"}).to_string()],
    )
    .unwrap();
    assert_eq!(
        redis.command("SELECT 1\r\nGET greeting"),
        "+OK\r\n$19\r\ns:11:\"hello world\";\r\n"
    );
    // Keys without a TTL are left out of TTL's reply (rr's redis driver).
    assert_eq!(
        kv(&dsn, "shared", "ttl", &[&json!(["greeting"]).to_string()]),
        Ok(json!([])),
        "PHP writes an empty map as []"
    );
    // Redis goes away: a clear error, no hang; back: the next call works.
    drop(redis);
    let started = Instant::now();
    let error = kv(&dsn, "shared", "get", &[&json!(["greeting"]).to_string()]).unwrap_err();
    assert!(
        error.starts_with("rpc_mget: ") && error.to_lowercase().contains("refused"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let redis = RedisServer::start_on(port).expect("redis starts again");
    assert_eq!(
        kv(&dsn, "shared", "set", &[&json!({"back": true}).to_string()]),
        Ok(json!(true))
    );
    assert_eq!(
        kv(&dsn, "shared", "get", &[&json!(["back"]).to_string()]),
        Ok(json!({"back": true}))
    );
    drop(redis);
}

#[test]
fn a_redis_down_at_start_is_reported_by_the_calls_not_the_start() {
    let port = free_port();
    let (server, dsn) = start_shared_redis(port, "");
    let error = kv(&dsn, "shared", "has", &["\"a\""]).unwrap_err();
    assert!(error.starts_with("rpc_has: "), "{error}");
    // The rest of the server is unaffected.
    assert_eq!(
        php_client_tests::http_client::get(server.http(), "/hello").status,
        200
    );
}

#[test]
fn a_storage_without_a_driver_stops_the_start() {
    let yaml = format!("{}kv:\n  local:\n    config: {{}}\n", http_config("", ""));
    let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("could not find mandatory driver field in the local storage"),
        "{output}"
    );
}

#[test]
fn calls_during_a_paused_redis_answer_by_their_deadline_and_a_full_queue_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let port = redis.port;
    // A call's deadline: dial + write + read timeouts, 3 s here.
    let (_server, dsn) = start_shared_redis(
        port,
        "      dial_timeout: 1s\n      read_timeout: 1s\n      write_timeout: 1s\n",
    );
    let rpc_port: u16 = dsn.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        kv(&dsn, "shared", "set", &[&json!({"a": 1}).to_string()]),
        Ok(json!(true))
    );
    // Paused, Redis accepts connections and never answers: the outage where calls hang.
    let redis_pid = Pid::from_raw(redis.pid() as i32).unwrap();
    rustix::process::kill_process(redis_pid, Signal::STOP).unwrap();
    // More calls than the queue holds (64): some are refused at once, the rest answer
    // by their deadline; before, they ran one after the other, a second or two each.
    let has = json!({"storage": "shared", "items": [{"key": "a"}]});
    let calls = vec![("kv.Has", has); 80];
    let started = Instant::now();
    let replies = php_client_tests::rpc_call::concurrent_calls(rpc_port, &calls);
    let elapsed = started.elapsed();
    rustix::process::kill_process(redis_pid, Signal::CONT).unwrap();
    eprintln!("80 calls to a paused redis answered in {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(10),
        "80 calls answered in {elapsed:?}"
    );
    let refused = replies
        .iter()
        .filter(|reply| matches!(reply, Err(text) if text.contains("64 calls are already waiting for redis")))
        .count();
    assert!(refused > 0, "{replies:?}");
    assert!(replies.iter().all(Result::is_err), "{replies:?}");
    // Back: calls work again.
    assert_eq!(
        kv(&dsn, "shared", "get", &[&json!(["a"]).to_string()]),
        Ok(json!({"a": 1}))
    );
    drop(redis);
}
