//! Test support shared by the integration test binaries: Kratos fixtures, an in-process fake
//! Kratos, a gateway started on port 0, a plain HTTP client, and the enforcement tests' shared
//! setup and assertions. Each test binary uses a subset.
#![allow(dead_code)]

pub mod client;
pub mod enforcement;
pub mod fake_kratos;
pub mod fixtures;
pub mod flows;
pub mod gateway;
pub mod logs;
pub mod metrics;
pub mod raw;
pub mod raw_h2;
pub mod raw_upstream;
