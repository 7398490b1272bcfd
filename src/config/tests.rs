//! Unit tests of `gateway.yaml`: keys, defaults, values, rules, every error with its position.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::diagnostic::Diagnostic;

const MINIMAL: &str = "listen:\n  public: 0.0.0.0:4455\n  admin: 127.0.0.1:4456\n  ops: 0.0.0.0:9091\nupstream:\n  public: http://127.0.0.1:4433\n  admin: http://127.0.0.1:4434\nblocklist:\n  path: blocklist.yaml\n";

fn parse(text: &str) -> Result<Config, Vec<Diagnostic>> {
    Config::from_yaml(text, Path::new("/etc/kratos-gate/gateway.yaml"))
}

#[test]
fn contract_keys_with_defaults() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(
        c.listen.public.address,
        "0.0.0.0:4455".parse().expect("addr")
    );
    assert!(c.listen.public.tls.is_none());
    assert_eq!(c.upstream.public.to_string(), "http://127.0.0.1:4433");
    assert_eq!(
        c.blocklist.path,
        PathBuf::from("/etc/kratos-gate/blocklist.yaml")
    );
    assert_eq!(c.inspection.session_cookie, "ory_kratos_session");
    assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(10));
    assert!(c.forwarding.trusted_proxies.is_empty());
}

#[test]
fn admin_listener_is_optional_and_absolute_paths_stay() {
    let text = MINIMAL
        .replace("  admin: 127.0.0.1:4456\n", "")
        .replace("path: blocklist.yaml", "path: /data/list.yaml");
    let c = parse(&text).expect("valid");
    assert!(c.listen.admin.is_none());
    assert_eq!(c.blocklist.path, PathBuf::from("/data/list.yaml"));
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let text = format!("{MINIMAL}inspection:\n  body_limit: 10\n");
    let errs = parse(&text).expect_err("unknown key");
    assert_eq!(errs[0].line, 11, "{errs:?}");
    assert!(errs[0].message.contains("body_limit"), "{errs:?}");
    assert!(errs[0]
        .to_string()
        .starts_with("/etc/kratos-gate/gateway.yaml:11:"));
}

#[test]
fn bad_values_point_at_the_value() {
    let errs = parse(&MINIMAL.replace("0.0.0.0:4455", "0.0.0.0:notaport")).expect_err("x");
    assert_eq!(errs[0].line, 2, "{errs:?}");
    let errs =
        parse(&MINIMAL.replace("http://127.0.0.1:4434", "ftp://127.0.0.1:4434")).expect_err("x");
    assert_eq!(errs[0].line, 7, "{errs:?}");
    assert!(errs[0].message.contains("http://"), "{errs:?}");
    let errs = parse(&format!("{MINIMAL}server:\n  shutdown_grace: soon\n")).expect_err("x");
    assert_eq!(errs[0].line, 11, "{errs:?}");
    assert!(errs[0].message.contains("duration"), "{errs:?}");
}

#[test]
fn missing_required_key_is_an_error() {
    let errs = parse(&MINIMAL.replace("  ops: 0.0.0.0:9091\n", "")).expect_err("x");
    assert!(errs[0].message.contains("ops"), "{errs:?}");
}

#[test]
fn trusted_proxies_accept_cidrs_and_bare_addresses() {
    let text =
        format!("{MINIMAL}forwarding:\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"::1\"]\n");
    let c = parse(&text).expect("valid");
    assert_eq!(c.forwarding.trusted_proxies.len(), 3);
    assert!(c.forwarding.trusted_proxies[1]
        .contains(&"192.168.1.7".parse::<std::net::IpAddr>().expect("ip")));
    let bad = format!("{MINIMAL}forwarding:\n  trusted_proxies: [10.0.0.0/99]\n");
    assert_eq!(parse(&bad).expect_err("x")[0].line, 11);
}

#[test]
fn listeners_take_tls_files_relative_to_the_config() {
    let text = MINIMAL.replace(
        "  public: 0.0.0.0:4455\n",
        "  public:\n    address: 0.0.0.0:4455\n    tls:\n      cert: tls/tls.crt\n      key: /keys/tls.key\n",
    );
    let c = parse(&text).expect("valid");
    let tls = c.listen.public.tls.expect("tls");
    assert_eq!(tls.cert, PathBuf::from("/etc/kratos-gate/tls/tls.crt"));
    assert_eq!(tls.key, PathBuf::from("/keys/tls.key"));
    let bad = MINIMAL.replace(
        "  public: 0.0.0.0:4455\n",
        "  public:\n    address: 0.0.0.0:4455\n    tsl: {}\n",
    );
    let errs = parse(&bad).expect_err("unknown key");
    assert_eq!(errs[0].line, 4, "{errs:?}");
}

#[test]
fn https_upstreams_are_accepted() {
    let c = parse(&MINIMAL.replace("http://127.0.0.1:4434", "https://project.oryapis.com"))
        .expect("valid");
    assert_eq!(c.upstream.admin.scheme(), "https");
}

#[test]
fn revocation_journal_is_optional_and_resolves_against_the_config() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.revocation.journal, None);
    let c = parse(&format!(
        "{MINIMAL}revocation:\n  journal: state/revocations\n"
    ))
    .expect("valid");
    assert_eq!(
        c.revocation.journal,
        Some(PathBuf::from("/etc/kratos-gate/state/revocations"))
    );
    let c = parse(&format!(
        "{MINIMAL}revocation:\n  journal: /var/lib/kratos-gate\n"
    ))
    .expect("valid");
    assert_eq!(
        c.revocation.journal,
        Some(PathBuf::from("/var/lib/kratos-gate"))
    );
    for bad in ["\"\"", ".", "./", "/etc/kratos-gate/"] {
        let errs = parse(&format!("{MINIMAL}revocation:\n  journal: {bad}\n")).expect_err(bad);
        assert!(
            errs[0].message.starts_with("revocation.journal: ")
                && errs[0].message.contains(" must "),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn upstream_url_with_path_is_rejected() {
    let errs = parse(&MINIMAL.replace("http://127.0.0.1:4433", "http://127.0.0.1:4433/kratos"))
        .expect_err("x");
    assert!(errs[0].message.contains("path"), "{errs:?}");
}

#[test]
fn remote_source_keys_and_defaults() {
    let remote = MINIMAL.replace(
        "path: blocklist.yaml",
        "url: s3://ops-lists/kratos/blocklist.yaml\n  cache_path: cache/list.yaml",
    );
    let c = parse(&remote).expect("valid");
    let url = c.blocklist.url.as_ref().expect("url");
    assert_eq!(url.kind, SourceKind::S3);
    assert_eq!(url.bucket, "ops-lists");
    assert_eq!(url.key, "kratos/blocklist.yaml");
    assert!(c.blocklist.path.as_os_str().is_empty());
    assert!(c.blocklist.require_on_start);
    assert_eq!(
        c.blocklist.cache_path,
        Some(PathBuf::from("/etc/kratos-gate/cache/list.yaml"))
    );
    // A remote source is polled every second unless told otherwise; a file every 10s.
    assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(1));
    let c = parse(&format!(
        "{remote}\n  poll_interval: 3s\n  require_on_start: false\n"
    ))
    .expect("valid");
    assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(3));
    assert!(!c.blocklist.require_on_start);
    let c = parse(&format!("{MINIMAL}  poll_interval: 2s\n")).expect("valid");
    assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(2));

    let http = parse(&MINIMAL.replace(
        "path: blocklist.yaml",
        "url: https://lists.example.com:8443/kratos/list.yaml?v=1",
    ))
    .expect("valid");
    let url = http.blocklist.url.expect("url");
    assert_eq!(url.kind, SourceKind::Https);
    assert_eq!(url.bucket, "lists.example.com:8443");
    assert_eq!(url.key, "/kratos/list.yaml?v=1");
    for (text, kind) in [
        ("gs://b/o.yaml", SourceKind::Gcs),
        ("az://c/dir/b.yaml", SourceKind::Azure),
        ("http://127.0.0.1:8080/l", SourceKind::Http),
    ] {
        assert_eq!(text.parse::<SourceUrl>().expect(text).kind, kind);
    }
}

#[test]
fn exactly_one_blocklist_source() {
    let both = MINIMAL.replace(
        "path: blocklist.yaml",
        "path: blocklist.yaml\n  url: s3://b/k",
    );
    let errs = parse(&both).expect_err("both");
    assert!(errs[0].message.contains("exactly one"), "{errs:?}");
    let neither = MINIMAL.replace("path: blocklist.yaml", "mode: enforce");
    let errs = parse(&neither).expect_err("neither");
    assert!(errs[0].message.contains("exactly one"), "{errs:?}");
    let errs = parse(&format!("{MINIMAL}  cache_path: c.yaml\n")).expect_err("cache");
    assert!(errs[0].message.contains("cache_path"), "{errs:?}");
}

#[test]
fn bad_source_urls_point_at_the_value() {
    for (bad, says) in [
        ("ftp://host/list", "scheme"),
        ("s3://bucket", "names no object"),
        ("s3://bucket/dir/", "names no object"),
        ("s3://bucket:9000/key", "AWS_ENDPOINT_URL"),
        ("https://user:pw@host/list", "credentials"),
        ("blocklist.yaml", "scheme"),
    ] {
        let errs =
            parse(&MINIMAL.replace("path: blocklist.yaml", &format!("url: {bad}"))).expect_err(bad);
        assert_eq!(errs[0].line, 9, "{bad}: {errs:?}");
        assert!(errs[0].message.contains(says), "{bad}: {errs:?}");
    }
}
