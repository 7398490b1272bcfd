//! Build information compiled into the binary (`--version`, the start-up log line, metrics):
//!
//! - `KRATOS_GATE_COMMIT`: `git rev-parse --short HEAD`; the environment variable of the same
//!   name wins when set (the container build has no `.git`: `--build-arg KRATOS_GATE_COMMIT=…`);
//!   `unknown` without either (a source tarball).
//! - `KRATOS_GATE_RUSTC`: `$RUSTC --version` (cargo sets `RUSTC`), or `unknown`.
//!
//! Read them with `env!("KRATOS_GATE_COMMIT")` and `env!("KRATOS_GATE_RUSTC")`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KRATOS_GATE_COMMIT");

    let commit = match std::env::var("KRATOS_GATE_COMMIT") {
        Ok(c) if !c.trim().is_empty() => clean(&c),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=KRATOS_GATE_COMMIT={commit}");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = run(&rustc, &["--version"])
        .map(|v| clean(&v))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KRATOS_GATE_RUSTC={rustc_version}");
}

/// The short commit of the checkout, and the files whose change means a new commit.
fn git_commit() -> Option<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let dir = Path::new(&manifest_dir);
    // Only a checkout of this package: not a parent repository that happens to contain a
    // tarball's extracted sources.
    if !dir.join(".git").exists() {
        return None;
    }
    let commit = run_in(dir, "git", &["rev-parse", "--short", "HEAD"])?;
    // Rebuild when HEAD moves (a commit, a checkout). Only existing paths: a missing one
    // would make cargo run this script on every build.
    let mut watched = vec!["HEAD".to_owned(), "logs/HEAD".to_owned()];
    if let Some(head_ref) = run_in(dir, "git", &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(head_ref);
    }
    watched.push("packed-refs".to_owned());
    for name in watched {
        if let Some(path) = run_in(dir, "git", &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(clean(&commit))
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    output(Command::new(program).args(args))
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Option<String> {
    output(Command::new(program).args(args).current_dir(dir))
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// One line of printable ASCII (a `cargo:` line ends at a newline).
fn clean(s: &str) -> String {
    let s: String = s
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect();
    if s.is_empty() {
        "unknown".to_owned()
    } else {
        s
    }
}
