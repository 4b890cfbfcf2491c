//! The application's collectors: declared in `metrics.collect` or over RPC
//! (`metrics.Declare`), updated over RPC (`Add`, `Sub`, `Set`, `Observe`), removed with
//! `Unregister`; rr's error texts (spec metrics §3.4, the v5 baseline, with v6's error for
//! a negative counter add where v5 crashed).

use super::exposition::{Family, Kind};
use super::summary::{Objective, WindowedQuantiles};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Prometheus' default histogram buckets.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A collector as declared: `collect.<name>` or Declare's `collector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CollectorSpec {
    /// `counter`, `gauge`, `histogram`, `summary`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name prefix.
    pub namespace: String,
    /// Name middle part.
    pub subsystem: String,
    /// Help text.
    pub help: String,
    /// Label names: a vector when not empty.
    pub labels: Vec<String>,
    /// Histogram bounds.
    pub buckets: Vec<f64>,
    /// Summary quantile → allowed error (string keys: JSON has no others).
    pub objectives: BTreeMap<String, f64>,
}

/// `metrics.Add` … `Observe`'s argument.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Update {
    /// The collector's handle.
    pub name: String,
    /// The amount.
    pub value: f64,
    /// Label values, in the declared order.
    pub labels: Vec<String>,
}

#[derive(Debug)]
enum Series {
    Value(f64),
    Histogram {
        per_bucket: Vec<u64>,
        sum: f64,
        count: u64,
    },
    Summary {
        quantiles: Box<WindowedQuantiles>,
        sum: f64,
        count: u64,
    },
}

/// One declared collector and its series (one for a scalar, one per label tuple used).
#[derive(Debug)]
pub struct Collector {
    kind: Kind,
    full_name: String,
    help: String,
    labels: Vec<String>,
    buckets: Vec<f64>,
    objectives: Vec<Objective>,
    series: BTreeMap<Vec<String>, Series>,
}

/// An update method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `metrics.Add`.
    Add,
    /// `metrics.Sub`.
    Sub,
    /// `metrics.Set`.
    Set,
    /// `metrics.Observe`.
    Observe,
}

impl Op {
    /// rr's error prefix.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Add => "metrics_plugin_add",
            Self::Sub => "metrics_plugin_sub",
            Self::Set => "metrics_plugin_set",
            Self::Observe => "metrics_plugin_observe",
        }
    }

    fn unsupported(self, name: &str) -> String {
        match self {
            Self::Add => format!("collector {name} does not support method `Add`"),
            Self::Sub => format!("collector `{name}` does not support method `Sub`"),
            Self::Observe => format!("collector `{name}` does not support method `Observe`"),
            Self::Set => format!("collector `{name}` does not support method Set"),
        }
    }
}

impl Collector {
    /// Builds the collector `name` declares.
    ///
    /// # Errors
    /// An unknown type (rr's text without the prefix), buckets not increasing, an invalid
    /// metric or label name, a bad objective.
    pub fn new(name: &str, spec: &CollectorSpec) -> Result<Self, String> {
        let kind = match spec.kind.as_str() {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            other => return Err(format!("unknown collector type {other}")),
        };
        let full_name = [spec.namespace.as_str(), spec.subsystem.as_str(), name]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        if !valid_name(&full_name, true) {
            return Err(format!("\"{full_name}\" is not a valid metric name"));
        }
        if let Some(label) = spec
            .labels
            .iter()
            .find(|label| !valid_name(label, false) || *label == "le" || *label == "quantile")
        {
            return Err(format!(
                "\"{label}\" is not a valid label name for metric \"{full_name}\""
            ));
        }
        let buckets = if spec.buckets.is_empty() {
            DEFAULT_BUCKETS.to_vec()
        } else {
            spec.buckets.clone()
        };
        if buckets.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(format!(
                "histogram buckets must be in increasing order: {buckets:?}"
            ));
        }
        let mut objectives = Vec::new();
        for (quantile, error) in &spec.objectives {
            let objective = quantile
                .parse::<f64>()
                .ok()
                .and_then(|q| Objective::new(q, *error))
                .ok_or_else(|| {
                    format!(
                        "{quantile:?}: {error} is not a quantile between 0 and 1 with an error of at least 0"
                    )
                })?;
            objectives.push(objective);
        }
        objectives.sort_by(|a, b| a.quantile.total_cmp(&b.quantile));
        let mut collector = Self {
            kind,
            full_name,
            help: spec.help.clone(),
            labels: spec.labels.clone(),
            buckets,
            objectives,
            series: BTreeMap::new(),
        };
        if collector.labels.is_empty() {
            let fresh = collector.fresh_series();
            collector.series.insert(Vec::new(), fresh);
        }
        Ok(collector)
    }

    /// The fully qualified name.
    #[must_use]
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    fn fresh_series(&self) -> Series {
        match self.kind {
            Kind::Counter | Kind::Gauge => Series::Value(0.0),
            Kind::Histogram => Series::Histogram {
                per_bucket: vec![0; self.buckets.len()],
                sum: 0.0,
                count: 0,
            },
            Kind::Summary => Series::Summary {
                quantiles: Box::new(WindowedQuantiles::new(
                    self.objectives.clone(),
                    Instant::now(),
                )),
                sum: 0.0,
                count: 0,
            },
        }
    }

    /// Applies `op` (the collector's handle is `name`); all or nothing.
    ///
    /// # Errors
    /// rr's texts (without the `metrics_plugin_<op>: ` prefix).
    pub fn update(
        &mut self,
        name: &str,
        op: Op,
        value: f64,
        labels: &[String],
    ) -> Result<(), String> {
        let supported = matches!(
            (self.kind, op),
            (Kind::Gauge, Op::Add | Op::Sub | Op::Set)
                | (Kind::Counter, Op::Add)
                | (Kind::Histogram | Kind::Summary, Op::Observe)
        );
        if !supported {
            return Err(op.unsupported(name));
        }
        let key = if self.labels.is_empty() {
            Vec::new()
        } else {
            if labels.is_empty() {
                return Err(if self.kind == Kind::Gauge {
                    format!("required labels for collector {name}")
                } else {
                    format!("required labels for collector `{name}`")
                });
            }
            if labels.len() != self.labels.len() {
                let quoted: Vec<String> = labels
                    .iter()
                    .map(|l| serde_json::Value::from(l.as_str()).to_string())
                    .collect();
                return Err(format!(
                    "inconsistent label cardinality: expected {} label values but got {} in []string{{{}}}",
                    self.labels.len(),
                    labels.len(),
                    quoted.join(", ")
                ));
            }
            labels.to_vec()
        };
        if self.kind == Kind::Counter && value < 0.0 {
            return Err(format!("counter cannot decrease in value: {name}"));
        }
        let fresh = self.fresh_series();
        let buckets = self.buckets.clone();
        let series = self.series.entry(key).or_insert(fresh);
        match (series, op) {
            (Series::Value(current), Op::Add) => *current += value,
            (Series::Value(current), Op::Sub) => *current -= value,
            (Series::Value(current), Op::Set) => *current = value,
            (
                Series::Histogram {
                    per_bucket,
                    sum,
                    count,
                },
                Op::Observe,
            ) => {
                if let Some(bucket) = buckets.iter().position(|bound| value <= *bound) {
                    per_bucket[bucket] += 1;
                }
                *sum += value;
                *count += 1;
            }
            (
                Series::Summary {
                    quantiles,
                    sum,
                    count,
                },
                Op::Observe,
            ) => {
                quantiles.observe(value, Instant::now());
                *sum += value;
                *count += 1;
            }
            _ => return Err(op.unsupported(name)),
        }
        Ok(())
    }

    /// Values a summary holds for its quantiles, over all its series: what its memory and a
    /// scrape's work grow with.
    #[cfg(test)]
    fn summary_values_held(&self) -> usize {
        self.series
            .values()
            .map(|series| match series {
                Series::Summary { quantiles, .. } => quantiles.retained(),
                _ => 0,
            })
            .sum()
    }

    /// The collector as a family for the scrape (a summary merges what it gathered since
    /// the last scrape first).
    pub fn family(&mut self) -> Family {
        let mut family = Family::new(self.full_name.clone(), self.help.clone(), self.kind);
        let now = Instant::now();
        for (values, series) in &mut self.series {
            let labels: Vec<(String, String)> = self
                .labels
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect();
            match series {
                Series::Value(value) => family.push(labels, *value),
                Series::Histogram {
                    per_bucket,
                    sum,
                    count,
                } => {
                    let cumulative = crate::stats::running_sums(per_bucket);
                    family.push_histogram(&labels, &self.buckets, &cumulative, *sum, *count);
                }
                Series::Summary {
                    quantiles,
                    sum,
                    count,
                } => {
                    for (quantile, value) in quantiles.quantiles(now) {
                        let mut with_quantile = labels.clone();
                        with_quantile
                            .push(("quantile".into(), super::exposition::go_float(quantile)));
                        family.push(with_quantile, value);
                    }
                    family.push_sum_count(&labels, *sum, *count);
                }
            }
        }
        family
    }
}

/// Prometheus' metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or label name (no `:`) rules.
fn valid_name(name: &str, colons: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str, labels: &[&str]) -> CollectorSpec {
        CollectorSpec {
            kind: kind.into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            ..CollectorSpec::default()
        }
    }

    #[test]
    fn updates_follow_rrs_matrix_and_texts() {
        let mut orders = Collector::new(
            "orders",
            &CollectorSpec {
                namespace: "app".into(),
                ..spec("counter", &["channel"])
            },
        )
        .unwrap();
        assert_eq!(orders.full_name(), "app_orders");
        orders
            .update("orders", Op::Add, 1.0, &["web".into()])
            .unwrap();
        orders
            .update("orders", Op::Add, 3.0, &["api".into()])
            .unwrap();
        assert_eq!(
            orders.update("orders", Op::Add, 1.0, &[]).unwrap_err(),
            "required labels for collector `orders`"
        );
        assert_eq!(
            orders.update("orders", Op::Add, 1.0, &["a".into(), "b".into()]).unwrap_err(),
            "inconsistent label cardinality: expected 1 label values but got 2 in []string{\"a\", \"b\"}"
        );
        assert_eq!(
            orders
                .update("orders", Op::Set, 1.0, &["a".into()])
                .unwrap_err(),
            "collector `orders` does not support method Set"
        );
        assert_eq!(
            orders
                .update("orders", Op::Add, -1.0, &["a".into()])
                .unwrap_err(),
            "counter cannot decrease in value: orders"
        );
        let family = orders.family();
        assert_eq!(family.samples.len(), 2);
        assert_eq!(
            family.samples[0].labels,
            vec![("channel".to_owned(), "api".to_owned())]
        );
        assert!((family.samples[0].value - 3.0).abs() < f64::EPSILON);
        let mut gauge = Collector::new("g", &spec("gauge", &["x"])).unwrap();
        assert_eq!(
            gauge.update("g", Op::Sub, 1.0, &[]).unwrap_err(),
            "required labels for collector g"
        );
        let mut histogram = Collector::new("h", &spec("histogram", &[])).unwrap();
        assert_eq!(
            histogram.update("h", Op::Add, 1.0, &[]).unwrap_err(),
            "collector h does not support method `Add`"
        );
        histogram.update("h", Op::Observe, 0.25, &[]).unwrap();
        assert_eq!(histogram.family().samples.len(), DEFAULT_BUCKETS.len() + 3);
        assert_eq!(
            Collector::new("x", &spec("meter", &[])).unwrap_err(),
            "unknown collector type meter"
        );
    }

    #[test]
    fn a_summary_reports_its_quantiles() {
        let mut objectives = BTreeMap::new();
        objectives.insert("0.5".to_owned(), 0.05);
        objectives.insert("0.99".to_owned(), 0.001);
        let mut summary = Collector::new(
            "s",
            &CollectorSpec {
                objectives,
                ..spec("summary", &[])
            },
        )
        .unwrap();
        for value in 1..=100 {
            summary
                .update("s", Op::Observe, f64::from(value), &[])
                .unwrap();
        }
        let family = summary.family();
        let quantile_labels: Vec<&str> = family.samples[..2]
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(quantile_labels, ["0.5", "0.99"]);
        let values: Vec<f64> = family.samples.iter().map(|s| s.value).collect();
        // Within the declared rank errors (5 and 0.1 of 100 ranks, one of rounding).
        assert!((45.0..=56.0).contains(&values[0]), "{values:?}");
        assert!((98.0..=100.0).contains(&values[1]), "{values:?}");
        assert_eq!(values[2..], [5050.0, 100.0]);
        assert_eq!(
            Collector::new(
                "s",
                &CollectorSpec {
                    objectives: BTreeMap::from([("0.5".to_owned(), -1.0)]),
                    ..spec("summary", &[])
                },
            )
            .unwrap_err(),
            "\"0.5\": -1 is not a quantile between 0 and 1 with an error of at least 0"
        );
    }

    #[test]
    fn a_summary_series_stays_small_after_a_million_observations() {
        let objectives = BTreeMap::from([
            ("0.5".to_owned(), 0.05),
            ("0.9".to_owned(), 0.01),
            ("0.99".to_owned(), 0.001),
        ]);
        let mut summary = Collector::new(
            "latency",
            &CollectorSpec {
                objectives,
                ..spec("summary", &[])
            },
        )
        .unwrap();
        for index in 0..1_000_000u32 {
            // A sawtooth over 0..1000 in a scrambled order.
            let value = f64::from(index.wrapping_mul(2_654_435_761) % 1000);
            summary.update("latency", Op::Observe, value, &[]).unwrap();
        }
        let held = summary.summary_values_held();
        assert!(
            held <= 1000,
            "{held} values held after 1,000,000 observations"
        );
        let family = summary.family();
        let median = family.samples[0].value;
        assert!((440.0..=560.0).contains(&median), "{median}");
        assert_eq!(family.samples[4].value, 1_000_000.0);
    }
}
