//! TLS on the proxy listeners (rustls, ring): ALPN h2 and http/1.1, certificates that rotate
//! without a restart, broken new pairs that leave the old one in use, and https upstreams
//! verified against a configured CA. Certificates are generated at test time (rcgen).

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kratos_gate::config::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use support::fake_kratos::{FakeKratos, Side};
use support::gateway::{replace_atomically, start_gateway_with, write_file, TestGateway};
use support::logs;

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "kratos-gate test CA");
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca"))
    }

    /// A leaf for `localhost`: (chain PEM with the CA, key PEM, leaf DER).
    fn leaf(&self) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &self.0).expect("sign");
        (
            format!("{}{}", cert.pem(), self.0.pem()),
            key.serialize_pem(),
            cert.der().clone(),
        )
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.0.der().clone()
    }
}

fn write_pair(dir: &Path, chain: &str, key: &str) -> TlsFiles {
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    replace_atomically(&key_path, key);
    replace_atomically(&cert_path, chain);
    TlsFiles {
        cert: cert_path,
        key: key_path,
    }
}

async fn tls_gateway(fake: &FakeKratos, files: TlsFiles) -> TestGateway {
    start_gateway_with(&fake.public_url(), &fake.admin_url(), "", move |c| {
        c.listen.public.tls = Some(files);
        c.blocklist.poll_interval = kratos_gate::config::HumanDuration(Duration::from_secs(1));
    })
    .await
}

/// Connects with one ALPN protocol offered; returns the stream, the protocol the server
/// chose, and the leaf certificate it presented.
async fn connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[u8],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
    CertificateDer<'static>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = conn.peer_certificates().expect("certs")[0].clone();
    (tls, alpn, leaf)
}

async fn get_over(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    h2: bool,
    path: &str,
) -> (http::StatusCode, http::Version) {
    let req = http::Request::builder()
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("req");
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().remove("host");
        send.send_request(req).await.expect("h2 response")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("http1 handshake");
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = path.parse().expect("path");
        send.send_request(req).await.expect("http1 response")
    };
    let (parts, body) = resp.into_parts();
    let _ = body.collect().await;
    (parts.status, parts.version)
}

#[tokio::test]
async fn https_listener_negotiates_h2_and_http1() {
    let fake = FakeKratos::start().await;
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (chain, key, leaf) = ca.leaf();
    let gw = tls_gateway(&fake, write_pair(dir.path(), &chain, &key)).await;

    let (tls, alpn, presented) = connect(gw.public, &ca.der(), b"h2").await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(presented, leaf);
    let (status, version) = get_over(tls, true, "/health/alive").await;
    assert_eq!((status.as_u16(), version), (200, http::Version::HTTP_2));

    let (tls, alpn, _) = connect(gw.public, &ca.der(), b"http/1.1").await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (status, version) = get_over(tls, false, "/health/alive").await;
    assert_eq!((status.as_u16(), version), (200, http::Version::HTTP_11));

    let calls = fake.calls_matching(Side::Public, "GET", "/health/alive");
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(
            c.version,
            http::Version::HTTP_11,
            "Kratos is reached over HTTP/1.1"
        );
        assert_eq!(c.header("x-forwarded-proto"), Some("https"));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn rotated_certificate_is_served_after_the_files_change() {
    let fake = FakeKratos::start().await;
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (chain, key, first) = ca.leaf();
    let gw = tls_gateway(&fake, write_pair(dir.path(), &chain, &key)).await;
    assert_eq!(connect(gw.public, &ca.der(), b"h2").await.2, first);

    let (chain2, key2, second) = ca.leaf();
    write_pair(dir.path(), &chain2, &key2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (_, _, presented) = connect(gw.public, &ca.der(), b"h2").await;
        if presented == second {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotated certificate not served within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn broken_new_pair_keeps_the_old_certificate_and_says_why() {
    let (logs, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (chain, key, first) = ca.leaf();
    let files = write_pair(dir.path(), &chain, &key);
    let gw = tls_gateway(&fake, files.clone()).await;
    // A key that does not belong to the certificate.
    let (_, other_key, _) = ca.leaf();
    replace_atomically(&files.key, &other_key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !logs.text().contains("new TLS certificate rejected") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rejection not logged: {}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        connect(gw.public, &ca.der(), b"h2").await.2,
        first,
        "old pair must stay in use"
    );
    // Garbage in the certificate file too.
    write_file(&files.cert, "not a certificate");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (tls, _, presented) = connect(gw.public, &ca.der(), b"http/1.1").await;
    assert_eq!(presented, first);
    assert_eq!(get_over(tls, false, "/health/alive").await.0, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn https_upstream_is_verified_against_the_configured_ca() {
    let fake = FakeKratos::start().await;
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (chain, key, _) = ca.leaf();
    // A TLS-terminating gateway stands in for "Kratos behind TLS".
    let tls_kratos = tls_gateway(&fake, write_pair(dir.path(), &chain, &key)).await;
    let upstream = format!("https://localhost:{}", tls_kratos.public.port());
    let ca_file: PathBuf = dir.path().join("ca.pem");
    write_file(&ca_file, &ca.pem());

    let trusting = start_gateway_with(&upstream, &fake.admin_url(), "", |c| {
        c.upstream.ca_file = Some(ca_file.clone())
    })
    .await;
    let reply = support::client::get(&trusting.public_url("/health/alive")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(fake
        .calls_matching(Side::Public, "GET", "/health/alive")
        .iter()
        .any(|c| c.header("x-forwarded-proto") == Some("https")));

    // The system roots do not know the test CA: the upstream is refused, never trusted.
    let strict = start_gateway_with(&upstream, &fake.admin_url(), "", |_| {}).await;
    let reply = support::client::get(&strict.public_url("/health/alive")).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    trusting.shutdown().await;
    strict.shutdown().await;
    tls_kratos.shutdown().await;
}

#[tokio::test]
async fn missing_certificate_files_fail_at_start() {
    let fake = FakeKratos::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let text = support::gateway::config_text(&fake.public_url(), &fake.admin_url());
    let path = dir.path().join("gateway.yaml");
    write_file(&dir.path().join("blocklist.yaml"), "");
    let mut config = kratos_gate::config::Config::from_yaml(&text, &path).expect("config");
    config.listen.public.tls = Some(TlsFiles {
        cert: dir.path().join("nope.crt"),
        key: dir.path().join("nope.key"),
    });
    let err = match kratos_gate::start(config).await {
        Ok(_) => panic!("started without its certificate"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("listen.public.tls") && err.contains("nope.crt"),
        "{err}"
    );
}
