//! Reading the `otel` section with rr's defaults, errors and warnings (spec devops § otel).

use super::config::{BATCH_SPANS_MAX, QUEUE_SPANS_MAX, SCHEDULE_DELAY};
use super::{Client, Exporter, OtelSection};
use crate::config::{Config, LoadError};
use crate::plugins::configure;
use std::time::Duration;

/// The otel section of `yaml` read with `env`, and the config's warnings.
fn read_with(
    yaml: &str,
    env: &[(&str, &str)],
) -> Result<(Option<OtelSection>, Vec<String>), LoadError> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    let config = Config::load(yaml, &[], &lookup).unwrap();
    let configured = configure(&config, &lookup, &[])?;
    Ok((
        configured.get::<OtelSection>().cloned(),
        configured.warnings,
    ))
}

fn read(yaml: &str) -> (OtelSection, Vec<String>) {
    let (section, warnings) = read_with(yaml, &[]).unwrap();
    (section.expect("an otel section"), warnings)
}

fn error_text(yaml: &str) -> String {
    read_with(yaml, &[]).expect_err("refused").to_string()
}

#[test]
fn an_empty_section_has_rrs_defaults_and_is_not_left_out() {
    let (section, warnings) = read("version: \"3\"\notel: {}\n");
    assert_eq!(section.exporter, Exporter::Otlp);
    assert_eq!(section.client, Client::Http);
    assert_eq!(section.endpoint, "localhost:4318");
    assert_eq!(section.custom_url, "/v1/traces");
    assert!(!section.insecure && !section.compress);
    assert_eq!(section.resource.service_name, "RoadRunner");
    assert_eq!(section.resource.service_version, "1.0.0");
    assert_eq!(section.resource.service_instance_id.len(), 36);
    assert!(section
        .resource
        .service_namespace
        .starts_with("RoadRunner-"));
    assert_eq!(section.schedule_delay, SCHEDULE_DELAY);
    assert_eq!(
        (section.queue_spans_max, section.batch_spans_max),
        (QUEUE_SPANS_MAX, BATCH_SPANS_MAX)
    );
    assert!(!warnings.iter().any(|w| w.contains("otel")), "{warnings:?}");
    assert!(read_with("version: \"3\"\n", &[]).unwrap().0.is_none());
}

#[test]
fn jaeger_and_unknown_exporters_are_refused_in_rrs_words() {
    let jaeger = error_text("version: \"3\"\notel:\n  exporter: jaeger\n");
    assert!(
        jaeger.contains("jaeger exporter is deprecated, use OTLP instead"),
        "{jaeger}"
    );
    let unknown = error_text("version: \"3\"\notel:\n  exporter: carrier-pigeon\n");
    assert!(
        unknown.contains("unknown exporter: carrier-pigeon"),
        "{unknown}"
    );
    let (stdout, _) = read("version: \"3\"\notel:\n  exporter: stdout\n");
    assert_eq!(stdout.exporter, Exporter::Stdout);
}

#[test]
fn an_unknown_client_is_warned_about_and_http_used() {
    let (section, warnings) = read("version: \"3\"\notel:\n  client: smoke\n");
    assert_eq!(section.client, Client::Http);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("unknown exporter client")),
        "{warnings:?}"
    );
    let (grpc, _) = read("version: \"3\"\notel:\n  client: grpc\n");
    assert_eq!(
        (grpc.client, grpc.endpoint.as_str()),
        (Client::Grpc, "localhost:4317")
    );
}

#[test]
fn the_protocol_and_batch_variables_are_read() {
    let yaml = "version: \"3\"\notel: {}\n";
    let (section, _) = read_with(
        yaml,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000"),
        ],
    )
    .unwrap();
    let section = section.unwrap();
    assert_eq!(section.client, Client::Grpc);
    assert_eq!(section.schedule_delay, Duration::from_millis(250));
    // A batch is never larger than the queue (Go's SDK clamps it likewise).
    assert_eq!(
        (section.queue_spans_max, section.batch_spans_max),
        (100, 100)
    );
    let (traces_wins, _) = read_with(
        yaml,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ],
    )
    .unwrap();
    assert_eq!(traces_wins.unwrap().client, Client::Http);
    let (configured_wins, _) = read_with(
        "version: \"3\"\notel:\n  client: http\n",
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    )
    .unwrap();
    assert_eq!(configured_wins.unwrap().client, Client::Http);
}

#[test]
fn deprecated_service_keys_are_warned_about_and_fill_the_resource() {
    let (section, warnings) =
        read("version: \"3\"\notel:\n  service_name: my-svc\n  service_version: 2.0.0\n");
    assert_eq!(section.resource.service_name, "my-svc");
    assert_eq!(section.resource.service_version, "2.0.0");
    assert_eq!(section.tracer_name, "my-svc");
    for expected in [
        "otel service_name is deprecated, use resource.service_name instead",
        "otel service_version is deprecated, use resource.service_version instead",
    ] {
        assert!(warnings.iter().any(|w| w == expected), "{warnings:?}");
    }
    let (section, _) = read(
        "version: \"3\"\notel:\n  service_name: old\n  resource:\n    service_name: new\n    service_namespace: ns\n    service_instance_id: id-1\n",
    );
    assert_eq!(section.resource.service_name, "new");
    assert_eq!(section.resource.service_namespace, "ns");
    assert_eq!(section.resource.service_instance_id, "id-1");
    assert_eq!(section.tracer_name, "old");
}
