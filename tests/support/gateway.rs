//! Starts a whole gateway in-process on port 0, in front of given upstream URLs, with its
//! config and blocklist in a temporary folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kratos_gate::config::Config;
use kratos_gate::Gateway;

pub struct TestGateway {
    pub gateway: Option<Gateway>,
    pub dir: tempfile::TempDir,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub ops: SocketAddr,
}

/// Config text for a gateway on 127.0.0.1:0 in front of the given Kratos URLs, with short
/// timeouts so that failure tests finish quickly.
pub fn config_text(public_url: &str, admin_url: &str) -> String {
    format!(
        "listen:\n  public: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  ops: 127.0.0.1:0\n\
upstream:\n  public: {public_url}\n  admin: {admin_url}\n  connect_timeout: 500ms\n  response_timeout: 2s\n  lookup_timeout: 2s\n\
blocklist:\n  path: blocklist.yaml\n  poll_interval: 30s\n  debounce: 50ms\n\
server:\n  shutdown_grace: 5s\n\
revocation:\n  initial_backoff: 50ms\n  max_backoff: 200ms\n"
    )
}

pub fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Replaces a file the way editors do: write a temporary file, then rename over.
pub fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    write_file(&tmp, text);
    std::fs::rename(&tmp, path).expect("rename");
}

pub fn blocklist_of(ids: &[&str]) -> String {
    let mut s = String::from("identities:\n");
    for id in ids {
        s.push_str(&format!("  - {id}\n"));
    }
    s
}

pub async fn start_gateway(public_url: &str, admin_url: &str, blocklist: &str) -> TestGateway {
    start_gateway_with(public_url, admin_url, blocklist, |_| {}).await
}

pub async fn start_gateway_with(
    public_url: &str,
    admin_url: &str,
    blocklist: &str,
    configure: impl FnOnce(&mut Config),
) -> TestGateway {
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(&dir.path().join("blocklist.yaml"), blocklist);
    let config_path = dir.path().join("gateway.yaml");
    let text = config_text(public_url, admin_url);
    write_file(&config_path, &text);
    let mut config = Config::from_yaml(&text, &config_path).expect("test config is valid");
    configure(&mut config);
    let gateway = kratos_gate::start(config).await.expect("gateway starts");
    TestGateway {
        public: gateway.public_addr,
        admin: gateway.admin_addr.expect("admin listener"),
        ops: gateway.ops_addr,
        gateway: Some(gateway),
        dir,
    }
}

impl TestGateway {
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{}", self.public, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{}", self.ops, path)
    }

    pub fn blocklist_path(&self) -> PathBuf {
        self.dir.path().join("blocklist.yaml")
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("running")
    }

    /// Waits until `id` is (or is not) blocked by the list in force.
    pub async fn wait_for_listed(&self, id: &str, listed: bool, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now_listed = self
                .gateway()
                .blocklist()
                .snapshot()
                .lookup_str(id)
                .is_some();
            if now_listed == listed {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
    }
}
