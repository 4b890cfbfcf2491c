//! Turns the rounds `benches/load/run` recorded into the table it prints, a Markdown report
//! and a latency plot (SVG).
//!
//! `load-report RESULTS.tsv OUT_DIR [key=value …]`: RESULTS.tsv has one line per wrk run,
//! `scenario  server  round  req/s  p50_ms  p75_ms  p90_ms  p99_ms  server_us  php_us`
//! (tab-separated; the last two, CPU µs per request of the server and of its PHP or native
//! workers, may be missing in older files); the `key=value` pairs (machine, rss, command …)
//! are printed in the report as given.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One wrk run.
#[derive(Debug, Clone, Copy)]
struct Run {
    round: u32,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    /// Server CPU µs per request (NaN when not recorded).
    server_us: f64,
    /// PHP (or native worker) CPU µs per request (NaN when not recorded).
    php_us: f64,
}

/// A scenario: ours against an anchor, the target ratio, and how the ratio reads.
struct Scenario {
    key: &'static str,
    /// The scenario whose anchor runs this one is compared with (itself, or one that ran
    /// the same anchor in the same round).
    anchor_key: &'static str,
    title: &'static str,
    ours: &'static str,
    anchor: &'static str,
    /// Throughput ratio (higher is better) or p99 ratio (lower is better).
    by_latency: bool,
    target: Option<f64>,
}

const SCENARIOS: [Scenario; 9] = [
    Scenario {
        key: "hello",
        anchor_key: "hello",
        title: "PHP hello, saturation (wrk -t2 -c32)",
        ours: "ringrunner + PHP hello worker",
        anchor: "nginx + php-fpm (static pool)",
        by_latency: false,
        target: Some(1.5),
    },
    Scenario {
        key: "hello-logs",
        anchor_key: "hello",
        title: "PHP hello with rr's default logs (no logs section: a debug line per request)",
        ours: "ringrunner + PHP hello worker, default logs",
        anchor: "nginx + php-fpm (static pool)",
        by_latency: false,
        target: Some(1.5),
    },
    Scenario {
        key: "ceiling",
        anchor_key: "ceiling",
        title: "No-worker ceiling, saturation (wrk -t2 -c32)",
        ours: "ringrunner + native echo worker",
        anchor: "nginx return 200",
        by_latency: false,
        target: Some(0.5),
    },
    Scenario {
        key: "psr7",
        anchor_key: "psr7",
        title: "PSR-7 app (nyholm), 4 workers, saturation (wrk -t2 -c32)",
        ours: "ringrunner + PSR-7 worker (nyholm)",
        anchor: "nginx + php-fpm, the same PSR-7 app",
        by_latency: false,
        target: Some(1.5),
    },
    Scenario {
        key: "psr7-protobuf",
        anchor_key: "psr7",
        title: "PSR-7 app, protobuf context decoded by Debian's pure-PHP google/protobuf (as RoadRunner's package without the C extension)",
        ours: "ringrunner + PSR-7 worker, protobuf context",
        anchor: "nginx + php-fpm, the same PSR-7 app",
        by_latency: false,
        target: None,
    },
    Scenario {
        key: "hello-epoll",
        anchor_key: "hello",
        title: "PHP hello on the epoll backend (RINGRUNNER_IO=epoll)",
        ours: "ringrunner on epoll + PHP hello worker",
        anchor: "nginx + php-fpm (static pool)",
        by_latency: false,
        target: Some(1.5),
    },
    Scenario {
        key: "ceiling-epoll",
        anchor_key: "ceiling",
        title: "No-worker ceiling on the epoll backend",
        ours: "ringrunner on epoll + native echo worker",
        anchor: "nginx return 200",
        by_latency: false,
        target: None,
    },
    Scenario {
        key: "psr7-epoll",
        anchor_key: "psr7",
        title: "PSR-7 app on the epoll backend",
        ours: "ringrunner on epoll + PSR-7 worker",
        anchor: "nginx + php-fpm, the same PSR-7 app",
        by_latency: false,
        target: None,
    },
    Scenario {
        key: "paced",
        anchor_key: "paced",
        title: "PHP hello at a fixed moderate rate (wrk -t2 -c8, 4 ms pause per connection)",
        ours: "ringrunner + PHP hello worker",
        anchor: "nginx + php-fpm (static pool)",
        by_latency: true,
        target: None,
    },
];

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Medians of a server's runs: (req/s, p50, p90, p99).
fn medians(runs: &[Run]) -> (f64, f64, f64, f64) {
    let of = |pick: fn(&Run) -> f64| median(runs.iter().map(pick).collect());
    (of(|r| r.rps), of(|r| r.p50), of(|r| r.p90), of(|r| r.p99))
}

/// Medians of a server's CPU µs per request: (server, PHP or workers).
fn cpu_medians(runs: &[Run]) -> (f64, f64) {
    let of = |pick: fn(&Run) -> f64| {
        median(
            runs.iter()
                .map(pick)
                .filter(|value| !value.is_nan())
                .collect(),
        )
    };
    (of(|r| r.server_us), of(|r| r.php_us))
}

/// The epoll backend against the io_uring one: each `X-epoll` scenario's req/s over `X`'s
/// in the same round (median), target ≥ 0.8×, with both servers' CPU per request.
fn backend_table(runs: &BTreeMap<(String, String), Vec<Run>>) -> String {
    let mut table = String::from(
        "\n## epoll backend against io_uring\n\n| scenario | req/s io_uring | req/s epoll | epoll / io_uring | target | server CPU µs/req io_uring | server CPU µs/req epoll |\n| --- | ---: | ---: | ---: | --- | ---: | ---: |\n",
    );
    let ours = |key: &str| {
        runs.get(&(key.to_owned(), "ours".to_owned()))
            .cloned()
            .unwrap_or_default()
    };
    let mut rows = 0;
    for scenario in SCENARIOS.iter().filter(|s| s.key.ends_with("-epoll")) {
        let epoll = ours(scenario.key);
        let uring = ours(scenario.key.trim_end_matches("-epoll"));
        if epoll.is_empty() || uring.is_empty() {
            continue;
        }
        let ratio = median(
            epoll
                .iter()
                .filter_map(|run| {
                    let paired = uring.iter().find(|u| u.round == run.round)?;
                    Some(run.rps / paired.rps)
                })
                .collect(),
        );
        let verdict = if ratio >= 0.8 { "met" } else { "missed" };
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} | {ratio:.2}× | ≥ 0.8× ({verdict}) | {:.1} | {:.1} |",
            scenario.key.trim_end_matches("-epoll"),
            medians(&uring).0,
            medians(&epoll).0,
            cpu_medians(&uring).0,
            cpu_medians(&epoll).0,
        );
        rows += 1;
    }
    if rows == 0 {
        return String::new();
    }
    table
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(results), Some(out_dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: load-report RESULTS.tsv OUT_DIR [key=value ...]");
        std::process::exit(2);
    };
    let facts: Vec<(&str, &str)> = args[2..]
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let text = std::fs::read_to_string(results).unwrap_or_else(|error| {
        eprintln!("load-report: {results}: {error}");
        std::process::exit(1);
    });
    // (scenario, server) → runs
    let mut runs: BTreeMap<(String, String), Vec<Run>> = BTreeMap::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let cells: Vec<&str> = line.split('\t').collect();
        let number = |index: usize| cells.get(index).and_then(|c| c.parse::<f64>().ok());
        let (Some(rps), Some(p50), Some(p90), Some(p99)) =
            (number(3), number(4), number(6), number(7))
        else {
            eprintln!("load-report: skipping a malformed line: {line}");
            continue;
        };
        runs.entry((cells[0].to_owned(), cells[1].to_owned()))
            .or_default()
            .push(Run {
                round: cells[2].parse().unwrap_or(0),
                rps,
                p50,
                p90,
                p99,
                server_us: number(8).unwrap_or(f64::NAN),
                php_us: number(9).unwrap_or(f64::NAN),
            });
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| scenario | server | req/s | p50 ms | p90 ms | p99 ms | server CPU µs/req | PHP/worker CPU µs/req | ratio to anchor | target |"
    );
    let _ = writeln!(
        table,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    let mut bars: Vec<(String, f64, f64, f64)> = Vec::new();
    for scenario in &SCENARIOS {
        let ours = runs
            .get(&(scenario.key.to_owned(), "ours".to_owned()))
            .cloned()
            .unwrap_or_default();
        if ours.is_empty() {
            continue;
        }
        let anchor_runs = runs
            .get(&(scenario.anchor_key.to_owned(), "anchor".to_owned()))
            .cloned()
            .unwrap_or_default();
        let (rps, p50, p90, p99) = medians(&ours);
        let (anchor_rps, anchor_p50, anchor_p90, anchor_p99) = medians(&anchor_runs);
        // Paired rounds (A then B in the same round) give one ratio each; report their
        // median, which cancels slow drifts of this noisy machine.
        let per_round: Vec<f64> = ours
            .iter()
            .filter_map(|run| {
                let anchor = anchor_runs
                    .iter()
                    .find(|a| a.round == run.round)
                    .map(|a| (a.rps, a.p99))?;
                Some(if scenario.by_latency {
                    run.p99 / anchor.1
                } else {
                    run.rps / anchor.0
                })
            })
            .collect();
        let ratio = median(per_round);
        let ratio_text = if scenario.by_latency {
            format!("p99 {ratio:.2}×")
        } else {
            format!("{ratio:.2}×")
        };
        let target = match scenario.target {
            Some(target) => {
                let verdict = if ratio >= target { "met" } else { "missed" };
                format!("≥ {target}× ({verdict})")
            }
            None if scenario.by_latency => "lower is better".to_owned(),
            None => "for the record".to_owned(),
        };
        let (server_us, php_us) = cpu_medians(&ours);
        let (anchor_server_us, anchor_php_us) = cpu_medians(&anchor_runs);
        let cell = |value: f64, digits: usize| {
            if value.is_nan() || (digits == 1 && value == 0.0) {
                "–".to_owned()
            } else {
                format!("{value:.digits$}")
            }
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            scenario.title,
            scenario.ours,
            cell(rps, 0),
            cell(p50, 2),
            cell(p90, 2),
            cell(p99, 2),
            cell(server_us, 1),
            cell(php_us, 1),
            ratio_text,
            target
        );
        let _ = writeln!(
            table,
            "| | {} | {} | {} | {} | {} | {} | {} | 1.00× (anchor) | |",
            scenario.anchor,
            cell(anchor_rps, 0),
            cell(anchor_p50, 2),
            cell(anchor_p90, 2),
            cell(anchor_p99, 2),
            cell(anchor_server_us, 1),
            cell(anchor_php_us, 1),
        );
        let label = |server: &str| format!("{server} — {}", scenario.key);
        bars.push((label(scenario.ours), p50, p90, p99));
        if !anchor_p50.is_nan() {
            bars.push((label(scenario.anchor), anchor_p50, anchor_p90, anchor_p99));
        }
    }
    let mut report = String::from("# ringrunner load benchmark\n\n");
    for (key, value) in &facts {
        let _ = writeln!(report, "- **{key}:** {value}");
    }
    let _ = writeln!(report, "\nMedians of every round; ratios are medians of per-round ratios (ours and the anchor run back to back in each round).\n");
    report.push_str(&table);
    report.push_str(&backend_table(&runs));
    report.push_str("\n![latency](latency.svg)\n\n## Every run\n\n| scenario | server | round | req/s | p50 ms | p90 ms | p99 ms | server µs/req | PHP µs/req |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for ((scenario, server), list) in &runs {
        for run in list {
            let _ = writeln!(
                report,
                "| {scenario} | {server} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
                run.round, run.rps, run.p50, run.p90, run.p99, run.server_us, run.php_us
            );
        }
    }
    let out = std::path::Path::new(out_dir);
    let written = std::fs::create_dir_all(out)
        .and_then(|()| std::fs::write(out.join("report.md"), &report))
        .and_then(|()| std::fs::write(out.join("latency.svg"), latency_svg(&bars)));
    if let Err(error) = written {
        eprintln!("load-report: writing {out_dir}: {error}");
        std::process::exit(1);
    }
    print!("{table}");
    for (key, value) in &facts {
        println!("{key}: {value}");
    }
    println!("report: {out_dir}/report.md, plot: {out_dir}/latency.svg");
}

/// Horizontal bars, three per configuration (p50, p90, p99), on a shared millisecond axis.
fn latency_svg(bars: &[(String, f64, f64, f64)]) -> String {
    const LABEL_WIDTH: f64 = 330.0;
    const PLOT_WIDTH: f64 = 420.0;
    const ROW: f64 = 42.0;
    const TOP: f64 = 40.0;
    let max = bars
        .iter()
        .map(|bar| bar.3)
        .filter(|value| value.is_finite())
        .fold(0.0_f64, f64::max)
        .max(0.1);
    // A round axis end: 1, 2 or 5 times a power of ten.
    let magnitude = 10f64.powf(max.log10().floor());
    let axis_end = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|end| *end >= max)
        .unwrap_or(10.0 * magnitude);
    let height = TOP + ROW * bars.len() as f64 + 50.0;
    let width = LABEL_WIDTH + PLOT_WIDTH + 40.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Latency (ms): p50, p90, p99, medians of all rounds</text>\n"
    );
    let colours = [("p50", "#4c78a8"), ("p90", "#f58518"), ("p99", "#e45756")];
    for (index, (name, colour)) in colours.iter().enumerate() {
        let x = LABEL_WIDTH + index as f64 * 70.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"28\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"37\">{name}</text>",
            x + 14.0
        );
    }
    for (row, (label, p50, p90, p99)) in bars.iter().enumerate() {
        let y = TOP + 8.0 + ROW * row as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LABEL_WIDTH - 8.0,
            y + 18.0,
            escape(label)
        );
        for (index, value) in [p50, p90, p99].into_iter().enumerate() {
            if !value.is_finite() {
                continue;
            }
            let bar_width = (value / axis_end * PLOT_WIDTH).max(1.0);
            let bar_y = y + index as f64 * 11.0;
            let _ = writeln!(
                svg,
                "<rect x=\"{LABEL_WIDTH}\" y=\"{bar_y}\" width=\"{bar_width:.1}\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{value:.2}</text>",
                colours[index].1,
                LABEL_WIDTH + bar_width + 3.0,
                bar_y + 9.0
            );
        }
    }
    let axis_y = TOP + ROW * bars.len() as f64 + 10.0;
    let _ = writeln!(
        svg,
        "<line x1=\"{LABEL_WIDTH}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"black\"/>",
        LABEL_WIDTH + PLOT_WIDTH
    );
    for tick in 0..=5 {
        let value = axis_end * f64::from(tick) / 5.0;
        let x = LABEL_WIDTH + PLOT_WIDTH * f64::from(tick) / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{axis_y}\" x2=\"{x}\" y2=\"{}\" stroke=\"black\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{value}</text>",
            axis_y + 4.0,
            axis_y + 18.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
