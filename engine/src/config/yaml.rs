//! A YAML document as a tree whose every node knows its line, so that config errors can name
//! the line (saphyr-parser gives the events; anchors and aliases are resolved here).

use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// One value of the document and the line it starts on (1-based; 0 = not from the file).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Line in the file, 0 for values set by `-o`.
    pub line: usize,
}

/// A YAML value, scalars typed by the core schema (quoted scalars are strings).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping; keys lower-cased (rr's config keys are case-insensitive), order kept.
    Map(Vec<(String, Node)>),
}

impl Value {
    /// The type name rr (Go) prints for this value.
    #[must_use]
    pub const fn go_type_name(&self) -> &'static str {
        match self {
            Self::Null => "<nil>",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float64",
            Self::Str(_) => "string",
            Self::Seq(_) => "[]interface {}",
            Self::Map(_) => "map[string]interface {}",
        }
    }
}

impl Node {
    /// The document as JSON (what `rpc.Config` returns), keys in document order.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match &self.value {
            Value::Null => Json::Null,
            Value::Bool(value) => Json::Bool(*value),
            Value::Int(value) => Json::from(*value),
            Value::Float(value) => Json::from(*value),
            Value::Str(value) => Json::String(value.clone()),
            Value::Seq(items) => Json::Array(items.iter().map(Self::to_json).collect()),
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(key, node)| (key.clone(), node.to_json()))
                    .collect(),
            ),
        }
    }

    /// The child at `key` of a mapping.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The child at a dotted path.
    #[must_use]
    pub fn get_path(&self, path: &str) -> Option<&Node> {
        path.split('.').try_fold(self, |node, key| node.get(key))
    }

    /// Sets the value at a dotted path, making mappings on the way (for `-o`).
    pub fn set_path(&mut self, path: &str, value: Node) {
        let mut node = self;
        for key in path.split('.') {
            if !matches!(node.value, Value::Map(_)) {
                node.value = Value::Map(Vec::new());
            }
            let Value::Map(entries) = &mut node.value else {
                unreachable!("made a map above")
            };
            let position = match entries.iter().position(|(k, _)| k == key) {
                Some(position) => position,
                None => {
                    entries.push((
                        key.to_owned(),
                        Node {
                            value: Value::Null,
                            line: 0,
                        },
                    ));
                    entries.len() - 1
                }
            };
            node = &mut entries[position].1;
        }
        *node = value;
    }

    /// Applies `f` to every string leaf (also inside sequences), not to keys.
    pub fn map_strings(&mut self, f: &mut impl FnMut(&str) -> String) {
        match &mut self.value {
            Value::Str(text) => *text = f(text),
            Value::Seq(items) => items.iter_mut().for_each(|item| item.map_strings(f)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| v.map_strings(f)),
            _ => {}
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("yaml: line {line}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses the first document of `text`; an empty document is an empty mapping.
///
/// # Errors
/// Syntax errors, and an alias to an unknown anchor.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    parse_strict(text).or_else(|error| {
        // libyaml (hence rr) accepts flow collections whose closing lines are not indented
        // past their key, as RoadRunner's own sample config has; saphyr does not.
        let relaxed = indent_flow_continuations(text);
        if relaxed == text {
            return Err(error);
        }
        parse_strict(&relaxed).map_err(|_| error)
    })
}

/// Indents every line that continues an open `[` / `{` collection one column past the line
/// that opened it. Whitespace inside flow collections means nothing, and lines stay where
/// they were, so error lines are unchanged.
fn indent_flow_continuations(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut depth = 0usize;
    let mut base_indent = 0usize;
    let mut quote: Option<char> = None;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut scan_from = 0;
        if depth > 0 || quote.is_some() {
            if indent <= base_indent && !line.trim().is_empty() {
                out.extend(std::iter::repeat_n(' ', base_indent + 1 - indent));
            }
        } else {
            // Outside flow context a bracket opens a collection only where a value starts.
            let trimmed = line.trim_start_matches(' ');
            let value_start = trimmed
                .strip_prefix("- ")
                .map(|rest| line.len() - rest.len())
                .or_else(|| find_mapping_colon(trimmed).map(|colon| indent + colon + 1))
                .unwrap_or(indent);
            let rest = &line[value_start..];
            let rest_trimmed = rest.trim_start();
            if !(rest_trimmed.starts_with('[') || rest_trimmed.starts_with('{')) {
                out.push_str(line);
                continue;
            }
            scan_from = value_start + (rest.len() - rest_trimmed.len());
            base_indent = indent;
        }
        let mut previous = ' ';
        for ch in line[scan_from..].chars() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(ch),
                (None, '#') if previous.is_whitespace() => break,
                (None, '[' | '{') => depth += 1,
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            previous = ch;
        }
        out.push_str(line);
    }
    out
}

/// Position of the `:` that ends a block mapping key (followed by a space or the line end).
fn find_mapping_colon(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b':' && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()))
}

fn parse_strict(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|error| YamlError {
            line: error.marker().line(),
            message: error.info().to_owned(),
        })?;
        if builder.on_event(event, span.start.line())? {
            break;
        }
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Map(Vec::new()),
        line: 1,
    }))
}

/// An open collection while the events are read.
enum Open {
    Seq(Node, usize),
    /// The map, its anchor, and the key waiting for its value with the key's line.
    Map(Node, usize, Option<(String, usize)>),
}

/// The most a document may grow to once its aliases are expanded, in `weight` units
/// (a node, or 64 bytes of a string). RoadRunner's own full sample weighs about 2,000;
/// a 623-byte alias bomb would weigh billions.
pub const EXPANDED_WEIGHT_MAX: u64 = 1 << 20;

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Each anchored node with its weight.
    anchors: HashMap<usize, (Node, u64)>,
    root: Option<Node>,
    /// Weight added by expanding aliases so far.
    expanded: u64,
}

/// A node's size for [`EXPANDED_WEIGHT_MAX`]: one per node, plus one per 64 bytes of text.
fn weight(node: &Node) -> u64 {
    1 + match &node.value {
        Value::Str(text) => text.len() as u64 / 64,
        Value::Seq(items) => items.iter().map(weight).sum(),
        Value::Map(entries) => entries
            .iter()
            .map(|(key, value)| key.len() as u64 / 64 + weight(value))
            .sum(),
        _ => 0,
    }
}

impl Builder {
    /// Returns true at the end of the first document.
    fn on_event(&mut self, event: Event<'_>, line: usize) -> Result<bool, YamlError> {
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == ScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                self.add(Node { value, line }, anchor, line)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(
                Node {
                    value: Value::Seq(Vec::new()),
                    line,
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(
                Node {
                    value: Value::Map(Vec::new()),
                    line,
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(node, anchor) | Open::Map(node, anchor, _)) => (node, anchor),
                    None => return Ok(false),
                };
                self.add(node, anchor, line)?;
            }
            Event::Alias(id) => {
                let (anchored, anchored_weight) =
                    self.anchors.get(&id).ok_or_else(|| YamlError {
                        line,
                        message: "unknown anchor".into(),
                    })?;
                // Checked before the copy: aliases of aliases grow geometrically.
                self.expanded = self.expanded.saturating_add(*anchored_weight);
                if self.expanded > EXPANDED_WEIGHT_MAX {
                    return Err(YamlError {
                        line,
                        message: format!(
                            "aliases expand the document past {EXPANDED_WEIGHT_MAX} nodes; \
                             is an anchor referring to itself through other anchors?"
                        ),
                    });
                }
                let node = anchored.clone();
                self.add(node, 0, line)?;
            }
            Event::DocumentEnd => return Ok(self.root.is_some()),
            _ => {}
        }
        Ok(false)
    }

    fn add(&mut self, node: Node, anchor: usize, line: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), weight(&node)));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Open::Map(map, _, pending_key)) => match pending_key.take() {
                None => {
                    let key = match node.value {
                        Value::Str(text) => text,
                        Value::Int(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => String::new(),
                        _ => {
                            return Err(YamlError {
                                line,
                                message: "a mapping key must be a scalar".into(),
                            })
                        }
                    };
                    *pending_key = Some((key.to_lowercase(), line));
                }
                Some((key, key_line)) => {
                    // A block collection starts on the line after its key: errors about it
                    // name the key's line.
                    let mut node = node;
                    if matches!(node.value, Value::Map(_) | Value::Seq(_)) {
                        node.line = node.line.min(key_line);
                    }
                    if let Value::Map(entries) = &mut map.value {
                        if key == "<<" {
                            merge_into(entries, node);
                        } else if let Some(entry) = entries.iter_mut().find(|(k, _)| *k == key) {
                            entry.1 = node;
                        } else {
                            entries.push((key, node));
                        }
                    }
                }
            },
        }
        Ok(())
    }
}

/// YAML merge key `<<: *base`: keys of `source` not already present are added.
fn merge_into(entries: &mut Vec<(String, Node)>, source: Node) {
    let sources = match source.value {
        Value::Seq(items) => items,
        other => vec![Node {
            value: other,
            line: source.line,
        }],
    };
    for source in sources {
        if let Value::Map(extra) = source.value {
            for (key, value) in extra {
                if !entries.iter().any(|(k, _)| *k == key) {
                    entries.push((key, value));
                }
            }
        }
    }
}

/// The core schema's plain scalars.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse() {
            return Value::Int(n);
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return Value::Int(n);
        }
    }
    if let Some(octal) = text.strip_prefix("0o") {
        if let Ok(n) = i64::from_str_radix(octal, 8) {
            return Value::Int(n);
        }
    }
    let looks_numeric = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(f) = text.parse() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_lines_types_and_lower_cased_keys() {
        let doc = parse("version: '3'\nHTTP:\n  address: 127.0.0.1:8080\n  pool:\n    num_workers: 4\n    debug: true\n  list: [a, 'b']\n").unwrap();
        assert_eq!(doc.get("version").unwrap().value, Value::Str("3".into()));
        let workers = doc.get_path("http.pool.num_workers").unwrap();
        assert_eq!((workers.value.clone(), workers.line), (Value::Int(4), 5));
        assert_eq!(
            doc.get_path("http.pool.debug").unwrap().value,
            Value::Bool(true)
        );
        assert_eq!(
            doc.get_path("http.address").unwrap().value,
            Value::Str("127.0.0.1:8080".into())
        );
        assert!(
            matches!(&doc.get_path("http.list").unwrap().value, Value::Seq(items) if items.len() == 2)
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys_resolve() {
        let doc = parse("base: &b\n  a: 1\nother:\n  <<: *b\n  c: 2\ncopy: *b\n").unwrap();
        assert_eq!(doc.get_path("other.a").unwrap().value, Value::Int(1));
        assert_eq!(doc.get_path("copy.a").unwrap().value, Value::Int(1));
    }

    /// The "billion laughs" shape: nine aliases of nine aliases of … a list.
    pub(crate) fn alias_bomb() -> String {
        let mut text = String::from("version: '3'\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let aliases = vec![format!("*{}", pair[0]); 9].join(",");
            text.push_str(&format!("{}: &{} [{aliases}]\n", pair[1], pair[1]));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_grows() {
        let bomb = alias_bomb();
        assert!(bomb.len() < 700, "{}", bomb.len());
        let started = std::time::Instant::now();
        let error = parse(&bomb).unwrap_err();
        assert!(
            error.message.contains("aliases expand the document"),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // Ordinary reuse stays well under the bound.
        let fine = "base: &b {a: 1, b: [1, 2, 3]}\nx: *b\ny: *b\nz: [*b, *b, *b]\n";
        assert!(parse(fine).is_ok());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = parse("a: 1\nb: [unclosed\nc: 2\n").unwrap_err();
        assert!(error.line >= 2, "{error}");
        assert!(parse("a: *nope\n").is_err());
    }

    #[test]
    fn flow_collections_may_close_at_their_key_s_indentation_as_libyaml_allows() {
        let text = "a:\n  domains: [\n    \"x\",\n    \"y\"\n  ]\n  b: 1\n";
        let doc = parse(text).unwrap();
        assert!(
            matches!(&doc.get_path("a.domains").unwrap().value, Value::Seq(items) if items.len() == 2)
        );
        assert_eq!(doc.get_path("a.b").unwrap().line, 6);
    }

    #[test]
    fn set_path_makes_mappings() {
        let mut doc = parse("").unwrap();
        doc.set_path(
            "http.pool.num_workers",
            Node {
                value: Value::Str("2".into()),
                line: 0,
            },
        );
        assert_eq!(
            doc.get_path("http.pool.num_workers").unwrap().value,
            Value::Str("2".into())
        );
    }
}
