//! Test support shared by the integration test binaries: Kratos fixtures and
//! an in-process fake Kratos. Each test binary uses a subset.
#![allow(dead_code)]

pub mod fake_kratos;
pub mod fixtures;
