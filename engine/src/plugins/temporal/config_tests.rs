//! Reading `temporal` with rr's defaults, and what it refuses.

use super::config::{TemporalSection, DEFAULT_ADDRESS, DEFAULT_CACHE_SIZE};
use crate::config::values::Reader;
use crate::config::Config;

fn read(section: &str) -> Result<(TemporalSection, Vec<String>), String> {
    let text = format!("version: \"3\"\nserver:\n  command: php w.php\ntemporal:\n{section}");
    let config = Config::load(&text, &[], &|_: &str| None).map_err(|e| e.to_string())?;
    let reader = Reader::new(&config.root);
    let mut warnings = Vec::new();
    let section = TemporalSection::read(&reader, &mut warnings).map_err(|e| e.to_string())?;
    let all = crate::plugins::configure(&config, &|_: &str| None, &[])
        .map_err(|e| e.to_string())?
        .warnings;
    warnings.extend(all);
    Ok((section, warnings))
}

#[test]
fn an_empty_section_reads_rrs_defaults() {
    let (section, warnings) = read("  namespace: \"\"\n").unwrap();
    assert_eq!(section.address, DEFAULT_ADDRESS);
    assert_eq!(section.namespace, "default");
    assert_eq!(section.cache_size, DEFAULT_CACHE_SIZE);
    assert!(!section.disable_activity_workers);
    assert!(section.tls.is_none() && section.metrics.is_none());
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("without a ringrunner plugin")),
        "{warnings:?}"
    );
}

#[test]
fn every_key_of_the_spec_is_read() {
    let (section, warnings) = read(
        "  address: 10.0.0.1:7233\n  namespace: orders\n  cache_size: 50\n  disable_activity_workers: true\n\
         \x20 activities:\n    num_workers: 3\n    destroy_timeout: 7s\n\
         \x20 interceptors: []\n  data_converters: []\n\
         \x20 metrics:\n    driver: prometheus\n    prometheus:\n      address: 127.0.0.1:9091\n      prefix: app\n",
    )
    .unwrap();
    assert_eq!(
        (section.address.as_str(), section.namespace.as_str()),
        ("10.0.0.1:7233", "orders")
    );
    assert_eq!(section.cache_size, 50);
    assert!(section.disable_activity_workers);
    assert_eq!(section.activities.num_workers, 3);
    assert_eq!(
        section.activities.destroy_timeout,
        std::time::Duration::from_secs(7)
    );
    let metrics = section.metrics.unwrap();
    assert_eq!(
        (metrics.address.as_str(), metrics.prefix.as_str()),
        ("127.0.0.1:9091", "app")
    );
    assert!(
        !warnings.iter().any(|w| w.contains("temporal")),
        "{warnings:?}"
    );
}

#[test]
fn an_interceptor_or_converter_ringrunner_lacks_is_refused_at_start() {
    let error = read("  interceptors: [otel]\n").unwrap_err();
    assert!(error.contains("temporal.interceptors"), "{error}");
    assert!(error.contains("no plugin otel"), "{error}");
    let error = read("  data_converters: [\"\"]\n").unwrap_err();
    assert!(error.contains("empty name"), "{error}");
}

#[test]
fn tls_wants_cert_and_key_together_and_statsd_is_named_in_a_warning() {
    let error = read("  tls:\n    key: k.pem\n").unwrap_err();
    assert!(error.contains("key and cert go together"), "{error}");
    let (_, warnings) = read("  metrics:\n    driver: statsd\n").unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("statsd")),
        "{warnings:?}"
    );
}
