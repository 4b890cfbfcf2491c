//! The supervisor (spec pool-server §11): soft limits checked every `watch_tick`.
