//! The `parsed` data tree of a form body in PHP bracket notation (spec http §2.2, §2.5).
//!
//! Work is linear in the body: each field is split, decoded and grouped once (a hash map
//! from name to its group), and put in the tree along its own name's segments (at most
//! [`MAX_SEGMENTS`], each one map lookup). A body of more than [`MAX_FIELDS`] fields is refused
//! before any of it is decoded, as Go's `url.ParseQuery` refuses it for rr.

use super::percent_decode;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Most name segments a field may have; longer names are dropped, as rr does.
const MAX_SEGMENTS: usize = 127;

/// Most `&`-separated fields a urlencoded body may have: Go's `urlmaxqueryparams` default,
/// past which rr answers 500 with [`FormError::TooManyFields`]'s text.
pub const MAX_FIELDS: usize = 10_000;

/// A malformed form body (rr answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A name or value with a bad `%` escape or not UTF-8.
    #[error("invalid URL escape in form field {0:?}")]
    BadEscape(String),
    /// A scalar and a branch for the same key.
    #[error("invalid multiple values to key '{0}' in tree")]
    Conflict(String),
    /// More than [`MAX_FIELDS`] fields (Go's text; rr answers 500, not 400).
    #[error("number of URL query parameters exceeded limit")]
    TooManyFields,
}

impl FormError {
    /// The status rr answers with: 500 for the field-count limit (Go's `ParseForm` error
    /// reaches rr's generic 500), 400 for a malformed body.
    #[must_use]
    pub const fn status(&self) -> u16 {
        match self {
            Self::TooManyFields => 500,
            Self::BadEscape(_) | Self::Conflict(_) => 400,
        }
    }
}

/// The data tree, serialised as the JSON object rr sends as the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataTree {
    root: Map<String, Value>,
}

impl DataTree {
    /// True when no field was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// The JSON object; an empty tree writes nothing (rr sends an empty body, not `{}`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if !self.root.is_empty() {
            serde_json::to_writer(out, &self.root).expect("writing JSON to a Vec cannot fail");
        }
    }

    /// The JSON object, `{}` when empty (the uploads tree of a form without files).
    pub fn write_json_object(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, &self.root).expect("writing JSON to a Vec cannot fail");
    }

    /// Adds every value sent for `name` (in order): `k[]` keeps them all as a list, any other
    /// name keeps the last.
    ///
    /// # Errors
    /// [`FormError::Conflict`] when the name clashes with the tree's shape.
    pub fn push(&mut self, name: &str, values: Vec<String>) -> Result<(), FormError> {
        self.push_leaf(
            name,
            values.into_iter().map(Value::String).collect(),
            Keep::Last,
        )
    }

    /// Adds the file objects of every part sent as `name`: `k[]` keeps them all as a list, any
    /// other name keeps the first (spec http §2.4).
    ///
    /// # Errors
    /// [`FormError::Conflict`] when the name clashes with the tree's shape.
    pub fn push_files(&mut self, name: &str, files: Vec<Value>) -> Result<(), FormError> {
        self.push_leaf(name, files, Keep::First)
    }

    fn push_leaf(&mut self, name: &str, values: Vec<Value>, keep: Keep) -> Result<(), FormError> {
        let name: String = name.chars().filter(|c| *c != ' ').collect();
        let segments = split_name(&name);
        if segments.is_empty() || segments.len() > MAX_SEGMENTS || values.is_empty() {
            return Ok(());
        }
        let (last, path) = segments.split_last().expect("at least one segment");
        if last.is_empty() && !path.is_empty() {
            let (key, parents) = path.split_last().expect("path is not empty");
            return insert(&mut self.root, parents, key, Value::Array(values), &name);
        }
        let leaf = match keep {
            Keep::First => values.into_iter().next(),
            Keep::Last => values.into_iter().last(),
        };
        insert(&mut self.root, path, last, leaf.unwrap_or_default(), &name)
    }
}

/// Which of several values a plain (non-`[]`) name keeps.
#[derive(Clone, Copy)]
enum Keep {
    First,
    Last,
}

/// Groups `(name, value)` pairs by name in first-seen order, like Go's `url.Values`: one
/// hash lookup a pair, so the work is linear in the pairs whatever their names (a linear
/// search of the names seen so far made 80,000 distinct names cost seconds of a shard).
pub fn group_by_name<T>(pairs: impl IntoIterator<Item = (String, T)>) -> Vec<(String, Vec<T>)> {
    let mut fields: Vec<(String, Vec<T>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for (name, value) in pairs {
        match group_of.get(&name) {
            Some(&group) => fields[group].1.push(value),
            None => {
                group_of.insert(name.clone(), fields.len());
                fields.push((name, vec![value]));
            }
        }
    }
    fields
}

/// Go's count of the fields in a query or urlencoded body (one more than its `&`s) against
/// [`MAX_FIELDS`]. rr's `ParseForm` applies it to the URL's query as well as to the body of a
/// form request, so a form request with too long a query is refused the same way.
///
/// # Errors
/// [`FormError::TooManyFields`].
pub fn check_field_count(text: &[u8]) -> Result<(), FormError> {
    let separators = text.iter().filter(|&&byte| byte == b'&').count();
    if separators >= MAX_FIELDS {
        return Err(FormError::TooManyFields);
    }
    Ok(())
}

/// Walks `parents` (making branches) and puts `value` at `key`.
fn insert(
    mut node: &mut Map<String, Value>,
    parents: &[&str],
    key: &str,
    value: Value,
    name: &str,
) -> Result<(), FormError> {
    for parent in parents {
        let entry = node
            .entry((*parent).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if matches!(entry, Value::String(text) if text.is_empty()) {
            *entry = Value::Object(Map::new());
        }
        node = match entry {
            Value::Object(map) => map,
            _ => return Err(FormError::Conflict(name.to_owned())),
        };
    }
    match node.get(key) {
        Some(Value::Object(_)) if matches!(&value, Value::String(text) if text.is_empty()) => {
            Ok(())
        }
        Some(Value::Object(_)) => Err(FormError::Conflict(name.to_owned())),
        _ => {
            node.insert(key.to_owned(), value);
            Ok(())
        }
    }
}

/// `a[b][c]` → `a`, `b`, `c`; `a[]` → `a`, ``. Text outside brackets after the first `]` is
/// ignored, as PHP does.
fn split_name(name: &str) -> Vec<&str> {
    let Some(open) = name.find('[') else {
        return if name.is_empty() {
            Vec::new()
        } else {
            vec![name]
        };
    };
    let mut segments = vec![&name[..open]];
    let mut rest = &name[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            break;
        };
        segments.push(&stripped[..close]);
        rest = &stripped[close + 1..];
    }
    if segments[0].is_empty() {
        return Vec::new();
    }
    segments
}

/// Parses an `application/x-www-form-urlencoded` body into the data tree, in time linear in
/// the body.
///
/// # Errors
/// More than [`MAX_FIELDS`] fields (counted as Go counts them: one more than the `&`s), a
/// bad escape or a tree conflict.
pub fn parse_urlencoded(body: &[u8]) -> Result<DataTree, FormError> {
    check_field_count(body)?;
    let mut pairs = Vec::new();
    for pair in body.split(|&byte| byte == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
            Some(equals) => (&pair[..equals], &pair[equals + 1..]),
            None => (pair, &b""[..]),
        };
        let bad = || FormError::BadEscape(String::from_utf8_lossy(name).into_owned());
        let name = percent_decode(name, true).ok_or_else(bad)?;
        let value = percent_decode(value, true).ok_or_else(bad)?;
        pairs.push((name, value));
    }
    let mut tree = DataTree::default();
    for (name, values) in group_by_name(pairs) {
        tree.push(&name, values)?;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &[u8]) -> Value {
        let mut out = Vec::new();
        parse_urlencoded(body).unwrap().write_json(&mut out);
        if out.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn brackets_make_branches_and_lists() {
        assert_eq!(
            json(b"title=Hi&meta[tags][]=a&meta[tags][]=b&a[0]=x&a[1]=y&k=1&k=2"),
            serde_json::json!({
                "title": "Hi", "meta": {"tags": ["a", "b"]},
                "a": {"0": "x", "1": "y"}, "k": "2"
            })
        );
    }

    #[test]
    fn empty_scalar_gives_way_to_a_branch() {
        assert_eq!(
            json(b"opts=&opts[0][n]=x"),
            serde_json::json!({"opts": {"0": {"n": "x"}}})
        );
    }

    #[test]
    fn conflicts_and_bad_escapes_are_errors() {
        assert_eq!(
            parse_urlencoded(b"a=1&a[b]=2"),
            Err(FormError::Conflict("a[b]".into()))
        );
        assert!(matches!(
            parse_urlencoded(b"a=%zz"),
            Err(FormError::BadEscape(_))
        ));
    }

    #[test]
    fn files_keep_the_first_part_or_a_list() {
        let mut tree = DataTree::default();
        let file = |n: u64| serde_json::json!({"size": n});
        tree.push_files("doc", vec![file(1), file(2)]).unwrap();
        tree.push_files("many[]", vec![file(3), file(4)]).unwrap();
        tree.push_files("a[b][c]", vec![file(5)]).unwrap();
        let mut out = Vec::new();
        tree.write_json_object(&mut out);
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            serde_json::json!({"doc": {"size": 1}, "many": [{"size": 3}, {"size": 4}],
                "a": {"b": {"c": {"size": 5}}}})
        );
        out.clear();
        DataTree::default().write_json_object(&mut out);
        assert_eq!(out, b"{}");
    }

    #[test]
    fn the_field_limit_is_gos_and_refused_with_500() {
        let fields = |n: usize| {
            (0..n)
                .map(|i| format!("f{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let at_limit = parse_urlencoded(fields(MAX_FIELDS).as_bytes()).unwrap();
        let mut out = Vec::new();
        at_limit.write_json(&mut out);
        let tree: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(tree.as_object().unwrap().len(), MAX_FIELDS);
        let over = parse_urlencoded(fields(MAX_FIELDS + 1).as_bytes()).unwrap_err();
        assert_eq!(over, FormError::TooManyFields);
        assert_eq!(over.status(), 500);
        assert_eq!(
            over.to_string(),
            "number of URL query parameters exceeded limit"
        );
        // Go counts separators, empty fields included.
        let empties = "&".repeat(MAX_FIELDS);
        assert_eq!(
            parse_urlencoded(empties.as_bytes()),
            Err(FormError::TooManyFields)
        );
    }

    #[test]
    fn grouping_is_linear_in_the_number_of_distinct_names() {
        // 200,000 distinct names: quadratic grouping took minutes; a map takes milliseconds.
        let pairs = (0..200_000).map(|i| (format!("name{i}"), i));
        let started = std::time::Instant::now();
        let groups = group_by_name(pairs);
        assert_eq!(groups.len(), 200_000);
        assert_eq!(groups[123_456], ("name123456".to_owned(), vec![123_456]));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let repeated = group_by_name([
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("a".to_owned(), 3),
        ]);
        assert_eq!(
            repeated,
            vec![("a".to_owned(), vec![1, 3]), ("b".to_owned(), vec![2])]
        );
    }

    #[test]
    fn empty_form_writes_an_empty_body_and_spaces_in_names_vanish() {
        assert_eq!(json(b""), Value::Null);
        assert_eq!(json(b"a+b=1"), serde_json::json!({"ab": "1"}));
    }
}
