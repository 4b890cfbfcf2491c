//! Criterion micro-benchmarks and load benchmarks for ringrunner; see `benches/`.
