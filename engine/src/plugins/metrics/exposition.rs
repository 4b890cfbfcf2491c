//! The Prometheus text exposition format 0.0.4, as the Go client library writes it: families
//! sorted by name, `# HELP` and `# TYPE` lines, values in Go's shortest float form.
//!
//! Written here rather than taken from a crate: the crates bring a registry of their own
//! (locks or shared atomics per series), while our hot-path counters are per shard and summed
//! at scrape time; what remains is this small writer.

use std::fmt::Write as _;

/// A metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Any value.
    Gauge,
    /// Cumulative buckets, sum and count.
    Histogram,
    /// Quantiles, sum and count.
    Summary,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
        }
    }
}

/// One line of a family: `name<suffix>{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `""`, `_bucket`, `_sum`, `_count`.
    pub suffix: &'static str,
    /// Label pairs, in the order they are written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family: its name, help, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Fully qualified name.
    pub name: String,
    /// Help text (escaped when written).
    pub help: String,
    /// Type.
    pub kind: Kind,
    /// Samples, in the order they are written.
    pub samples: Vec<Sample>,
}

impl Family {
    /// An empty family.
    #[must_use]
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: Kind) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// A family holding one unlabelled value.
    #[must_use]
    pub fn single(name: &str, help: &str, kind: Kind, value: f64) -> Self {
        let mut family = Self::new(name, help, kind);
        family.push(Vec::new(), value);
        family
    }

    /// Adds a plain sample.
    pub fn push(&mut self, labels: Vec<(String, String)>, value: f64) {
        self.samples.push(Sample {
            suffix: "",
            labels,
            value,
        });
    }

    /// Adds a histogram's series for `labels`: cumulative `counts` per bound in `bounds`
    /// (then `+Inf` = `count`), `_sum` and `_count`.
    pub fn push_histogram(
        &mut self,
        labels: &[(String, String)],
        bounds: &[f64],
        cumulative: &[u64],
        sum: f64,
        count: u64,
    ) {
        for (bound, below) in bounds.iter().zip(cumulative) {
            let mut with_le = labels.to_vec();
            with_le.push(("le".into(), go_float(*bound)));
            self.samples.push(Sample {
                suffix: "_bucket",
                labels: with_le,
                value: *below as f64,
            });
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le".into(), "+Inf".into()));
        self.samples.push(Sample {
            suffix: "_bucket",
            labels: with_le,
            value: count as f64,
        });
        self.push_sum_count(labels, sum, count);
    }

    /// Adds `_sum` and `_count` for `labels`.
    pub fn push_sum_count(&mut self, labels: &[(String, String)], sum: f64, count: u64) {
        self.samples.push(Sample {
            suffix: "_sum",
            labels: labels.to_vec(),
            value: sum,
        });
        self.samples.push(Sample {
            suffix: "_count",
            labels: labels.to_vec(),
            value: count as f64,
        });
    }
}

/// Writes `families` sorted by name, families of one name (two pools' histograms) as one;
/// a family without samples is left out (a labelled collector nobody has used yet, as the
/// Go library does).
pub fn render(families: &mut Vec<Family>, out: &mut String) {
    families.sort_by(|a, b| a.name.cmp(&b.name));
    families.dedup_by(|later, earlier| {
        let same = later.name == earlier.name;
        if same {
            earlier.samples.append(&mut later.samples);
        }
        same
    });
    for family in families.iter_mut() {
        for sample in &mut family.samples {
            // Label names in order, `le` and `quantile` last, as the Go library writes them.
            sample.labels.sort_by(|(a, _), (b, _)| {
                let last = |name: &str| matches!(name, "le" | "quantile");
                (last(a), a).cmp(&(last(b), b))
            });
        }
        // Series in order of their label values; a stable sort keeps each histogram's or
        // summary's lines together and in their order.
        family
            .samples
            .sort_by(|a, b| series_key(a).cmp(series_key(b)));
    }
    for family in families.iter().filter(|family| !family.samples.is_empty()) {
        let _ = writeln!(
            out,
            "# HELP {} {}",
            family.name,
            escape(&family.help, false)
        );
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.name());
        for sample in &family.samples {
            out.push_str(&family.name);
            out.push_str(sample.suffix);
            if !sample.labels.is_empty() {
                out.push('{');
                for (index, (name, value)) in sample.labels.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape(value, true));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&go_float(sample.value));
            out.push('\n');
        }
    }
}

/// A sample's series: its label values but `le` and `quantile`.
fn series_key(sample: &Sample) -> impl Iterator<Item = &str> {
    sample
        .labels
        .iter()
        .filter(|(name, _)| name != "le" && name != "quantile")
        .map(|(_, value)| value.as_str())
}

/// Help text and label values: `\` and newline escaped, and `"` in label values.
fn escape(text: &str, quotes: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quotes => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that read back as `v`,
/// in exponent form when the exponent is below -4 or 6 and above (`1e+06`, `0.25`, `+Inf`).
#[must_use]
pub fn go_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("{:e} always writes an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    // Go decides with precision 6 for the shortest form.
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_go_writes_them() {
        for (value, text) in [
            (1.0, "1"),
            (0.25, "0.25"),
            (1e6, "1e+06"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.000_01, "1e-05"),
            (3.5e-7, "3.5e-07"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.005, "0.005"),
            (60.0, "60"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(go_float(value), text, "{value}");
        }
        assert_eq!(go_float(f64::NAN), "NaN");
    }

    #[test]
    fn families_are_sorted_and_empty_ones_left_out() {
        let mut histogram = Family::new("b_seconds", "Time \"taken\"\\n", Kind::Histogram);
        let labels = vec![("type".to_owned(), "d\"b".to_owned())];
        histogram.push_histogram(&labels, &[0.1, 1.0], &[0, 1], 0.25, 1);
        let mut families = vec![
            histogram,
            Family::single("a_total", "Line\nbreak", Kind::Counter, 3.0),
            Family::new("c_unused", "nothing yet", Kind::Gauge),
        ];
        let mut out = String::new();
        render(&mut families, &mut out);
        assert_eq!(
            out,
            "# HELP a_total Line\\nbreak\n# TYPE a_total counter\na_total 3\n\
             # HELP b_seconds Time \"taken\"\\\\n\n# TYPE b_seconds histogram\n\
             b_seconds_bucket{type=\"d\\\"b\",le=\"0.1\"} 0\n\
             b_seconds_bucket{type=\"d\\\"b\",le=\"1\"} 1\n\
             b_seconds_bucket{type=\"d\\\"b\",le=\"+Inf\"} 1\n\
             b_seconds_sum{type=\"d\\\"b\"} 0.25\n\
             b_seconds_count{type=\"d\\\"b\"} 1\n"
        );
    }
}
