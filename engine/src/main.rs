//! The `rr` binary.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = ringrunner::cli::Cli::parse();
    std::process::exit(ringrunner::cli::main(cli));
}
