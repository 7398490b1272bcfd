//! Every `gateway.yaml` shipped under `deploy/` passes `kratos-gate check`, together with the
//! blocklist it is deployed with.
//!
//! In every deployment the config and the blocklist sit side by side (`/etc/kratos-gate/`), so
//! each config is checked in a folder of its own holding a copy of it and of its blocklist:
//! the `blocklist.yaml` beside it, or, for a kustomize overlay that only replaces the config,
//! the base's `deploy/kubernetes/base/blocklist.yaml` (ConfigMap `kratos-gate-blocklist`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn find(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            find(&path, name, out);
        } else if path.file_name().is_some_and(|n| n == name) {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_gateway_config_passes_check() {
    let deploy = deploy_dir();
    let mut configs = Vec::new();
    find(&deploy, "gateway.yaml", &mut configs);
    // Sidecar base, standalone overlay, Helm sidecar, Compose: a walk that finds fewer lost some.
    assert!(
        configs.len() >= 4,
        "expected at least 4 gateway.yaml under {}, found {configs:?}",
        deploy.display()
    );
    let base_blocklist = deploy.join("kubernetes/base/blocklist.yaml");

    let mut failures = Vec::new();
    for config in &configs {
        let beside = config.with_file_name("blocklist.yaml");
        let blocklist = if beside.exists() {
            beside
        } else {
            base_blocklist.clone()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(config, dir.path().join("gateway.yaml")).expect("copy config");
        std::fs::copy(&blocklist, dir.path().join("blocklist.yaml")).expect("copy blocklist");

        // The web hook's shared secret (hooks.secret_env) is given at run time in every layout:
        // from the Secret kratos-gate-hook in Kubernetes, from `docker compose`'s environment.
        // --offline: a remote list (blocklist.url, an example bucket) is not fetched here;
        // everything else, a local list included, is checked.
        let out = Command::new(env!("CARGO_BIN_EXE_kratos-gate"))
            .arg("check")
            .arg("--offline")
            .arg("--config")
            .arg(dir.path().join("gateway.yaml"))
            .env("KRATOS_GATE_HOOK_SECRET", "deploy-examples-test")
            // The layout the suite may be run in (.ci/run) would add a provenance line.
            .env_remove("KRATOS_GATE_SERVER_RUNTIME")
            .output()
            .expect("run kratos-gate check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(0) || !stdout.starts_with("ok: ") {
            failures.push(format!(
                "{} (blocklist {}): exit {:?}\n{stdout}{stderr}",
                config.display(),
                blocklist.display(),
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `docker build` fails when Cargo.toml names a target whose file the image does not have
/// (cargo refuses the manifest): every `path = "…"` outside `src/` must be copied by the
/// Dockerfile and let through by its `.dockerignore`.
#[test]
fn the_image_build_gets_every_file_cargo_toml_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let ignore = std::fs::read_to_string(deploy_dir().join("Dockerfile.dockerignore"))
        .expect("Dockerfile.dockerignore");
    let named: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path = \""))
        .filter_map(|rest| rest.split('"').next())
        .filter(|p| !p.starts_with("src/"))
        .collect();
    assert!(!named.is_empty(), "Cargo.toml names bench targets");
    for path in named {
        assert!(
            dockerfile
                .lines()
                .any(|l| l.starts_with("COPY ") && l.split_whitespace().any(|w| w == path)),
            "deploy/Dockerfile does not copy {path}"
        );
        assert!(
            ignore.lines().any(|l| l.trim() == format!("!{path}")),
            "deploy/Dockerfile.dockerignore does not let {path} through"
        );
    }
}
