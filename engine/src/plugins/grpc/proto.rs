//! The `proto` files (spec grpc "Other behaviours"): paths and globs expanded, each file
//! parsed without protoc (`protox-parse`, pure Rust), every `service` registered as
//! `package.Service` with its methods; the descriptors are kept for reflection. A file
//! that does not parse, is too large, or is missing fails start-up with a clear error.

use prost_types::FileDescriptorProto;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest proto file read (a hostile or mistaken path cannot make start-up read a
/// huge file).
pub const MAX_PROTO_FILE_BYTES: u64 = 4 << 20;
/// The most files a glob may give (a `**` over a large tree is a config error, not a
/// start-up that never ends).
pub const MAX_PROTO_FILES: usize = 1024;
/// Nesting of `{ }` a proto file may have: the parser descends recursively, so a file
/// nested deeper would exhaust the stack instead of failing cleanly.
const MAX_NESTING: usize = 64;

/// The services of the loaded protos.
#[derive(Debug, Default, Clone)]
pub struct Services {
    /// `package.Service` → its method names.
    pub methods: BTreeMap<String, Vec<String>>,
    /// The parsed files, for reflection.
    pub files: Vec<FileDescriptorProto>,
}

impl Services {
    /// Whether `service` has `method`.
    #[must_use]
    pub fn lookup(&self, service: &str, method: &str) -> Lookup {
        match self.methods.get(service) {
            None => Lookup::UnknownService,
            Some(methods) if methods.iter().any(|m| m == method) => Lookup::Found,
            Some(_) => Lookup::UnknownMethod,
        }
    }
}

/// What a call's path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A method of a loaded service.
    Found,
    /// A service no proto declares.
    UnknownService,
    /// A method its service does not declare.
    UnknownMethod,
}

/// Loads `entries` (relative paths from the working directory).
///
/// # Errors
/// rr's text for a missing file, or what made a file unreadable or unparsable.
pub fn load(entries: &[String]) -> Result<Services, String> {
    let mut services = Services::default();
    for entry in entries {
        let paths = if entry.contains(['*', '?', '[', '{']) {
            expand(entry)?
        } else {
            let path = PathBuf::from(entry);
            if !path.is_file() {
                return Err(format!("proto file '{entry}' does not exists"));
            }
            vec![path]
        };
        for path in paths {
            let file = parse_file(&path)?;
            register(&file, &mut services.methods);
            services.files.push(file);
            if services.files.len() > MAX_PROTO_FILES {
                return Err(format!("more than {MAX_PROTO_FILES} proto files"));
            }
        }
    }
    Ok(services)
}

fn register(file: &FileDescriptorProto, methods: &mut BTreeMap<String, Vec<String>>) {
    let package = file.package();
    for service in &file.service {
        let name = if package.is_empty() {
            service.name().to_owned()
        } else {
            format!("{package}.{}", service.name())
        };
        let list = methods.entry(name).or_default();
        for method in &service.method {
            list.push(method.name().to_owned());
        }
    }
}

fn parse_file(path: &Path) -> Result<FileDescriptorProto, String> {
    let fail = |why: String| format!("failed to parse proto file '{}': {why}", path.display());
    let size = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > MAX_PROTO_FILE_BYTES {
        return Err(fail(format!(
            "{size} bytes, more than {MAX_PROTO_FILE_BYTES}"
        )));
    }
    let source = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    parse_source(&name, &source).map_err(fail)
}

/// Parses one file's text.
///
/// # Errors
/// The parser's complaint, or nesting past `MAX_NESTING`.
pub fn parse_source(name: &str, source: &str) -> Result<FileDescriptorProto, String> {
    check_nesting(source)?;
    // The parser is third-party code on hostile input: a panic in it (its lexer has
    // debug assertions that fuzzed input trips, e.g. `."\"008`) fails this file, not the
    // process.
    std::panic::catch_unwind(|| protox_parse::parse(name, source))
        .map_err(|_| "the proto parser failed on this file".to_owned())?
        .map_err(|error| error.to_string())
}

/// Refuses brackets nested past `MAX_NESTING` (counted over the raw text: brackets inside
/// strings and comments count too, which only makes the bound stricter).
fn check_nesting(source: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for byte in source.bytes() {
        match byte {
            b'{' | b'(' | b'[' | b'<' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("nested deeper than {MAX_NESTING} levels"));
                }
            }
            b'}' | b')' | b']' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Expands a glob (`*`, `?`, `**` across directories); no match is fine (rr's doublestar
/// gives an empty list).
fn expand(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let absolute = pattern.starts_with('/');
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let root = if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    };
    let mut found = Vec::new();
    walk(&root, &parts, &mut found)?;
    found.sort();
    found.dedup();
    if !absolute {
        for path in &mut found {
            if let Ok(stripped) = path.strip_prefix(".") {
                *path = stripped.to_owned();
            }
        }
    }
    Ok(found)
}

fn walk(dir: &Path, parts: &[&str], found: &mut Vec<PathBuf>) -> Result<(), String> {
    let Some((first, rest)) = parts.split_first() else {
        if dir.is_file() {
            found.push(dir.to_owned());
        }
        return Ok(());
    };
    if found.len() > MAX_PROTO_FILES {
        return Err(format!("more than {MAX_PROTO_FILES} proto files"));
    }
    if *first == "**" {
        walk(dir, rest, found)?;
        for entry in entries(dir) {
            if entry.is_dir() {
                walk(&entry, parts, found)?;
            }
        }
        return Ok(());
    }
    if !first.contains(['*', '?']) {
        return walk(&dir.join(first), rest, found);
    }
    for entry in entries(dir) {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|name| wildcard_match(first.as_bytes(), name.as_bytes())) {
            walk(&entry, rest, found)?;
        }
    }
    Ok(())
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |read| read.filter_map(|e| e.ok().map(|e| e.path())).collect(),
    )
}

/// `*` (any run of bytes) and `?` (one byte) within one path segment.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"syntax = "proto3";
package app.main;
service Echo { rpc Ping (Msg) returns (Msg); rpc Meta (Msg) returns (Msg); }
message Msg { string text = 1; }
"#;

    #[test]
    fn services_register_as_package_dot_name() {
        let file = parse_source("echo.proto", ECHO).expect("parses");
        let mut methods = BTreeMap::new();
        register(&file, &mut methods);
        assert_eq!(methods["app.main.Echo"], ["Ping", "Meta"]);
    }

    #[test]
    fn hostile_files_fail_cleanly() {
        let deep = "message A {".repeat(100_000);
        assert!(parse_source("deep.proto", &deep)
            .unwrap_err()
            .contains("nested"));
        assert!(parse_source("bad.proto", "service {{ rpc").is_err());
        assert!(parse_source("junk.proto", "\u{0}\u{ff}%%%").is_err());
        assert!(parse_source("digits.proto", ".\"\"008").is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_proto_text_fails_cleanly(
            source in "[a-z ;={}()<>\\[\\]\"0-9.\n/*]{0,400}",
        ) {
            let _ = parse_source("p.proto", &source);
        }

        #[test]
        fn mutated_valid_files_fail_cleanly(cut in 0usize..200, byte in 0u8..128) {
            let mut bytes = ECHO.as_bytes().to_vec();
            let at = cut.min(bytes.len() - 1);
            bytes[at] = byte;
            let _ = parse_source("p.proto", &String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn globs_match_within_a_segment() {
        assert!(wildcard_match(b"*.proto", b"echo.proto"));
        assert!(wildcard_match(b"e?ho*", b"echo.proto"));
        assert!(!wildcard_match(b"*.proto", b"echo.txt"));
        assert!(wildcard_match(b"*", b""));
    }

    #[test]
    fn a_missing_file_is_rr_s_error_and_an_empty_glob_is_fine() {
        assert_eq!(
            load(&["missing.proto".into()]).unwrap_err(),
            "proto file 'missing.proto' does not exists"
        );
        let services = load(&["no/such/dir/*.proto".into()]).expect("empty glob");
        assert!(services.methods.is_empty());
    }
}
