//! Calls to the server's RPC plane from PHP, as an application makes them.

use serde_json::Value;
use std::process::Command;

/// Runs `rpc_call.php DSN METHOD ARG [raw]` (our PHP goridge RPC client): Ok(the reply as
/// JSON, or raw text) or Err(the error text).
///
/// # Panics
/// When PHP cannot run the script.
pub fn php_call(dsn: &str, method: &str, arg: &Value, raw: bool) -> Result<String, String> {
    let mut command = Command::new(crate::php_binary());
    command
        .arg(crate::php_dir().join("rpc_call.php"))
        .args([dsn, method, &arg.to_string()]);
    if raw {
        command.arg("raw");
    }
    let output = command.output().expect("php runs");
    let stdout = String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned();
    match stdout.strip_prefix("ERROR: ") {
        Some(error) => Err(error.to_owned()),
        None if output.status.success() => Ok(stdout),
        None => panic!(
            "{method} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
