//! One worker process: spawning it and talking to it over its relay.

pub mod on_init;
pub mod process;
pub mod relay;
pub mod socket_relay;
