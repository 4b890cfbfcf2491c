//! The book and the README against the binary (issue 31, "no drift"): every config key the
//! plugins read is in the configuration reference, every verb's `--help` is what the CLI page
//! shows, and every relative link in README.md and docs/ points at a file (and heading) that
//! exists.

use ringrunner::config::Config;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (README.md and docs/ live there).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Where a name the user chooses comes next in a key path (a pipeline, a storage, a service…).
const USER_NAMED: [&str; 7] = [
    "jobs.pipelines.",
    "kv.",
    "service.",
    "tcp.servers.",
    "logs.channels.",
    "reload.services.",
    "metrics.collect.",
];

/// A key as the reference writes it: user-chosen names as `<name>`, list indices as `<n>`,
/// the pools' keys (`temporal.activities` is one) as `<plugin>.pool.…`.
fn normalise(key: &str) -> String {
    let mut key = key.to_owned();
    for prefix in USER_NAMED {
        if let Some(rest) = key.strip_prefix(prefix) {
            let tail = rest.split_once('.').map_or("", |(_, tail)| tail);
            key = if tail.is_empty() {
                format!("{prefix}<name>")
            } else {
                format!("{prefix}<name>.{tail}")
            };
            break;
        }
    }
    for pool in [
        "http.pool",
        "tcp.pool",
        "jobs.pool",
        "grpc.pool",
        "centrifuge.pool",
        "temporal.activities",
    ] {
        if let Some(rest) = key.strip_prefix(&format!("{pool}.")) {
            key = format!("<plugin>.pool.{rest}");
        }
    }
    key.split('.')
        .map(|part| {
            if part.chars().all(|c| c.is_ascii_digit()) {
                "<n>"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The reference page that documents `key`: one page per top-level section, the pools'
/// keys on the pool page.
fn reference_page(key: &str) -> PathBuf {
    let section = if key.starts_with("<plugin>.pool.") {
        "pool"
    } else {
        key.split('.').next().unwrap_or(key)
    };
    workspace_root().join(format!("docs/config/{section}.md"))
}

/// Every key the plugins read over `config`.
fn keys_read(path: &Path) -> Result<Vec<String>, String> {
    let env = |_: &str| None;
    let config = Config::load_file(path, &[], &env).map_err(|error| error.to_string())?;
    let configured =
        ringrunner::plugins::configure(&config, &env, &[]).map_err(|error| error.to_string())?;
    Ok(configured.read_keys)
}

#[test]
fn every_config_key_read_is_in_the_reference() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/every-section.rr.yaml");
    let mut keys: BTreeSet<String> = keys_read(&fixture)
        .expect("the every-section fixture configures")
        .iter()
        .map(|key| normalise(key))
        .collect();
    // The real configs the integration tests start: names and shapes the fixture may lack.
    let configs = workspace_root().join("php-client-tests/configs");
    for entry in std::fs::read_dir(&configs).expect("php-client-tests/configs") {
        let path = entry.expect("a directory entry").path();
        if path.to_string_lossy().ends_with(".rr.yaml") {
            // Some refuse to configure here (a static dir relative to their own folder, a
            // bad relay on purpose): their keys are the fixture's too.
            if let Ok(read) = keys_read(&path) {
                keys.extend(read.iter().map(|key| normalise(key)));
            }
        }
    }
    assert!(keys.len() > 150, "too few keys read: {keys:?}");
    for entry in ringrunner::plugins::REGISTRY {
        assert!(
            keys.contains(entry.section),
            "the fixture has no {} section: add it with every key",
            entry.section
        );
    }
    let mut missing = Vec::new();
    for key in &keys {
        let page = reference_page(key);
        let text = std::fs::read_to_string(&page).unwrap_or_default();
        if !text.contains(&format!("`{key}`")) {
            missing.push(format!("{key} (in {})", page.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "config keys the code reads but the reference does not show (as `key`):\n{}",
        missing.join("\n")
    );
}

#[test]
fn user_chosen_names_and_indices_are_normalised() {
    assert_eq!(
        normalise("jobs.pipelines.emails.config.prefetch"),
        "jobs.pipelines.<name>.config.prefetch"
    );
    assert_eq!(normalise("kv.cache"), "kv.<name>");
    assert_eq!(
        normalise("http.pool.supervisor.ttl"),
        "<plugin>.pool.supervisor.ttl"
    );
    assert_eq!(normalise("server.command.0"), "server.command.<n>");
    assert_eq!(normalise("http.address"), "http.address");
    assert_eq!(
        reference_page("<plugin>.pool.num_workers"),
        workspace_root().join("docs/config/pool.md")
    );
}

/// `rr ARGS --help` as the binary prints it.
fn help_text(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rr"))
        .args(args)
        .arg("--help")
        .output()
        .expect("rr runs");
    assert!(output.status.success(), "rr {args:?} --help failed");
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The help blocks of the CLI page: a `<!-- help: rr VERB -->` line, then a fenced block.
fn book_help_blocks(page: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(command) = line
            .trim()
            .strip_prefix("<!-- help: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "a fence after {line}");
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push((command.to_owned(), body.join("\n")));
    }
    blocks
}

/// The verbs `rr --help` lists under `Commands:`.
fn verbs(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|verb| *verb != "help")
        .map(str::to_owned)
        .collect()
}

/// `rr`, then each verb its help lists and, depth first, each verb's own sub-verbs
/// (`rr service status`), in the order the help lists them.
fn every_command(command: &mut Vec<String>, out: &mut Vec<String>) {
    out.push(command.join(" "));
    let args: Vec<&str> = command.iter().skip(1).map(String::as_str).collect();
    for verb in verbs(&help_text(&args)) {
        command.push(verb);
        every_command(command, out);
        command.pop();
    }
}

fn trimmed_lines(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

#[test]
fn the_cli_page_shows_every_verb_and_its_help_as_the_binary_prints_it() {
    let page = read(&workspace_root().join("docs/cli.md"));
    let blocks = book_help_blocks(&page);
    let mut expected = Vec::new();
    every_command(&mut vec!["rr".to_owned()], &mut expected);
    assert!(expected.len() > 8, "verbs listed: {expected:?}");
    let shown: Vec<&str> = blocks.iter().map(|(command, _)| command.as_str()).collect();
    assert_eq!(
        shown, expected,
        "the CLI page's help blocks, in `rr --help` order"
    );
    for (command, shown) in &blocks {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let printed = help_text(&args);
        assert_eq!(
            trimmed_lines(shown),
            trimmed_lines(&printed),
            "docs/cli.md's block for `{command} --help` differs from the binary's"
        );
    }
}

/// Markdown files the links test walks: README.md and docs/**/*.md.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a readable dir") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "book") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path);
            }
        }
    }
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut files);
    files.sort();
    files
}

/// The targets of inline links and images, `](target)`, outside code blocks and spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let outside_code: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = outside_code.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or(after.len());
            targets.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's and mdBook's anchor of a heading: lower case, spaces to `-`, punctuation gone.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `path` with its `..` and `.` parts folded (the file exists: no symlink games here).
fn normalised(path: &Path) -> PathBuf {
    let mut folded = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                folded.pop();
            }
            std::path::Component::CurDir => {}
            other => folded.push(other),
        }
    }
    folded
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_fence = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
            }
            !in_fence && line.starts_with('#')
        })
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_relative_link_in_the_readme_and_the_book_resolves() {
    let docs = workspace_root().join("docs");
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (path_part, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let dir = file.parent().expect("a file has a folder");
            let resolved = if path_part.is_empty() {
                file.clone()
            } else {
                dir.join(path_part)
            };
            if path_part.contains("shared/") {
                broken.push(format!(
                    "{}: {target} (the specs are internal)",
                    file.display()
                ));
            } else if !resolved.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
            } else if file.starts_with(&docs) && !normalised(&resolved).starts_with(&docs) {
                // The rendered book (docs/book/) and the packaged one hold no file outside
                // docs/: name such a file as code instead.
                broken.push(format!("{}: {target} (outside the book)", file.display()));
            } else if !fragment.is_empty()
                && resolved.extension().is_some_and(|ext| ext == "md")
                && !anchors(&read(&resolved)).contains(fragment)
            {
                broken.push(format!("{}: {target} (no such heading)", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn links_and_anchors_are_found_as_markdown_writes_them() {
    let text = "see [a](b.md#c-d) and `[x](not-a-link)`\n```\n[y](code)\n```\n![p](img.svg)";
    assert_eq!(link_targets(text), vec!["b.md#c-d", "img.svg"]);
    assert_eq!(
        anchor(" The `rr serve` verb: flags"),
        "the-rr-serve-verb-flags"
    );
}
