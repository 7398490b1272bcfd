//! Test support: Kratos fixtures, an in-process fake Kratos, a gateway started on port 0, a
//! plain HTTP client, raw HTTP/1 and HTTP/2 clients and upstreams, and the enforcement tests'
//! shared setup, cases and assertions.
//!
//! `tests/it` includes it as a private module, so the compiler reports anything here no test
//! uses. `tests/soak.rs` includes it as a public module: what soak does not use is used (and
//! checked) in `tests/it`.

pub mod cases;
pub mod client;
pub mod enforcement;
pub mod fake_kratos;
pub mod fixtures;
pub mod flows;
pub mod gateway;
pub mod logs;
pub mod metrics;
pub mod ports;
pub mod raw;
pub mod raw_h2;
pub mod raw_upstream;
