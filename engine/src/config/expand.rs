//! `$NAME`, `${NAME}` and `${NAME:-default}` in config strings (spec config-cli-rpc §1.4),
//! with Go's `os.Expand` rules for bad syntax.

/// Expands references in `text`, looking names up with `lookup`.
pub fn expand(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied_to = 0;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'$' && index + 1 < bytes.len() {
            out.push_str(&text[copied_to..index]);
            let (name, width) = shell_name(&text[index + 1..]);
            match name {
                Some(name) => out.push_str(&resolve(name, lookup)),
                None if width > 0 => {} // bad syntax: eaten
                None => out.push('$'),
            }
            index += width + 1;
            copied_to = index;
        } else {
            index += 1;
        }
    }
    out.push_str(&text[copied_to.min(text.len())..]);
    out
}

/// rr's lookup: `NAME:-default` takes the default when NAME is unset or empty; more than one
/// `:-` gives an empty value (rr's quirk, kept).
fn resolve(name: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    if name.contains(":-") {
        let parts: Vec<&str> = name.split(":-").collect();
        if parts.len() != 2 {
            return String::new();
        }
        return lookup(parts[0])
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| parts[1].to_owned());
    }
    lookup(name).unwrap_or_default()
}

const fn is_special(byte: u8) -> bool {
    matches!(
        byte,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// Go's `getShellName`: the name after a `$` and how many bytes it spans; `None` with a
/// width is bad syntax to drop, `None` with width 0 leaves the `$`.
fn shell_name(rest: &str) -> (Option<&str>, usize) {
    let bytes = rest.as_bytes();
    if bytes[0] == b'{' {
        if bytes.len() > 2 && is_special(bytes[1]) && bytes[2] == b'}' {
            return (Some(&rest[1..2]), 3);
        }
        return match bytes.iter().skip(1).position(|&b| b == b'}') {
            Some(0) => (None, 2),
            Some(end) => (Some(&rest[1..=end]), end + 2),
            None => (None, 1),
        };
    }
    if is_special(bytes[0]) {
        return (Some(&rest[..1]), 1);
    }
    let len = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    if len == 0 {
        (None, 0)
    } else {
        (Some(&rest[..len]), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms_of_spec_1_4() {
        let cases = [
            ("$HOST:8080", "10.0.0.1:8080"),
            ("${HOST}:80", "10.0.0.1:80"),
            ("${MISSING:-4}", "4"),
            ("${EMPTY:-d}", "d"),
            ("${HOST:-d}", "10.0.0.1"),
            ("$MISSING", ""),
            ("cost $", "cost $"),
            ("a $ b", "a $ b"),
            ("x${}y", "xy"),
            ("x${HOST", "xHOST"),
            ("${A:-b:-c}", ""),
            ("$1x", "x"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &env), expected, "{input}");
        }
    }
}
