//! TLS with rustls on the ring provider: listener certificates that reload when their files
//! change (cert-manager rotates Secrets by the same `..data` swap as ConfigMaps; watched and
//! polled by [`crate::refresh`], as the blocklist is), and the client configuration for
//! https upstreams.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::refresh::{FileSource, Schedule, Source, Triggers};
use crate::util::checksum;

/// The largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key into a signing pair, checking that the key
/// belongs to the first certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let (cert, key) = (pem_file(cert), pem_file(key));
    certified_key(&cert, &read(&cert)?, &key, &read(&key)?)
}

fn pem_file(path: &Path) -> FileSource {
    FileSource::new(path, "PEM file", Duration::ZERO, MAX_PEM_BYTES)
}

fn read(file: &FileSource) -> Result<Vec<u8>, String> {
    file.read_settled()
        .map_err(|e| format!("{}: {e}", file.name()))
}

/// A signing pair from the bytes of a PEM chain and key; the sources name them in errors.
fn certified_key(
    cert: &FileSource,
    cert_pem: &[u8],
    key: &FileSource,
    key_pem: &[u8],
) -> Result<CertifiedKey, String> {
    let (cert, key) = (cert.name(), key.name());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert}: no PEM certificate found"));
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("{key}: {e}"))?;
    CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| format!("{cert} and {key}: {e}"))
}

/// A listener certificate that can be swapped while serving. Handshakes read the current
/// pair without locking.
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
    cert: Arc<FileSource>,
    key: Arc<FileSource>,
    /// Of the chain and key in use: a reload that reads the same bytes changes nothing.
    checksum: Mutex<u64>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert.path())
            .field("key", &self.key.path())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The checksum of a chain and key together (their lengths first, so that moving bytes from
/// one file to the other changes it).
fn pair_checksum(cert: &[u8], key: &[u8]) -> u64 {
    let mut bytes = Vec::with_capacity(16 + cert.len() + key.len());
    bytes.extend((cert.len() as u64).to_le_bytes());
    bytes.extend((key.len() as u64).to_le_bytes());
    bytes.extend(cert);
    bytes.extend(key);
    checksum(&bytes)
}

impl ReloadingCert {
    /// Reads the pair now. Later reads wait until the files have been left alone for
    /// `quiet` (a rotation writes both).
    pub fn load(cert: &Path, key: &Path, quiet: Duration) -> Result<Self, String> {
        let (cert, key) = (pem_file(cert), pem_file(key));
        let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
        let pair = certified_key(&cert, &cert_pem, &key, &key_pem)?;
        let at =
            |f: FileSource| Arc::new(FileSource::new(f.path(), "PEM file", quiet, MAX_PEM_BYTES));
        Ok(ReloadingCert {
            current: ArcSwap::from_pointee(pair),
            cert: at(cert),
            key: at(key),
            checksum: Mutex::new(pair_checksum(&cert_pem, &key_pem)),
        })
    }

    pub fn paths(&self) -> [&Path; 2] {
        [self.cert.path(), self.key.path()]
    }

    /// Re-reads the files; a new valid pair replaces the old one, a broken one is reported
    /// and the old pair stays. Returns whether anything was swapped.
    pub fn reload(&self) -> Result<bool, String> {
        let (cert_pem, key_pem) = (read(&self.cert)?, read(&self.key)?);
        let sum = pair_checksum(&cert_pem, &key_pem);
        let mut last = self.checksum.lock().unwrap_or_else(|p| p.into_inner());
        if sum == *last {
            return Ok(false);
        }
        let pair = certified_key(&self.cert, &cert_pem, &self.key, &key_pem)?;
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

/// Watches the certificates' folders and polls (as the blocklist is: [`Schedule`]); swaps in
/// valid new pairs until `stop`.
pub async fn run_cert_reloader(
    certs: Vec<Arc<ReloadingCert>>,
    poll: Duration,
    debounce: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if certs.is_empty() {
        return;
    }
    // One watch per folder: the files of a pair usually share one.
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    let mut folders = Vec::new();
    for file in certs.iter().flat_map(|c| [&c.cert, &c.key]) {
        let folder = crate::refresh::folder_of(file.path());
        if !folders.contains(&folder) {
            folders.push(folder);
            sources.push(Arc::clone(file) as Arc<dyn Source>);
        }
    }
    let mut schedule = Schedule::start(sources, Triggers::default(), poll, debounce);
    while schedule.next(&mut stop).await.is_some() {
        for cert in &certs {
            let c = Arc::clone(cert);
            match tokio::task::spawn_blocking(move || c.reload()).await {
                Ok(Ok(true)) => {
                    tracing::info!(cert = %cert.cert.name(), "TLS certificate reloaded")
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
