//! The Python tools the integration tests drive (real clients and servers from PyPI, pinned in
//! `php-client-tests/python-requirements.txt`), installed by `scripts/install-deps` into
//! `target/test-venv`, a venv of the workspace's own: nothing goes onto the system.

use std::path::{Path, PathBuf};

/// The test venv's folder: `$RINGRUNNER_TEST_VENV`, else `<workspace>/target/test-venv`.
#[must_use]
pub fn venv_dir() -> PathBuf {
    std::env::var_os("RINGRUNNER_TEST_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv"),
        PathBuf::from,
    )
}

/// A program of the test venv (`python`, or a tool a package installed there, such as
/// `temporal`).
///
/// # Panics
/// When the venv lacks it: the message says how to make it.
#[must_use]
pub fn venv_program(name: &str) -> PathBuf {
    let program = venv_dir().join("bin").join(name);
    assert!(
        program.exists(),
        "{} is missing: run scripts/install-deps (it makes the test venv from \
         php-client-tests/python-requirements.txt)",
        program.display()
    );
    program
}
