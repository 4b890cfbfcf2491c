//! The `rr` binary.

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("-v" | "--version" | "version") => println!("{}", ringrunner::version_line()),
        _ => {
            eprintln!("usage: rr --version");
            std::process::exit(1);
        }
    }
}
