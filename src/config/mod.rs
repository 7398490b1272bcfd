//! `gateway.yaml`: typed configuration with defaults for everything the contract leaves open.
//!
//! Values are validated while they are deserialized so that every error carries the line and
//! column of the offending value. Relative paths resolve against the config file's folder.
//!
//! - `sections.rs`: the sections of the file (`listen`, `upstream`, `blocklist`, …) and their
//!   defaults;
//! - `values.rs`: values written as text (durations, Kratos and blocklist URLs) and the serde
//!   helpers that read them;
//! - `load.rs`: reading a file with every error in it ([`Parsed`]), environment overrides and
//!   `${VAR}` through [`crate::config_tree`], relative paths resolved;
//! - `rules.rs`: the rules between keys, and the secrets the config names.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

mod load;
mod rules;
mod sections;
mod values;

pub use load::Parsed;
pub use sections::{
    BlocklistConfig, Enforcement, Forwarding, GlobalMode, Hooks, Inspection, Listen, ListenAddr,
    Log, Revocation, RuntimeLayout, SameSite, Server, TlsFiles, Upstream,
};
pub use values::{HumanDuration, SourceKind, SourceUrl, UpstreamUrl};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Listen,
    pub upstream: Upstream,
    pub blocklist: BlocklistConfig,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub forwarding: Forwarding,
    #[serde(default)]
    pub inspection: Inspection,
    #[serde(default)]
    pub enforcement: Enforcement,
    #[serde(default)]
    pub revocation: Revocation,
    #[serde(default)]
    pub hooks: Hooks,
    #[serde(default)]
    pub log: Log,
    /// Brute-force throttling of logins and one-time codes (src/throttle); off by default.
    #[serde(default)]
    pub throttle: crate::throttle::ThrottleConfig,
    /// The file this config was read from (not a YAML key).
    #[serde(skip)]
    pub source: PathBuf,
}

#[cfg(test)]
mod tests;
