//! The config loader (YAML with lines, expansion, typed sections) and every plugin's reading
//! of its section (http, tcp, jobs, metrics, kv, service …) on arbitrary text: an error or a
//! configuration, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |name: &str| (name == "HOME").then(|| "/root".to_owned());
        if let Ok(config) = Config::load(text, &[], &env) {
            let _ = ringrunner::plugins::configure(&config, &env, &[]);
        }
    }
});
