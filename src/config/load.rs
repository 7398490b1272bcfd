//! Reading `gateway.yaml` with every error in it: the tree with environment overrides and
//! `${VAR}` ([`crate::config_tree`]), every key's value, relative paths resolved, then the rules
//! between keys (`rules.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::sections::{d_poll_interval, d_url_poll_interval};
use super::Config;
use crate::config_tree::{self, Node, Origin, Pos, Provenance, Value};
use crate::diagnostic::Diagnostic;

/// A config file read with everything found wrong in it ([`crate::validate`] adds what it
/// names outside itself: files, secrets, the blocklist).
pub struct Parsed {
    /// The file's name, as given.
    pub name: String,
    /// The config, also when there are errors (values in error left out or stood in for, so
    /// that further checks can go on); `None` when the file could not be read as YAML.
    pub config: Option<Config>,
    /// Every error, in file order.
    pub errors: Vec<Diagnostic>,
    /// Values that came from the environment (overrides and `${VAR}`), in key order.
    pub provenance: Vec<Provenance>,
    /// Key paths with an error: further checks of them would only repeat it.
    bad: Vec<String>,
    tree: Option<Node>,
}

impl Parsed {
    fn new(name: String) -> Parsed {
        Parsed {
            name,
            config: None,
            errors: Vec::new(),
            provenance: Vec::new(),
            bad: Vec::new(),
            tree: None,
        }
    }

    /// Whether `key`, a key inside it or a key around it already has an error.
    pub fn is_bad(&self, key: &str) -> bool {
        self.bad.iter().any(|b| {
            b == key
                || b.is_empty()
                || b.strip_prefix(key)
                    .is_some_and(|r| r.starts_with(['.', '[']))
                || key
                    .strip_prefix(b.as_str())
                    .is_some_and(|r| r.starts_with(['.', '[']))
        })
    }

    /// A diagnostic about `key`: at its position in the file (else the file's first line),
    /// `key: message`, and where the value came from when not from the file.
    pub fn at(&self, key: &str, message: impl fmt::Display) -> Diagnostic {
        self.diagnostic(key, None, &message.to_string())
    }

    fn diagnostic(&self, key: &str, at: Option<Pos>, message: &str) -> Diagnostic {
        let node = self.tree.as_ref().and_then(|t| t.get(key));
        let at = at
            .filter(|p| p.line > 0)
            .or_else(|| self.tree.as_ref().and_then(|t| t.position(key)))
            .filter(|p| p.line > 0)
            .unwrap_or(Pos { line: 1, column: 1 });
        let from = match node.map(|n| &n.origin) {
            Some(Origin::Env(var)) => format!(" (from ${var})"),
            Some(Origin::Expanded(written)) => format!(" (from `{written}`)"),
            _ => String::new(),
        };
        // A message that names its key already (`hooks.secret_env names …`) does not again.
        let message = message
            .strip_prefix(key)
            .filter(|rest| !key.is_empty() && rest.starts_with(' '))
            .map_or(message, str::trim_start);
        let message = if key.is_empty() {
            format!("{message}{from}")
        } else {
            format!("{key}: {message}{from}")
        };
        Diagnostic::new(&self.name, at.line, at.column, message)
    }

    fn push(&mut self, key: &str, at: Option<Pos>, message: &str) {
        let d = self.diagnostic(key, at, message);
        self.errors.push(d);
        self.bad.push(key.to_owned());
    }

    /// The config when nothing is wrong with it.
    pub fn into_result(self) -> Result<Config, Vec<Diagnostic>> {
        match self.config {
            Some(config) if self.errors.is_empty() => Ok(config),
            _ => Err(self.errors),
        }
    }
}

/// A required value in error is replaced by one of these, so that checking goes on.
const STAND_IN: &str = "listen: {public: 127.0.0.1:0, ops: 127.0.0.1:0}\nupstream: {public: http://127.0.0.1:1, admin: http://127.0.0.1:1}\n";

fn stand_in(path: &str) -> Option<Value> {
    let scalar = |s: &str| Some(Value::Scalar(s.to_owned()));
    match path {
        "listen" | "upstream" => config_tree::parse(STAND_IN)
            .ok()?
            .get(path)
            .map(|n| n.value.clone()),
        "blocklist" => Some(Value::Map(Vec::new())),
        "listen.public" | "listen.ops" => scalar("127.0.0.1:0"),
        "upstream.public" | "upstream.admin" => scalar("http://127.0.0.1:1"),
        _ if path.ends_with(".address") => scalar("127.0.0.1:0"),
        _ if path.ends_with(".tls.cert") || path.ends_with(".tls.key") => scalar("stand-in"),
        _ => None,
    }
}

impl Config {
    /// Reads and validates a config file, with the process's environment.
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        Config::parse_file(path, &config_tree::process_env).into_result()
    }

    /// Parses config text as if it had been read from `path` (relative paths resolve against
    /// its folder), with the process's environment.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, Vec<Diagnostic>> {
        Config::parse_text(text, path, &config_tree::process_env).into_result()
    }

    /// Reads a config file with every error in it; `env` gives environment variables.
    pub fn parse_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Parsed {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse_text(&text, path, env),
            Err(e) => {
                let mut parsed = Parsed::new(name.clone());
                parsed.errors.push(Diagnostic::whole_file(
                    &name,
                    format!("cannot read config: {e}"),
                ));
                parsed
            }
        }
    }

    /// Parses config text with every error in it: environment overrides
    /// (`KRATOS_GATE_<KEY PATH>`) and `${VAR}` references first, then every key's value, then
    /// the rules between keys.
    pub fn parse_text(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Parsed {
        let mut parsed = Parsed::new(path.display().to_string());
        let mut tree = match config_tree::parse(text) {
            Ok(tree) => tree,
            Err(e) => {
                parsed.errors.push(Diagnostic::from_yaml(&parsed.name, &e));
                return parsed;
            }
        };
        let mut problems = config_tree::apply_overrides(&mut tree, env);
        problems.extend(config_tree::expand_all(&mut tree, env));
        parsed.provenance = config_tree::provenance(&tree);
        parsed.tree = Some(tree);
        for p in problems {
            parsed.push(&p.path, Some(p.at), &p.message);
        }
        let Some(tree) = parsed.tree.as_ref() else {
            return parsed;
        };
        let (config, key_errors) = config_tree::deserialize_all::<Config>(tree, &stand_in);
        for e in key_errors {
            if !parsed.is_bad(&e.path) {
                parsed.push(&e.path, Some(e.at), &e.message);
            }
        }
        if let Some(mut config) = config {
            config.finish(path);
            for (key, message) in config.problems() {
                if !parsed.is_bad(&key) {
                    let value = parsed
                        .tree
                        .as_ref()
                        .and_then(|t| t.get(&key))
                        .filter(|n| matches!(n.value, Value::Scalar(_)))
                        .filter(|_| message.starts_with("must ") || message.starts_with("is "))
                        .map(|n| format!("`{}` ", n.display()))
                        .unwrap_or_default();
                    parsed.push(&key, None, &format!("{value}{message}"));
                }
            }
            parsed.config = Some(config);
        }
        parsed.errors.sort_by_key(|d| (d.line, d.column));
        parsed
    }

    /// Resolves relative paths against the config file's folder and fills values that depend
    /// on others.
    fn finish(&mut self, path: &Path) {
        let config = self;
        config.source = path.to_path_buf();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if !config.blocklist.path.as_os_str().is_empty() {
            config.blocklist.path = resolve(base, &config.blocklist.path);
        }
        if let Some(p) = &config.blocklist.cache_path {
            config.blocklist.cache_path = Some(resolve(base, p));
        }
        config.blocklist.poll_interval =
            config
                .blocklist
                .poll_interval_set
                .unwrap_or(if config.blocklist.url.is_some() {
                    d_url_poll_interval()
                } else {
                    d_poll_interval()
                });
        if let Some(p) = &config.upstream.admin_token_file {
            config.upstream.admin_token_file = Some(resolve(base, p));
        }
        if let Some(p) = &config.hooks.secret_file {
            config.hooks.secret_file = Some(resolve(base, p));
        }
        if let Some(p) = &config.upstream.ca_file {
            config.upstream.ca_file = Some(resolve(base, p));
        }
        if let Some(redis) = &mut config.throttle.redis {
            for p in [&mut redis.password_file, &mut redis.ca_file]
                .into_iter()
                .flatten()
            {
                *p = resolve(base, p);
            }
        }
        // An empty path stays empty, for validate to refuse.
        if let Some(p) = config
            .revocation
            .journal
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            config.revocation.journal = Some(resolve(base, p));
        }
        for listen in [
            Some(&mut config.listen.public),
            config.listen.admin.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(tls) = &mut listen.tls {
                tls.cert = resolve(base, &tls.cert);
                tls.key = resolve(base, &tls.key);
            }
        }
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
