use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tls() -> rustls::ClientConfig {
    crate::tls::client_config(None).expect("tls")
}

type Respond = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A tiny HTTP/1.1 server answering from `respond` (request head → full response), one
/// request per connection, on a thread and runtime of its own; counts requests.
fn server(respond: impl Fn(&str) -> String + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let respond: Respond = Arc::new(respond);
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send");
            while let Ok((mut conn, _)) = listener.accept().await {
                let respond = Arc::clone(&respond);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    let reply = respond(&String::from_utf8_lossy(&head));
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
    });
    let addr = addr_rx.recv().expect("address");
    (format!("http://{addr}/list.yaml"), count)
}

fn ok(etag: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nETag: {etag}\r\nLast-Modified: Fri, 04 Dec 2026 10:00:00 GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn not_modified() -> String {
    "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_owned()
}

fn has_header(head: &str, name: &str, value: &str) -> bool {
    head.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value)
    })
}

/// Answers 304 to a request carrying `"v1"`'s validators, else the list.
fn conditional(head: &str) -> String {
    if has_header(head, "if-none-match", "\"v1\"")
        && has_header(head, "if-modified-since", "Fri, 04 Dec 2026 10:00:00 GMT")
    {
        not_modified()
    } else {
        ok("\"v1\"", "identities: []\n")
    }
}

fn source(url: &str, cache: Option<&Path>) -> (RemoteSource, RemoteMetrics) {
    let metrics = RemoteMetrics::register(&mut Registry::default());
    let source = RemoteSource::new(&url.parse().expect("url"), cache, tls(), metrics.clone())
        .expect("source");
    (source, metrics)
}

fn fetches(metrics: &RemoteMetrics, result: &'static str) -> u64 {
    metrics.fetches.get_or_create(&FetchLabels { result }).get()
}

fn unreachable_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    format!("http://{addr}/list.yaml")
}

#[tokio::test]
async fn http_source_sends_its_validators_and_a_304_has_no_body() {
    let (url, count) = server(conditional);
    let (source, metrics) = source(&url, None);
    assert_eq!(
        source.fetch().await.expect("first"),
        Some(b"identities: []\n".to_vec())
    );
    assert_eq!(source.fetch().await.expect("second"), None);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(fetches(&metrics, "downloaded"), 1);
    assert_eq!(fetches(&metrics, "not_modified"), 1);
    assert_eq!(metrics.fetched_bytes.get(), 15);
}

#[tokio::test]
async fn new_validators_with_the_old_bytes_are_checked_once_without_validators() {
    // A read racing a write: the new object's ETag with the old object's body.
    static SEEN_V2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let (url, count) = server(|head| {
        let unconditional = !head.to_ascii_lowercase().contains("if-none-match");
        if has_header(head, "if-none-match", "\"v2\"") {
            not_modified()
        } else if has_header(head, "if-none-match", "\"v1\"") {
            ok("\"v2\"", "identities: []\n")
        } else if unconditional && SEEN_V2.swap(true, Ordering::SeqCst) {
            ok("\"v2\"", "identities: [x]\n")
        } else {
            ok("\"v1\"", "identities: []\n")
        }
    });
    let (source, _) = source(&url, None);
    let body = |f: Option<Vec<u8>>| String::from_utf8(f.expect("a body")).expect("utf-8");
    assert_eq!(body(source.fetch().await.expect("v1")), "identities: []\n");
    // The racing answer is delivered as it is (the store finds it unchanged)...
    assert_eq!(
        body(source.fetch().await.expect("race")),
        "identities: []\n"
    );
    // ...and the next request asks without validators, and gets the new list.
    assert_eq!(body(source.fetch().await.expect("v2")), "identities: [x]\n");
    assert_eq!(source.fetch().await.expect("304"), None);
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn http_errors_and_refused_connections_are_fetch_errors() {
    let (url, _) = server(|_| {
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned()
    });
    let (source, metrics) = source(&url, None);
    let e = source.fetch().await.expect_err("503");
    assert!(e.contains("503"), "{e}");
    let url = unreachable_url();
    let (refused, _) = self::source(&url, None);
    let e = refused.fetch().await.expect_err("refused");
    assert!(e.contains(url.trim_end_matches("/list.yaml")), "{e}");
    assert_eq!(fetches(&metrics, "error"), 1);
}

#[tokio::test]
async fn a_token_in_the_query_is_not_shown_in_names_or_errors() {
    let url = format!("{}?token=s3cr3t", unreachable_url());
    let (source, _) = source(&url, None);
    assert!(!source.name().contains("s3cr3t"), "{}", source.name());
    assert!(source.name().ends_with("/list.yaml?…"), "{}", source.name());
    let e = source.fetch().await.expect_err("refused");
    assert!(!e.contains("s3cr3t"), "{e}");
    assert!(e.contains("/list.yaml?…"), "{e}");
}

#[tokio::test]
async fn an_oversized_answer_is_refused_before_its_body_is_read() {
    let (url, _) = server(|_| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            MAX_BLOCKLIST_BYTES + 1
        )
    });
    let (source, _) = source(&url, None);
    let e = source.fetch().await.expect_err("too large");
    assert!(e.contains("larger than"), "{e}");
}

#[tokio::test]
async fn an_https_only_client_does_not_fetch_over_http() {
    let (url, count) = server(|_| ok("\"x\"", "identities: []\n"));
    let client = client(tls(), true).expect("client");
    let e = fetch_http(&client, &url, &url, Validators::default())
        .await
        .expect_err("http on an https-only client");
    assert!(e.to_string().contains("GET"), "{e}");
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn start_up_takes_the_source_then_the_cache_then_refuses_or_starts_empty() {
    let dir = tempfile::tempdir().expect("dir");
    let cache_path = dir.path().join("cache/list.yaml");
    // Fetched: in force, and copied to the cache.
    let (url, _) = server(conditional);
    let (up, _) = source(&url, Some(&cache_path));
    let start = load_at_start(Arc::new(up), true).await.expect("loaded");
    assert!(matches!(start, Start::Loaded(_)));
    assert_eq!(
        std::fs::read(&cache_path).expect("cache"),
        b"identities: []\n"
    );

    // The source down: the cache.
    std::fs::write(
        &cache_path,
        "identities:\n  - 11111111-2222-4333-8444-555555555555\n",
    )
    .expect("write");
    let down = unreachable_url();
    let (cached, _) = source(&down, Some(&cache_path));
    match load_at_start(Arc::new(cached), true).await {
        Ok(Start::Loaded(l)) => assert_eq!(l.parsed.blocklist.len(), 1),
        _ => panic!("expected the cached list"),
    }

    // Down, no cache: refused with the reason, or started empty.
    let (nothing, _) = source(&down, None);
    let errors = match load_at_start(Arc::new(nothing), true).await {
        Err(errors) => errors,
        Ok(_) => panic!("expected an error"),
    };
    let text = crate::diagnostic::render(&errors);
    assert!(text.contains("require_on_start"), "{text}");
    assert!(text.contains(down.trim_end_matches("/list.yaml")), "{text}");
    let (nothing, _) = source(&down, None);
    match load_at_start(Arc::new(nothing), false).await {
        Ok(Start::Empty(l, why)) => {
            assert!(l.parsed.blocklist.is_empty());
            assert!(!why.is_empty());
        }
        _ => panic!("expected an empty start"),
    }
}

#[tokio::test]
async fn a_broken_list_at_start_falls_back_to_the_cache_with_its_position_logged() {
    let dir = tempfile::tempdir().expect("dir");
    let cache_path = dir.path().join("list.yaml");
    std::fs::write(&cache_path, "identities: []\n").expect("write");
    let (url, _) = server(|_| ok("\"b\"", "identities:\n  - not-a-uuid\n"));
    let (broken, _) = source(&url, Some(&cache_path));
    assert!(matches!(
        load_at_start(Arc::new(broken), true).await,
        Ok(Start::Loaded(_))
    ));
    let (broken, _) = source(&url, None);
    let errors = match load_at_start(Arc::new(broken), true).await {
        Err(errors) => errors,
        Ok(_) => panic!("expected an error"),
    };
    assert_eq!(errors[0].line, 2, "{errors:?}");
}

#[test]
fn object_store_sources_are_built_from_the_url() {
    // Building reads settings only; nothing is fetched.
    for url in ["s3://bucket/dir/list.yaml", "gs://bucket/list.yaml"] {
        let built = RemoteSource::new(
            &url.parse().expect("url"),
            None,
            tls(),
            RemoteMetrics::default(),
        );
        assert!(built.is_ok(), "{url}: {:?}", built.err());
    }
}
