//! Writes the man pages of `rr` and of each verb (`rr.1`, `rr-serve.1`, …) into the folder
//! given as the argument, from the clap definitions: `packaging/build-deb` ships them.

use clap::CommandFactory;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let command = ringrunner::cli::Cli::command()
        .version(ringrunner::VERSION)
        .about("a RoadRunner-compatible PHP application server");
    clap_mangen::generate_to(command, &dir)
}
