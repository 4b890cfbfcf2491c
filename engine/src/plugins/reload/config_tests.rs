//! Reading the `reload` section with rr's defaults, and rr's filter.

use super::{ReloadSection, WatchedService, DEFAULT_INTERVAL};
use crate::config::Config;
use crate::plugins::configure;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn no_env(_: &str) -> Option<String> {
    None
}

/// The reload section of `yaml` and the config's warnings.
fn read(yaml: &str) -> (Option<ReloadSection>, Vec<String>) {
    let config = Config::load(yaml, &[], &no_env).unwrap();
    let configured = configure(&config, &no_env, &[]).unwrap();
    (
        configured.get::<ReloadSection>().cloned(),
        configured.warnings,
    )
}

#[test]
fn absent_section_is_no_plugin_and_present_one_is_not_warned_about() {
    let (section, _) = read("version: \"3\"\n");
    assert!(section.is_none());
    let (section, warnings) = read("version: \"3\"\nreload: {}\nfileserver: {}\n");
    assert!(section.is_some());
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("without a ringrunner plugin")
                && warning.contains("fileserver")
                && !warning.contains("reload")),
        "{warnings:?}"
    );
}

#[test]
fn defaults_are_rr_s_and_global_patterns_are_appended() {
    let (section, _) = read(
        "version: \"3\"\nreload:\n  services:\n    http:\n      dirs: [\"app\"]\n      ignore: [\"app/vendor\"]\n      patterns: [\".md\"]\n",
    );
    let section = section.unwrap();
    assert_eq!(section.interval, DEFAULT_INTERVAL);
    let [http] = section.services.as_slice() else {
        panic!("{:?}", section.services);
    };
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(http.name, "http");
    assert!(!http.recursive);
    assert_eq!(http.dirs, vec![cwd.join("app")]);
    assert_eq!(http.ignore, vec![cwd.join("app/vendor")]);
    assert_eq!(http.patterns, vec![".md".to_owned(), ".php".to_owned()]);
}

#[test]
fn an_explicit_empty_global_list_adds_no_pattern() {
    let (section, _) = read(
        "version: \"3\"\nreload:\n  interval: 2s\n  patterns: []\n  services:\n    jobs:\n      recursive: true\n      dirs: [\".\"]\n",
    );
    let section = section.unwrap();
    assert_eq!(section.interval, Duration::from_secs(2));
    assert!(section.services[0].recursive);
    assert!(section.services[0].patterns.is_empty());
    assert!(!section.services[0].matches("a.php"));
}

#[test]
fn matching_is_a_substring_of_the_base_name_and_ignore_covers_subtrees() {
    let service = WatchedService {
        name: "http".into(),
        dirs: vec![PathBuf::from("/app")],
        recursive: true,
        ignore: vec![PathBuf::from("/app/vendor")],
        patterns: vec![".php".into()],
    };
    assert!(service.matches("worker.php"));
    assert!(service.matches("worker.php.bak"));
    assert!(service.matches("a.phpx"));
    assert!(!service.matches("notes.txt"));
    assert!(service.ignores(Path::new("/app/vendor/lib/a.php")));
    assert!(service.ignores(Path::new("/app/vendor")));
    assert!(!service.ignores(Path::new("/app/vendorx/a.php")));
    assert!(!service.ignores(Path::new("/app/src/a.php")));
}
