//! RFC 3339 times, as the kv items carry their expiry: `2025-01-02T15:04:05+00:00` (also `Z`,
//! fractions of a second, any offset), read into Unix time and written in UTC.

/// A time as Unix nanoseconds.
pub type UnixNanos = i128;

/// Reads an RFC 3339 time.
///
/// # Errors
/// Go's `time.Parse` wording (`parsing time "…" as "2006-01-02T15:04:05Z07:00": …`).
pub fn parse(text: &str) -> Result<UnixNanos, String> {
    parse_parts(text.as_bytes()).ok_or_else(|| {
        format!(
            "parsing time {text:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {text:?} as RFC 3339"
        )
    })
}

fn parse_parts(text: &[u8]) -> Option<UnixNanos> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(digits).ok()?.parse().ok())?
    };
    let at = |index: usize, expected: &[u8]| text.get(index).is_some_and(|c| expected.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut index = 19;
    let mut nanos: i64 = 0;
    if at(index, b".,") {
        let start = index + 1;
        let mut end = start;
        while text.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return None;
        }
        let fraction = &text[start..end.min(start + 9)];
        let digits: i64 = std::str::from_utf8(fraction).ok()?.parse().ok()?;
        nanos = digits * 10_i64.pow(9 - u32::try_from(fraction.len()).ok()?);
        index = end;
    }
    let offset_seconds = match text.get(index)? {
        b'Z' | b'z' if text.len() == index + 1 => 0,
        sign @ (b'+' | b'-') if text.len() == index + 6 && at(index + 3, b":") => {
            let (hours, minutes) = (number(index + 1..index + 3)?, number(index + 4..index + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(UnixNanos::from(seconds) * 1_000_000_000 + UnixNanos::from(nanos))
}

/// Writes Unix seconds as `YYYY-MM-DDTHH:MM:SS+00:00` (the form the PHP client writes).
#[must_use]
pub fn format(unix_seconds: u64) -> String {
    let c = crate::clock::civil(unix_seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm, the
/// inverse of `clock::civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_with_offsets_and_fractions() {
        let base = parse("2025-01-02T15:04:05+00:00").unwrap();
        assert_eq!(base, 1_735_830_245 * 1_000_000_000);
        assert_eq!(parse("2025-01-02T15:04:05Z").unwrap(), base);
        assert_eq!(parse("2025-01-02T16:04:05+01:00").unwrap(), base);
        assert_eq!(
            parse("2025-01-02T15:04:05.25Z").unwrap(),
            base + 250_000_000
        );
        assert_eq!(format(1_735_830_245), "2025-01-02T15:04:05+00:00");
        assert_eq!(
            parse(&format(951_782_400)).unwrap(),
            951_782_400 * 1_000_000_000
        );
        for bad in [
            "",
            "2025-01-02",
            "2025-13-02T15:04:05Z",
            "2025-02-30T15:04:05Z",
            "2025-01-02T15:04:05",
            "2025-01-02T15:04:05+0100",
            "2025-01-02T15:04:05.Z",
            "２０２５-01-02T15:04:05Z",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.starts_with("parsing time "), "{bad}: {error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_input_is_read_without_panicking(text in ".{0,40}") {
            let _ = parse(&text);
        }

        #[test]
        fn what_is_written_reads_back(seconds in 0u64..253_402_300_799) {
            proptest::prop_assert_eq!(parse(&format(seconds)).unwrap(), UnixNanos::from(seconds) * 1_000_000_000);
        }
    }
}
