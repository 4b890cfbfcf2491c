//! The cell texts of `rr workers` as rr prints them (go-humanize's): `1,532`, `27 MB`,
//! `3 minutes ago`.

/// Thousands separated with commas.
#[must_use]
pub fn comma(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Bytes in SI units, base 1000: `512 B`, `1.5 MB`, `27 MB`.
#[must_use]
pub fn si_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let scaled = bytes as f64 / 1000f64.powi(exponent as i32);
    let rounded = (scaled * 10.0 + 0.5).floor() / 10.0;
    if rounded < 10.0 {
        format!("{rounded:.1} {}", UNITS[exponent])
    } else {
        format!("{rounded:.0} {}", UNITS[exponent])
    }
}

/// How long ago `seconds` is, in go-humanize's words: `now`, `1 second ago`,
/// `3 minutes ago`, `1 hour ago`, `2 days ago` …
#[must_use]
pub fn ago(seconds: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    const WEEK: u64 = 7 * DAY;
    const MONTH: u64 = 30 * DAY;
    const YEAR: u64 = 12 * MONTH;
    // (below this many seconds, the text, the unit it counts in; 1 = a fixed text).
    let magnitudes: [(u64, &str, u64); 15] = [
        (1, "now", 0),
        (2, "1 second ago", 0),
        (MINUTE, "seconds", 1),
        (2 * MINUTE, "1 minute ago", 0),
        (HOUR, "minutes", MINUTE),
        (2 * HOUR, "1 hour ago", 0),
        (DAY, "hours", HOUR),
        (2 * DAY, "1 day ago", 0),
        (WEEK, "days", DAY),
        (2 * WEEK, "1 week ago", 0),
        (MONTH, "weeks", WEEK),
        (2 * MONTH, "1 month ago", 0),
        (YEAR, "months", MONTH),
        (18 * MONTH, "1 year ago", 0),
        (2 * YEAR, "2 years ago", 0),
    ];
    for (below, text, unit) in magnitudes {
        if seconds < below {
            return match seconds.checked_div(unit) {
                None => text.to_owned(),
                Some(count) => format!("{count} {text} ago"),
            };
        }
    }
    format!("{} years ago", seconds / YEAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_humanize_s_texts() {
        assert_eq!(comma(0), "0");
        assert_eq!(comma(999), "999");
        assert_eq!(comma(1532), "1,532");
        assert_eq!(comma(1_234_567), "1,234,567");
        assert_eq!(si_bytes(5), "5 B");
        assert_eq!(si_bytes(512), "512 B");
        assert_eq!(si_bytes(1500), "1.5 kB");
        assert_eq!(si_bytes(27_262_976), "27 MB");
        assert_eq!(si_bytes(9_960_000), "10 MB");
        assert_eq!(ago(0), "now");
        assert_eq!(ago(1), "1 second ago");
        assert_eq!(ago(42), "42 seconds ago");
        assert_eq!(ago(61), "1 minute ago");
        assert_eq!(ago(200), "3 minutes ago");
        assert_eq!(ago(3700), "1 hour ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(ago(800 * 86_400), "2 years ago");
    }
}
