//! Support shared beyond the test binary (the benchmark includes `broker`).

pub mod broker;
pub mod otlp;
