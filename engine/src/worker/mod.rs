//! One worker process: spawning it and talking to it over its relay.

pub mod process;
pub mod relay;
