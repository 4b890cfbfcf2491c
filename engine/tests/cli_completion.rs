//! `rr completion SHELL`, rr's (cobra's) verb: a script generated from the clap definitions
//! that knows every verb, and a reader that closes the pipe early (`| head`) is no panic.

use std::process::{Command, Stdio};

fn completion(shell: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rr"))
        .args(["completion", shell])
        .output()
        .expect("rr runs")
}

#[test]
fn each_shell_gets_a_script_that_knows_every_verb() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let output = completion(shell);
        assert!(output.status.success(), "rr completion {shell} failed");
        let script = String::from_utf8(output.stdout).expect("a script is text");
        for verb in [
            "serve",
            "stop",
            "workers",
            "reset",
            "jobs",
            "service",
            "completion",
        ] {
            assert!(script.contains(verb), "{shell} script lacks {verb}");
        }
    }
    assert!(
        !completion("tcsh").status.success(),
        "an unknown shell is refused"
    );
}

#[test]
fn a_reader_that_closed_the_pipe_is_not_a_panic() {
    // A pipe whose reading end is closed before rr writes: every write fails with EPIPE
    // (SIGPIPE is ignored in Rust programs), as for `rr completion zsh | head -1` once head
    // has exited.
    let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_rr"))
        .args(["completion", "zsh"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("rr runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}
