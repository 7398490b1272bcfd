//! TLS with rustls on the ring provider: listener certificates that reload when their files
//! change (cert-manager rotates Secrets by the same `..data` swap as ConfigMaps), and the
//! client configuration for https upstreams.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{watch, Notify};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key into a signing pair, checking that the key
/// belongs to the first certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate found", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

/// A listener certificate that can be swapped while serving. Handshakes read the current
/// pair without locking.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
    cert: PathBuf,
    key: PathBuf,
    checksum: Mutex<u64>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn files_checksum(cert: &Path, key: &Path) -> u64 {
    let mut bytes = std::fs::read(cert).unwrap_or_default();
    bytes.extend(std::fs::read(key).unwrap_or_default());
    crate::util::checksum(&bytes)
}

impl ReloadingCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let pair = load_certified_key(cert, key)?;
        Ok(ReloadingCert {
            current: ArcSwap::from_pointee(pair),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            checksum: Mutex::new(files_checksum(cert, key)),
        })
    }

    pub fn paths(&self) -> [&Path; 2] {
        [&self.cert, &self.key]
    }

    /// Re-reads the files; a new valid pair replaces the old one, a broken one is reported
    /// and the old pair stays. Returns whether anything was swapped.
    pub fn reload(&self) -> Result<bool, String> {
        let sum = files_checksum(&self.cert, &self.key);
        let mut last = self.checksum.lock().unwrap_or_else(|p| p.into_inner());
        if sum == *last {
            return Ok(false);
        }
        let pair = load_certified_key(&self.cert, &self.key)?;
        self.current.store(Arc::new(pair));
        *last = sum;
        Ok(true)
    }
}

/// The server side: ALPN h2 and http/1.1, TLS 1.2 and 1.3, the reloading certificate.
pub fn acceptor(cert: Arc<ReloadingCert>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The client side, for https upstreams and the gateway's own calls: the system's roots, or
/// only the certificates in `ca_file` when one is given.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no PEM certificate found", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A single malformed system certificate must not take the others down.
                let _ = roots.add(cert);
            }
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Watches the certificates' folders and polls; swaps in valid new pairs until `stop`.
pub async fn run_cert_reloader(
    certs: Vec<Arc<ReloadingCert>>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if certs.is_empty() {
        return;
    }
    let event = Arc::new(Notify::new());
    let mut dirs: Vec<PathBuf> = certs
        .iter()
        .flat_map(|c| c.paths())
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    let _watchers: Vec<_> = dirs
        .iter()
        .filter_map(|d| crate::reload::watch_dir(d, &event))
        .collect();
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = event.notified() => tokio::time::sleep(Duration::from_millis(200)).await,
            _ = tick.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() { return } else { continue }
            }
        }
        for cert in &certs {
            let c = Arc::clone(cert);
            match tokio::task::spawn_blocking(move || c.reload()).await {
                Ok(Ok(true)) => {
                    tracing::info!(cert = %cert.cert.display(), "TLS certificate reloaded")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "new TLS certificate rejected; the previous one stays in use")
                }
                Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
            }
        }
    }
}
