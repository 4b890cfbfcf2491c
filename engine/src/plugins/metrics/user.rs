//! The application's collectors: declared in `metrics.collect` or over RPC
//! (`metrics.Declare`), updated over RPC (`Add`, `Sub`, `Set`, `Observe`), removed with
//! `Unregister`; rr's error texts (spec metrics §3.4, the v5 baseline, with v6's error for
//! a negative counter add where v5 crashed).

use super::exposition::{Family, Kind};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Prometheus' default histogram buckets.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A summary's quantiles cover this much of the recent past (the Go library's 10 minutes).
const SUMMARY_WINDOW: Duration = Duration::from_secs(600);
/// Observations a summary keeps at most for its quantiles.
const SUMMARY_SAMPLES_MAX: usize = 100_000;

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
        recent: VecDeque<(Instant, f64)>,
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
    objectives: Vec<f64>,
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
        for quantile in spec.objectives.keys() {
            match quantile.parse::<f64>() {
                Ok(q) if (0.0..=1.0).contains(&q) => objectives.push(q),
                _ => return Err(format!("{quantile:?} is not a quantile between 0 and 1")),
            }
        }
        objectives.sort_by(f64::total_cmp);
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
                recent: VecDeque::new(),
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
            (Series::Summary { recent, sum, count }, Op::Observe) => {
                let now = Instant::now();
                recent.push_back((now, value));
                while recent.len() > SUMMARY_SAMPLES_MAX
                    || recent
                        .front()
                        .is_some_and(|(at, _)| now.duration_since(*at) > SUMMARY_WINDOW)
                {
                    recent.pop_front();
                }
                *sum += value;
                *count += 1;
            }
            _ => return Err(op.unsupported(name)),
        }
        Ok(())
    }

    /// The collector as a family for the scrape.
    #[must_use]
    pub fn family(&self) -> Family {
        let mut family = Family::new(self.full_name.clone(), self.help.clone(), self.kind);
        for (values, series) in &self.series {
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
                Series::Summary { recent, sum, count } => {
                    let now = Instant::now();
                    let mut window: Vec<f64> = recent
                        .iter()
                        .filter(|(at, _)| now.duration_since(*at) <= SUMMARY_WINDOW)
                        .map(|(_, value)| *value)
                        .collect();
                    window.sort_by(f64::total_cmp);
                    for quantile in &self.objectives {
                        let mut with_quantile = labels.clone();
                        with_quantile
                            .push(("quantile".into(), super::exposition::go_float(*quantile)));
                        family.push(with_quantile, quantile_of(&window, *quantile));
                    }
                    family.push_sum_count(&labels, *sum, *count);
                }
            }
        }
        family
    }
}

/// The `q` quantile of sorted `values` (NaN when there are none, as the Go library writes).
fn quantile_of(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
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
        let values: Vec<f64> = family.samples.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![51.0, 99.0, 5050.0, 100.0]);
    }
}
